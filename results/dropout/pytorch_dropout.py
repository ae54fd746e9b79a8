#!/usr/bin/env python3
"""The shared PyTorch reference trainer (../shared/bench/pytorch_charlm.py) with dropout.

PyTorch's own dropout for a stacked RNN: `nn.LSTM(dropout=p)` between stacked layers, and an
`nn.Dropout(p)` on the last layer's output before the linear head (what `recur train --dropout p`
does). Everything else -- data, batches, optimizer, clip, evaluation, the JSON line -- is the
shared script's, unchanged. Usage: pytorch_dropout.py --dropout P [pytorch_charlm.py flags]
"""
import os
import sys

import torch.nn as nn

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "..", "shared", "bench"))
import pytorch_charlm  # noqa: E402


def with_dropout(p):
    base = pytorch_charlm.CharRNN

    class CharRNNDropout(base):
        def __init__(self, cell, vocab, hidden, layers):
            super().__init__(cell, vocab, hidden, layers)
            kinds = {"lstm": nn.LSTM, "gru": nn.GRU}
            extra = {} if cell in kinds else {"nonlinearity": "tanh"}
            self.rnn = kinds.get(cell, nn.RNN)(vocab, hidden, num_layers=layers, batch_first=True,
                                               dropout=p if layers > 1 else 0.0, **extra)
            self.drop = nn.Dropout(p)

        def forward(self, x, state=None):
            x = nn.functional.one_hot(x, self.vocab).float()    # (B, T, V)
            out, state = self.rnn(x, state)                     # (B, T, H)
            return self.head(self.drop(out)), state             # (B, T, V)

    return CharRNNDropout


if __name__ == "__main__":
    argv = sys.argv[1:]
    p = 0.0
    if "--dropout" in argv:
        i = argv.index("--dropout")
        p = float(argv[i + 1])
        del argv[i:i + 2]
    pytorch_charlm.CharRNN = with_dropout(p)
    pytorch_charlm.main(argv)
