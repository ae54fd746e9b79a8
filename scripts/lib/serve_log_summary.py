#!/usr/bin/env python3
"""Medians of one `recur serve --log-jsonl` run, in the field names of `recur bench`'s JSON.

    serve_log_summary.py LOG.jsonl WARMUP      # prints one JSON line

Skips the first WARMUP steps (connection set-up, first-touch page faults). The coordinator's
split per step: wait = last push arrival - first, compute = fastest worker's compute +
coordinator update, communicate = the rest (encode, send, transfer both ways, decode).
"""
import json
import statistics
import sys


def main(path, warmup):
    records = [json.loads(line) for line in open(path) if line.startswith("{")]
    timed = [r for r in records if r.get("step", 0) > warmup]
    if not timed:
        sys.exit(f"{path}: no step after the {warmup} warm-up steps ({len(records)} records)")
    median = lambda key: statistics.median(r[key] for r in timed)
    worker_compute = [statistics.median(w["computeSeconds"] for w in r["workers"]) for r in timed if r.get("workers")]
    print(json.dumps({
        "timed_steps": len(timed),
        "tokens_per_sec": median("tokensPerSecond"),
        "step_seconds": median("stepSeconds"),
        "compute_seconds": median("computeSeconds"),
        "communicate_seconds": median("communicateSeconds"),
        "wait_seconds": median("waitSeconds"),
        "worker_compute_seconds": statistics.median(worker_compute) if worker_compute else None,
        "final_loss": timed[-1]["loss"],
    }))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]))
