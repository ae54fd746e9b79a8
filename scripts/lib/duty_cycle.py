#!/usr/bin/env python3
"""Throttles one process to a share of its CPU the way a busy or capped node would: stops it
(SIGSTOP) for SHARE of every PERIOD seconds and continues it (SIGCONT) for the rest.

    duty_cycle.py PID PERIOD SHARE LIMIT      # e.g. duty_cycle.py 4242 0.05 0.5 300

Ends after LIMIT seconds, when the process is gone, or on SIGTERM/SIGINT, and always leaves
the process continued (a stopped worker would hang its run). Prints how many times it stopped
the process.
"""
import os
import signal
import sys
import time


def main(pid, period, share, limit):
    stopped, running = period * share, period * (1 - share)
    done = False

    def finish(signum, frame):
        nonlocal done
        done = True

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    deadline, stops = time.monotonic() + limit, 0
    try:
        while not done and time.monotonic() < deadline:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                break
            stops += 1
            time.sleep(stopped)
            # A process that ended just before its stop is a zombie (signals still reach it)
            # until its parent reaps it, which may happen during the sleep.
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                break
            time.sleep(running)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    print(stops)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
