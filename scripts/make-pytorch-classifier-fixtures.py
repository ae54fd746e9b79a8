#!/usr/bin/env python3
"""Writes the PyTorch fixtures of Tests/TrainingTests/PyTorchClassifierTests.swift: for each cell
(rnn, lstm, gru) a tiny 2-layer bidirectional many-to-one classifier, plus one unidirectional LSTM
and one bidirectional GRU whose head reads the mean of its top layer's outputs (`--pool mean`),
saved with safetensors.torch.save_file under `rnn.*` / `head.*` (PyTorch's state_dict names), and the
logits PyTorch computes for 4 texts of different lengths, batched as a PackedSequence. The feature is
the top layer's final h of each direction: torch.cat([h_n[-2], h_n[-1]], 1) (h_n[-1] unidirectional),
or for "gru-mean" pad_packed_sequence(out).sum(1) / lengths.
Needs torch and safetensors; the test itself only reads the committed output.

    python3 scripts/make-pytorch-classifier-fixtures.py Tests/TrainingTests/Fixtures
"""
import json, os, sys
import torch, torch.nn as nn, torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from safetensors.torch import save_file

TEXTS = ["To be, or not to be, that is the question:", "a", "Whether 'tis nobler", "in the mind"]
LABELS = 5
out = sys.argv[1]
chars = sorted(set("".join(TEXTS)))
stoi = {c: i for i, c in enumerate(chars)}
V, H, L = len(chars), 8, 2
torch.set_default_dtype(torch.float64)  # expected logits in double; the file stores float32 weights

expected = {}
models = [("rnn", True, "last"), ("lstm", True, "last"), ("gru", True, "last"), ("lstm", False, "last"),
          ("gru", True, "mean")]
for seed, (cell, bidirectional, pool) in enumerate(models, start=11):
    torch.manual_seed(seed)
    name = f"{cell}-mean" if pool == "mean" else cell if bidirectional else f"{cell}-uni"
    rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](V, H, num_layers=L, batch_first=True,
                                                                bidirectional=bidirectional)
    D = 2 if bidirectional else 1
    head = nn.Linear(H * D, LABELS)
    with torch.no_grad():
        for p in list(rnn.parameters()) + list(head.parameters()):
            p.uniform_(-0.5, 0.5)
            p.copy_(p.float().double())   # the values the float32 file holds
        lengths = torch.tensor([len(t) for t in TEXTS])
        padded = torch.zeros(len(TEXTS), int(lengths.max()), dtype=torch.long)
        for b, t in enumerate(TEXTS):
            padded[b, :len(t)] = torch.tensor([stoi[c] for c in t])
        x = F.one_hot(padded, V).double()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        rnn_out, state = rnn(packed)
        h_n = state[0] if cell == "lstm" else state
        feature = torch.cat([h_n[-2], h_n[-1]], 1) if bidirectional else h_n[-1]
        if pool == "mean":
            padded_out, _ = pad_packed_sequence(rnn_out, batch_first=True)   # zeros past each length
            feature = padded_out.sum(1) / lengths.unsqueeze(1).double()
        logits = head(feature)
    tensors = {f"rnn.{k}": v.detach().float().contiguous() for k, v in rnn.state_dict().items()}
    tensors["head.weight"] = head.weight.detach().float().contiguous()
    tensors["head.bias"] = head.bias.detach().float().contiguous()
    config = {"cell": cell, "hidden_size": H, "num_layers": L, "vocab_size": V,
              "bidirectional": bidirectional, "num_labels": LABELS}
    if pool == "mean":
        config["pooling"] = "mean"
    meta = {"config": json.dumps(config),
            "vocabulary": json.dumps(chars)}
    d = os.path.join(out, f"pytorch-classifier-{name}")
    os.makedirs(d, exist_ok=True)
    save_file(tensors, os.path.join(d, "model.safetensors"), metadata=meta)
    expected[name] = logits.tolist()
with open(os.path.join(out, "pytorch-classifier-expected.json"), "w") as f:
    json.dump({"texts": TEXTS, "logits": expected, "torch": torch.__version__}, f, indent=1, sort_keys=True)
print(json.dumps({k: v[0] for k, v in expected.items()}))
