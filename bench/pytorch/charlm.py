#!/usr/bin/env python3
"""Recur's PyTorch reference trainer, one process: the character language model that
`recur train` / `recur bench` train, in PyTorch on the CPU, for speed and quality comparisons.

    bench/pytorch/charlm.py [--data FILE] [--cell lstm] [--layers 2] [--hidden 256]
                            [--seq 64] [--batch 64] [--steps 100] [--threads 1] [--dropout 0] …

Same data layout as Recur (docs/DESIGN.md "Data layout": first 90% train, last 10%
validation, N contiguous streams, windows of T with the state carried, zero state at each
epoch), one-hot input → nn.RNN/LSTM/GRU → nn.Linear, Adam after clip_grad_norm_, and the same
timing as `recur bench`: the median tokens/s over the steps after --warmup. All of it lives in
reference.py beside this file. Prints a progress line every --print-every steps, `step S
val_loss X` per evaluation, and ends with one JSON line: the run's configuration,
`tokens_per_sec_median` (what scripts/bench-local reads), `tokens_per_sec_mean`,
`step_ms_median`, `train_loss_last20_mean`, `val_loss`, and `evals` (`step`, `val_loss` of
each evaluation; what results/dropout/summarize reads). Torch: scripts/lib/torch-python.
"""
import math
import os

import torch
import torch.nn.functional as F

import reference as ref


def main(argv=None):
    parser = ref.build_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    corpus = ref.Corpus(args.data, args.val_fraction)
    V = len(corpus.vocabulary)
    streams = ref.Streams(corpus.train, args.batch, args.seq)
    model = ref.CharModel(args.cell, V, args.hidden, args.layers, args.dropout)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    tokens_per_step = args.batch * args.seq
    parameters = sum(p.numel() for p in model.parameters())
    weights = ref.matmul_weights(args.cell, V, args.hidden, args.layers)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} thread(s); {os.path.basename(args.data)}: "
          f"{len(corpus.ids)} chars, vocabulary {V}, train {len(corpus.train)}, validation {len(corpus.validation)}; "
          f"{parameters} parameters; {streams.steps_per_epoch} steps per epoch", flush=True)

    def validate(step):
        loss, scored = ref.evaluate(model, corpus.validation, args.seq, args.eval_streams, args.eval_chars)
        if loss is not None:
            evals.append({"step": step, "val_loss": round(loss, 5)})
            print(f"step {step} val_loss {loss:.4f} nats/char ({loss / math.log(2):.4f} bits/char) over {scored} chars",
                  flush=True)
        return loss

    clock, losses, evals, state, val_loss = ref.Clock(), [], [], None, None
    for step in range(1, args.steps + 1):
        clock.start()
        x, y, reset = streams.window(step - 1)
        if reset:
            state = None
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip) if args.clip > 0 else None
        optimizer.step()
        state = ref.detached(state)
        seconds = clock.stop()
        losses.append(loss.item())
        if args.print_every and (step == 1 or step % args.print_every == 0 or step == args.steps):
            gnorm = f" | gnorm {float(norm):.3f}" if norm is not None else ""
            print(f"step {step}/{args.steps} | epoch {streams.epoch(step - 1)} | loss {losses[-1]:.4f}{gnorm} | "
                  f"{tokens_per_step / seconds:,.0f} tok/s", flush=True)
        if args.eval_every and step % args.eval_every == 0 and step != args.steps:
            validate(step)
    if not args.no_final_eval:
        val_loss = validate(args.steps)

    last = losses[-20:]
    result = {
        "impl": "pytorch", "mode": "single", "torch": torch.__version__, "data": os.path.basename(args.data),
        "cell": args.cell, "layers": args.layers, "hidden": args.hidden, "seq": args.seq, "batch": args.batch,
        "steps": args.steps, "lr": args.lr, "clip": args.clip, "dropout": args.dropout, "seed": args.seed,
        "threads": torch.get_num_threads(), "vocab": V, "params": parameters, "matmul_weights": weights,
        **ref.timing(clock.seconds, tokens_per_step, args.warmup),
        "train_loss_last20_mean": round(sum(last) / len(last), 5),
        "val_loss": None if val_loss is None else round(val_loss, 5),
        "eval_streams": args.eval_streams, "evals": evals,
    }
    result["gflops_median"] = round(result["tokens_per_sec_median"] * 6 * weights / 1e9, 2)
    ref.print_json(result)
    return result


if __name__ == "__main__":
    main()
