#!/usr/bin/env python3
"""The PyTorch reference for `stoke bench`: the same models, batch sizes, optimizers and
thread count, timing real training steps (forward, loss, backward, optimizer step) after a
warm-up. Prints one JSON object per model, like `stoke bench`.

    python3 benches/pytorch_reference.py --model mlp --steps 50 --warmup 5 [--threads 2]
    python3 benches/pytorch_reference.py --model all

Batches are random tensors of the right shapes and classes, made before timing: this gives
PyTorch no data-pipeline cost at all, while `stoke bench` times its real data path too.
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Mlp(nn.Module):
    """configs/mnist-mlp.toml: 784-512-256-10, ReLU, dropout 0.2."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.ModuleList([nn.Linear(784, 512), nn.Linear(512, 256)])
        self.output = nn.Linear(256, 10)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x):
        x = x.flatten(1)
        for layer in self.hidden:
            x = self.dropout(F.relu(layer(x)))
        return self.output(x)


class Cnn(nn.Module):
    """configs/mnist-cnn.toml: PyTorch's examples/mnist network."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.dropout1(F.max_pool2d(x, 2)).flatten(1)
        return self.fc2(self.dropout2(F.relu(self.fc1(x))))


class Transformer(nn.Module):
    """Token + position embeddings, pre-norm encoder layers, final norm (as stoke's)."""

    def __init__(self, vocab, length, d_model, n_layers, n_heads, d_ff, dropout, causal, activation):
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(length, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, d_ff, dropout, activation=activation, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.causal = causal

    def encode(self, ids, padding=None):
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        x = self.dropout(self.tokens(ids) + self.positions(positions))
        mask = None
        if self.causal:
            mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1])
        return self.norm(
            self.encoder(x, mask=mask, src_key_padding_mask=padding, is_causal=self.causal)
        )


class TextClassifier(Transformer):
    """configs/spam-transformer.toml: one 64-wide layer, mean pooling over real tokens."""

    def __init__(self, vocab, length, classes, activation):
        super().__init__(vocab, length, 64, 1, 2, 128, 0.1, causal=False, activation=activation)
        self.head = nn.Linear(64, classes)

    def forward(self, ids, padding):
        x = self.encode(ids, padding)
        real = (~padding).unsqueeze(-1).float()
        return self.head((x * real).sum(1) / real.sum(1))


class LanguageModel(Transformer):
    """configs/mobydick-char-lm.toml: 4 layers of width 128, tied output weights."""

    def __init__(self, vocab, length, activation):
        super().__init__(vocab, length, 128, 4, 4, 512, 0.0, causal=True, activation=activation)

    def forward(self, ids):
        x = self.encode(ids)
        return (x @ self.tokens.weight.T).flatten(0, 1)


def workload(name, batch=None, activation="relu"):
    """(model, optimizer, batch maker, samples per batch, tokens per batch); `batch` replaces
    the config's batch size, `activation` the transformers' (relu or gelu)."""
    g = torch.Generator().manual_seed(0)
    if name == "mlp":
        model, batch = Mlp(), batch or 128
        make = lambda: ((torch.randn(batch, 1, 28, 28, generator=g),), torch.randint(0, 10, (batch,), generator=g))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        return model, opt, make, batch, 0
    if name == "cnn":
        model, batch = Cnn(), batch or 64
        make = lambda: ((torch.randn(batch, 1, 28, 28, generator=g),), torch.randint(0, 10, (batch,), generator=g))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        return model, opt, make, batch, 0
    if name == "text-classifier":
        vocab, length, batch = 8000, 1024, batch or 32
        model = TextClassifier(vocab, length, 2, activation)

        def make():
            ids = torch.randint(1, vocab, (batch, length), generator=g)
            padding = torch.zeros(batch, length, dtype=torch.bool)  # full-length texts
            return (ids, padding), torch.randint(0, 2, (batch,), generator=g)

        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        return model, opt, make, batch, batch * length
    if name == "lm":
        vocab, length, batch = 85, 128, batch or 8
        model = LanguageModel(vocab, length, activation)

        def make():
            ids = torch.randint(0, vocab, (batch, length + 1), generator=g)
            return (ids[:, :-1],), ids[:, 1:].flatten()

        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01)
        return model, opt, make, batch, batch * length
    raise SystemExit(f"unknown model {name}")


def bench(name, steps, warmup, batch=None, activation="relu"):
    torch.manual_seed(0)
    model, opt, make, batch, tokens = workload(name, batch, activation)
    model.train()
    batches = [make() for _ in range(min(steps + warmup, 16))]

    def step(i):
        inputs, targets = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(*inputs), targets)
        loss.backward()
        opt.step()
        return loss

    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        loss = step(i)
    loss.item()  # wait for the last step
    elapsed = time.perf_counter() - start
    report = {
        "model": name,
        "framework": f"pytorch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "batch_size": batch,
        "steps": steps,
        "samples_per_s": steps * batch / elapsed,
        "step_ms": 1000 * elapsed / steps,
    }
    if tokens:
        report["tokens_per_s"] = steps * tokens / elapsed
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="all", help="mlp, cnn, text-classifier, lm or all")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: PyTorch's own")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    parser.add_argument("--activation", default="relu", choices=["relu", "gelu"],
                        help="the transformers' feed-forward activation")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = ["mlp", "cnn", "text-classifier", "lm"] if args.model == "all" else [args.model]
    for name in names:
        print(json.dumps(bench(name, args.steps, args.warmup, args.batch_size, args.activation)),
              flush=True)


if __name__ == "__main__":
    main()
