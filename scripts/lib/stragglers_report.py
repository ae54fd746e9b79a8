#!/usr/bin/env python3
"""Report of the straggler part of scripts/bench-scaling (issue 23): summary.json rows, a
Markdown table and a plot from its stragglers.jsonl.

    stragglers_report.py STRAGGLERS.jsonl OUTDIR [DISTURBED_PERCENT] [NOTE]

Writes OUTDIR/stragglers.md, OUTDIR/stragglers.png (when matplotlib imports) and its rows into
OUTDIR/summary.json ("part": "stragglers"; the many-node part's rows there are kept). One row
per fleet and --balance setting, medians over rounds.

Definitions (a fleet of W workers over N chunks):
  time            = the sum of the coordinator's step times over the timed steps (after the
                    warm-up); a rebalance happens inside a step, so it is counted
  ratio_to_equal  = time ÷ the equal fleet's time (same W, steps and --balance, same round:
                    the two ran minutes apart), median over rounds
  speed           = emulated fleets: a worker's chunks per second relative to an equal
                    worker's, 1 ÷ (its ms per chunk × its slowdown at that step ÷ the equal
                    worker's ms per chunk); the fleet's speed is their sum, step by step
  ideal time      = Σ over timed steps of (the equal fleet's mean step × W ÷ the fleet's speed
                    at that step): the equal fleet's time with the work spread over the
                    fleet's total speed (for 50,50,50,200: W ÷ 3.25 = 1.23×)
  efficiency      = ideal time ÷ time (per round, median over rounds); for the real-compute pair, throughput ÷ (the sum of
                    the two workers' solo throughputs, measured in the same sweep)
  final_blocks    = chunks per worker in rank order after the last "rebalanced chunks" line
Emulated fleets' figures are emulated (sleeps stand for compute) and say so everywhere. Their
medians take every round; the real-compute rows leave out runs during which other programs
took more than DISTURBED_PERCENT of the CPUs when the fleet has a quieter run.
"""
import json
import os
import re
import statistics
import sys
from collections import defaultdict

# The criteria: fleet → (--balance on figure, bound, what it means).
TARGETS = {
    "w4-slow": ("ratio_to_equal", 1.4, "time ≤ 1.4× the equal fleet's (ideal 1.23×)"),
    "w8-transient": ("ratio_to_equal", 1.2, "time ≤ 1.2× the equal fleet's over the steps"),
    "w8s1-transient": ("ratio_to_equal", 1.2, "time ≤ 1.2× the equal fleet's over the steps"),
    "pair-throttled": ("efficiency", 0.85, "throughput ≥ 0.85× the fleet's total speed"),
}


def quiet(runs, disturbed):
    calm = [r for r in runs if r["others_during_pct"] <= disturbed]
    return calm or runs


def chunk_count(model):
    words = model.split()
    return int(words[words.index("--batch") + 1]) // int(words[words.index("--chunk") + 1])


def final_blocks(rebalances, workers, chunks):
    sizes = [chunks // workers] * workers
    for line in rebalances:
        for rank, _, new in re.findall(r"worker (\d+) (\d+)→(\d+)", line.split("(compute")[0]):
            sizes[int(rank)] = int(new)
    return sizes


def relative_speeds(record, step):
    """Each worker's speed at the 1-based global `step`, in equal workers."""
    ms = [float(m) for m in record["chunk_ms"].split(",")]
    slow = record["slowdowns"].split(",")
    base = min(ms)
    speeds = []
    for m, s in zip(ms, slow):
        factor = 1.0
        if s != "-":
            f, _, span = s.partition("@")
            a, _, b = span.partition("-")
            if not span or int(a) <= step <= int(b):
                factor = float(f)
        speeds.append(base / (m * factor))
    return speeds


def summarise(records, disturbed):
    groups = defaultdict(list)
    for r in records:
        groups[(r["fleet"], r["balance"])].append(r)
    rows = {}
    for (fleet, balance), runs in groups.items():
        # Sleeps stand for compute in emulated runs: all rounds count, as in their ratios.
        kept = runs if runs[0]["emulated"] else quiet(runs, disturbed)
        first = kept[0]
        med = lambda f: statistics.median(f(r) for r in kept)
        chunks = chunk_count(first["model"])
        rows[(fleet, balance)] = {
            "part": "stragglers", "fleet": fleet, "emulated": first["emulated"], "balance": balance,
            "W": first["workers"], "S": first["shards"], "chunks": chunks, "model": first["model"],
            "chunk_ms": first["chunk_ms"] if first["emulated"] else None,
            "slowdowns": first["slowdowns"] if first["emulated"] else None,
            "throttled": f"SIGSTOP half of every {first.get('duty_period_ms') or 50} ms" if first["throttled"] else None,
            "link": first["link"],
            "link_measured_gbit": first["link_probe"]["gbit_per_s"] if first.get("link_probe") else None,
            "timed_steps": first["result"]["timed_steps"], "warmup": first["warmup"],
            "time_s": med(lambda r: r["result"]["total_seconds"]),
            "step_ms_median": med(lambda r: 1e3 * r["result"]["step_seconds_median"]),
            "tokens_per_sec": med(lambda r: r["result"]["tokens"] / r["result"]["total_seconds"]),
            "final_blocks": final_blocks(first["result"]["rebalances"], first["workers"], chunks),
            "rebalances": len(first["result"]["rebalances"]),
            "reissued_chunks": first["result"].get("reissued_chunks"),
            "last_rebalance": (first["result"]["rebalances"] or [None])[-1],
            "step_ms": [1e3 * s for s in first["result"]["step_seconds"]],
            "ratio_to_equal": None, "ideal_ratio_to_equal": None, "efficiency": None,
            "cpu_busy": med(lambda r: r["cpu_busy_pct"]) / 100, "others_during": med(lambda r: r["others_during_pct"]) / 100,
            "runs": len(runs), "runs_kept": len(kept),
        }
    for (fleet, balance), row in rows.items():
        family = fleet.split("-")[0]
        equal = rows.get((family + "-equal", balance))
        if row["emulated"] and equal:
            # Each run against the equal fleet's run of the same round (minutes apart, under
            # the same load from other programs), then the median over rounds.
            first = next(r for r in records if r["fleet"] == fleet)
            steps = range(row["warmup"] + 1, row["warmup"] + row["timed_steps"] + 1)
            ideal_factor = sum(row["W"] / sum(relative_speeds(first, k)) for k in steps) / len(steps)
            pairs = [(r["result"]["total_seconds"], e["result"]["total_seconds"] / e["result"]["timed_steps"] * len(steps))
                     for r in records if (r["fleet"], r["balance"]) == (fleet, balance)
                     for e in records if (e["fleet"], e["balance"], e["round"]) == (family + "-equal", balance, r["round"])]
            if pairs:
                row["ratio_to_equal"] = statistics.median(t / e for t, e in pairs)
                row["ideal_ratio_to_equal"] = ideal_factor
                row["efficiency"] = statistics.median(ideal_factor * e / t for t, e in pairs)
        if fleet == "pair-throttled":
            solo = [rows.get((name, "on")) for name in ("pair-solo-fast", "pair-solo-throttled")]
            if all(solo):
                total = sum(s["tokens_per_sec"] for s in solo)
                row["fleet_speed_tokens_per_sec"] = total
                row["efficiency"] = row["tokens_per_sec"] / total
    for row in rows.values():
        target = TARGETS.get(row["fleet"])
        if target and row["balance"] == "on" and row[target[0]] is not None:
            value = row[target[0]]
            row["target"] = target[2]
            row["target_met"] = value <= target[1] if target[0] == "ratio_to_equal" else value >= target[1]
        for k, v in row.items():
            if isinstance(v, float):
                row[k] = round(v, 4)
        row["step_ms"] = [round(v, 1) for v in row["step_ms"]]
    order = ["w4-equal", "w4-slow", "w8-equal", "w8-slow", "w8-transient", "w8s1-equal", "w8s1-slow", "w8s1-transient", "pair-solo-fast", "pair-solo-throttled", "pair-throttled"]
    return sorted(rows.values(), key=lambda r: (order.index(r["fleet"]) if r["fleet"] in order else 99, r["balance"]))


def fmt(value, digits=2, suffix=""):
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def describe(r):
    if r["fleet"].startswith("pair"):
        what = {"pair-solo-fast": "one worker alone", "pair-solo-throttled": "the throttled worker alone",
                "pair-throttled": "both, one throttled"}[r["fleet"]]
        return f"{r['fleet']} (real compute: {what})"
    slow = [s for s in r["slowdowns"].split(",") if s != "-"]
    return f"{r['fleet']} (emulated: {r['chunk_ms']} ms/chunk{', slowdown ' + slow[0] if slow else ''})"


def table(rows, note):
    lines = [
        "# Stragglers: balancing chunks against slow workers",
        "",
        "Emulated rows: workers wait a fixed time per chunk instead of computing (`recur work --emulate-compute 1 "
        "--emulate-chunk-ms MS [--emulate-slowdown F@A-B]`); encode, send, sum, optimizer and broadcast are real. "
        "W = 8 fleets: one namespace per node, S = 8 shards beside the workers (w8s1: one parameter server, where "
        "chunks are also re-issued within a step), shaped links; W = 4 and the "
        "real-compute pair: loopback. Time = the coordinator's step times summed over the timed steps (median over rounds). "
        "× equal fleet: time ÷ the equal fleet's of the same round and --balance, median over rounds; in brackets the ideal. "
        "Efficiency = ideal time for the fleet's total speed ÷ time (pair: throughput ÷ the sum of the two solo throughputs).",
        "",
        "| fleet | W | S | chunks | balance | steps | time s | median step ms | × equal fleet (ideal) | efficiency | final blocks (rank order) | rebalances | re-issued chunks | issue's target | CPUs busy (others) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|",
    ]
    for r in rows:
        ratio = "–" if r["ratio_to_equal"] is None else f"{r['ratio_to_equal']:.2f}× ({r['ideal_ratio_to_equal']:.2f}×)"
        target = ""
        if r.get("target"):
            target = f"{r['target']}: {'met' if r['target_met'] else 'NOT met'}"
        lines.append(
            f"| {describe(r)} | {r['W']} | {r['S']} | {r['chunks']} | {r['balance']} | {r['timed_steps']} | {r['time_s']:.2f} | "
            f"{r['step_ms_median']:.1f} | {ratio} | {fmt(None if r['efficiency'] is None else 100 * r['efficiency'], 0, '%')} | "
            f"{'/'.join(map(str, r['final_blocks']))} | {r['rebalances']} | {r.get('reissued_chunks', '–')} | {target} | "
            f"{100 * r['cpu_busy']:.0f}% ({100 * r['others_during']:.0f}%) |")
    pair = [r for r in rows if r.get("fleet_speed_tokens_per_sec")]
    if pair:
        solo = [r for r in rows if r["fleet"].startswith("pair-solo")]
        lines += ["", f"Real-compute pair ({next((r['throttled'] for r in solo if r['throttled']), '')}): the fleet's total speed is "
                  f"{pair[0]['fleet_speed_tokens_per_sec']:,.0f} tokens/s, the sum of the solo runs ("
                  + ", ".join(f"{r['fleet']} {r['tokens_per_sec']:,.0f}" for r in solo) + "); together "
                  + ", ".join(f"balance {r['balance']} {r['tokens_per_sec']:,.0f} tokens/s ({100 * r['efficiency']:.0f}%)" for r in pair) + "."]
    last = [f"{r['fleet']} {r['balance']}: {r['last_rebalance']}" for r in rows if r["last_rebalance"]]
    if last:
        lines += ["", "Last rebalance line of each fleet's first run kept:", ""] + [f"- {l}" for l in last]
    lines += ["", "CPUs busy: share of both CPUs all programs kept busy during the run; in brackets other programs' share."]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right, third) = plt.subplots(1, 3, figsize=(19, 4.8))
    # Equal fleets are the reference (100% by definition): left out.
    fleets = [f for f in dict.fromkeys(r["fleet"] for r in rows)
              if not f.endswith("-equal") and any(r["fleet"] == f and r["efficiency"] is not None for r in rows)]
    for i, balance in enumerate(["off", "on"]):
        values = [next((r["efficiency"] or 0 for r in rows if r["fleet"] == f and r["balance"] == balance), 0) for f in fleets]
        left.bar([x + (i - 0.5) * 0.38 for x in range(len(fleets))], [100 * v for v in values], 0.38, label=f"--balance {balance}")
    left.axhline(100, color="grey", lw=0.8)
    left.set_xticks(range(len(fleets)))
    left.set_xticklabels([f + ("" if f.startswith("pair") else "\n(emulated)") for f in fleets], fontsize=8)
    left.set_ylabel("efficiency, % of the ideal for the fleet's speed")
    left.set_title("Efficiency with and without balancing")
    left.legend()
    for axis, family, title in [(right, "w8", "W = 8, S = 8"), (third, "w8s1", "W = 8, one parameter server")]:
        for r in rows:
            if r["fleet"] in (f"{family}-slow", f"{family}-transient", f"{family}-equal"):
                style = "-" if r["balance"] == "on" else ":"
                axis.plot(range(r["warmup"] + 1, r["warmup"] + 1 + len(r["step_ms"])), r["step_ms"], style,
                          label=f"{r['fleet']} balance {r['balance']}")
        axis.set_xlabel("step")
        axis.set_ylabel("step time, ms (emulated)")
        axis.set_title(f"{title}, emulated: step times (first round)")
        axis.legend(fontsize=7)
    fig.suptitle("Stragglers (emulated fleets labelled; the pair is real compute)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(path, outdir, disturbed=15.0, note=""):
    records = [json.loads(line) for line in open(path) if line.strip()]
    rows = summarise(records, disturbed)
    summary = os.path.join(outdir, "summary.json")
    kept = []
    if os.path.exists(summary):
        kept = [r for r in json.load(open(summary)) if r.get("part") != "stragglers"]
    with open(summary, "w") as f:
        json.dump(kept + rows, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(outdir, "stragglers.md"), "w") as f:
        f.write(table(rows, note))
    if rows:
        plot(rows, os.path.join(outdir, "stragglers.png"))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 15.0, sys.argv[4] if len(sys.argv) > 4 else "")
