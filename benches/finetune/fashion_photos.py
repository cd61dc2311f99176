#!/usr/bin/env python3
"""Fashion-MNIST as an image folder of PNG files, for fine-tuning a pretrained RGB backbone
(configs/fashion-efficientnet-lite0.toml): `datasets/fashion-photos/{train,test}/<class>/`,
the first N training and M test images of each class in the IDX files' order.

    datasets/fetch fashion-mnist efficientnet-lite0
    python3 benches/finetune/fashion_photos.py --train 200 --test 100
    target/release/stoke train configs/fashion-efficientnet-lite0.toml

stoke reads the grayscale PNGs as RGB (`data.image.color = "rgb"`: gray repeated, as Pillow's
convert("RGB")) and resizes them for the network. Needs numpy and Pillow.
"""

import argparse
import gzip
import pathlib

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def idx(path: pathlib.Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def write(split: str, prefix: str, per_class: int, source: pathlib.Path, out: pathlib.Path):
    images = idx(source / f"{prefix}-images-idx3-ubyte.gz")
    labels = idx(source / f"{prefix}-labels-idx1-ubyte.gz")
    written = {c: 0 for c in range(len(CLASSES))}
    for index, (image, label) in enumerate(zip(images, labels)):
        label = int(label)
        if written[label] >= per_class:
            continue
        folder = out / split / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:05}.png")
        written[label] += 1
        if min(written.values()) >= per_class:
            break
    print(f"{split}: {sum(written.values())} images in {out / split}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=200, help="training images per class")
    parser.add_argument("--test", type=int, default=100, help="test images per class")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "datasets/fashion-photos")
    args = parser.parse_args()
    source = ROOT / "datasets/fashion-mnist"
    write("train", "train", args.train, source, args.out)
    write("test", "t10k", args.test, source, args.out)


if __name__ == "__main__":
    main()
