import Foundation

/// `--join JOB --host LINE` in the policy: one request at a time, in order. A request is a
/// host line and a reply channel (`reply.PID`, the asking process's); the answer is one line,
/// `added HOST to job JOB: worker(s) A...B started` or `refused: why`.
extension LaunchPolicy {
    static func isReplyName(_ name: String) -> Bool {
        name.range(of: #"^reply\.[0-9]+$"#, options: .regularExpression) != nil
    }

    mutating func joinRequested(_ reply: String, _ line: String) -> [LaunchAction] {
        guard Self.isReplyName(reply) else { return [] }   // not from `--join`: no one to answer
        guard acceptsJoins else { return [.reply(to: reply, text: "refused: job \(configuration.jobID) is ending")] }
        guard joining == nil else {
            queuedJoins.append((reply, line))
            return []
        }
        return beginJoin(reply, line)
    }

    /// Checks the line against the job's hosts; a good one takes the next worker ranks and is
    /// prepared by the driver (keys shipped), then its workers start.
    private mutating func beginJoin(_ reply: String, _ line: String) -> [LaunchAction] {
        let host: HostLine
        do {
            guard let parsed = try HostLine.parse(line, place: "--host", line: 0, existing: configuration.hosts) else {
                return [.reply(to: reply, text: "refused: --host needs a host name")]
            }
            host = parsed
        } catch {
            return [.reply(to: reply, text: "refused: \(error)")]
        }
        guard host.workers > 0 else { return [.reply(to: reply, text: "refused: workers=0 adds nothing")] }
        configuration.hosts.append(host)
        let first = configuration.workerHosts.count
        configuration.workerHosts += Array(repeating: configuration.hosts.count - 1, count: host.workers)
        let ranks = first..<configuration.workerHosts.count
        joining = (reply, ranks, configuration.hosts.count - 1)
        return [.prepareJoin(reply: reply, host: host, ranks: ranks)]
    }

    mutating func joinPrepared(_ reply: String, _ failure: String?) -> [LaunchAction] {
        guard let join = joining, join.reply == reply else { return [] }
        joining = nil
        let target = configuration.hosts[join.host].target
        var actions: [LaunchAction]
        if let failure {
            // The ranks are given out again; the host stays listed (its directory may exist).
            configuration.workerHosts.removeLast(join.ranks.count)
            actions = [.log("could not add \(target): \(failure)"),
                       .reply(to: reply, text: "refused: preparing \(target) failed: \(failure)")]
        } else if !acceptsJoins {
            actions = [.reply(to: reply, text: "refused: job \(configuration.jobID) is ending")]
        } else {
            let span = "\(join.ranks.lowerBound)...\(join.ranks.upperBound - 1)"
            actions = join.ranks.map { start(.worker($0), host: join.host) }
            actions.append(.log("added \(target) to the job: worker(s) \(span) join at the coordinator's next step boundary"))
            actions.append(.reply(to: reply, text: "added \(target) to job \(configuration.jobID): worker(s) \(span) started"))
        }
        while joining == nil, !queuedJoins.isEmpty {
            let next = queuedJoins.removeFirst()
            actions += joinRequested(next.reply, next.line)
        }
        return actions
    }
}
