import Recurrent
import Training
import Wire

/// Who a worker hears from: its coordinator, or parameter shard k of a sharded run.
enum Sender: Equatable {
    case coordinator
    case shard(Int)
}

/// What a client-side role (a worker; `WorkerMachine`) is told by its `ClientDriver`. The role
/// never touches a socket, a clock or a thread: the times come as `now` with each event.
enum ClientEvent {
    /// A valid message (malformed ones are logged by the driver and never reach the role).
    case received(from: Sender, DecodedMessage)
    /// The coordinator has said nothing for `seconds`, more than `WorkerMachine.silenceLimit`.
    case coordinatorSilent(seconds: Double)
    /// The coordinator process that started this worker is gone (the worker was re-parented).
    case parentGone(pid: Int)
    /// A signal asked the process to stop (delivered once).
    case stopRequested(StopRequest.Stopped)
    /// Time passed (the driver's wait for input came back): timers are checked against `now`.
    case tick
    /// The compute thread handed over the final values of `slices` (the top layer and head)
    /// while the lower layers are still in backward.
    case earlyPartReady(slices: Range<Int>)
    /// The compute thread is done (it started at `startedAt`): node sums and losses are in
    /// the engine.
    case computeFinished(startedAt: Double)
    /// The step's last push has left (its `now` ends the step's communication time).
    case gradientSent
}

enum ClientAction {
    /// To the coordinator; a failure ends the worker with the transport's error, unless
    /// `required` is false (then it is dropped).
    case send(Message, required: Bool = true)
    case sendToShard(Int, Message)
    /// Closes the links of the previous assignment's shards and connects to these, in order
    /// (shard k at `endpoints[k]`), each bounded by `limits`.
    case linkShards(endpoints: [String], limits: DecodeLimits)
    /// Closes the links of the previous assignment's shards (if any).
    case closeShardLinks
    /// One reduction-tree node's gradient to the coordinator, encoded from the engine's buffer.
    case pushToCoordinator(CoordinatorPush)
    /// One piece of one node's gradient to the shard that owns it, encoded from the engine's buffer.
    case pushToShard(Int, SlabPush)
    /// Runs the job on the driver's compute thread; meanwhile the driver beats and hands over
    /// the early part (`earlyPartReady`), then says `computeFinished` and, once its actions
    /// are done, `gradientSent`. The driver reads no message meanwhile.
    case startCompute(ComputeJob)
    /// The bound every message from the coordinator must keep from now on (the run's model).
    case limit(DecodeLimits)
    /// The coordinator is known gone: close its link at once, dropping what is queued.
    case abandonCoordinator
    case log(String)
    /// The run is over: the driver returns.
    case finish
    /// The worker cannot go on: the driver throws `error`.
    case fail(Error)
}

/// A gradient push to the coordinator: `WireCodec.encodeGradientPush`'s arguments. `gradient`
/// is the engine's node sum (P floats), valid until the next compute starts.
struct CoordinatorPush {
    var step: UInt64
    var chunks: Range<Int>
    var gradient: UnsafeBufferPointer<Float>
    var layout: ParameterLayout
    /// The run of layout slices this part carries (0..<0: none, a sharded run's).
    var slices: Range<Int>
    var part = 0, parts = 1
    var tokenCount: UInt64 = 0
    var lossSum = 0.0
    var times = PushTimes()
    var state: [WireTensor] = []
}

/// What a worker reports of its time with a step's last push.
struct PushTimes {
    var compute = 0.0, communicate = 0.0, wait = 0.0
}

/// A gradient piece to a shard: `WireCodec.encodeSlabGradientPush`'s arguments. `values` point
/// into the engine's node sum, valid until the next compute starts.
struct SlabPush {
    var step: UInt64
    var chunks: Range<Int>
    var offset: Int
    var values: UnsafeBufferPointer<Float>
    var part: Int, parts: Int
}
