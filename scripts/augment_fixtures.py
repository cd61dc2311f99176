#!/usr/bin/env python3
"""torchvision's TrivialAugmentWide and RandAugment operations on Pillow images, as fixtures.

    python3 scripts/augment_fixtures.py [--out tests/fixtures/augment/pillow_ops.json]

Writes a small seeded RGB picture and a square grayscale one (so that quarter turns take
Pillow's transposition shortcut), and for each operation of the two policies' augmentation
spaces, at a few magnitude bins and both signs, the bytes torchvision's `_apply_op` gives on
the Pillow image (nearest interpolation, black fill, as the policies use them), with the
magnitude tables torchvision builds (float32 `torch.linspace`). stoke's
unit tests (src/data/image/auto_augment.rs) read this file and need neither torch nor Pillow.
"""

import argparse
import json
import pathlib

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.transforms import InterpolationMode, RandAugment, TrivialAugmentWide
from torchvision.transforms.autoaugment import _apply_op

ROOT = pathlib.Path(__file__).resolve().parent.parent
BINS = 31


def pictures():
    rng = np.random.default_rng(29)
    height, width = 10, 13
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 15 + 20, y * 20 + 10, (x + y) * 8 + 60], axis=-1)
    noise = rng.integers(-25, 26, size=(height, width, 3))
    rgb = np.clip(base + noise, 0, 255).astype(np.uint8)
    gray = np.clip(x[:9, :9] * 11 + y[:9, :9] * 17 + rng.integers(0, 40, size=(9, 9)), 0, 255)
    return [("rgb", Image.fromarray(rgb, "RGB")), ("gray", Image.fromarray(gray.astype(np.uint8), "L"))]


def spaces(width, height):
    trivial = TrivialAugmentWide()._augmentation_space(BINS)
    rand = RandAugment()._augmentation_space(BINS, (height, width))
    return {"trivial": trivial, "rand": rand}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=ROOT / "tests/fixtures/augment/pillow_ops.json")
    args = parser.parse_args()
    out = {"torchvision": torchvision.__version__, "pillow": Image.__version__, "pictures": []}
    for name, picture in pictures():
        width, height = picture.size
        entry = {
            "name": name,
            "width": width,
            "height": height,
            "channels": len(picture.getbands()),
            "pixels": np.asarray(picture).reshape(-1).tolist(),
            "spaces": {},
            "cases": [],
        }
        seen = set()
        for policy, space in spaces(width, height).items():
            entry["spaces"][policy] = {
                op: [float(v) for v in magnitudes.reshape(-1)] for op, (magnitudes, _) in space.items()
            }
            for op, (magnitudes, signed) in space.items():
                bins = [0] if magnitudes.ndim == 0 else [3, 17, 20, 30]
                for bin_ in bins:
                    for sign in [1, -1] if signed else [1]:
                        magnitude = float(magnitudes[bin_].item()) * sign if magnitudes.ndim else 0.0
                        key = (op, magnitude)
                        if key in seen:
                            continue
                        seen.add(key)
                        result = _apply_op(picture, op, magnitude, InterpolationMode.NEAREST, None)
                        entry["cases"].append(
                            {"op": op, "magnitude": magnitude, "pixels": np.asarray(result).reshape(-1).tolist()}
                        )
        out["pictures"].append(entry)
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {path}: {sum(len(p['cases']) for p in out['pictures'])} cases")


if __name__ == "__main__":
    main()
