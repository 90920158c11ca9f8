"""Section 3, pooling: max and average pooling shrink the maps and keep what matters.

The tutorial-style 4x4 example by hand and with pool_forward, pool_forward against the
tutorial's loops, then pooling a real image and its edge map. Saves 03_pooling.png. Exits with
1 if a value disagrees.

    python examples/tutorial/03_pooling.py
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import convnet as cn
from _common import add_image_arguments, add_out_argument, as_tile, grey, load_image, matrix, out_dir

EXAMPLE = np.array([[1, 3, 2, 1], [2, 9, 1, 1], [1, 3, 2, 3], [5, 6, 1, 2]], dtype=np.float32)
HORIZONTAL = np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], dtype=np.float32)


def pool_forward_loops(A_prev: np.ndarray, hparameters: dict, mode: str) -> np.ndarray:
    """The tutorial's pool_forward: loops over examples, rows, columns and channels."""
    m, n_H_prev, n_W_prev, n_C = A_prev.shape
    f, stride = hparameters["f"], hparameters["stride"]
    n_H, n_W = (n_H_prev - f) // stride + 1, (n_W_prev - f) // stride + 1
    A = np.zeros((m, n_H, n_W, n_C))
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    window = A_prev[i, h * stride : h * stride + f, w * stride : w * stride + f, c]
                    A[i, h, w, c] = np.max(window) if mode == "max" else np.mean(window)
    return A


def enlarge(a: np.ndarray, f: int) -> np.ndarray:
    """Each value of a pooled map as an f x f block, to draw it at its input's size."""
    return np.repeat(np.repeat(a, f, axis=0), f, axis=1)


def small_example(ok: list) -> None:
    print("1. A 4x4 input, windows of 2x2 at stride 2 (f = 2, s = 2): four windows, one output each")
    print(matrix(EXAMPLE))
    x = EXAMPLE.reshape(1, 4, 4, 1)
    for mode in ["max", "average"]:
        A, _ = cn.pool_forward(x, {"f": 2, "stride": 2}, mode=mode)
        print(f"{mode} pooling -> {A.shape[1]}x{A.shape[2]}:")
        print(matrix(A[0, :, :, 0]))
        ok.append(np.allclose(A, pool_forward_loops(x, {"f": 2, "stride": 2}, mode)))
    print("by hand: the top-left window [1, 3; 2, 9] has max 9 and mean (1 + 3 + 2 + 9) / 4 = 3.75")
    A, _ = cn.pool_forward(x, {"f": 3, "stride": 1}, mode="max")
    print("f = 3, s = 1: overlapping windows, floor((4 - 3) / 1) + 1 = 2 a side; the 9 is in all four:")
    print(matrix(A[0, :, :, 0]))
    ok.append(np.all(A == 9))


def against_loops(ok: list) -> None:
    print("\n2. pool_forward against the tutorial's loops")
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 5, 3)
    hparameters = {"stride": 1, "f": 3}
    for mode in ["max", "average"]:
        A, cache = cn.pool_forward(A_prev, hparameters, mode=mode)
        gap = float(np.max(np.abs(A - pool_forward_loops(A_prev, hparameters, mode))))
        print(f"mode = {mode:<7}: A_prev {A_prev.shape}, f 3, s 1 -> A {A.shape}; A[1, 1, 1] = "
              f"{np.array2string(A[1, 1, 1], precision=5)}; largest difference from the loops {gap:.1e}")
        ok.append(gap < 1e-5)
    print("no parameters to learn, and every channel is pooled on its own: n_C stays 3")


def real_image(args: argparse.Namespace, image: np.ndarray, what: str, where: str) -> None:
    h, w, c = image.shape
    print(f"\n3. Pooling {what} ({w}x{h}x{c}, from {where})")
    x = image.astype(np.float32).reshape(1, h, w, c)
    tiles = [(as_tile(image), f"input {w}x{h}")]
    for f in [2, 4]:
        for mode in ["max", "average"]:
            A, _ = cn.pool_forward(x, {"f": f, "stride": f}, mode=mode)
            print(f"  {mode:<7} f {f}, s {f}: {h}x{w} -> {A.shape[1]}x{A.shape[2]} ({A.shape[1] * A.shape[2] / (h * w):.1%} of the values), "
                  f"mean value {A.mean():.1f} (input {x.mean():.1f})")
            tiles.append((as_tile(enlarge(np.clip(np.round(A[0]), 0, 255).astype(np.uint8), f)), f"{mode} {f}x{f}/{f}: {A.shape[2]}x{A.shape[1]}"))
    print("  max pooling keeps each window's brightest value (the picture gets lighter), average pooling its mean (blurrier)")

    # What a network pools: an edge map after ReLU. Max pooling keeps the strongest responses.
    g = grey(image)
    Z, _ = cn.conv_forward(g.reshape(1, h, w, 1), HORIZONTAL.reshape(3, 3, 1, 1), np.zeros((1, 1, 1, 1)), {"stride": 1, "pad": 0})
    R, _ = cn.relu(Z)
    Amax, _ = cn.pool_forward(R, {"f": 2, "stride": 2}, mode="max")
    Aavg, _ = cn.pool_forward(R, {"f": 2, "stride": 2}, mode="average")
    print(f"  horizontal edges (VALID) then ReLU: {R.shape[1]}x{R.shape[2]}, strongest {R.max():.1f}; 2x2 max pool: "
          f"{Amax.shape[1]}x{Amax.shape[2]}, strongest {Amax.max():.1f} (kept); 2x2 average pool: strongest {Aavg.max():.1f} (diluted)")
    peak = float(R.max()) or 1.0

    def to_u8(a: np.ndarray) -> np.ndarray:  # one grey scale for the three maps: black 0, white the peak
        return np.clip(np.round(a / peak * 255), 0, 255).astype(np.uint8)

    tiles += [
        (to_u8(R[0, :, :, 0]), f"edges, ReLU: {R.shape[2]}x{R.shape[1]}"),
        (to_u8(enlarge(Amax[0, :, :, 0], 2)), f"then max 2x2/2: {Amax.shape[2]}x{Amax.shape[1]}"),
        (to_u8(enlarge(Aavg[0, :, :, 0], 2)), f"then average 2x2/2: {Aavg.shape[2]}x{Aavg.shape[1]}"),
    ]
    path = out_dir(args) / "03_pooling.png"
    cn.save_grid(
        path,
        tiles,
        title="Max and average pooling (pool_forward, window f, stride s = f)",
        scale=max(1, 160 // max(h, w)),
        notes=[
            what,
            "pooled maps are drawn at their input's size, each value as an f x f block",
            "the last three share one grey scale: black 0, white the strongest edge",
        ],
    )
    print(f"saved {path}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Section 3 of the tutorial: max and average pooling. Prints a 4x4 example, pool_forward against "
        "the tutorial's loops and what pooling does to a real image and its edge map; saves 03_pooling.png.",
    )
    add_image_arguments(parser)
    add_out_argument(parser)
    args = parser.parse_args()
    image, what, where = load_image(args)  # first, so that missing data stops the script at once
    ok: list = []
    small_example(ok)
    against_loops(ok)
    real_image(args, image, what, where)
    if not all(ok):
        print(f"error: {ok.count(False)} check(s) failed (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
