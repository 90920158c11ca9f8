"""Section 2, padding and stride: how big is a convolution's output?

zero_pad's shapes, the output size floor((n + 2p - f) / s) + 1 checked against conv_forward for
several (n, f, p, s), SAME against VALID, convnet's conv_forward against the tutorial's loops,
and the edge kernel on a real image under four paddings and strides. Saves
02_padding_and_stride.png. Exits with 1 if a size or a value disagrees.

    python examples/tutorial/02_padding_and_stride.py
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

import convnet as cn
from _common import add_image_arguments, add_out_argument, grey, load_image, matrix, out_dir, signed_u8

HORIZONTAL = np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], dtype=np.float32)

# (n, f, p, s, what it shows)
SIZES = [
    (6, 3, 0, 1, "VALID: the 6x6 example of section 1"),
    (6, 3, 1, 1, "SAME at stride 1: p = (f - 1) / 2"),
    (7, 3, 0, 2, "stride 2"),
    (6, 3, 0, 2, "stride 2 not fitting: floor drops the last column"),
    (5, 3, 1, 2, "padding and stride"),
    (4, 2, 2, 2, "padding as wide as the filter"),
    (28, 5, 0, 1, "a 5x5 filter on Fashion-MNIST, VALID"),
    (32, 5, 2, 1, "the CIFAR-10 network's 5x5 SAME convolution"),
    (227, 11, 0, 4, "AlexNet's first layer"),
]


def formula(n: int, f: int, p: int, s: int) -> int:
    return (n + 2 * p - f) // s + 1


def conv_forward_loops(A_prev: np.ndarray, W: np.ndarray, b: np.ndarray, hparameters: dict) -> np.ndarray:
    """The tutorial's conv_forward: four loops over examples, rows, columns and filters."""
    m, n_H_prev, n_W_prev, _ = A_prev.shape
    f, _, _, n_C = W.shape
    stride, pad = hparameters["stride"], hparameters["pad"]
    n_H = (n_H_prev + 2 * pad - f) // stride + 1
    n_W = (n_W_prev + 2 * pad - f) // stride + 1
    A_pad = np.pad(A_prev, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    Z = np.zeros((m, n_H, n_W, n_C))
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                a_slice = A_pad[i, h * stride : h * stride + f, w * stride : w * stride + f, :]
                for c in range(n_C):
                    Z[i, h, w, c] = np.sum(a_slice * W[:, :, :, c]) + b[0, 0, 0, c]
    return Z


def padding(ok: list) -> None:
    print("1. zero_pad: p zeros on every side of the height and the width")
    np.random.seed(1)
    x = np.random.randn(4, 3, 3, 2)
    x_pad = cn.zero_pad(x, 2)
    print(f"x.shape = {x.shape}, zero_pad(x, 2).shape = {x_pad.shape}: 3 + 2 x 2 = 7")
    print("x_pad[1, :, :, 0]:")
    print(matrix(x_pad[1, :, :, 0], "{:.2f}"))
    ok.append(x_pad.shape == (4, 7, 7, 2) and np.all(x_pad[:, :2] == 0) and np.allclose(x_pad[:, 2:5, 2:5], x))


def sizes(ok: list) -> None:
    print("\n2. Output size: n_out = floor((n + 2p - f) / s) + 1, against conv_forward's Z")
    print(f"{'n':>5} {'f':>3} {'p':>3} {'s':>3} {'formula':>8} {'Z':>5}")
    for n, f, p, s, what in SIZES:
        Z, _ = cn.conv_forward(np.zeros((1, n, n, 1)), np.zeros((f, f, 1, 1)), np.zeros((1, 1, 1, 1)), {"stride": s, "pad": p})
        expected = formula(n, f, p, s)
        same = Z.shape[1] == Z.shape[2] == expected
        ok.append(same)
        print(f"{n:>5} {f:>3} {p:>3} {s:>3} {expected:>8} {Z.shape[1]:>5}  {'ok' if same else 'DIFFERENT'}  {what}")


def same_and_valid() -> None:
    print("\n3. SAME and VALID")
    print("VALID (p = 0) keeps only the positions where the filter fits: 32 -> 28 with a 5x5 filter.")
    print("SAME keeps ceil(n / s): at stride 1 an odd filter needs p = (f - 1) / 2 on each side (5x5: p = 2, 32 -> 32).")
    for n, f, s in [(32, 3, 2), (32, 5, 1), (32, 4, 1), (16, 3, 2)]:
        out = math.ceil(n / s)
        total = max((out - 1) * s + f - n, 0)
        before, after = total // 2, total - total // 2
        sym = "" if before == after else f"; p = {before} gives {formula(n, f, before, s)}, p = {after} gives {formula(n, f, after, s)}"
        print(f"  n {n:>2}, f {f}, s {s}: SAME -> {out:>2}, {total} pixel(s) of padding in all: {before} before, {after} after{sym}")
    print("An even total pads symmetrically, as conv_forward's one pad does; an odd one puts the odd pixel after")
    print("(TensorFlow's rule, which convnet's configs follow: the CIFAR-10 network's 3x3/2 SAME max pool on 32x32).")


def loops(ok: list) -> None:
    print("\n4. convnet's conv_forward against the tutorial's loops")
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 7, 4)
    W = np.random.randn(3, 3, 4, 8)
    b = np.random.randn(1, 1, 1, 8)
    hparameters = {"pad": 1, "stride": 2}
    Z, cache = cn.conv_forward(A_prev, W, b, hparameters)
    reference = conv_forward_loops(A_prev, W, b, hparameters)
    gap = float(np.max(np.abs(Z - reference)) / np.max(np.abs(reference)))
    print(f"A_prev {A_prev.shape}, W {W.shape}, pad 1, stride 2 -> Z {Z.shape}; Z's mean = {Z.mean():.6f}")
    print(f"Z[0, 2, 1] = {np.array2string(Z[0, 2, 1], precision=4)}")
    print(f"largest difference from the loops, relative to the largest |Z|: {gap:.1e} (float32 against float64)")
    print(f"the cache holds (A_prev, W, b, hparameters) for conv_backward: {len(cache)} items")
    ok.append(gap < 1e-5)


def picture(args: argparse.Namespace) -> None:
    image, what, where = load_image(args)
    g = grey(image)
    h, w = g.shape
    print(f"\n5. The horizontal edge kernel on {what} ({w}x{h}, from {where}), four ways")
    tiles = [(g.astype(np.uint8), f"input {w}x{h}"), (cn.zero_pad(g.reshape(1, h, w, 1), 4)[0, :, :, 0].astype(np.uint8), f"zero_pad 4: {w + 8}x{h + 8}")]
    for p, s, name in [(0, 1, "VALID"), (1, 1, "SAME"), (1, 2, "stride 2"), (0, 3, "stride 3")]:
        Z, _ = cn.conv_forward(g.reshape(1, h, w, 1), HORIZONTAL.reshape(3, 3, 1, 1), np.zeros((1, 1, 1, 1)), {"stride": s, "pad": p})
        z = Z[0, :, :, 0]
        print(f"  {name:<9} p {p}, s {s}: floor(({h} + {2 * p} - 3) / {s}) + 1 = {formula(h, 3, p, s)} -> Z {z.shape[0]}x{z.shape[1]}")
        tiles.append((signed_u8(z), f"{name} (p {p}, s {s}): {z.shape[1]}x{z.shape[0]}"))
    z_same = cn.conv_forward(g.reshape(1, h, w, 1), HORIZONTAL.reshape(3, 3, 1, 1), np.zeros((1, 1, 1, 1)), {"stride": 1, "pad": 1})[0][0, :, :, 0]
    print(f"  with SAME the zeros outside are a black frame: the top row responds as dark above light (mean {z_same[0].mean():+.1f}),")
    print(f"  the bottom row as light above dark (mean {z_same[-1].mean():+.1f}); VALID has no such border")
    path = out_dir(args) / "02_padding_and_stride.png"
    cn.save_grid(
        path,
        tiles,
        title="Padding and stride: the horizontal edge kernel, out = floor((n + 2p - f) / s) + 1",
        scale=max(1, 160 // max(h, w)),
        notes=[f"{what}; all tiles at the same scale, so their sizes compare", "edge maps: grey = 0, white = light above dark, black = dark above light"],
    )
    print(f"saved {path}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Section 2 of the tutorial: zero padding and stride. Prints zero_pad's shapes, output sizes from "
        "the formula against conv_forward, SAME against VALID, and conv_forward against the tutorial's loops; "
        "saves 02_padding_and_stride.png (an image padded, and its edge map under four paddings and strides).",
    )
    add_image_arguments(parser)
    add_out_argument(parser)
    args = parser.parse_args()
    load_image(args)  # first, so that missing data stops the script at once
    ok: list = []
    padding(ok)
    sizes(ok)
    same_and_valid()
    loops(ok)
    picture(args)
    if not all(ok):
        print(f"error: {ok.count(False)} check(s) failed (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
