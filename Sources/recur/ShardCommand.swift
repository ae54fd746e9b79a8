import ArgumentParser
import Cluster
import Foundation
import Recurrent
import Training
import Wire

struct ShardCommandLine: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shard",
        abstract: "Run one parameter server of a sharded run (`serve --shards S --shard-endpoints …`).",
        usage: "recur shard --bind ENDPOINT [<options>]",
        discussion: """
        The coordinator connects and sends the shard its range of the weights; the workers \
        connect and push that range of their gradients. With CurveZMQ the shard uses the \
        coordinator's key pair (--key) and an allow-list holding the workers' and the \
        coordinator's public keys; without, the job's join token (--token-file or \
        RECUR_JOIN_TOKEN) admits them. Binding a non-loopback address needs keys unless \
        --insecure is given.

        Memory: libzmq fixes the largest message the shard takes when it binds, before the \
        coordinator's setup names the model, so whoever starts the shard gives it \
        (--max-message-bytes; `recur train --shards` and `recur launch` compute it from the \
        run). A setup larger than that is dropped unread and the coordinator says so. At most \
        the coordinator plus 4 other connections are admitted before the setup, the run's \
        workers plus the coordinator plus 4 after it; each queues at most 4 messages.
        """)

    @Option(help: "ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:5571.")
    var bind: String
    @OptionGroup var transport: TransportFlags
    @Option(name: .customLong("authorized-keys"), help: "File of the public keys allowed to connect: the workers' and the coordinator's.")
    var authorizedKeys: String?
    @Flag(help: "Allow a non-loopback bind without encryption and authentication.")
    var insecure = false
    @Option(name: .customLong("max-message-bytes"), help: "The largest message to take: the run's setup (the launchers compute it from the model). Default \(ShardServer.defaultMaxMessageBytes) (16 MiB).")
    var maxMessageBytes = ShardServer.defaultMaxMessageBytes

    func validate() throws {
        try transport.validateValues()
        if (transport.key == nil) != (authorizedKeys == nil) { throw ValidationError("--key and --authorized-keys go together") }
        if !(1024...(1 << 30)).contains(maxMessageBytes) {
            throw ValidationError("--max-message-bytes must be between 1024 and \(1 << 30), got \(maxMessageBytes)")
        }
        try Endpoint.validate(bind, flag: "--bind", bind: true)
        if transport.key == nil && !insecure && !Endpoint.isLocal(bind) {
            throw ValidationError("refusing to bind \(bind) without --key/--authorized-keys (CurveZMQ); pass --insecure to allow unauthenticated peers")
        }
    }

    func run() throws {
        var settings = ZMQServerSettings(bind: Endpoint.bindable(bind), maxMessageBytes: maxMessageBytes)
        settings.sendTimeout = transport.heartbeatTimeout
        // Before the setup only the coordinator needs a place; the setup raises the cap to the
        // run's workers + the coordinator (`ShardMachine`, `.members`).
        settings.maxConnections = ConnectionLimit.connections(members: 1)
        var options = ShardOptions()
        options.maxMessageBytes = maxMessageBytes
        options.heartbeatTimeout = transport.heartbeatTimeout
        if let keyPath = transport.key, let allowPath = authorizedKeys {
            let own = try KeyFile.keyPair(keyPath)
            settings.curve = CurveServerSettings(secretKey: own.secretKey, allowedPublicKeys: try KeyFile.publicKeys(allowPath))
        } else {
            guard let token = try JoinToken.given(file: transport.tokenFile) else {
                throw ValidationError("without --key, the shard needs the job's join token: --token-file FILE or \(JoinToken.environmentVariable)")
            }
            options.joinToken = token
        }
        let log: (String) -> Void = { print($0); fflush(stdout) }
        let server = try ZMQServerTransport(settings) { log($0) }
        let shard = ShardServer(options: options, transport: server, log: log)
        let stop = shard.stop
        Signals.forward { stop.request($0, exitCode: $1) }
        try shard.serve()
    }
}
