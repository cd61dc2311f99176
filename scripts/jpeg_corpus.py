#!/usr/bin/env python3
"""Damaged JPEGs and Pillow's verdict on each, for stoke's decoder to match (tests/jpeg.rs).

    python3 scripts/jpeg_corpus.py [--out tests/fixtures/jpeg]

From a few good JPEGs (baseline 4:2:0 and 4:4:4, progressive, grayscale, restart markers)
it writes damaged copies: cut at several points, cut just before the end-of-image marker,
entropy data overwritten with garbage, a flipped byte in each header segment, junk after the
end, a bogus marker in the data. `verdicts.json` records, for every file, whether Pillow
(`Image.open(...).load()`) decodes it, its mode and the SHA-256 of its pixels if so, or its
error if not; and `sha256_c`, the pixels' SHA-256 with libjpeg-turbo's SIMD code switched off
(`JSIMD_FORCENONE=1`, in a second process): stoke's decoder is libjpeg-turbo's C code, which
Pillow's SIMD build matches on every file but those whose damaged quantization tables drive
the IDCT out of range.
"""

import argparse
import hashlib
import io
import json
import pathlib
import os
import random
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent


def base_images():
    rng = np.random.default_rng(5)
    height, width = 45, 61
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [128 + 90 * np.sin(x / 5.0), 255.0 * y / height, np.where((x - 30) ** 2 + (y - 20) ** 2 < 200, 230.0, 30.0)],
        axis=-1,
    ) + rng.normal(0, 10, (height, width, 3))
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    gray = image.convert("L")
    out = {}
    for name, img, options in [
        ("baseline-420", image, dict(quality=85, subsampling=2)),
        ("baseline-444", image, dict(quality=90, subsampling=0)),
        ("progressive", image, dict(quality=80, progressive=True)),
        ("gray", gray, dict(quality=85)),
        ("restarts", image, dict(quality=85, restart_marker_blocks=2)),
    ]:
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", **options)
        out[name] = buffer.getvalue()
    return out


def segments(data):
    """(marker, offset of its length field) of every header segment before the scan data."""
    found, at = [], 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        found.append((marker, at + 2))
        if marker == 0xDA:  # start of scan: entropy data follows
            break
        at += 2 + length
    return found


def damaged(name, data):
    rnd = random.Random(name)
    yield f"{name}", data
    for share in [0.1, 0.3, 0.5, 0.8, 0.95]:
        yield f"{name}-cut-{int(share * 100)}", data[: int(len(data) * share)]
    yield f"{name}-no-eoi", data[:-2]
    yield f"{name}-junk-after-end", data + b"junk" * 8
    scan = [offset for marker, offset in segments(data) if marker == 0xDA]
    if scan:
        start = scan[0] + int.from_bytes(data[scan[0] : scan[0] + 2], "big")
        garbage = bytes(rnd.randrange(256) for _ in range(len(data) - 2 - start))
        yield f"{name}-garbage-data", data[:start] + garbage + data[-2:]
        middle = (start + len(data)) // 2
        yield f"{name}-bogus-marker", data[:middle] + b"\xff\xc8\x00\x04" + data[middle:]
    for marker, offset in segments(data):
        flipped = bytearray(data)
        flipped[offset + 3] ^= 0x5A
        yield f"{name}-flip-{marker:02x}", bytes(flipped)
        flipped = bytearray(data)
        flipped[offset] ^= 0xFF  # the segment's length
        yield f"{name}-length-{marker:02x}", bytes(flipped)


def verdict(data):
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as err:  # Pillow's refusal, whatever its class
        return dict(decodes=False, error=f"{type(err).__name__}: {err}")
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return dict(
        decodes=True,
        mode=image.mode,
        size=list(image.size),
        sha256=hashlib.sha256(image.tobytes()).hexdigest(),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "tests/fixtures/jpeg")
    parser.add_argument("--hashes-of", type=pathlib.Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hashes_of:  # the second process, with SIMD off: pixel hashes by file
        hashes = {f.name: verdict(f.read_bytes()).get("sha256") for f in args.hashes_of.glob("*.jpg")}
        print(json.dumps(hashes))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    verdicts = {}
    for name, data in base_images().items():
        for case, bytes_ in damaged(name, data):
            file = f"{case}.jpg"
            (args.out / file).write_bytes(bytes_)
            verdicts[file] = verdict(bytes_)
    c_build = subprocess.run(
        [sys.executable, __file__, "--hashes-of", str(args.out)],
        env=dict(os.environ, JSIMD_FORCENONE="1"),
        check=True,
        capture_output=True,
        text=True,
    )
    for file, sha256 in json.loads(c_build.stdout).items():
        if verdicts[file]["decodes"]:
            verdicts[file]["sha256_c"] = sha256
    (args.out / "verdicts.json").write_text(json.dumps(verdicts, indent=1, sort_keys=True))
    refused = sum(not v["decodes"] for v in verdicts.values())
    print(f"{len(verdicts)} files, {refused} refused by Pillow")


if __name__ == "__main__":
    main()
