"""Section 1, convolution: a kernel is an edge detector.

The tutorial's horizontal edge kernel on its 3x3 patch (377; the tutorial's text says 328), the
vertical kernel on a step edge, then both kernels as two filters of one convolution layer on a
real image. Saves 01_edges.png: the image, its grey levels, and the two edge maps.

    python examples/tutorial/01_edge_detection.py
    python examples/tutorial/01_edge_detection.py --image photo.jpg --out /tmp/edges
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import convnet as cn
from _common import add_image_arguments, add_out_argument, as_tile, grey, load_image, matrix, out_dir, signed_u8

HORIZONTAL = np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], dtype=np.float32)  # light above dark > 0
VERTICAL = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float32)  # light left of dark > 0
PATCH = np.array([[200, 199, 189], [203, 23, 34], [177, 12, 22]], dtype=np.float32)


def the_patch() -> bool:
    print("1. One filter on one patch: sum(patch * kernel) + b")
    print("patch (grey levels):")
    print(matrix(PATCH))
    print("horizontal edge kernel:")
    print(matrix(HORIZONTAL))
    step = cn.conv_single_step(PATCH[:, :, np.newaxis], HORIZONTAL[:, :, np.newaxis], 0.0)
    print(f"conv_single_step(patch, kernel, b=0) = {step:g}")
    Z, _ = cn.conv_forward(PATCH.reshape(1, 3, 3, 1), HORIZONTAL.reshape(3, 3, 1, 1), np.zeros((1, 1, 1, 1)), {"stride": 1, "pad": 0})
    print(f"conv_forward on the 3x3 image: Z shape {Z.shape}, Z = {Z[0, 0, 0, 0]:g}")
    top, bottom = PATCH[0].sum(), PATCH[2].sum()
    print(f"by hand: top row {' + '.join(f'{v:g}' for v in PATCH[0])} = {top:g}, bottom row "
          f"{' + '.join(f'{v:g}' for v in PATCH[2])} = {bottom:g}, {top:g} - {bottom:g} = {top - bottom:g}")
    print("(the tutorial's text says 328: an arithmetic slip; the light top row over the dark bottom row gives +377)")
    return step == 377.0 and float(Z[0, 0, 0, 0]) == 377.0


def the_step_edge() -> None:
    print("\n2. A vertical edge: a 6x6 image, light (10) on the left, dark (0) on the right")
    image = np.zeros((6, 6), dtype=np.float32)
    image[:, :3] = 10
    print(matrix(image))
    W = np.stack([VERTICAL, HORIZONTAL], axis=-1)[:, :, np.newaxis, :]  # (3, 3, 1, 2): two filters
    Z, _ = cn.conv_forward(image.reshape(1, 6, 6, 1), W, np.zeros((1, 1, 1, 2)), {"stride": 1, "pad": 0})
    print(f"two filters (vertical, horizontal), W {W.shape} -> Z {Z.shape}: 6 - 3 + 1 = 4 a side, one channel per filter")
    print("vertical kernel: the edge lights up in the middle columns")
    print(matrix(Z[0, :, :, 0]))
    print("horizontal kernel: nothing, there is no horizontal edge")
    print(matrix(Z[0, :, :, 1]))


def the_real_image(args: argparse.Namespace, image: np.ndarray, what: str, where: str) -> None:
    print(f"\n3. Both kernels on a real image: {what}, from {where}")
    g = grey(image)
    h, w = g.shape
    W = np.stack([HORIZONTAL, VERTICAL], axis=-1)[:, :, np.newaxis, :]  # (3, 3, 1, 2)
    Z, _ = cn.conv_forward(g.reshape(1, h, w, 1), W, np.zeros((1, 1, 1, 2)), {"stride": 1, "pad": 0})
    print(f"grey image {h}x{w}x1, W {W.shape}, pad 0, stride 1 -> Z {Z.shape}")
    for c, name, sign in [(0, "horizontal", ("light above dark", "dark above light")), (1, "vertical", ("light left of dark", "dark left of light"))]:
        z = Z[0, :, :, c]
        hi = tuple(int(i) for i in np.unravel_index(int(np.argmax(z)), z.shape))
        lo = tuple(int(i) for i in np.unravel_index(int(np.argmin(z)), z.shape))
        print(f"{name:>10}: from {z.min():.1f} to {z.max():.1f}; +{z.max():.1f} ({sign[0]}) at (row, column) {hi}, "
              f"{z.min():.1f} ({sign[1]}) at {lo}")
        strong = np.mean(np.abs(z) > 0.25 * float(np.abs(z).max()))
        print(f"{'':>10}  {strong:.0%} of the positions respond with more than a quarter of the peak: the {name} edges")

    if image.shape[2] == 3:
        # A filter spans every input channel: the same kernel on R, G and B, summed.
        W3 = np.repeat(W, 3, axis=2) / 3.0  # (3, 3, 3, 2)
        Z3, _ = cn.conv_forward(image.reshape(1, h, w, 3), W3, np.zeros((1, 1, 1, 2)), {"stride": 1, "pad": 0})
        gap = np.abs(Z3 - cn.conv_forward(image.astype(np.float32).mean(axis=2).reshape(1, h, w, 1), W, np.zeros((1, 1, 1, 2)), {"stride": 1, "pad": 0})[0]).max()
        print(f"on the colour image each filter is 3x3x3, W {W3.shape}, and sums over the channels: Z {Z3.shape};")
        print(f"with kernel / 3 on each channel it is the kernel on the channels' mean (largest difference {gap:.2g})")

    magnitude = np.sqrt(Z[0, :, :, 0] ** 2 + Z[0, :, :, 1] ** 2)
    scale = max(1, 192 // max(h, w))
    path = out_dir(args) / "01_edges.png"
    cn.save_grid(
        path,
        [(as_tile(image), f"input {w}x{h}")]
        + ([(g.astype(np.uint8), "grey levels")] if image.shape[2] == 3 else [])
        + [
            (signed_u8(Z[0, :, :, 0]), f"horizontal {w - 2}x{h - 2}"),
            (signed_u8(Z[0, :, :, 1]), f"vertical {w - 2}x{h - 2}"),
            (magnitude, "edge strength"),
        ],
        title="Edge kernels on an image (conv_forward, pad 0, stride 1)",
        scale=scale,
        notes=[
            what,
            "horizontal [[1,1,1],[0,0,0],[-1,-1,-1]], vertical [[1,0,-1],[1,0,-1],[1,0,-1]]",
            "edge maps: grey = 0, white = light above (left of) dark, black = the reverse; strength = sqrt(h^2 + v^2)",
        ],
    )
    print(f"saved {path}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Section 1 of the tutorial: convolution with hand-made edge kernels. Prints the tutorial's 3x3 "
        "patch example (377), a step edge, and edge statistics of a real image; saves 01_edges.png.",
    )
    add_image_arguments(parser)
    add_out_argument(parser)
    args = parser.parse_args()
    image, what, where = load_image(args)  # first, so that missing data stops the script at once
    ok = the_patch()
    the_step_edge()
    the_real_image(args, image, what, where)
    if not ok:
        print("error: the patch did not give 377", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
