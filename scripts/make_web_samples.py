#!/usr/bin/env python3
"""Writes the web demo's sample images (web/samples/): the first test image of each of eight
classes of Fashion-MNIST and of CIFAR-10, as PNG, with web/samples/index.json naming them.

Standard library only (the PNGs are written by hand: zlib + CRC). Usage:
    python3 scripts/make_web_samples.py [FASHION_MNIST_DIR] [CIFAR10_BIN_DIR]
defaults: /usr/share/datasets/fashion-mnist and ../shared/data/cifar-10-batches-bin.
"""
import gzip
import json
import struct
import sys
import zlib
from pathlib import Path

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
PER_SET = 8


def png(width, height, channels, pixels):
    """A PNG file (8-bit grey or RGB) of row-major pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    stride = width * channels
    raw = b"".join(b"\x00" + bytes(pixels[y * stride:(y + 1) * stride]) for y in range(height))
    colour = 0 if channels == 1 else 2
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def first_of_each_class(examples):
    """(label, pixels) of the first example of each class, up to PER_SET, in test-set order."""
    seen, picked = set(), []
    for label, pixels in examples:
        if label not in seen:
            seen.add(label)
            picked.append((label, pixels))
        if len(picked) == PER_SET:
            break
    return picked


def fashion_mnist(folder):
    images = gzip.open(folder / "t10k-images-idx3-ubyte.gz").read()[16:]
    labels = gzip.open(folder / "t10k-labels-idx1-ubyte.gz").read()[8:]
    for i, label in enumerate(labels):
        yield label, images[i * 784:(i + 1) * 784]


def cifar10(folder):
    names = (folder / "batches.meta.txt").read_text().split()
    record = (folder / "test_batch.bin").read_bytes()
    for i in range(len(record) // 3073):
        r = record[i * 3073:(i + 1) * 3073]
        planes = r[1:]
        # CHW planes to HWC pixels.
        hwc = bytes(planes[c * 1024 + p] for p in range(1024) for c in range(3))
        yield names[r[0]], hwc


def main():
    fm_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
    c10_dir = Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/data/cifar-10-batches-bin")
    out = Path(__file__).resolve().parent.parent / "web" / "samples"
    index = {}
    sets = [
        ("fashion-mnist", 28, 1, ((FASHION[l], p) for l, p in fashion_mnist(fm_dir))),
        ("cifar10", 32, 3, cifar10(c10_dir)),
    ]
    for key, side, channels, examples in sets:
        (out / key).mkdir(parents=True, exist_ok=True)
        index[key] = []
        for n, (label, pixels) in enumerate(first_of_each_class(examples)):
            (out / key / f"{n}.png").write_bytes(png(side, side, channels, pixels))
            index[key].append({"file": f"{n}.png", "label": label})
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    print(f"wrote {sum(len(v) for v in index.values())} images and index.json to {out}")


if __name__ == "__main__":
    main()
