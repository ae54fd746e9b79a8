#!/usr/bin/env python3
"""Recur's PyTorch reference trainer, data-parallel: charlm.py's model, data and timing over
--procs processes with DistributedDataParallel and the gloo backend on 127.0.0.1.

    bench/pytorch/ddp_charlm.py --procs 2 --threads 1 [charlm.py's flags]

The global batch of N streams is Recur's layout (reference.py): rank r of P takes streams
[r·N/P, (r+1)·N/P), as Recur's worker r takes its block of chunks, so the ranks together see
exactly the one-process batch. Each rank's loss is the mean over its own streams and DDP
averages the gradients (all-reduce), which with equal blocks is the gradient of the global
mean; clipping and Adam then run the same on every rank. N must divide by P.

Timing: the wall time of each step on rank 0 (the all-reduce included, which holds the ranks
in step); tokens/s = N·T (global) over it, the median over the steps after --warmup. Rank 0
evaluates (--eval-every, and at the end) while the others wait. Ends with one JSON line as
charlm.py's (`tokens_per_sec_median` is what scripts/bench-distributed reads) plus `procs`,
`batch_per_rank` and each rank's median step time.
"""
import math
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import reference as ref


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank, args):
    P = args.procs
    torch.set_num_threads(args.threads)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(args.port)
    dist.init_process_group("gloo", rank=rank, world_size=P)
    torch.manual_seed(args.seed)   # every rank builds the same model; DDP broadcasts rank 0's anyway

    corpus = ref.Corpus(args.data, args.val_fraction)
    V = len(corpus.vocabulary)
    n = args.batch // P
    streams = ref.Streams(corpus.train, args.batch, args.seq, lo=rank * n, hi=(rank + 1) * n)
    model = ref.CharModel(args.cell, V, args.hidden, args.layers, args.dropout)
    model.train()
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=args.lr)
    tokens_per_step = args.batch * args.seq   # global
    parameters = sum(p.numel() for p in model.parameters())
    weights = ref.matmul_weights(args.cell, V, args.hidden, args.layers)
    if rank == 0:
        print(f"# torch {torch.__version__}, DDP gloo, {P} processes × {torch.get_num_threads()} thread(s), "
              f"{n} of {args.batch} streams each; {os.path.basename(args.data)}: {len(corpus.ids)} chars, "
              f"vocabulary {V}; {parameters} parameters; {streams.steps_per_epoch} steps per epoch", flush=True)

    evals = []

    def validate(step):
        loss = None
        if rank == 0:
            loss, scored = ref.evaluate(model, corpus.validation, args.seq, args.eval_streams, args.eval_chars)
            if loss is not None:
                evals.append({"step": step, "val_loss": round(loss, 5)})
                print(f"step {step} val_loss {loss:.4f} nats/char ({loss / math.log(2):.4f} bits/char) over {scored} chars",
                      flush=True)
        dist.barrier()
        return loss

    clock, losses, state, val_loss = ref.Clock(), [], None, None
    for step in range(1, args.steps + 1):
        clock.start()
        x, y, reset = streams.window(step - 1)
        if reset:
            state = None
        logits, state = ddp(x, state)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()   # the gradient all-reduce
        norm = torch.nn.utils.clip_grad_norm_(ddp.parameters(), args.clip) if args.clip > 0 else None
        optimizer.step()
        state = ref.detached(state)
        seconds = clock.stop()
        losses.append(loss.item())
        if args.print_every and (step == 1 or step % args.print_every == 0 or step == args.steps):
            mean = torch.tensor([losses[-1]])
            dist.all_reduce(mean)   # the global batch's loss (equal blocks), for the line only
            if rank == 0:
                gnorm = f" | gnorm {float(norm):.3f}" if norm is not None else ""
                print(f"step {step}/{args.steps} | epoch {streams.epoch(step - 1)} | loss {mean.item() / P:.4f}{gnorm} | "
                      f"{tokens_per_step / seconds:,.0f} tok/s", flush=True)
        if args.eval_every and step % args.eval_every == 0 and step != args.steps:
            validate(step)
    if not args.no_final_eval:
        val_loss = validate(args.steps)

    timed = clock.seconds[args.warmup:] or clock.seconds
    medians = [None] * P
    dist.all_gather_object(medians, ref.upper_median(timed))
    last = torch.tensor([sum(losses[-20:]) / len(losses[-20:])])
    dist.all_reduce(last)
    if rank == 0:
        result = {
            "impl": "pytorch", "mode": "ddp-gloo", "torch": torch.__version__, "data": os.path.basename(args.data),
            "procs": P, "threads_per_proc": torch.get_num_threads(), "batch_per_rank": n,
            "cell": args.cell, "layers": args.layers, "hidden": args.hidden, "seq": args.seq, "batch": args.batch,
            "steps": args.steps, "lr": args.lr, "clip": args.clip, "dropout": args.dropout, "seed": args.seed,
            "threads": torch.get_num_threads(), "vocab": V, "params": parameters, "matmul_weights": weights,
            **ref.timing(clock.seconds, tokens_per_step, args.warmup),
            "step_ms_median_per_rank": [round(1e3 * m, 3) for m in medians],
            "train_loss_last20_mean": round(last.item() / P, 5),
            "val_loss": None if val_loss is None else round(val_loss, 5),
            "eval_streams": args.eval_streams, "evals": evals,
        }
        result["gflops_median"] = round(result["tokens_per_sec_median"] * 6 * weights / 1e9, 2)
        ref.print_json(result)
    dist.barrier()   # no rank tears gloo down while another is still in a collective
    dist.destroy_process_group()


def main(argv=None):
    parser = ref.build_parser(__doc__.splitlines()[0])
    parser.add_argument("--procs", type=ref.positive_int, default=2, help="P processes (2)")
    parser.add_argument("--port", type=ref.positive_int, default=0, help="gloo rendezvous port on 127.0.0.1 (0: a free one)")
    args = parser.parse_args(argv)
    if args.batch % args.procs:
        parser.error(f"--batch {args.batch} must divide by --procs {args.procs}")
    if args.port > 65535:
        parser.error(f"--port must be 1...65535, got {args.port}")
    # Fail here, in one line, on an unusable corpus rather than once per rank.
    corpus = ref.Corpus(args.data, args.val_fraction, prog=parser.prog)
    ref.Streams(corpus.train, args.batch, args.seq, prog=parser.prog)
    del corpus
    args.port = args.port or free_port()
    mp.spawn(rank_main, args=(args,), nprocs=args.procs, join=True)


if __name__ == "__main__":
    main()
