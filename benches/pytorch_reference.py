#!/usr/bin/env python3
"""The PyTorch reference for `stoke bench`: the same models, batch sizes, optimizers and
thread count, timing real training steps (forward, loss, backward, optimizer step) after a
warm-up. Prints one JSON object per model, like `stoke bench`.

    python3 benches/pytorch_reference.py --model mlp --steps 50 --warmup 5 [--threads 2]
    python3 benches/pytorch_reference.py --model all
    python3 benches/pytorch_reference.py --model cnn --device cuda [--compile] [--autocast bf16]

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


class BasicBlock(nn.Module):
    """Two 3×3 conv + batch-norm layers with a residual (1×1 projection when the shape changes)."""

    def __init__(self, inputs, outputs, stride):
        super().__init__()
        self.first = nn.Sequential(
            nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs))
        self.second = nn.Sequential(
            nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False), nn.BatchNorm2d(outputs))
        self.shortcut = None
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x):
        residual = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.second(F.relu(self.first(x))) + residual)


class Resnet(nn.Module):
    """configs/mnist-resnet.toml: ResNet-8, widths 16-32-64, global average pooling."""

    def __init__(self, width=16, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width))
        self.blocks = nn.Sequential(
            BasicBlock(width, width, 1),
            BasicBlock(width, 2 * width, 2),
            BasicBlock(2 * width, 4 * width, 2),
        )
        self.output = nn.Linear(4 * width, classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem(x)))
        return self.output(F.adaptive_avg_pool2d(x, 1).flatten(1))


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
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        x = self.dropout(self.tokens(ids) + self.positions(positions))
        mask = None
        if self.causal:
            mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1], device=ids.device)
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


class TabularMlp(nn.Module):
    """configs/diamonds-tabular.toml: 6 standardised numeric columns and 3 categorical ones
    (cut 5, colour 7, clarity 8 values, each embedded at fastai's width, with a row for
    unknown values), then 256-256-128 ReLU layers and one output."""

    CATEGORIES = [5, 7, 8]

    def __init__(self):
        super().__init__()
        widths = [min(600, round(1.6 * n**0.56)) for n in self.CATEGORIES]
        self.embeddings = nn.ModuleList(nn.Embedding(n + 1, w) for n, w in zip(self.CATEGORIES, widths))
        sizes = [6 + sum(widths), 256, 256, 128]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.output = nn.Linear(128, 1)

    def forward(self, numeric, categorical):
        parts = [numeric] + [e(categorical[:, i]) for i, e in enumerate(self.embeddings)]
        x = torch.cat(parts, 1)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.output(x)


def workload(name, batch=None, activation="relu", device="cpu", image_size=224):
    """(model, optimizer, batch maker, samples per batch, tokens per batch); `batch` replaces
    the config's batch size, `activation` the transformers' (relu or gelu)."""
    g = torch.Generator().manual_seed(0)
    if name == "resnet18":
        # torchvision's ResNet-18 (timm's has the same layers), as configs/photos-resnet18.toml.
        import torchvision

        model, batch = torchvision.models.resnet18(num_classes=10).to(device), batch or 32
        size = image_size
        make = lambda: ((torch.randn(batch, 3, size, size, generator=g),), torch.randint(0, 10, (batch,), generator=g))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        return model, opt, make, batch, 0
    if name == "vit_small":
        # timm's vit_small_patch16_224 (stoke's timm-vit) as torchvision builds a ViT: the same
        # layers (patch convolution, class token, pre-norm blocks with ε 1e-6, exact GELU).
        from torchvision.models.vision_transformer import VisionTransformer

        size, batch = image_size, batch or 32
        model = VisionTransformer(image_size=size, patch_size=16, num_layers=12, num_heads=6,
                                  hidden_dim=384, mlp_dim=1536, num_classes=10).to(device)
        make = lambda: ((torch.randn(batch, 3, size, size, generator=g),), torch.randint(0, 10, (batch,), generator=g))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        return model, opt, make, batch, 0
    if name == "mlp":
        model, batch = Mlp().to(device), batch or 128
        make = lambda: ((torch.randn(batch, 1, 28, 28, generator=g),), torch.randint(0, 10, (batch,), generator=g))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        return model, opt, make, batch, 0
    if name == "cnn":
        model, batch = Cnn().to(device), batch or 64
        make = lambda: ((torch.randn(batch, 1, 28, 28, generator=g),), torch.randint(0, 10, (batch,), generator=g))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        return model, opt, make, batch, 0
    if name == "resnet":
        model, batch = Resnet().to(device), batch or 128
        make = lambda: ((torch.randn(batch, 1, 28, 28, generator=g),), torch.randint(0, 10, (batch,), generator=g))
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        return model, opt, make, batch, 0
    if name == "text-classifier":
        vocab, length, batch = 8000, 1024, batch or 32
        model = TextClassifier(vocab, length, 2, activation).to(device)

        def make():
            ids = torch.randint(1, vocab, (batch, length), generator=g)
            padding = torch.zeros(batch, length, dtype=torch.bool)  # full-length texts
            return (ids, padding), torch.randint(0, 2, (batch,), generator=g)

        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        return model, opt, make, batch, batch * length
    if name == "lm":
        vocab, length, batch = 85, 128, batch or 8
        model = LanguageModel(vocab, length, activation).to(device)

        def make():
            ids = torch.randint(0, vocab, (batch, length + 1), generator=g)
            return (ids[:, :-1],), ids[:, 1:].flatten()

        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01)
        return model, opt, make, batch, batch * length
    if name == "tabular-mlp":
        model, batch = TabularMlp().to(device), batch or 256

        def make():
            numeric = torch.randn(batch, 6, generator=g)
            categorical = torch.stack(
                [torch.randint(1, n + 1, (batch,), generator=g) for n in TabularMlp.CATEGORIES], 1)
            return (numeric, categorical), torch.randn(batch, 1, generator=g)

        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        return model, opt, make, batch, 0
    raise SystemExit(f"unknown model {name}")


def loss_of(name, outputs, targets):
    """The task's loss: mean squared error for the regression, cross-entropy otherwise."""
    if name == "tabular-mlp":
        return F.mse_loss(outputs, targets)
    return F.cross_entropy(outputs, targets)


def bench(name, steps, warmup, batch=None, activation="relu", device="cpu", compile=False,
          autocast="none", image_size=224):
    torch.manual_seed(0)
    model, opt, make, batch, tokens = workload(name, batch, activation, device, image_size)
    model.train()
    forward = torch.compile(model) if compile else model
    to = lambda t: t.to(device)
    batches = [
        (tuple(map(to, inputs)), to(targets))
        for inputs, targets in (make() for _ in range(min(steps + warmup, 16)))
    ]
    half = {"none": None, "bf16": torch.bfloat16, "f16": torch.float16}[autocast]
    scaler = torch.amp.GradScaler(device) if half == torch.float16 else None

    def step(i):
        inputs, targets = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=half, enabled=half is not None):
            loss = loss_of(name, forward(*inputs), targets)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return loss

    started = time.perf_counter()
    step(0)
    if device != "cpu":
        torch.cuda.synchronize()
    first_step_s = time.perf_counter() - started  # includes torch.compile's compilation
    for i in range(1, warmup):
        step(i)
    if device != "cpu":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        loss = step(i)
    loss.item()  # wait for the last step
    elapsed = time.perf_counter() - start
    report = {
        "model": name,
        "framework": f"pytorch {torch.__version__}",
        "device": device,
        "compile": compile,
        "autocast": autocast,
        "threads": torch.get_num_threads(),
        "batch_size": batch,
        "steps": steps,
        "samples_per_s": steps * batch / elapsed,
        "step_ms": 1000 * elapsed / steps,
        "first_step_s": first_step_s,
    }
    if tokens:
        report["tokens_per_s"] = steps * tokens / elapsed
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="all",
                        help="mlp, cnn, resnet, text-classifier, lm, tabular-mlp, resnet18, vit_small or all")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: PyTorch's own")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    parser.add_argument("--activation", default="relu", choices=["relu", "gelu"],
                        help="the transformers' feed-forward activation")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--image-size", type=int, default=224, help="resnet18's and vit_small's input side")
    parser.add_argument("--autocast", default="none", choices=["none", "bf16", "f16"],
                        help="mixed precision (f16 with a GradScaler)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = (["mlp", "cnn", "resnet", "text-classifier", "lm", "tabular-mlp"]
             if args.model == "all" else [args.model])
    for name in names:
        report = bench(name, args.steps, args.warmup, args.batch_size, args.activation,
                       args.device, args.compile, args.autocast, args.image_size)
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
