"""Section 4, the backward pass: conv_backward and pool_backward against finite differences.

For a layer y = f(x) and a fixed random G, the cost J = sum(y * G) has dJ/dy = G, so the
layer's backward pass given dy = G must return dJ/dx. Each coordinate is checked against the
central difference (J(x + eps) - J(x - eps)) / (2 eps). Also ReLU, sigmoid, LRN, softmax
cross-entropy, the chain conv -> ReLU -> max pool, the max-pool mask on tied maxima and the
tutorial's pad = 0 slip. Saves 04_backward_pass.png (where the gradients go). Exits with 1 if
an error exceeds the tolerance.

    python examples/tutorial/04_backward_pass.py
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict, List, Tuple

import numpy as np

import convnet as cn
from _common import add_image_arguments, add_out_argument, grey, load_image, matrix, out_dir, signed_u8

HORIZONTAL = np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], dtype=np.float32)


def numeric_gradient(J: Callable[[Dict[str, np.ndarray]], float], inputs: Dict[str, np.ndarray], name: str, eps: float) -> np.ndarray:
    """dJ/d inputs[name] by central differences, one coordinate at a time. The inputs are
    float32 (what convnet computes in); the step actually taken, after rounding x +- eps to
    float32, is the one divided by."""
    x = inputs[name]
    grad = np.zeros(x.shape, dtype=np.float64)
    for i in np.ndindex(x.shape):
        original = x[i]
        x[i] = original + np.float32(eps)
        plus, step_plus = J(inputs), float(x[i])
        x[i] = original - np.float32(eps)
        minus, step_minus = J(inputs), float(x[i])
        x[i] = original
        grad[i] = (plus - minus) / (step_plus - step_minus)
    return grad


def errors(analytic: np.ndarray, numeric: np.ndarray) -> Tuple[float, float]:
    """(the worst coordinate's |a - n| / max(|a|, |n|, 1), the whole gradient's
    ||a - n|| / (||a|| + ||n||)); the first is what the tolerance applies to."""
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    worst = float(np.max(np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), 1.0)))
    norm = float(np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), 1e-30))
    return worst, norm


class Report:
    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.failures: List[str] = []
        print(f"{'check':<42} {'gradient':<8} {'shape':<15} {'max error':>10} {'norm error':>11}")

    def check(self, what: str, name: str, analytic: np.ndarray, numeric: np.ndarray) -> None:
        worst, norm = errors(analytic, numeric)
        bad = worst > self.tolerance or not np.all(np.isfinite(analytic))
        if bad:
            self.failures.append(f"{what} {name}")
        print(f"{what:<42} {name:<8} {str(tuple(analytic.shape)):<15} {worst:>10.1e} {norm:>11.1e}{'  FAILED' if bad else ''}")


def f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def distinct(rng: np.random.Generator, shape: Tuple[int, ...], spacing: float = 0.05) -> np.ndarray:
    """Values at least `spacing` apart, shuffled: no pooling window has a tie, and a step of
    eps < spacing / 2 changes no window's maximum."""
    values = (np.arange(int(np.prod(shape))) - np.prod(shape) / 2) * spacing
    return rng.permutation(values).reshape(shape).astype(np.float32)


def check_conv(report: Report, rng: np.random.Generator, eps: float) -> None:
    for pad, stride, note in [(0, 1, "pad 0, stride 1"), (1, 2, "pad 1, stride 2"), (2, 1, "pad 2, stride 1")]:
        f = 5 if pad == 2 else 3
        inputs = {"A_prev": f32(rng, 2, 5, 6, 3), "W": f32(rng, f, f, 3, 4), "b": f32(rng, 1, 1, 1, 4)}
        hp = {"pad": pad, "stride": stride}
        Z, cache = cn.conv_forward(inputs["A_prev"], inputs["W"], inputs["b"], hp)
        G = f32(rng, *Z.shape)

        def J(x: Dict[str, np.ndarray]) -> float:
            return float(np.sum(cn.conv_forward(x["A_prev"], x["W"], x["b"], hp)[0].astype(np.float64) * G))

        dA_prev, dW, db = cn.conv_backward(G, cache)
        for name, analytic in [("dA_prev", dA_prev), ("dW", dW), ("db", db)]:
            report.check(f"conv_backward, {f}x{f}, {note}", name, analytic, numeric_gradient(J, inputs, name[1:], eps))


def check_pool(report: Report, rng: np.random.Generator, eps: float) -> None:
    for mode in ["max", "average"]:
        for f, stride in [(2, 2), (3, 1), (3, 2)]:
            hp = {"f": f, "stride": stride}
            inputs = {"A_prev": distinct(rng, (2, 6, 7, 3))}
            A, cache = cn.pool_forward(inputs["A_prev"], hp, mode=mode)
            G = f32(rng, *A.shape)

            def J(x: Dict[str, np.ndarray]) -> float:
                return float(np.sum(cn.pool_forward(x["A_prev"], hp, mode=mode)[0].astype(np.float64) * G))

            analytic = cn.pool_backward(G, cache, mode=mode)
            report.check(f"pool_backward, {mode}, f {f}, s {stride}", "dA_prev", analytic, numeric_gradient(J, inputs, "A_prev", 1e-3 if mode == "max" else eps))


def check_elementwise(report: Report, rng: np.random.Generator, eps: float) -> None:
    Z = f32(rng, 2, 4, 4, 3)
    Z[np.abs(Z) < 0.05] = 0.5  # keep ReLU's kink farther than eps from every value
    G = f32(rng, *Z.shape)
    for name, forward, backward in [("relu", cn.relu, cn.relu_backward), ("sigmoid", cn.sigmoid, cn.sigmoid_backward)]:
        inputs = {"Z": Z.copy()}

        def J(x: Dict[str, np.ndarray], forward=forward) -> float:
            return float(np.sum(forward(x["Z"])[0].astype(np.float64) * G))

        _, cache = forward(Z)
        report.check(f"{name}_backward", "dZ", backward(G, cache), numeric_gradient(J, inputs, "Z", eps))

    # LRN with the tutorial network's parameters, and with stronger ones that bend it more.
    for label, params in [("tutorial's", dict(depth_radius=4, bias=1.0, alpha=0.001 / 9, beta=0.75)), ("strong", dict(depth_radius=2, bias=1.0, alpha=0.5, beta=0.75))]:
        inputs = {"A": f32(rng, 2, 3, 3, 10)}
        B, cache = cn.lrn(inputs["A"], **params)
        G = f32(rng, *B.shape)

        def J(x: Dict[str, np.ndarray], params=params, G=G) -> float:
            return float(np.sum(cn.lrn(x["A"], **params)[0].astype(np.float64) * G))

        report.check(f"lrn_backward, {label} parameters", "dA", cn.lrn_backward(G, cache), numeric_gradient(J, inputs, "A", eps))

    inputs = {"logits": f32(rng, 8, 10) * 3}
    labels = rng.integers(0, 10, 8)
    loss, cache = cn.softmax_cross_entropy(inputs["logits"], labels)

    def J_loss(x: Dict[str, np.ndarray]) -> float:
        return cn.softmax_cross_entropy(x["logits"], labels)[0]

    report.check("softmax_cross_entropy_backward, J = loss", "dlogits", cn.softmax_cross_entropy_backward(cache), numeric_gradient(J_loss, inputs, "logits", eps))


def check_chain(report: Report, rng: np.random.Generator) -> None:
    """Backpropagation: conv -> ReLU -> max pool, each backward pass feeding the one before."""
    conv_hp, pool_hp = {"pad": 1, "stride": 1}, {"f": 2, "stride": 2}

    def forward(x: Dict[str, np.ndarray]):
        Z, conv_cache = cn.conv_forward(x["A_prev"], x["W"], x["b"], conv_hp)
        A, relu_cache = cn.relu(Z)
        P, pool_cache = cn.pool_forward(A, pool_hp, mode="max")
        return Z, P, (conv_cache, relu_cache, pool_cache)

    def margins(Z: np.ndarray) -> Tuple[float, float]:
        """(smallest |Z|, smallest gap between the two largest values of a pooling window
        whose maximum is positive): a step must move no value across ReLU's kink, nor change
        a window's winner, or the function is not smooth where it is differentiated."""
        m, h, w, c = Z.shape
        windows = np.maximum(Z, 0).reshape(m, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(-1, 4)
        top2 = np.sort(windows, axis=1)[:, -2:]
        gaps = (top2[:, 1] - top2[:, 0])[top2[:, 1] > 0]
        return float(np.abs(Z).min()), float(gaps.min()) if gaps.size else np.inf

    for draw in range(1, 1001):  # random inputs until no step of eps can cross a kink
        inputs = {"A_prev": f32(rng, 2, 6, 6, 2), "W": f32(rng, 3, 3, 2, 3) / 2, "b": f32(rng, 1, 1, 1, 3)}
        Z, P, (conv_cache, relu_cache, pool_cache) = forward(inputs)
        if min(margins(Z)) > 0.02:
            break
    G = f32(rng, *P.shape)
    dA = cn.pool_backward(G, pool_cache, mode="max")
    dZ = cn.relu_backward(dA, relu_cache)
    dA_prev, dW, db = cn.conv_backward(dZ, conv_cache)

    def J(x: Dict[str, np.ndarray]) -> float:
        return float(np.sum(forward(x)[1].astype(np.float64) * G))

    eps = 1e-3
    for name, analytic in [("dA_prev", dA_prev), ("dW", dW), ("db", db)]:
        report.check("conv -> relu -> max pool, chained", name, analytic, numeric_gradient(J, inputs, name[1:], eps))
    kink, gap = margins(Z)
    print(f"  (the chain's inputs, draw {draw}: smallest |Z| {kink:.3f}, smallest gap between a window's two largest values {gap:.3f};")
    print(f"  a step of {eps:g} moves Z far less, so it crosses no kink of ReLU or of the max)")


def ties() -> None:
    print("\nTied maxima: the window [[1, 1], [0, 0]] (a ReLU's zeros tie often)")
    window = np.array([[1.0, 1.0], [0.0, 0.0]])
    tutorial_mask = window == np.max(window)
    mask = cn.create_mask_from_window(window)
    dA_prev = cn.pool_backward(np.ones((1, 1, 1, 1)), cn.pool_forward(window.reshape(1, 2, 2, 1), {"f": 2, "stride": 2})[1])
    print(f"the tutorial's mask x == max(x): {tutorial_mask.astype(int).tolist()}, total gradient {tutorial_mask.sum()}")
    print(f"create_mask_from_window:         {mask.astype(int).tolist()}, total gradient {mask.sum()}; pool_backward: "
          f"{dA_prev[0, :, :, 0].astype(int).tolist()}")
    up = cn.pool_forward((window + 1e-3).reshape(1, 2, 2, 1), {"f": 2, "stride": 2})[0][0, 0, 0, 0] - 1.0
    print(f"raising all four values by 1e-3 raises the max by {up:.4g}: the gradient must total 1, not 2")
    print(f"average pooling spreads dA evenly instead: distribute_value(1, (2, 2)) = {cn.distribute_value(1.0, (2, 2)).tolist()}")


def pad_zero() -> None:
    print("\nThe tutorial's conv_backward removes the padding with da_prev_pad[pad:-pad, pad:-pad, :]; with pad = 0:")
    da_prev_pad = np.zeros((5, 5, 3))
    print(f"da_prev_pad[0:-0, 0:-0, :].shape = {da_prev_pad[0:-0, 0:-0, :].shape} (empty: -0 is 0); conv_backward "
          "checked with pad 0 above")


def picture(args: argparse.Namespace) -> None:
    image, what, where = load_image(args)
    g = grey(image)
    h, w = g.shape
    x = g.reshape(1, h, w, 1)
    _, cache = cn.pool_forward(x, {"f": 2, "stride": 2}, mode="max")
    winners = cn.pool_backward(np.ones((1, h // 2, w // 2, 1)), cache, mode="max")[0, :, :, 0]
    _, cache = cn.pool_forward(x, {"f": 2, "stride": 2}, mode="average")
    spread = cn.pool_backward(np.ones((1, h // 2, w // 2, 1)), cache, mode="average")[0, :, :, 0]
    Z, cache = cn.conv_forward(x, HORIZONTAL.reshape(3, 3, 1, 1), np.zeros((1, 1, 1, 1)), {"stride": 1, "pad": 1})
    dZ = np.zeros(Z.shape, dtype=np.float32)
    points = [(h // 4, w // 4), (h // 2, w // 2), (3 * h // 4, 3 * w // 4)]
    for r, c in points:
        dZ[0, r, c, 0] = 1.0
    dA_prev, dW, _ = cn.conv_backward(dZ, cache)
    print(f"\nWhere the gradients go, on {what} ({w}x{h}, from {where}):")
    print(f"max pool 2x2/2 with dA = 1: {int(winners.sum())} of {h * w} pixels receive it (one per window), each 1")
    blocks = g[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(-1, 4)
    tied = (blocks == blocks.max(axis=1, keepdims=True)).sum(axis=1)
    n_tied = int(np.sum(tied > 1))
    print(f"  {n_tied} of {len(blocks)} windows {'has' if n_tied == 1 else 'have'} tied maxima (flat regions): the tutorial's mask "
          f"would hand out {int(tied.sum())} gradients instead of {len(blocks)}")
    print(f"average pool 2x2/2 with dA = 1: every pixel receives {spread.max():g}")
    print(f"conv, horizontal kernel, dZ = 1 at {len(points)} positions: dA_prev is the kernel stamped at each one:")
    r, c = points[1]
    print(matrix(dA_prev[0, r - 1 : r + 2, c - 1 : c + 2, 0]))
    print("and dW[:, :, 0, 0] is the sum of the three input patches under those positions (grey levels):")
    print(matrix(dW[:, :, 0, 0], "{:.0f}"))
    path = out_dir(args) / "04_backward_pass.png"
    cn.save_grid(
        path,
        [
            (g.astype(np.uint8), f"input {w}x{h}"),
            ((winners * 255).astype(np.uint8), "max pool: dA_prev"),
            (np.where(winners > 0, g, 0).astype(np.uint8), "max pool: the winners"),
            (np.full(spread.shape, np.uint8(round(spread.max() * 255))), "average pool: dA_prev"),
            (signed_u8(dA_prev[0, :, :, 0]), "conv: dA_prev"),
        ],
        title="The backward pass: where the gradient goes",
        scale=max(1, 192 // max(h, w)),
        notes=[
            what,
            "pools 2x2/2 with dA = 1 everywhere: max sends it to each window's winner (white), average 1/4 to every pixel",
            "in a flat window (tied maxima) the first maximum wins: its top-left pixel",
            "conv with the horizontal kernel, dZ = 1 at three positions: dA_prev is the kernel at each (white 1, black -1)",
        ],
    )
    print(f"saved {path}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Section 4 of the tutorial: the backward pass. Checks conv_backward, pool_backward (max and "
        "average), relu, sigmoid, LRN, softmax cross-entropy and their chain against central finite differences, "
        "prints the worst error of each gradient and exits with 1 if one exceeds --tolerance; shows the tutorial's "
        "tied-maximum and pad = 0 slips; saves 04_backward_pass.png (where the gradients go, on a real image).",
    )
    parser.add_argument("--tolerance", type=float, default=2e-3, help="largest error allowed, |a - n| / max(|a|, |n|, 1) (default 2e-3)")
    parser.add_argument("--eps", type=float, default=1e-2, help="finite-difference step (default 1e-2; 1e-3 for max pooling and the chain)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random inputs (default 1)")
    add_image_arguments(parser)
    add_out_argument(parser)
    args = parser.parse_args()
    if not 0 < args.eps <= 0.02:
        # Larger steps can cross ReLU's kink (inputs are kept at least 0.05 from it) or change a
        # pooling window's maximum; 0 divides by zero.
        parser.error(f"--eps must be in (0, 0.02], got {args.eps:g}")
    load_image(args)  # first, so that missing data stops the script at once
    rng = np.random.default_rng(args.seed)
    print(f"J = sum(layer output * G), G random; numeric = central differences, eps {args.eps:g} (1e-3 for max pooling and the chain); float32 throughout")
    print(f"max error = max over coordinates of |analytic - numeric| / max(|analytic|, |numeric|, 1), tolerance {args.tolerance:g};")
    print("norm error = ||analytic - numeric|| / (||analytic|| + ||numeric||)\n")
    report = Report(args.tolerance)
    check_conv(report, rng, args.eps)
    check_pool(report, rng, args.eps)
    check_elementwise(report, rng, args.eps)
    check_chain(report, rng)
    ties()
    pad_zero()
    picture(args)
    if report.failures:
        print(f"error: {len(report.failures)} gradient(s) over the tolerance {args.tolerance:g}: {', '.join(report.failures)}", file=sys.stderr)
        return 1
    print(f"\nall gradients within {args.tolerance:g} of finite differences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
