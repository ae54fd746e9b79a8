"""What Recur's two PyTorch reference trainers share: corpus and data layout, model,
evaluation, timing, command line and the JSON result. `charlm.py` (one process) and
`ddp_charlm.py` (DistributedDataParallel over gloo) import it; see bench/README.md.

Everything follows docs/DESIGN.md "Data layout", so that a PyTorch run and a `recur train` /
`recur bench` run of the same flags see the same characters in the same order:

  text        the file decoded as strict UTF-8, no newline translation ("\\r\\n" is two
              symbols); the vocabulary is sorted(set(text)), id i the i-th smallest.
  split       nTrain = floor(n·(1−f)) (f = --val-fraction, 0.1): train = text[:nTrain],
              validation = the rest.
  streams     R = floor((nTrain−1)/(N·T))·T; stream b (0 ≤ b < N) reads the inputs
              train[b·R : b·R+R], the targets one position later.
  windows     an epoch has R/T steps; global step s (0-based) reads columns k·T : k·T+T of
              every stream, k = s mod (R/T). The state (h, and c for LSTM) is carried from
              step to step (detached: truncated BPTT) and is zero at k = 0.
  evaluation  the first --eval-chars (1,000,000; 0 = all) characters of the validation split,
              n−1 predictions, scored from zero state in windows of T with the state carried;
              with --eval-streams E, E contiguous segments of L = (n−1)/E each from zero
              state, the < E leftover predictions continuing the last segment.

Model: one-hot input (V wide) → nn.RNN (tanh) / nn.LSTM / nn.GRU, L layers of H, batch_first
→ nn.Linear(H, V). With --dropout p: the recurrent module's dropout between layers and an
nn.Dropout(p) before the head (what `recur train --dropout p` does), off in evaluation.
Loss: mean cross-entropy over the N·T predictions of a step, in nats. Optimizer: Adam (lr,
PyTorch's betas 0.9/0.999 and eps 1e-8), after clip_grad_norm_ to --clip (0 = off).

Timing, as `recur bench`: a step is timed from taking its batch to the optimizer's update
(forward, loss, backward, clip, Adam); its tokens/s is N·T over that time; the figure is the
median over the steps after the first --warmup, the upper median (sorted[count/2]) as Recur
takes it.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "tinyshakespeare.txt")
GATE_BLOCKS = {"rnn": 1, "gru": 3, "lstm": 4}   # G: weight blocks per layer


# ----------------------------------------------------------------------------- command line

class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line and exit status 64."""

    def error(self, message):
        fail(message, prog=self.prog)


def fail(message, prog=None, status=64):
    """One line on stderr, then exit (64: bad command line or value; 65: unusable input)."""
    sys.stderr.write(f"{prog or os.path.basename(sys.argv[0])}: {message}\n")
    sys.exit(status)


def whole_number(minimum):
    """An argparse type: a whole number ≥ minimum, else one clear error."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number ≥ {minimum}, got '{text}'")
        return value
    return parse


positive_int = whole_number(1)
count = whole_number(0)


def number(low, high, low_open=False, high_open=False):
    """A float in [low, high] (bounds excluded where open; None = unbounded)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value)
        ok = ok and (low is None or (value > low if low_open else value >= low))
        ok = ok and (high is None or (value < high if high_open else value <= high))
        if not ok:
            lo = "−∞" if low is None else f"{low:g}"
            hi = "∞" if high is None else f"{high:g}"
            interval = ("(" if low_open or low is None else "[") + f"{lo}, {hi}" + (")" if high_open or high is None else "]")
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got '{text}'")
        return value
    return parse


def build_parser(description):
    """The flags both trainers take (recur's names and defaults where recur has them)."""
    p = Parser(description=description)
    p.add_argument("--data", default=DEFAULT_DATA, help="UTF-8 text (default: the repository's data/tinyshakespeare.txt)")
    p.add_argument("--cell", choices=sorted(GATE_BLOCKS), default="lstm")
    p.add_argument("--layers", type=positive_int, default=2, help="L (2)")
    p.add_argument("--hidden", type=positive_int, default=256, help="H (256)")
    p.add_argument("--seq", type=positive_int, default=64, help="T, the BPTT window (64)")
    p.add_argument("--batch", type=positive_int, default=64, help="N, the streams (64)")
    p.add_argument("--val-fraction", type=number(0, 1, high_open=True), default=0.1, help="validation share, end of file (0.1)")
    p.add_argument("--steps", type=positive_int, default=100, help="training steps, warm-up included (100)")
    p.add_argument("--lr", type=number(0, None, low_open=True), default=2e-3, help="Adam's learning rate (2e-3)")
    p.add_argument("--clip", type=number(0, None), default=5.0, help="global L2 norm of the gradient (5; 0 = off)")
    p.add_argument("--dropout", type=number(0, 1, high_open=True), default=0.0, help="between layers and before the head (0)")
    p.add_argument("--seed", type=int, default=1234, help="torch.manual_seed (1234)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads (1; per process with DDP)")
    p.add_argument("--warmup", type=count, default=5, help="first steps left out of the timing (5)")
    p.add_argument("--eval-every", type=count, default=0, help="validation every N steps (0: at the end only)")
    p.add_argument("--eval-chars", type=count, default=1_000_000, help="score the validation split's first N chars (1,000,000; 0 = all)")
    p.add_argument("--eval-streams", type=positive_int, default=1, help="E segments scored from zero state (1)")
    p.add_argument("--no-final-eval", action="store_true", help="no validation at the end (timing runs)")
    p.add_argument("--print-every", type=count, default=50, help="a progress line every N steps (50; 0 = none)")
    return p


# ------------------------------------------------------------------------------------ data

class Corpus:
    """The text as token ids (torch.long), its vocabulary and the two splits."""

    def __init__(self, path, val_fraction, prog=None):
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            fail(f"cannot read corpus {path}: {e.strerror}", prog, 65)
        try:
            text = raw.decode("utf-8")   # strict; bytes, so no newline translation
        except UnicodeDecodeError as e:
            fail(f"corpus {path} is not UTF-8: {e.reason} at byte offset {e.start}", prog, 65)
        if not text:
            fail(f"corpus {path} is empty", prog, 65)
        self.path = path
        self.vocabulary = sorted(set(text))
        index = {c: i for i, c in enumerate(self.vocabulary)}
        self.ids = torch.tensor([index[c] for c in text], dtype=torch.long)
        n_train = math.floor(len(text) * (1 - val_fraction))
        self.train = self.ids[:n_train]
        self.validation = self.ids[n_train:]


class Streams:
    """N streams of R = floor((nTrain−1)/(N·T))·T tokens over the train split; `lo:hi` keeps
    streams lo..<hi only (a DDP rank's block of the global batch)."""

    def __init__(self, train, batch, seq, lo=0, hi=None, prog=None):
        R = (len(train) - 1) // (batch * seq) * seq
        if R == 0:
            fail(f"the train split has {len(train)} characters; --batch {batch} × --seq {seq} needs at least "
                 f"{batch * seq + 1}", prog, 65)
        self.seq = seq
        self.steps_per_epoch = R // seq
        # Row b of each view: train[b·R : b·R+R] and train[b·R+1 : b·R+R+1] (N·R+1 ≤ nTrain).
        self.inputs = train[: batch * R].view(batch, R)[lo:hi]          # (n, R)
        self.targets = train[1: batch * R + 1].view(batch, R)[lo:hi]    # (n, R)

    def window(self, step):
        """(x, y, reset) of global step `step` (0-based): (n, T) inputs and targets, and whether
        the state starts from zero (k = 0, a new epoch)."""
        k = step % self.steps_per_epoch
        cols = slice(k * self.seq, k * self.seq + self.seq)
        return self.inputs[:, cols], self.targets[:, cols], k == 0

    def epoch(self, step):
        return step // self.steps_per_epoch


# ----------------------------------------------------------------------------------- model

class CharModel(nn.Module):
    """One-hot (V) → recurrent layers (H) → linear head (V logits)."""

    def __init__(self, cell, vocabulary, hidden, layers, dropout=0.0):
        super().__init__()
        self.vocabulary = vocabulary
        kind = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
        extra = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        self.rnn = kind(vocabulary, hidden, num_layers=layers, batch_first=True,
                        dropout=dropout if layers > 1 else 0.0, **extra)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(hidden, vocabulary)

    def forward(self, x, state=None):
        """x: (n, t) ids; state: the recurrent module's (h, or (h, c)), each (L, n, H), or None
        for zero. Returns logits (n, t, V) and the final state."""
        out, state = self.rnn(F.one_hot(x, self.vocabulary).float(), state)   # (n, t, H)
        return self.head(self.drop(out)), state


def detached(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def matmul_weights(cell, vocabulary, hidden, layers):
    """Weights that take part in a product (biases excluded; the one-hot input counted densely),
    as `recur bench` counts them for its gflops: 6 FLOP per such weight per token."""
    g = GATE_BLOCKS[cell]
    return sum(g * hidden * (vocabulary if l == 0 else hidden) + g * hidden * hidden for l in range(layers)) \
        + hidden * vocabulary


# ------------------------------------------------------------------------------ evaluation

@torch.no_grad()
def evaluate(model, ids, window, streams=1, limit=0):
    """Mean nats per prediction over the first `limit` (0 = all) ids (docs/DESIGN.md
    "Evaluation"); returns (loss, predictions), loss None when there is nothing to predict."""
    if limit:
        ids = ids[:limit]
    n = len(ids) - 1
    if n < 1:
        return None, 0
    was_training = model.training
    model.eval()
    E = max(1, min(streams, n))
    L = n // E
    inputs = torch.stack([ids[s * L: s * L + L] for s in range(E)])            # (E, L)
    targets = torch.stack([ids[s * L + 1: s * L + L + 1] for s in range(E)])   # (E, L)
    total, state = 0.0, None
    for begin in range(0, L, window):
        logits, state = model(inputs[:, begin: begin + window], state)
        total += F.cross_entropy(logits.reshape(-1, model.vocabulary), targets[:, begin: begin + window].reshape(-1),
                                 reduction="sum").item()
    if E * L < n:   # the < E leftover predictions continue the last segment
        last = tuple(s[:, E - 1:].contiguous() for s in state) if isinstance(state, tuple) else state[:, E - 1:].contiguous()
        for begin in range(E * L, n, window):
            end = min(begin + window, n)
            logits, last = model(ids[begin:end].view(1, -1), last)
            total += F.cross_entropy(logits.reshape(-1, model.vocabulary), ids[begin + 1: end + 1], reduction="sum").item()
    if was_training:
        model.train()
    return total / n, n


# ---------------------------------------------------------------------------------- timing

def upper_median(values):
    """sorted[count/2], the median `recur bench` reports."""
    return sorted(values)[len(values) // 2]


def timing(step_seconds, tokens_per_step, warmup):
    """The timing fields of the JSON result from every step's wall time."""
    timed = step_seconds[warmup:] or step_seconds
    rates = [tokens_per_step / s for s in timed]
    return {
        "timed_steps": len(timed),
        "tokens_per_sec_median": round(upper_median(rates), 1),
        "tokens_per_sec_mean": round(tokens_per_step * len(timed) / sum(timed), 1),
        "step_ms_median": round(1e3 * upper_median(timed), 3),
    }


class Clock:
    """Wall time of each training step (perf_counter)."""

    def __init__(self):
        self.seconds = []
        self._start = None

    def start(self):
        self._start = time.perf_counter()

    def stop(self):
        self.seconds.append(time.perf_counter() - self._start)
        return self.seconds[-1]


def print_json(result):
    print(json.dumps(result), flush=True)
