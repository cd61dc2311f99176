#!/usr/bin/env python3
"""Proves that an exported stoke image classifier is readable outside stoke.

Reads the artifact's model.safetensors (PyTorch layouts) and manifest.json, recomputes the
logits of the first N images of an MNIST-format IDX file with numpy (and with PyTorch when it
is installed), runs the artifact's model.onnx with onnxruntime when both are there, runs
`stoke predict --logits` on the same images written as PNG files, and checks that every
logit agrees within the tolerance.

    python3 scripts/check_safetensors.py models/mnist-mlp datasets/mnist/t10k-images-idx3-ubyte.gz \
        --count 16 --stoke target/release/stoke

Needs numpy and safetensors (pip install numpy safetensors). Exit code 0: all logits agree.
numpy and PyTorch cover the mlp and cnn kinds; onnxruntime any image classifier with a
model.onnx.
"""

import argparse
import gzip
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def read_idx_images(path, count):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            sys.exit(f"{path}: not an IDX image file (magic {magic})")
        count = min(count, n)
        data = f.read(count * rows * cols)
    return np.frombuffer(data, dtype=np.uint8).reshape(count, rows, cols)


def write_png(path, pixels):
    """A grayscale 8-bit PNG: signature, IHDR, one IDAT of unfiltered rows, IEND."""
    height, width = pixels.shape

    def chunk(kind, body):
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw)))
        f.write(chunk(b"IEND", b""))


def normalise(images, spec):
    norm = spec["normalization"]
    x = images.astype(np.float32)[:, None, :, :] / np.float32(255.0)  # [n, 1, h, w]
    mean = np.array(norm["mean"], dtype=np.float32)[None, :, None, None]
    std = np.array(norm["std"], dtype=np.float32)[None, :, None, None]
    return (x - mean) / std


def activation(name):
    erf = np.vectorize(math.erf)
    return {
        "relu": lambda x: np.maximum(x, 0),
        "tanh": np.tanh,
        "gelu": lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2))).astype(np.float32),
    }[name]


def linear(x, w, prefix):
    # PyTorch layout: weight [out, in].
    return x @ w[f"{prefix}.weight"].T + w[f"{prefix}.bias"]


def conv2d(x, weight, bias):
    """Unpadded, stride-1 convolution; weight [out, in, kh, kw] as in PyTorch."""
    out_c, in_c, kh, kw = weight.shape
    n, _, h, wd = x.shape
    oh, ow = h - kh + 1, wd - kw + 1
    cols = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))  # n,c,oh,ow,kh,kw
    out = np.einsum("ncyxij,ocij->noyx", cols, weight, optimize=True)
    return out + bias[None, :, None, None]


def max_pool_2x2(x):
    n, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def numpy_logits(model, w, x):
    kind = model["kind"]
    if kind == "mlp":
        act = activation(model["activation"])
        h = x.reshape(x.shape[0], -1)
        for i in range(len(model["hidden"])):
            h = act(linear(h, w, f"hidden.{i}"))
        return linear(h, w, "output")
    if kind == "cnn":
        h = x
        for i in range(len(model["channels"])):
            h = np.maximum(conv2d(h, w[f"convs.{i}.weight"], w[f"convs.{i}.bias"]), 0)
        h = max_pool_2x2(h).reshape(h.shape[0], -1)
        h = np.maximum(linear(h, w, "fc"), 0)
        return linear(h, w, "output")
    return None


def torch_logits(model, w, x):
    """The same model built from the safetensors with PyTorch, or None without PyTorch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    t = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in w.items()}
    h = torch.from_numpy(x)
    with torch.no_grad():
        if model["kind"] == "mlp":
            act = {"relu": F.relu, "tanh": torch.tanh, "gelu": F.gelu}[model["activation"]]
            h = h.flatten(1)
            for i in range(len(model["hidden"])):
                h = act(F.linear(h, t[f"hidden.{i}.weight"], t[f"hidden.{i}.bias"]))
        else:
            for i in range(len(model["channels"])):
                h = F.relu(F.conv2d(h, t[f"convs.{i}.weight"], t[f"convs.{i}.bias"]))
            h = F.max_pool2d(h, 2).flatten(1)
            h = F.relu(F.linear(h, t["fc.weight"], t["fc.bias"]))
        return F.linear(h, t["output.weight"], t["output.bias"]).numpy()


def onnx_logits(artifact, x):
    """The artifact's model.onnx run by onnxruntime, or a reason it was not."""
    path = os.path.join(artifact, "model.onnx")
    if not os.path.exists(path):
        return "no model.onnx in the artifact (stoke export --format onnx writes one)"
    try:
        import onnxruntime
    except ImportError:
        return "onnxruntime is not installed"
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: x})[0]


def stoke_logits(stoke, artifact, pngs):
    command = [stoke, "predict", artifact, "--logits", "--backend", "flex", *pngs]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return np.array([answer["logits"] for answer in answers], dtype=np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact")
    parser.add_argument("idx_images", help="an MNIST-format IDX image file (.gz or not)")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--stoke", default="stoke", help="the stoke binary")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()

    with open(os.path.join(args.artifact, "manifest.json")) as f:
        manifest = json.load(f)
    model, spec = manifest["model"], manifest["input"]
    if spec["task"] != "image-classification":
        sys.exit(f"this check covers image classifiers, not {spec['task']}")
    weights_path = os.path.join(args.artifact, "model.safetensors")
    with safe_open(weights_path, framework="np") as f:
        file_format = (f.metadata() or {}).get("format")
    # What transformers and PyTorch tooling expect of a file of PyTorch tensors.
    if file_format != "pt":
        sys.exit(f"{weights_path}: metadata format is {file_format!r}, not 'pt'")
    weights = load_file(weights_path)
    images = read_idx_images(args.idx_images, args.count)
    x = normalise(images, spec)

    with tempfile.TemporaryDirectory() as tmp:
        pngs = []
        for i, image in enumerate(images):
            pngs.append(os.path.join(tmp, f"image-{i}.png"))
            write_png(pngs[-1], image)
        from_stoke = stoke_logits(args.stoke, args.artifact, pngs)

    failed = False
    references = []
    from_numpy = numpy_logits(model, weights, x)
    if from_numpy is None:
        print(f"numpy, pytorch: the {model['kind']} forward pass is not written here (mlp, cnn)")
    else:
        references.append(("numpy", from_numpy))
    from_torch = torch_logits(model, weights, x) if from_numpy is not None else None
    if from_torch is not None:
        references.append(("pytorch", from_torch))
    elif from_numpy is not None:
        print("pytorch: not installed; checked with numpy only")
    from_onnx = onnx_logits(args.artifact, x)
    if isinstance(from_onnx, str):
        print(f"onnx: {from_onnx}")
    else:
        references.append(("onnxruntime", from_onnx))
    for name, logits in references:
        delta = float(np.max(np.abs(logits - from_stoke)))
        agree = int(np.sum(logits.argmax(1) == from_stoke.argmax(1)))
        ok = delta <= args.tolerance
        failed |= not ok
        print(
            f"{name}: {model['kind']} on {len(images)} images, max |Δlogit| = {delta:.3e} "
            f"(tolerance {args.tolerance:g}), same top class {agree}/{len(images)}: "
            f"{'ok' if ok else 'MISMATCH'}"
        )
    if not references:
        sys.exit("nothing to compare with")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
