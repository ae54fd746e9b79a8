#!/usr/bin/env python3
"""Load a Recur checkpoint into PyTorch and score a text file with it.

Usage: scripts/load-in-pytorch.py CHECKPOINT_DIR TEXT_FILE [VAL_FRACTION]

Prints the mean cross-entropy over the validation split of TEXT_FILE (its last
VAL_FRACTION; default: the checkpoint's state.json, else 0.1), scored as one stream from
zero state: the same figure as `recur eval --checkpoint CHECKPOINT_DIR --data TEXT_FILE`.
Needs `pip install torch safetensors`. The format is described in docs/DESIGN.md
("Checkpoint directory").
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file


class CharModel(torch.nn.Module):
    """One-hot input (V) -> nn.RNN/LSTM/GRU (L layers of H) -> nn.Linear head (V logits)."""

    def __init__(self, cell, vocab_size, hidden_size, num_layers):
        super().__init__()
        kind = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = kind(vocab_size, hidden_size, num_layers, batch_first=True)  # RNN: tanh
        self.head = torch.nn.Linear(hidden_size, vocab_size)

    def forward(self, x, state=None):
        out, state = self.rnn(x, state)      # x (B, T, V) one-hot; out (B, T, H)
        return self.head(out), state         # logits (B, T, V)


def load(directory):
    """The model with the checkpoint's weights, and its vocabulary (list: id -> character)."""
    path = os.path.join(directory, "model.safetensors")
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
    config = json.loads(metadata["config"])        # {"cell", "hidden_size", "num_layers", "vocab_size"}
    vocabulary = json.loads(metadata["vocabulary"])
    model = CharModel(config["cell"], config["vocab_size"], config["hidden_size"], config["num_layers"])
    model.load_state_dict(load_file(path))         # strict: names and shapes must match
    return model.eval(), vocabulary


def validation_fraction(directory):
    try:
        with open(os.path.join(directory, "state.json")) as f:
            return json.load(f)["training_config"]["validationFraction"]
    except FileNotFoundError:
        return 0.1


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit(__doc__.strip().splitlines()[2])
    directory, text_path = argv[1], argv[2]
    fraction = float(argv[3]) if len(argv) == 4 else validation_fraction(directory)
    model, vocabulary = load(directory)
    ids = {ch: i for i, ch in enumerate(vocabulary)}

    with open(text_path, "rb") as f:
        text = f.read().decode("utf-8")             # str = Unicode scalars, "\r\n" stays two
    unknown = sorted(set(text) - ids.keys())
    if unknown:
        sys.exit("characters not in the vocabulary: " + ", ".join(json.dumps(c) for c in unknown))
    split = math.floor(len(text) * (1 - fraction))  # train = text[:split], validation = the rest
    tokens = torch.tensor([ids[c] for c in text[split:]])
    if len(tokens) < 2:
        sys.exit("the validation split has fewer than 2 characters")

    total, state, window = 0.0, None, 4096          # windows only bound memory; state carries
    with torch.no_grad():
        for begin in range(0, len(tokens) - 1, window):
            inputs = tokens[begin:begin + window]
            targets = tokens[begin + 1:begin + window + 1]
            inputs = inputs[:len(targets)]
            x = F.one_hot(inputs, len(vocabulary)).float().unsqueeze(0)   # (1, T, V)
            logits, state = model(x, state)
            total += F.cross_entropy(logits[0], targets, reduction="sum").item()
    nats = total / (len(tokens) - 1)
    print(f"validation loss {nats:.4f} nats/char, {nats / math.log(2):.4f} bits/char over {len(tokens) - 1} chars")


if __name__ == "__main__":
    main(sys.argv)
