"""Loss curves of one `recur train --log-jsonl` file (see scripts/plot).

Step records ({"kind": "step", "step", "loss", "time", ...}) give the training loss,
evaluation records ({"kind": "evaluation", "step", "validationLoss", "time", ...}) the
validation loss; both in nats per character. A resumed run appends to the log and its
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
    return train, validation


def main():
    log, out = sys.argv[1], sys.argv[2]
    train, validation = read(log)
    if not train and not validation:
        sys.exit(f"plot: {log} holds no step or evaluation records")
    figure, (by_step, by_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, x, label in ((by_step, 0, "step"), (by_time, 1, "time (s)")):
        if train:
            axis.plot([r[x] for r in train], [r[2] for r in train], lw=0.8, alpha=0.8, label="train")
        if validation:
            axis.plot([r[x] for r in validation], [r[2] for r in validation], "o-", lw=1.5, label="validation")
        axis.set_xlabel(label)
        axis.set_ylabel("loss (nats/char)")
        axis.grid(alpha=0.3)
        axis.legend()
    best = min(validation, key=lambda r: r[2]) if validation else None
    title = f"{log}"
    if best:
        title += f" — best validation {best[2]:.4f} nats/char ({best[2] / 0.6931471805599453:.4f} bits) at step {best[0]}"
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    print(f"plot: wrote {out}")


if __name__ == "__main__":
    main()
