#!/usr/bin/env python3
"""Report of scripts/bench-scaling: CSV, Markdown tables and plots from its raw.jsonl.

    plot_scaling.py RAW.jsonl OUTDIR [DISTURBED_PERCENT]

Writes OUTDIR/scaling.csv (one row per run), OUTDIR/table.md (medians over rounds) and, when
matplotlib imports, OUTDIR/throughput.png and OUTDIR/split.png.

Definitions (letters as in docs/DESIGN.md: W workers, K threads per worker):
  efficiency = tokens/s / (W·K · tokens/s of the same model at W=1, K=1 on one machine)
  M          = 4·P bytes, one float32 weight or gradient message of a model with P parameters
               (plus a header of names and shapes, < 0.1 kB, left out)
  B          = link rate in bytes/s: nominal (the tc rate) or measured (link_probe.py)
  W·M/B      = time the coordinator's link needs for one direction of a step (W weight messages
               out, or W gradient messages in); 2·W·M/B = both directions one after the other.

Runs during which other programs took more than DISTURBED_PERCENT of the CPUs (others_during_pct,
measured by the script) are left out of the medians when the configuration has a quieter run;
the CSV keeps every run.
"""
import csv
import json
import os
import statistics
import sys
from collections import defaultdict

DISTURBED_PERCENT = 15
NOMINAL_GBIT = {"1gbit": 1.0, "10gbit": 10.0}
LINK_ORDER = ["unix", "veth", "10gbit", "1gbit"]
LINK_LABEL = {"unix": "unix socket", "veth": "veth (unshaped)", "10gbit": "10 Gbit/s", "1gbit": "1 Gbit/s"}


def model_name(row):
    return f"{row['cell'].upper()} {row['layers']}×{row['hidden']}" + ("" if row["batch"] == 64 else f" (N={row['batch']})")


def load_rows(path):
    records = [json.loads(line) for line in open(path) if line.strip()]
    rows = []
    for r in records:
        result = r["result"]
        w, k = r["workers"], r["threads"]
        row = {
            "setting": r["setting"], "round": r["round"], "cell": r["cell"], "layers": r["layers"],
            "hidden": r["hidden"], "seq": r["seq"], "batch": r["batch"], "params": r["params"],
            "message_bytes": 4 * r["params"], "workers": w, "threads": k,
            "cores": r["cores"], "oversubscribed": w * k > r["cores"], "link": r["link"],
            "link_gbps_nominal": NOMINAL_GBIT.get(r["link"]), "link_gbps_measured": None, "rtt_ms": None,
            "encrypted": r["encrypted"], "tokens_per_sec": result["tokens_per_sec"], "efficiency": None,
            "step_ms": 1e3 * result["step_seconds"], "compute_ms": 1e3 * result["compute_seconds"],
            "communicate_ms": 1e3 * result["communicate_seconds"], "wait_ms": 1e3 * result["wait_seconds"],
            "worker_compute_ms": None, "bound_ms": None, "bound2_ms": None, "bound_measured_ms": None,
            "busy_before_pct": r["busy_before_pct"], "others_during_pct": r.get("others_during_pct"), "load1": r["load1"], "kernel_level": result.get("kernel_level", ""),
        }
        if result.get("worker_compute_seconds") is not None:
            row["worker_compute_ms"] = 1e3 * result["worker_compute_seconds"]
        probe = r.get("link_probe")
        if probe:
            out, back = probe["coordinator_to_worker"], probe["worker_to_coordinator"]
            row["link_gbps_measured"] = (out["gbit_per_s"] + back["gbit_per_s"]) / 2
            row["rtt_ms"] = (out["rtt_ms"] + back["rtt_ms"]) / 2
            transfer_ms = (out["transfer_ms"] + back["transfer_ms"]) / 2 * row["message_bytes"] / out["bytes"]
            row["bound_measured_ms"] = w * transfer_ms
            if row["link_gbps_nominal"]:
                one = row["message_bytes"] / (row["link_gbps_nominal"] * 1e9 / 8) * 1e3
                row["bound_ms"], row["bound2_ms"] = w * one, 2 * w * one
        rows.append(row)
    single = defaultdict(list)
    for row in rows:
        if row["setting"] == "local" and row["workers"] == 1 and row["threads"] == 1:
            single[model_name(row)].append(row["tokens_per_sec"])
    for row in rows:
        base = single.get(model_name(row))
        if base:
            row["efficiency"] = row["tokens_per_sec"] / (row["workers"] * row["threads"] * statistics.median(base))
    return rows


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def medians(rows, key_fields, disturbed):
    """Groups rows by key_fields; returns {key: {field: median}} in first-seen order."""
    groups = defaultdict(list)
    for row in rows:
        groups[tuple(row[f] for f in key_fields)].append(row)
    summary = {}
    for key, everything in groups.items():
        quiet = [g for g in everything if (g["others_during_pct"] or 0) <= disturbed]
        group = quiet or everything
        m = dict(group[0])
        for field, value in group[0].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and field not in key_fields:
                values = [g[field] for g in group if g[field] is not None]
                m[field] = statistics.median(values) if values else None
        m["runs"] = f"{len(group)}/{len(everything)}"
        m["others_max"] = max(g["others_during_pct"] or 0 for g in group)
        summary[key] = m
    return summary


def fmt(value, digits=1):
    return "–" if value is None else f"{value:,.{digits}f}"


def local_tables(rows, disturbed):
    local = [r for r in rows if r["setting"] == "local"]
    if not local:
        return [], {}
    summary = medians(local, ["cell", "layers", "hidden", "batch", "workers", "threads"], disturbed)
    models = list(dict.fromkeys(model_name(r) for r in local))
    shapes = list(dict.fromkeys((r["workers"], r["threads"]) for r in local))
    by_model = {(model_name(m), m["workers"], m["threads"]): m for m in summary.values()}
    header = "| model (T=64) | P | " + " | ".join(
        f"W×K={w}×{k}{' ⚠' if w * k > local[0]['cores'] else ''}" for w, k in shapes) + " |"
    lines = ["### One machine: tokens/s (scaling efficiency)", "",
             header, "|---|---:|" + "---:|" * len(shapes)]
    for name in models:
        cells = []
        for w, k in shapes:
            m = by_model.get((name, w, k))
            cells.append("–" if not m else f"{m['tokens_per_sec']:,.0f} ({100 * m['efficiency']:.0f}%)" if m["efficiency"] else f"{m['tokens_per_sec']:,.0f}")
        params = next(r["params"] for r in local if model_name(r) == name)
        lines.append(f"| {name} | {params:,} | " + " | ".join(cells) + " |")
    lines += ["", "efficiency = tokens/s ÷ (W·K × tokens/s at 1×1); ⚠ = more processes than cores (4 on 2).", "",
              "### One machine: step time split (ms, medians)", "",
              "| model | W×K | tokens/s | step | compute | communicate | wait | runs used | others' CPU share (max %) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in models:
        for w, k in shapes:
            m = by_model.get((name, w, k))
            if m:
                lines.append(f"| {name} | {w}×{k} | {m['tokens_per_sec']:,.0f} | {fmt(m['step_ms'])} | {fmt(m['compute_ms'])} | "
                             f"{fmt(m['communicate_ms'], 2)} | {fmt(m['wait_ms'], 2)} | {m['runs']} | {m['others_max']} |")
    return lines, by_model


def cluster_tables(rows, disturbed):
    cluster = [r for r in rows if r["setting"] == "cluster"]
    if not cluster:
        return [], {}
    summary = medians(cluster, ["link", "workers", "encrypted"], disturbed)
    order = sorted(summary.values(), key=lambda m: (LINK_ORDER.index(m["link"]), m["workers"], m["encrypted"]))
    first = cluster[0]
    lines = [f"### Namespace cluster: {model_name(first)} (P={first['params']:,}, M=4·P={first['message_bytes'] / 1e6:.2f} MB), "
             "one worker per namespace, K=1", "",
             "| link (measured Gbit/s, round trip ms) | W | CurveZMQ | tokens/s | efficiency | step | compute | communicate | wait "
             "| W·M/B | 2·W·M/B | W·M/B at measured B | (communicate + wait) ÷ W·M/B | runs used | others' CPU share (max %) |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in order:
        bound = m["bound_ms"] or m["bound_measured_ms"]
        ratio = (m["communicate_ms"] + m["wait_ms"]) / bound if bound else None
        efficiency = "–" if m["efficiency"] is None else f"{100 * m['efficiency']:.0f}%"
        lines.append(
            f"| {LINK_LABEL[m['link']]} ({m['link_gbps_measured']:.2f}, {m['rtt_ms']:.3f}) | {m['workers']} | "
            f"{'yes' if m['encrypted'] else 'no'} | {m['tokens_per_sec']:,.0f} | "
            f"{efficiency} | {fmt(m['step_ms'])} | {fmt(m['compute_ms'])} | "
            f"{fmt(m['communicate_ms'])} | {fmt(m['wait_ms'])} | {fmt(m['bound_ms'])} | {fmt(m['bound2_ms'])} | "
            f"{fmt(m['bound_measured_ms'])} | {fmt(ratio, 2)} | {m['runs']} | {m['others_max']} |")
    lines += ["", "All times in ms per step (medians over rounds of per-run medians). efficiency = tokens/s ÷ "
              "(W × tokens/s of the same model at 1×1 on one machine, in-process). W·M/B uses the nominal tc rate "
              "(the unshaped veth has none: its column uses the measured rate).", "",
              "### Cost of encryption (CurveZMQ vs plain tcp, step time)", "",
              "| link | W | plain step ms | CurveZMQ step ms | extra ms | extra % of step |", "|---|---:|---:|---:|---:|---:|"]
    for m in order:
        if m["encrypted"]:
            continue
        e = summary.get((m["link"], m["workers"], True))
        if e:
            extra = e["step_ms"] - m["step_ms"]
            lines.append(f"| {LINK_LABEL[m['link']]} | {m['workers']} | {fmt(m['step_ms'])} | {fmt(e['step_ms'])} | "
                         f"{fmt(extra)} | {100 * extra / m['step_ms']:+.0f}% |")
    return lines, summary


def shard_tables(rows, disturbed, cluster_summary):
    """W = 2 with two parameter shards colocated with the workers (real compute) beside the
    same link and W with one server."""
    sharded = [r for r in rows if r["setting"] == "cluster-shards"]
    if not sharded:
        return []
    summary = medians(sharded, ["link", "workers", "encrypted"], disturbed)
    lines = ["", "### Namespace cluster, real compute: parameter shards colocated with the workers", "",
             "| link | W | S | tokens/s (S) | tokens/s (S = 1) | S ÷ S = 1 | communicate + wait ms (S) | (S = 1) | runs used |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (link, workers, encrypted), m in summary.items():
        one = cluster_summary.get((link, workers, encrypted))
        shards = workers
        ratio = m["tokens_per_sec"] / one["tokens_per_sec"] if one else None
        lines.append(f"| {LINK_LABEL[link]}{', CurveZMQ' if encrypted else ''} | {workers} | {shards} | {m['tokens_per_sec']:,.0f} | "
                     f"{one['tokens_per_sec'] if one else float('nan'):,.0f} | {fmt(ratio, 3)} | "
                     f"{fmt(m['communicate_ms'] + m['wait_ms'])} | {fmt(one['communicate_ms'] + one['wait_ms']) if one else '–'} | {m['runs']} |")
    return lines


def plot(rows, local_by_model, cluster_summary, outdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    local = [r for r in rows if r["setting"] == "local"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    link_colors = {"veth": colors[0], "10gbit": colors[1], "1gbit": colors[3]}

    # Throughput and efficiency against workers.
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    models = list(dict.fromkeys(model_name(r) for r in local))
    for i, name in enumerate(models):
        points = sorted((w, m) for (n, w, k), m in local_by_model.items() if n == name and k == 1)
        threads = local_by_model.get((name, 1, 2))
        xs = [w for w, _ in points]
        axes[0].plot(xs, [m["tokens_per_sec"] for _, m in points], "o-", color=colors[i], label=name)
        axes[1].plot(xs, [100 * m["efficiency"] for _, m in points], "o-", color=colors[i], label=name)
        if threads:
            axes[0].plot([2.08], [threads["tokens_per_sec"]], "s", mfc="none", color=colors[i])
            axes[1].plot([2.08], [100 * threads["efficiency"]], "s", mfc="none", color=colors[i])
    for ax in axes[:2]:
        ax.axvspan(3, 4.5, color="0.9")
        ax.text(3.75, 0.015, f"oversubscribed:\n4 processes, {rows[0]['cores']} cores", ha="center", va="bottom",
                transform=ax.get_xaxis_transform(), fontsize=9, color="0.35")
        ax.set_xticks([1, 2, 4])
        ax.set_xlabel("workers W (K=1; hollow square: W=1, K=2)")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("tokens/s (median)")
    axes[0].set_title("One machine: throughput")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8, loc="lower left", title="hollow square: W=1, K=2", title_fontsize=8)
    axes[1].set_ylabel("scaling efficiency (%)")
    axes[1].set_ylim(0, max([110] + [105 * m["efficiency"] for m in local_by_model.values() if m["efficiency"]]))
    axes[1].axhline(100, color="0.5", lw=0.8, ls=":")
    axes[1].set_title("One machine: efficiency = tok/s ÷ (W·K × tok/s at 1×1)")
    if cluster_summary:
        for link in [l for l in LINK_ORDER if l in link_colors]:
            for encrypted, style in ((False, "o-"), (True, "s--")):
                pts = sorted((m["workers"], m) for m in cluster_summary.values() if m["link"] == link and m["encrypted"] == encrypted)
                if pts and pts[0][1]["efficiency"] is not None:
                    axes[2].plot([w for w, _ in pts], [100 * m["efficiency"] for _, m in pts], style, color=link_colors[link],
                                 label=f"{LINK_LABEL[link]}{', CurveZMQ' if encrypted else ''}")
        first = next(iter(cluster_summary.values()))
        axes[2].set_title(f"Namespace cluster, {model_name(first)}: efficiency")
        axes[2].set_xticks([1, 2])
        axes[2].set_xlabel("workers W (one per namespace, K=1)")
        axes[2].set_ylabel("tok/s ÷ (W × one-machine tok/s at 1×1) (%)")
        axes[2].set_ylim(0, 110)
        axes[2].axhline(100, color="0.5", lw=0.8, ls=":")
        axes[2].grid(alpha=0.3)
        if axes[2].get_legend_handles_labels()[0]:
            axes[2].legend(fontsize=8)
    else:
        axes[2].set_visible(False)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "throughput.png"), dpi=110)
    plt.close(fig)

    plot_split(plt, colors, local, local_by_model, cluster_summary, outdir)


def plot_split(plt, colors, local, local_by_model, cluster_summary, outdir):
    """Stacked compute / communicate / wait bars; the lower row zooms on communicate + wait and
    draws the single-coordinator bound beside them."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(2, 2, figsize=(16, 10), gridspec_kw={"width_ratios": [1, 3], "height_ratios": [3, 2]})
    split_colors = {"compute": colors[0], "communicate": colors[1], "wait": "0.6"}

    def stacked(ax, x, m, parts=("compute", "communicate", "wait"), width=0.6):
        bottom = 0
        for part in parts:
            ax.bar(x, m[f"{part}_ms"], width, bottom=bottom, color=split_colors[part])
            bottom += m[f"{part}_ms"]

    cores = local[0]["cores"] if local else 0
    reference = "LSTM 2×256"
    shapes = sorted({(w, k) for (n, w, k) in local_by_model if n == reference})
    for i, (w, k) in enumerate(shapes):
        stacked(axes[0, 0], i, local_by_model[(reference, w, k)])
    axes[0, 0].set_xticks(range(len(shapes)), [f"{w}×{k}{' ⚠' if w * k > cores else ''}" for w, k in shapes])
    axes[0, 0].set_xlabel("W×K (unix socket; ⚠ oversubscribed)")
    axes[0, 0].set_ylabel("ms per step (median)")
    axes[0, 0].set_title(f"One machine, {reference}")

    models = list(dict.fromkeys(n for (n, w, k) in local_by_model))
    for i, name in enumerate(models):
        m = local_by_model.get((name, 2, 1))
        if m:
            stacked(axes[1, 0], i, m, parts=("communicate", "wait"))
    axes[1, 0].set_xticks(range(len(models)), [n.replace(" (", "\n(") for n in models], fontsize=8, rotation=30)
    axes[1, 0].set_ylabel("communicate + wait (ms per step)")
    axes[1, 0].set_title("One machine, W×K = 2×1: time outside compute")

    if cluster_summary:
        order = sorted(cluster_summary.values(), key=lambda m: (LINK_ORDER.index(m["link"]), m["workers"], m["encrypted"]))
        positions = [i + (LINK_ORDER.index(m["link"]) - 1) * 0.7 for i, m in enumerate(order)]
        for row, parts, base in ((0, ("compute", "communicate", "wait"), "compute_ms"), (1, ("communicate", "wait"), None)):
            ax = axes[row, 1]
            for x, m in zip(positions, order):
                stacked(ax, x, m, parts=parts, width=0.5)
                bottom = m[base] if base else 0
                bound = m["bound_ms"] or m["bound_measured_ms"]
                ax.bar(x + 0.36, bound, 0.18, bottom=bottom, color="none", edgecolor="k", hatch="///", lw=0.8)
                if m["bound2_ms"]:
                    ax.plot([x + 0.26, x + 0.46], [bottom + m["bound2_ms"]] * 2, color="k", lw=2.2)
                if m["bound_ms"] and m["bound_measured_ms"]:
                    ax.plot([x + 0.26, x + 0.46], [bottom + m["bound_measured_ms"]] * 2, color="crimson", lw=1.6, ls=":")
            ax.set_xticks(positions, [f"W={m['workers']}\n{'Curve' if m['encrypted'] else 'plain'}" for m in order], fontsize=8)
            for link in dict.fromkeys(m["link"] for m in order):
                xs = [x for x, m in zip(positions, order) if m["link"] == link]
                gbit = next(m["link_gbps_measured"] for m in order if m["link"] == link)
                ax.text(sum(xs) / len(xs), -0.2 if row else -0.13, f"{LINK_LABEL[link]} (measured {gbit:.1f} Gbit/s)",
                        ha="center", va="top", transform=ax.get_xaxis_transform(), fontsize=9, weight="bold")
        first = order[0]
        axes[0, 1].set_title(f"Namespace cluster, {model_name(first)} (M = {first['message_bytes'] / 1e6:.2f} MB): step split, "
                             "single-coordinator bound beside communicate")
        axes[1, 1].set_title("Namespace cluster: communicate + wait against the bound (zoom)")
        axes[1, 1].set_ylabel("ms per step")
        axes[1, 1].legend(handles=[
            Patch(color=split_colors["compute"], label="compute"),
            Patch(color=split_colors["communicate"], label="communicate"),
            Patch(color=split_colors["wait"], label="wait"),
            Patch(facecolor="none", edgecolor="k", hatch="///", label="W·M/B, one direction (nominal B; veth: measured B)"),
            Line2D([], [], color="k", lw=2.2, label="2·W·M/B, out then in"),
            Line2D([], [], color="crimson", lw=1.6, ls=":", label="W·M/B at the measured B"),
        ], fontsize=8, loc="upper left")
    else:
        axes[0, 1].set_visible(False)
        axes[1, 1].set_visible(False)
    for ax in axes.flat:
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "split.png"), dpi=100)
    plt.close(fig)


def main(raw, outdir, disturbed):
    rows = load_rows(raw)
    if not rows:
        sys.exit(f"{raw}: no runs")
    write_csv(rows, os.path.join(outdir, "scaling.csv"))
    local_lines, local_by_model = local_tables(rows, disturbed)
    cluster_lines, cluster_summary = cluster_tables(rows, disturbed)
    rounds = max(r["round"] for r in rows)
    count = sum(1 for r in rows if (r["others_during_pct"] or 0) > disturbed)
    head = [f"Medians over {rounds} round(s); kernel level {next((r['kernel_level'] for r in rows if r.get('kernel_level')), '?')}. "
            f"{count} of {len(rows)} runs had other programs on more than {disturbed}% of the CPUs; they are "
            "left out where the configuration has a quieter run (\"runs used\"). \"others' CPU share\": the most that "
            "other programs took during a used run (kernel network work not charged to a process counts there too).", ""]
    text = "\n".join(head + local_lines + [""] + cluster_lines + shard_tables(rows, disturbed, cluster_summary)) + "\n"
    open(os.path.join(outdir, "table.md"), "w").write(text)
    print(text)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is missing: no plots", file=sys.stderr)
        return
    plot(rows, local_by_model, cluster_summary, outdir)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else DISTURBED_PERCENT)
