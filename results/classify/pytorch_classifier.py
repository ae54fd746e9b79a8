#!/usr/bin/env python3
"""Character-level many-to-one sequence classifier trainer (PyTorch, CPU) --
the speed / accuracy reference for `recur train --task classify`.

Data:    UTF-8, one `label<TAB>text` per line, split at the first tab; no
         tab, an empty label or an empty text is an error (`error: FILE:LINE:
         reason` on stderr, exit 65).  A final empty line is ignored; a `\\r`
         before `\\n` is text.  Without --val-data the last floor(lines *
         --val-fraction) lines are validation.  Vocabulary / labels: sorted
         sets of the full training texts' characters / training labels.  Texts
         are cut to --max-len chars; validation chars outside the vocabulary
         are dropped, validation examples with an unknown label or no chars
         left are skipped.
Model:   one-hot input (no embedding) -> nn.RNN(tanh) / nn.LSTM / nn.GRU
         (packed sequences, --layers deep, optionally bidirectional) -> last
         layer's final hidden state (forward ++ reverse), or with --pool mean
         the mean of its outputs over each sequence's positions -> nn.Linear(labels).
Loss:    mean cross-entropy per example, in nats.  Adam(lr) with PyTorch
         defaults, gradient clipping by global L2 norm (clip_grad_norm_).
Batches: per epoch a torch.randperm (generator seeded from seed and epoch), cut
         into windows of 16*batch examples, each stably sorted longest first,
         then cut into batches; an epoch's incomplete last batch is dropped.
Val:     mean nats/example, accuracy, and the majority-class baseline (share
         of validation examples labelled with the most frequent training label).
Timing:  wall time of each training step, batch building included;
         examples/sec = batch / step time, median over steps after --warmup.

Prints the train loss every --print-every steps, one line per evaluation, and
ends with a single JSON line holding all figures.
"""
import argparse
import json
import statistics
import sys
import time
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence


def die(msg, code=65):                                    # 65 = EX_DATAERR
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


# --------------------------------------------------------------------- data
def read_examples(path):
    """[(label, text)] in file order; exits 65 at the first malformed line."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        die(f"{path}: {e.strerror}", 66)                  # 66 = EX_NOINPUT
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        die(f"{path}:{line}: invalid UTF-8")
    # Split on "\n" only (not splitlines): "\r" and other separators are text.
    lines = content.split("\n")
    if lines[-1] == "":
        lines.pop()                                       # trailing newline
    out = []
    for n, line in enumerate(lines, 1):
        label, tab, text = line.partition("\t")
        if not tab:
            die(f"{path}:{n}: no tab (expected label<TAB>text)")
        if not label:
            die(f"{path}:{n}: empty label")
        if not text:
            die(f"{path}:{n}: empty text")
        out.append((label, text))
    return out


def prepare(args):
    train = read_examples(args.data)
    if args.val_data:
        val = read_examples(args.val_data)
    else:
        n_val = int(len(train) * args.val_fraction)       # floor
        train, val = train[:len(train) - n_val], train[len(train) - n_val:]
    chars = sorted({c for _, t in train for c in t})      # full, untruncated texts
    labels = sorted({lab for lab, _ in train})
    stoi = {c: i for i, c in enumerate(chars)}
    ltoi = {lab: i for i, lab in enumerate(labels)}
    train_x = [torch.tensor([stoi[c] for c in t[:args.max_len]]) for _, t in train]
    train_y = [ltoi[lab] for lab, _ in train]
    val_x, val_y = [], []
    skipped = {"skipped_val_unknown_label": 0, "skipped_val_empty": 0, "dropped_val_chars": 0}
    for lab, t in val:
        if lab not in ltoi:
            skipped["skipped_val_unknown_label"] += 1
            continue
        t = t[:args.max_len]                              # truncate, then drop OOV
        ids = [stoi[c] for c in t if c in stoi]
        skipped["dropped_val_chars"] += len(t) - len(ids)
        if not ids:
            skipped["skipped_val_empty"] += 1
            continue
        val_x.append(torch.tensor(ids))
        val_y.append(ltoi[lab])
    # Most frequent training label; a tie goes to the smallest class index.
    counts = Counter(train_y)
    majority = max(range(len(labels)), key=lambda k: (counts[k], -k))
    return chars, labels, train_x, train_y, val_x, val_y, skipped, majority


def collate(xs, ys):
    lengths = torch.tensor([len(x) for x in xs])
    return pad_sequence(xs, batch_first=True), lengths, torch.tensor(ys)


def batches(train_x, train_y, batch, seed):
    """Endless stream of (epoch, x, lengths, y), built lazily so that the
    permutation and the window sorts are timed inside the training steps."""
    n, window, epoch = len(train_x), 16 * batch, 0
    while True:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g).tolist()
        for w in range(0, n, window):
            # Sorting within a window keeps padding (wasted packed-sequence
            # bookkeeping) small while batch contents stay random.
            idx = sorted(perm[w:w + window], key=lambda i: -len(train_x[i]))
            for b in range(0, len(idx) - batch + 1, batch):
                sel = idx[b:b + batch]
                yield (epoch,) + collate([train_x[i] for i in sel],
                                         [train_y[i] for i in sel])
        epoch += 1


# -------------------------------------------------------------------- model
class CharClassifier(nn.Module):
    def __init__(self, cell, vocab, hidden, layers, bidirectional, n_labels, pool="last"):
        super().__init__()
        self.vocab, self.bidirectional, self.pool = vocab, bidirectional, pool
        kw = dict(num_layers=layers, batch_first=True, bidirectional=bidirectional)
        if cell == "rnn":
            kw["nonlinearity"] = "tanh"
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](vocab, hidden, **kw)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), n_labels)

    def forward(self, x, lengths):
        x = F.one_hot(x, self.vocab).float()              # (B, T, V)
        packed = pack_padded_sequence(x, lengths, batch_first=True,
                                      enforce_sorted=False)
        out, h = self.rnn(packed)
        if self.pool == "mean":
            # (B, T, D*H) with zeros past each length, back in the caller's order.
            padded, _ = pad_packed_sequence(out, batch_first=True)
            return self.head(padded.sum(1) / lengths.unsqueeze(1).to(padded.dtype))
        if isinstance(h, tuple):                          # LSTM: (h_n, c_n)
            h = h[0]
        # h_n: (layers*dirs, B, H), already back in the caller's batch order.
        # h[-1] of a bidirectional rnn is the last layer's reverse direction
        # after reading the whole (unpadded) sequence backwards.
        feat = torch.cat([h[-2], h[-1]], dim=1) if self.bidirectional else h[-1]
        return self.head(feat)


@torch.no_grad()
def evaluate(model, val_x, val_y, eval_batch, majority):
    """(mean nats/example, accuracy, majority baseline), or Nones if empty."""
    if not val_x:
        return None, None, None
    model.eval()
    total, correct = 0.0, 0
    for s in range(0, len(val_x), eval_batch):
        x, lengths, y = collate(val_x[s:s + eval_batch], val_y[s:s + eval_batch])
        logits = model(x, lengths)
        total += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train()                                         # only called while training
    n = len(val_x)
    return total / n, correct / n, sum(y == majority for y in val_y) / n


# -------------------------------------------------------------------- train
def build_argparser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="label<TAB>text per line")
    ap.add_argument("--val-data", help="validation file (default: split --data)")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="lstm")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--bidirectional", action="store_true")
    ap.add_argument("--pool", choices=["last", "mean"], default="last")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-every", type=int, default=0, help="0: only at the end")
    ap.add_argument("--eval-batch", type=int, default=256)
    ap.add_argument("--print-every", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5, help="steps not timed")
    ap.add_argument("--no-final-eval", action="store_true", help="timing-only runs")
    return ap


def main(argv=None):
    ap = build_argparser()
    args = ap.parse_args(argv)
    for name in ("max_len", "hidden", "layers", "batch", "steps", "eval_batch", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0.0 <= args.val_fraction < 1.0:
        ap.error("--val-fraction must be in [0, 1)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    chars, labels, train_x, train_y, val_x, val_y, skipped, majority = prepare(args)
    if len(train_x) < args.batch:
        die(f"{args.data}: {len(train_x)} training examples, fewer than --batch {args.batch}")
    V, C = len(chars), len(labels)
    model = CharClassifier(args.cell, V, args.hidden, args.layers, args.bidirectional, C, args.pool)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"# torch {torch.__version__}  threads={torch.get_num_threads()}  "
          f"vocab={V} labels={C} train={len(train_x)} val={len(val_x)} examples  "
          f"params={n_params}  steps/epoch={len(train_x) // args.batch}  "
          + "  ".join(f"{k}={v}" for k, v in skipped.items()), flush=True)

    evals = []

    def run_eval(step):
        te = time.perf_counter()
        vl, acc, base = evaluate(model, val_x, val_y, args.eval_batch, majority)
        if vl is not None:
            evals.append({"step": step, "val_loss": round(vl, 5), "accuracy": round(acc, 5)})
            print(f"step {step}  val_loss {vl:.4f}  accuracy {acc:.4f}  "
                  f"(majority baseline {base:.4f})", flush=True)
        return vl, acc, base, time.perf_counter() - te

    stream = batches(train_x, train_y, args.batch, args.seed)
    step_times, losses, eval_time = [], [], 0.0
    t_train0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        t0 = time.perf_counter()
        epoch, x, lengths, y = next(stream)
        loss = F.cross_entropy(model(x, lengths), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        lv = loss.item()
        t1 = time.perf_counter()
        step_times.append(t1 - t0)
        losses.append(lv)
        if args.print_every and (step % args.print_every == 0 or step == 1):
            recent = losses[-args.print_every:]
            print(f"step {step:6d}  epoch {epoch}  "
                  f"loss {sum(recent) / len(recent):.4f}  (last {lv:.4f})  "
                  f"gnorm {float(gnorm):.3f}  {args.batch / (t1 - t0):,.0f} ex/s",
                  flush=True)
        # The last step's evaluation is the final one (unless it is disabled).
        final_here = step == args.steps and not args.no_final_eval
        if args.eval_every and step % args.eval_every == 0 and not final_here:
            eval_time += run_eval(step)[3]
    train_wall = time.perf_counter() - t_train0 - eval_time

    timed = step_times[args.warmup:] or step_times
    med = statistics.median(timed)
    val_loss = acc = base = t_eval = None
    if not args.no_final_eval:
        val_loss, acc, base, t_eval = run_eval(args.steps)

    def r(v, nd=5):
        return None if v is None else round(v, nd)

    last = losses[-20:]
    result = {
        "impl": "pytorch", "torch": torch.__version__, "task": "classify",
        "cell": args.cell, "layers": args.layers, "hidden": args.hidden,
        "bidirectional": args.bidirectional, "pool": args.pool, "batch": args.batch,
        "steps": args.steps, "lr": args.lr, "clip": args.clip,
        "threads": torch.get_num_threads(), "seed": args.seed,
        "max_len": args.max_len, "vocab": V, "labels": C, "params": n_params,
        "train_examples": len(train_x), "val_examples": len(val_x),
        "timed_steps": len(timed),
        "examples_per_sec_median": round(args.batch / med, 1),
        "examples_per_sec_mean": round(args.batch * len(timed) / sum(timed), 1),
        "step_ms_median": round(med * 1e3, 3),
        "train_wall_s": round(train_wall, 2),
        "train_loss_last20_mean": round(sum(last) / len(last), 5),
        "val_loss": r(val_loss), "accuracy": r(acc), "majority_baseline": r(base),
        **skipped, "eval_s": r(t_eval, 2), "evals": evals,
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
