import XCTest
@testable import Cluster

/// What the launcher reads before anything runs: hostfiles, its command line (every mistake
/// is a usage error, exit 64 in LaunchMain) and the commands it derives.
final class LaunchInputTests: XCTestCase {
    func usageError(_ arguments: [String]) -> String? {
        do { _ = try LaunchOptions.parse(arguments); return nil } catch { return "\(error)" }
    }

    func parseError(_ text: String) -> String? {
        do { _ = try HostLine.parseFile(text, name: "hosts"); return nil } catch { return "\(error)" }
    }

    func testHostfileLinesFieldsAndComments() throws {
        let hosts = try HostLine.parseFile("# c\n\nn1 workers=2 threads=4   # x\nme@n2 address=10.0.0.2\nn3 workers=0", name: "hosts")
        XCTAssertEqual(hosts, [HostLine(target: "n1", workers: 2, threads: 4, line: 3),
                               HostLine(target: "me@n2", address: "10.0.0.2", line: 4),
                               HostLine(target: "n3", workers: 0, line: 5)])
        XCTAssertEqual(HostLine(target: "me@n2").address, "n2")
    }

    func testHostfileMistakesNameTheirLine() {
        XCTAssertEqual(parseError("n1 workers=1\n\nn2\nn3 cpus=2\n"), "hosts:4: unknown field 'cpus=2' (expected workers=N, threads=K or address=ADDR)")
        XCTAssertEqual(parseError("# two\nn1 workers=1\nn1 threads=2\n"), "hosts:3: host 'n1' is already listed on line 2 (use workers=N)")
        XCTAssertEqual(parseError("n1 workers=two"), "hosts:1: workers must be a whole number, got 'two'")
        XCTAssertEqual(parseError("n1 threads=0"), "hosts:1: threads must be a positive whole number, got '0'")
        XCTAssertEqual(parseError("n1 address=u@x"), "hosts:1: 'u@x' is not an address")
        XCTAssertEqual(parseError("-oProxyCommand=x"), "hosts:1: '-oProxyCommand=x' is not a host name ([user@]host)")
        XCTAssertEqual(parseError("n;rm"), "hosts:1: 'n;rm' is not a host name ([user@]host)")
    }

    func testCommandLineMistakes() {
        XCTAssertEqual(usageError([]), "--hostfile FILE is required")
        XCTAssertEqual(usageError(["--hostfile"]), "--hostfile needs a value")
        XCTAssertEqual(usageError(["--hostfile", "h", "--frob"]), "unknown option '--frob' (flags for recur serve go after --)")
        XCTAssertEqual(usageError(["--hostfile", "h", "--port", "0"]), "--port must be 1...65535, got '0'")
        XCTAssertEqual(usageError(["--hostfile", "h", "--heartbeat-timeout", "0.0"]), "--heartbeat-timeout must be a positive number of seconds, got '0.0'")
        XCTAssertEqual(usageError(["--hostfile", "h", "--grace", "x"]), "--grace must be a positive whole number of seconds, got 'x'")
        XCTAssertEqual(usageError(["--hostfile", "h", "--max-restarts", "-1"]), "--max-restarts must be a whole number, got '-1'")
        XCTAssertEqual(usageError(["--hostfile", "h", "--", "--workers", "3"]), "do not pass --workers after --: the hostfile sets the worker count")
        XCTAssertEqual(usageError(["--hostfile", "h", "--", "--key=k"]), "do not pass --key after --: the launcher sets it (see --port, --bind-address, --insecure)")
        XCTAssertEqual(usageError(["--hostfile", "h", "--", "--shards", "2"]), "give --shards before --: the launcher passes it on")
        XCTAssertEqual(usageError(["--hostfile", "h", "--", "--data"]), "--data after -- needs a value")
        XCTAssertEqual(usageError(["--join", "j"]), "--join JOB needs --host 'host [workers=N] [threads=K]'")
        XCTAssertEqual(usageError(["--host", "n"]), "--host adds a host to a running job: give --join JOB too (a new job takes --hostfile)")
        XCTAssertNil(usageError(["--help", "--frob"]), "--help wins")
    }

    func testOptionsReadTheServeFlagsTheyNeed() throws {
        let options = try LaunchOptions.parse(["--hostfile", "h", "--ssh-opts", "-p 2222", "--ssh-opts", "-i k", "--heartbeat-timeout", "3",
                                               "--", "--data=/c.txt", "--checkpoint-dir", "/ck", "--steps", "5"])
        XCTAssertEqual(options.sshOptions, ["-p", "2222", "-i", "k"])
        XCTAssertEqual(options.dataPath, "/c.txt")
        XCTAssertEqual(options.checkpointDirectory, "/ck")
        XCTAssertEqual(options.effectiveGrace, 14)
        XCTAssertEqual(try LaunchOptions.parse(["--hostfile", "h"]).effectiveGrace, 30)
    }

    func plan(_ hosts: String, _ arguments: [String] = []) throws -> LaunchPlan {
        let options = try LaunchOptions.parse(["--hostfile", "hosts"] + arguments)
        return try LaunchPlan(options: options, hosts: HostLine.parseFile(hosts, name: "hosts"), hostfileName: "hosts",
                              jobID: "recur-job.t.1.ab", workingDirectory: "/w d", defaultBinary: "/b/recur")
    }

    func planError(_ hosts: String, _ arguments: [String] = []) -> String? {
        do { _ = try plan(hosts, arguments); return nil } catch { return "\(error)" }
    }

    func testJobLayoutMistakes() {
        XCTAssertEqual(planError("# none\n"), "hosts: no hosts (lines are 'host [workers=N] [threads=K]')")
        XCTAssertEqual(planError("n1 workers=0"), "hosts: no workers (every host has workers=0)")
        XCTAssertEqual(planError("n1\nn2", ["--shards", "3"]), "--shards 3: only 2 host(s) have workers (one shard per host)")
        XCTAssertEqual(planError("n1\nn2", ["--min-workers", "3"]), "--min-workers 3 is more than the hostfile's 2 worker(s)")
        XCTAssertEqual(planError("n1", ["--port", "65535"]), "--port 65535 leaves no port for the shards (they use port + 1)")
        XCTAssertEqual(planError("n1", ["--remote-dir", "rel"]), "--remote-dir must be an absolute path, got 'rel'")
        XCTAssertEqual(planError("n1", ["--coordinator", "-x"]), "--coordinator: '-x' is not a host name")
    }

    func testJobLayoutAndCommands() throws {
        let p = try plan("n1 workers=0\nn2 workers=2 threads=4\nme@n3 address=10.9.8.7\n",
                         ["--port", "6001", "--coordinator", "head", "--", "--steps", "5", "--init-from", "x", "--resume"])
        XCTAssertEqual(p.hosts.last?.target, "head", "a coordinator not listed runs on a host of its own")
        XCTAssertEqual(p.workerHost, [1, 1, 2])
        XCTAssertEqual(p.shardHosts, [1, 2])
        XCTAssertEqual(p.minWorkers, 1)
        XCTAssertEqual(p.hostsInUse, [1, 2, 3])
        XCTAssertEqual(p.remoteBinary, "/b/recur")
        XCTAssertEqual(p.coordinatorCommand(resume: true),
                       "/b/recur serve --bind 'tcp://*:6001' --workers 3 --min-workers 1 --shards 2 --shard-endpoints tcp://n2:6002,tcp://10.9.8.7:6002 --key /tmp/recur-job.t.1.ab.h3/coordinator/coordinator.key --authorized-keys /tmp/recur-job.t.1.ab.h3/coordinator/authorized-keys --steps 5 --resume")
        XCTAssertEqual(p.workerCommand(1), "/b/recur work --connect tcp://head:6001 --threads 4 --key /tmp/recur-job.t.1.ab.h1/worker-1/worker.key --server-key /tmp/recur-job.t.1.ab.h1/worker-1/coordinator.pub")
        XCTAssertEqual(p.shardCommand(1), "/b/recur shard --bind tcp://10.9.8.7:6002 --key /tmp/recur-job.t.1.ab.h2/shard/coordinator.key --authorized-keys /tmp/recur-job.t.1.ab.h2/shard/authorized-keys")
        var bounded = p
        bounded.options.shardMessageBytes = 339_712
        XCTAssertEqual(bounded.shardCommand(1), "/b/recur shard --bind tcp://10.9.8.7:6002 --max-message-bytes 339712 --key /tmp/recur-job.t.1.ab.h2/shard/coordinator.key --authorized-keys /tmp/recur-job.t.1.ab.h2/shard/authorized-keys",
                       "issue 21 item 3: the shard's message bound, the run's setup size, given before it binds")
        XCTAssertEqual(p.hostFiles(2), ["shard/coordinator.key", "shard/authorized-keys", "worker-2/worker.key", "worker-2/coordinator.pub"])
        XCTAssertTrue(p.wrapped("CMD", host: 2).hasPrefix("cd '/w d' 2>/dev/null || cd\nexec 3<&0\nCMD </dev/null 3<&- &\n"))
        XCTAssertEqual(p.checkpointProbe, "cd '/w d' 2>/dev/null || cd; test -f checkpoints/recur/state.json")
    }

    func testShellQuoting() {
        XCTAssertEqual(shellQuote("tcp://a:1"), "tcp://a:1")
        XCTAssertEqual(shellQuote(""), "''")
        XCTAssertEqual(shellQuote("it's"), #"'it'\''s'"#)
        XCTAssertEqual(shellQuote("$(x)"), "'$(x)'")
    }
}
