#!/usr/bin/env python3
"""Writes the PyTorch-compatibility fixtures of Tests/TrainingTests/PyTorchCompatibilityTests.swift:
for each cell (rnn, lstm, gru) a tiny 2-layer model saved with safetensors.torch.save_file under
the checkpoint names of docs/DESIGN.md, and the mean cross-entropy PyTorch computes on a fixed text
(one stream from zero state). Needs torch and safetensors (a benchmark venv: scripts/lib/torch-python);
the test itself only reads the committed output.

    $(scripts/lib/torch-python) scripts/make-pytorch-fixtures.py Tests/TrainingTests/Fixtures
"""
import json, os, sys
import torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import save_file

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
out = sys.argv[1]
chars = sorted(set(TEXT))
stoi = {c: i for i, c in enumerate(chars)}
ids = torch.tensor([stoi[c] for c in TEXT])
V, H, L = len(chars), 8, 2
expected = {}
for cell in ("rnn", "lstm", "gru"):
    torch.manual_seed({"rnn": 1, "lstm": 2, "gru": 3}[cell])
    rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](V, H, num_layers=L, batch_first=True)
    head = nn.Linear(H, V)
    with torch.no_grad():  # non-zero recurrent biases too, so that summing bias_ih + bias_hh is tested
        for name, p in rnn.named_parameters():
            p.uniform_(-0.5, 0.5)
        head.weight.uniform_(-0.5, 0.5); head.bias.uniform_(-0.5, 0.5)
        x = F.one_hot(ids[:-1], V).float().unsqueeze(0)
        out_seq, _ = rnn(x)
        loss = F.cross_entropy(head(out_seq)[0], ids[1:]).item()
    tensors = {f"rnn.{k}": v.detach().contiguous() for k, v in rnn.state_dict().items()}
    tensors["head.weight"] = head.weight.detach().contiguous()
    tensors["head.bias"] = head.bias.detach().contiguous()
    meta = {"config": json.dumps({"cell": cell, "hidden_size": H, "num_layers": L, "vocab_size": V}),
            "vocabulary": json.dumps(chars)}
    d = os.path.join(out, f"pytorch-{cell}")
    os.makedirs(d, exist_ok=True)
    save_file(tensors, os.path.join(d, "model.safetensors"), metadata=meta)
    expected[cell] = loss
with open(os.path.join(out, "pytorch-expected.json"), "w") as f:
    json.dump({"text": TEXT, "loss": expected, "torch": torch.__version__}, f, indent=1, sort_keys=True)
print(json.dumps(expected))
