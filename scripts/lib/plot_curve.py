"""Loss curves of one `recur train --log-jsonl` file (see scripts/plot).

Step records ({"kind": "step", "step", "loss", "time", ...}) give the training loss,
evaluation records ({"kind": "evaluation", "step", "validationLoss", "time", ...}) the
validation loss; both in nats per character, or for a classifier (evaluation records with
"classification") in nats per example, with a third panel of the validation accuracy
against the step. A resumed run appends to the log and its
`time` starts again from 0, so time is accumulated across the parts (a step number that
goes back marks a new part too).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    train, validation = [], []          # (step, seconds, nats)
    accuracy = []                       # (step, percent) of a classifier
    offset, last_time = 0.0, 0.0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                sys.exit(f"plot: {path}:{number}: not JSON ({error})")
            t = float(record.get("time", 0.0))
            if t + offset < last_time:   # a resumed part starts its clock again
                offset = last_time
            last_time = t + offset
            kind = record.get("kind", "step")
            if kind == "step" and "loss" in record:
                train.append((record["step"], last_time, record["loss"]))
            elif kind == "evaluation":
                validation.append((record["step"], last_time, record["validationLoss"]))
                metrics = record.get("classification")
                if isinstance(metrics, dict) and "accuracy" in metrics:
                    accuracy.append((record["step"], 100 * float(metrics["accuracy"])))
    return train, validation, accuracy


def main():
    log, out = sys.argv[1], sys.argv[2]
    train, validation, accuracy = read(log)
    if not train and not validation:
        sys.exit(f"plot: {log} holds no step or evaluation records")
    unit = "nats/example" if accuracy else "nats/char"
    panels = 3 if accuracy else 2
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5))
    by_step, by_time = axes[0], axes[1]
    for axis, x, label in ((by_step, 0, "step"), (by_time, 1, "time (s)")):
        if train:
            axis.plot([r[x] for r in train], [r[2] for r in train], lw=0.8, alpha=0.8, label="train")
        if validation:
            axis.plot([r[x] for r in validation], [r[2] for r in validation], "o-", lw=1.5, label="validation")
        axis.set_xlabel(label)
        axis.set_ylabel(f"loss ({unit})")
        axis.grid(alpha=0.3)
        axis.legend()
    if accuracy:
        axes[2].plot([r[0] for r in accuracy], [r[1] for r in accuracy], "o-", lw=1.5, color="C2")
        axes[2].set_xlabel("step")
        axes[2].set_ylabel("validation accuracy (%)")
        axes[2].grid(alpha=0.3)
    best = min(validation, key=lambda r: r[2]) if validation else None
    title = f"{log}"
    if best and accuracy:
        top = max(accuracy, key=lambda r: r[1])
        title += f" — best validation {best[2]:.4f} {unit} at step {best[0]}; best accuracy {top[1]:.1f}% at step {top[0]}"
    elif best:
        title += f" — best validation {best[2]:.4f} {unit} ({best[2] / 0.6931471805599453:.4f} bits) at step {best[0]}"
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    print(f"plot: wrote {out}" + (" (loss per example and validation accuracy)" if accuracy else ""))


if __name__ == "__main__":
    main()
