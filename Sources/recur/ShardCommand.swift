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
        """)

    @Option(help: "ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:5571.")
    var bind: String
    @OptionGroup var transport: TransportFlags
    @Option(name: .customLong("authorized-keys"), help: "File of the public keys allowed to connect: the workers' and the coordinator's.")
    var authorizedKeys: String?
    @Flag(help: "Allow a non-loopback bind without encryption and authentication.")
    var insecure = false

    func validate() throws {
        try transport.validateValues()
        if (transport.key == nil) != (authorizedKeys == nil) { throw ValidationError("--key and --authorized-keys go together") }
        try Endpoint.validate(bind, flag: "--bind", bind: true)
        if transport.key == nil && !insecure && !Endpoint.isLocal(bind) {
            throw ValidationError("refusing to bind \(bind) without --key/--authorized-keys (CurveZMQ); pass --insecure to allow unauthenticated peers")
        }
    }

    func run() throws {
        var settings = ZMQServerSettings(bind: Endpoint.bindable(bind), maxMessageBytes: DecodeLimits.standard.maxMessageBytes)
        settings.sendTimeout = transport.heartbeatTimeout
        var options = ShardOptions()
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
        let server = try ZMQServerTransport(settings) { log("rejected connection: \($0)") }
        let shard = ShardServer(options: options, transport: server, log: log)
        let stop = shard.stop
        Signals.forward { stop.request($0, exitCode: $1) }
        try shard.serve()
    }
}
