import Foundation

/// `--help`: what the launcher does, its options and where the serve flags go (80 columns).
enum LaunchHelp {
    static func text(program: String) -> String {
        """
        Usage: \(program) --hostfile FILE [options] [-- recur serve flags]

        Runs one training job: `recur serve` on the coordinator host, `recur work` on
        the hosts of FILE (lines `host [workers=N] [threads=K] [address=ADDR]`, #
        comments), over ssh.

        Options:
          --hostfile FILE         the hosts (required); see cluster/hosts.example
          --coordinator HOST      run the coordinator on HOST (default: the first host
                                  of FILE); a HOST not in FILE runs the coordinator only
          --port P                coordinator port (default 5570)
          --bind-address ADDR     address the coordinator binds (default: its address if
                                  that is an IP literal, else *)
          --binary PATH           the local recur binary (default: .build/release/recur
                                  of this checkout)
          --remote-dir DIR        directory of the recur binary on the nodes (default:
                                  the local binary's directory)
          --sync                  copy the local binary to DIR/recur on every host first
          --ssh-opts "OPTS"       extra ssh options, split on spaces (e.g. "-p 2222 -i
                                  KEY -o X=Y"); may be repeated (ssh takes the first
                                  value of each option)
          --heartbeat-timeout S   passed to recur serve and recur work
          --grace S               after a worker fails: how long the coordinator may
                                  take to stop by itself; after the coordinator
                                  succeeds: how long workers may take to exit (default:
                                  heartbeat timeout + 10, or 30)
          --timeout S             stop everything after S seconds (exit 124)
          --min-workers M         go on without lost workers while at least M remain
                                  (default: half the hostfile's workers, at least 1; the
                                  worker count = no loss)
          --max-restarts R        start a coordinator that died (signal, lost host)
                                  again from its latest checkpoint, at most R times
                                  (default 3; 0 = never)
          --shards S              parameter servers (`recur shard`), one on each of the
                                  first S hosts with workers, at port P+1 (default: one
                                  per such host; 1 = the coordinator alone)
          --join JOB --host LINE  add the host of LINE (`host [workers=N] [threads=K]
                                  [address=A]`) to the running job JOB, whose launcher
                                  runs here as this user
          --insecure              no CurveZMQ keys; passes --insecure to recur serve
          --dry-run               print the commands, run nothing
          -h, --help              this text

        Everything after `--` goes to `recur serve` (model, data and training flags);
        `--data PATH` is given to the workers too (the same file must exist on every
        node). Remote processes run in the launcher's working directory when it exists
        on the node, else in the login directory. Logs come back prefixed with `[host
        coordinator]` or `[host worker R]`.

        """
    }
}
