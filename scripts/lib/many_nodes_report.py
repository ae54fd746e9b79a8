#!/usr/bin/env python3
"""Report of the many-node part of scripts/bench-scaling (emulated compute): summary.json, a
Markdown table and a plot from its many.jsonl.

    many_nodes_report.py MANY.jsonl OUTDIR [DISTURBED_PERCENT] [NOTE]

Writes OUTDIR/summary.json (one object per model, W and S: medians over rounds), OUTDIR/many.md
and, when matplotlib imports, OUTDIR/many.png. Every figure is from workers that emulate their
compute (`recur work --emulate-compute MS`) and says so ("emulated": true, titles, headers).

Definitions (W workers, S shard servers, P parameters):
  M                 = 4·P bytes, one float32 weight or gradient message (a push also carries the
                      worker's carried state, b·L·H·4 bytes, 2× for LSTM: `state_bytes`)
  B                 = the nominal link rate (the tc rate) in bytes/s; `link_probe` has the
                      measured one
  bound_single_ms   = 2·W·M/B: one server's link carries W weight messages out and W gradient
                      messages in per step
  bound_sharded_ms  = 2·(W−1)/W·M/B: each node's link with one shard per node colocated with
                      its worker (the bandwidth term of a ring all-reduce, what DDP and Horovod
                      pay); 0 at W = 1
  aggregate_gbit    = what all links together carry at the bound: B for S = 1, W·B for S = W;
                      the machine must move that much for the run to be bound by its links
  compute_over_mb   = emulated compute ÷ M/B, the ratio that stands for the real links
  efficiency        = throughput(W, S) / (W · throughput(1, 1)) at the same per-worker batch and
                      links, i.e. step time at W = 1, S = 1 over step time at (W, S)
  communicate_ms, wait_ms, compute_ms, step_ms: the coordinator's split of a step (see
                      serve_log_summary.py); compute is the emulated wait plus the update

Runs during which other programs took more than DISTURBED_PERCENT of the CPUs are left out of
the medians when the configuration has a quieter run. cpu_busy is the share of both CPUs that
all programs, this run included, kept busy, others_during the share of programs other than the
sweep, and cpu_busy_run their difference (this run's own share): low means the run was bound by
the links, not by the CPUs.
"""
import json
import os
import statistics
import sys
from collections import defaultdict


def model_name(r):
    return f"{r['cell'].upper()} {r['layers']}×{r['hidden']}"


def state_bytes(r):
    per_layer = 2 if r["cell"] == "lstm" else 1   # h and c for LSTM
    return 4 * r["batch_per_worker"] * r["layers"] * r["hidden"] * per_layer


def quiet(runs, disturbed):
    calm = [r for r in runs if r["others_during_pct"] <= disturbed]
    return calm or runs


def summarise(records, disturbed):
    groups = defaultdict(list)
    for r in records:
        groups[(model_name(r), r["workers"], r["shards"])].append(r)
    rows = []
    for (model, w, s), runs in groups.items():
        kept = quiet(runs, disturbed)
        first = kept[0]
        med = lambda f: statistics.median(f(r) for r in kept)
        m, b = first["message_bytes"], first["link_gbit"] * 1e9 / 8 if first["link_gbit"] else None
        row = {
            "W": w, "S": s, "model": model, "emulated": True,
            "link": first["link"], "link_gbit": first["link_gbit"], "stands_for_gbit": first["stands_for_gbit"],
            "link_measured_gbit": round(first["link_probe"]["coordinator_to_worker"]["gbit_per_s"], 3),
            "batch_per_worker": first["batch_per_worker"], "seq": first["seq"],
            "params": first["params"], "message_bytes": m, "state_bytes": state_bytes(first),
            "emulated_compute_ms": first["emulated_compute_ms"], "real_compute_ms": first["real_compute_ms"],
            "real_compute_wall_ms": first.get("real_compute_wall_ms"),
            "tokens_per_sec": med(lambda r: r["result"]["tokens_per_sec"]),
            "step_ms": med(lambda r: 1e3 * r["result"]["step_seconds"]),
            "compute_ms": med(lambda r: 1e3 * r["result"]["compute_seconds"]),
            "communicate_ms": med(lambda r: 1e3 * r["result"]["communicate_seconds"]),
            "wait_ms": med(lambda r: 1e3 * r["result"]["wait_seconds"]),
            "bound_single_ms": 2 * w * m / b * 1e3 if b else None,
            "bound_sharded_ms": 2 * (w - 1) / w * m / b * 1e3 if b else None,
            # What the machine must move at the bound, all links together: B through one
            # server's link; W·B with a shard on every node (every link busy at once).
            "aggregate_gbit": (first["link_gbit"] * (w if s > 1 else 1)) if b else None,
            # The ratio the emulation keeps: emulated compute over one message's link time.
            "compute_over_mb": first["emulated_compute_ms"] / (m / b * 1e3) if b else None,
            "efficiency": None,
            "cpu_busy": med(lambda r: r["cpu_busy_pct"]) / 100,
            "others_during": med(lambda r: r["others_during_pct"]) / 100,
            "cpu_busy_run": med(lambda r: max(0, r["cpu_busy_pct"] - r["others_during_pct"])) / 100,
            "runs": len(runs), "runs_kept": len(kept),
        }
        rows.append(row)
    base = {r["model"]: r["tokens_per_sec"] for r in rows if r["W"] == 1 and r["S"] == 1}
    for r in rows:
        if r["model"] in base:
            r["efficiency"] = r["tokens_per_sec"] / (r["W"] * base[r["model"]])
    rows.sort(key=lambda r: (r["params"], r["W"], r["S"]))
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float):
                r[k] = round(v, 4)
    return rows


def fmt(value, digits=1):
    return "–" if value is None else f"{value:.{digits}f}"


def table(rows, note):
    if not rows:
        return f"# Many nodes (emulated compute)\n\nNo runs. {note}\n"
    first = rows[0]
    if not first["link_gbit"]:
        stand = "unshaped links"
    elif first["stands_for_gbit"]:
        stand = (f"{first['link_gbit']:g} Gbit/s links with the compute scaled by {first['stands_for_gbit'] / first['link_gbit']:g} "
                 f"to stand for {first['stands_for_gbit']:g} Gbit/s links")
    else:
        stand = f"{first['link_gbit']:g} Gbit/s links, compute fixed by --many-compute-ms"
    lines = [
        "# Many nodes (emulated compute)",
        "",
        f"Emulated: each worker waits a fixed time instead of computing (`recur work --emulate-compute MS`); "
        f"encode, send, sum, clip, optimizer and broadcast are real. {stand}; "
        f"{first['batch_per_worker']} streams × T={first['seq']} per worker; compute : M/B = {fmt(first['compute_over_mb'], 0)} "
        f"for {first['model']}. Times are per step on the emulated links. "
        "Efficiency = throughput(W, S) / (W · throughput(1, 1)). "
        "Bounds: one server 2·W·M/B, colocated shards 2·(W−1)/W·M/B per node.",
        "",
        "| model (emulated) | W | S | step ms | compute ms | communicate ms | wait ms | comm + wait ms | 2·W·M/B ms | 2·(W−1)/W·M/B ms | efficiency | CPU busy (this run) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} (emulated, compute {fmt(r['emulated_compute_ms'], 0)} ms) | {r['W']} | {r['S']} | {fmt(r['step_ms'])} | "
            f"{fmt(r['compute_ms'])} | {fmt(r['communicate_ms'])} | {fmt(r['wait_ms'])} | "
            f"{fmt(r['communicate_ms'] + r['wait_ms'])} | {fmt(r['bound_single_ms'])} | {fmt(r['bound_sharded_ms'])} | "
            f"{fmt(None if r['efficiency'] is None else 100 * r['efficiency'], 0)}% | {100 * r['cpu_busy']:.0f}% ({100 * r['cpu_busy_run']:.0f}%) |")
    lines += ["", "M = 4·P bytes: " + "; ".join(sorted({f"{r['model']} {r['message_bytes'] / 1e6:.2f} MB (+{r['state_bytes'] / 1e3:.1f} kB carried state per push)" for r in rows}))]
    lines += [""]
    lines.append("CPU busy: share of both CPUs all programs kept busy during the run; in brackets this run's own share "
                 "(all minus other programs'). Low means bound by the links, not by the CPUs.")
    if first["real_compute_ms"]:
        lines += [""]
        lines.append("Real compute per step on this machine (CPU time per step of `recur bench`, 1 worker, 1 thread; "
                     "median wall time in brackets): " + "; ".join(
            sorted({f"{r['model']} {r['real_compute_ms']:.1f} ms ({r['real_compute_wall_ms']:.1f} ms)" for r in rows})) + ".")
    heavy = [r for r in rows if r["aggregate_gbit"] and r["aggregate_gbit"] > 4]
    if heavy:
        lines += [""]
        lines.append(f"S = W runs move W·B across the machine at the bound (up to {max(r['aggregate_gbit'] for r in heavy):g} Gbit/s "
                     "here): where CPU busy is high those runs measure the machine, not the links; slower links "
                     "(--many-link) with a larger compute factor keep the ratio and stay link-bound.")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    models = sorted({r["model"] for r in rows}, key=lambda m: min(r["params"] for r in rows if r["model"] == m))
    # One colour per model; S = 1 solid with circles, S = W dashed with squares, bounds thin.
    for model, colour in zip(models, ("tab:blue", "tab:red", "tab:green", "tab:purple")):
        own = [r for r in rows if r["model"] == model]
        reference = [r for r in own if r["W"] == 1 and r["S"] == 1]
        for sharded, style in ((False, "-o"), (True, "--s")):
            # S = W starts from the W = 1 run (one server is one shard there).
            pts = sorted((r for r in own if (r["S"] > 1 if sharded else r["S"] == 1)), key=lambda r: r["W"])
            if sharded:
                pts = reference + pts
            if len(pts) < (2 if sharded else 1):
                continue
            label = f"{model}, S = {'W' if sharded else '1'}"
            if all(r["efficiency"] is not None for r in pts):
                left.plot([r["W"] for r in pts], [100 * r["efficiency"] for r in pts], style, color=colour, label=label)
            right.plot([r["W"] for r in pts], [r["communicate_ms"] + r["wait_ms"] for r in pts], style, color=colour,
                       label=f"{label}: communicate + wait")
        bounded = sorted((r for r in own if r["S"] == 1 and r["bound_single_ms"] is not None), key=lambda r: r["W"])
        if bounded:
            right.plot([r["W"] for r in bounded], [r["bound_single_ms"] for r in bounded], ":", color=colour, linewidth=1,
                       label=f"{model}: 2·W·M/B (one server)")
            shared = [r for r in bounded if r["W"] > 1]   # 0 at W = 1
            right.plot([r["W"] for r in shared], [r["bound_sharded_ms"] for r in shared], "-.", color=colour, linewidth=1,
                       label=f"{model}: 2·(W−1)/W·M/B (ring)")
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted({r["W"] for r in rows}))
        axis.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.set_xlabel("workers W (one node each)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    left.set_ylabel("scaling efficiency, % (emulated)")
    left.set_ylim(0, 105)
    left.set_title("Efficiency against W (emulated compute)")
    right.set_yscale("log")
    right.set_ylabel("ms per step (emulated links)")
    right.set_title("Communicate + wait against the bounds (emulated)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(path, outdir, disturbed=15.0, note=""):
    records = [json.loads(line) for line in open(path) if line.strip()]
    rows = summarise(records, disturbed)
    # The straggler part's rows share the file ("part": "stragglers"): kept.
    summary = os.path.join(outdir, "summary.json")
    kept = []
    if os.path.exists(summary):
        kept = [r for r in json.load(open(summary)) if r.get("part") == "stragglers"]
    with open(summary, "w") as f:
        json.dump(rows + kept, f, indent=1)
        f.write("\n")
    with open(os.path.join(outdir, "many.md"), "w") as f:
        f.write(table(rows, note))
    if rows:
        plot(rows, os.path.join(outdir, "many.png"))


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4, 5):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 15.0,
         sys.argv[4] if len(sys.argv) > 4 else "")
