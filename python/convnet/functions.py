"""The tutorial's functions, with its names, signatures, shapes and caches, computed by convnet.

Arrays are NHWC, as in the tutorial: activations ``(m, n_H, n_W, n_C)``, convolution weights
``(f, f, n_C_prev, n_C)``, biases ``(1, 1, 1, n_C)``. Inputs may be float32 or float64 (or
integers), of any memory layout; everything is computed in float32 and returned as float32
arrays. The heavy functions (convolution, pooling, LRN, activations, softmax cross-entropy) run
convnet's own kernels, the ones a training step runs, with the GIL released. A wrong shape or
hyperparameter raises ``ValueError`` naming the argument and the shapes involved.

Where the tutorial's own code is wrong, these functions do the right thing and their docstrings
say so (``conv_backward`` with ``pad = 0``, the max-pool mask on tied maxima).
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, Tuple

import numpy as np

from . import _convnet

__all__ = [
    "zero_pad",
    "conv_single_step",
    "conv_forward",
    "conv_backward",
    "pool_forward",
    "pool_backward",
    "create_mask_from_window",
    "distribute_value",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "lrn",
    "lrn_backward",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
]


def _f32(x: Any, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 array: the array itself when it already is one (no copy)."""
    array = np.asarray(x)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got an array of dtype {array.dtype}")
    # np.asarray with order="C", not np.ascontiguousarray, which turns a 0-d array into shape (1,).
    contiguous = np.asarray(array, dtype=np.float32, order="C")
    # A view at an odd byte offset is contiguous but not aligned; the engine reads whole f32s.
    return contiguous if contiguous.flags.aligned else contiguous.copy()


#: The most values an array made here may hold (8 GiB of float32): a larger shape (a pad of
#: millions of pixels, say) is refused before anything is allocated.
MAX_VALUES = 2**31


def _check_size(shape: Tuple[int, ...], what: str) -> None:
    if int(np.prod(shape, dtype=np.float64)) > MAX_VALUES:
        raise ValueError(f"{what} would have shape {shape}, over {MAX_VALUES} values")


def _rank(x: np.ndarray, name: str, rank: int, layout: str) -> None:
    if x.ndim != rank:
        raise ValueError(f"{name} must have {rank} dimensions {layout}, got shape {x.shape}")


def _hparameter(hparameters: Dict[str, Any], key: str, minimum: int) -> int:
    if not isinstance(hparameters, dict):
        raise ValueError(f"hparameters must be a dict, got {type(hparameters).__name__}")
    if key not in hparameters:
        raise ValueError(f'hparameters has no "{key}" (it holds {sorted(map(repr, hparameters))})')
    value = hparameters[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f'hparameters["{key}"] must be an integer, got {value!r}')
    if value < minimum:
        raise ValueError(f'hparameters["{key}"] must be at least {minimum}, got {value}')
    if value > MAX_VALUES:
        raise ValueError(f'hparameters["{key}"] is too large: {value}')
    return int(value)


def _out_size(n_prev: int, f: int, pad: int, stride: int, axis: str, what: str) -> int:
    """The tutorial's ``floor((n_prev + 2 pad - f) / stride) + 1``, refused below 1; ``what``
    names the window and the arrays' shapes."""
    if n_prev + 2 * pad < f:
        raise ValueError(
            f"the {what} is {f} wide and does not fit in the {axis} {n_prev} + 2 x pad {pad} = {n_prev + 2 * pad}"
        )
    return (n_prev + 2 * pad - f) // stride + 1


def zero_pad(X: Any, pad: int) -> np.ndarray:
    """Pads the height and width of every image with ``pad`` zeros on each side.

    X: (m, n_H, n_W, n_C) -> (m, n_H + 2 pad, n_W + 2 pad, n_C), float32.
    """
    X = _f32(X, "X")
    _rank(X, "X", 4, "(m, n_H, n_W, n_C)")
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=0)


def conv_single_step(a_slice_prev: Any, W: Any, b: Any) -> float:
    """One filter on one patch: ``sum(a_slice_prev * W) + b``.

    a_slice_prev: (f, f, n_C_prev); W: (f, f, n_C_prev); b: (1, 1, 1) or a scalar. Returns a float
    (the products summed in float32 by NumPy).
    """
    a = _f32(a_slice_prev, "a_slice_prev")
    w = _f32(W, "W")
    bias = _f32(b, "b")
    if a.shape != w.shape:
        raise ValueError(f"a_slice_prev has shape {a.shape} but W has shape {w.shape}: they must be equal")
    if bias.size != 1:
        raise ValueError(f"b must hold one value, got shape {bias.shape}")
    return float(np.sum(a * w, dtype=np.float32) + bias.reshape(()))


def _conv_args(A_prev: Any, W: Any, b: Any, hparameters: Dict[str, Any]):
    A_prev = _f32(A_prev, "A_prev")
    W = _f32(W, "W")
    b = _f32(b, "b")
    _rank(A_prev, "A_prev", 4, "(m, n_H_prev, n_W_prev, n_C_prev)")
    _rank(W, "W", 4, "(f, f, n_C_prev, n_C)")
    stride = _hparameter(hparameters, "stride", 1)
    pad = _hparameter(hparameters, "pad", 0)
    if W.shape[2] != A_prev.shape[3]:
        raise ValueError(
            f"W has shape {W.shape}, for {W.shape[2]} input channels, but A_prev has shape {A_prev.shape}, "
            f"with {A_prev.shape[3]} channels"
        )
    if b.size != W.shape[3] or (b.ndim != 1 and b.shape != (1, 1, 1, W.shape[3])):
        raise ValueError(f"b must have shape (1, 1, 1, {W.shape[3]}) for W of shape {W.shape}, got {b.shape}")
    what = f"filter of W {W.shape} over A_prev {A_prev.shape}"
    n_H = _out_size(A_prev.shape[1], W.shape[0], pad, stride, "height", what)
    n_W = _out_size(A_prev.shape[2], W.shape[1], pad, stride, "width", what)
    z_shape = (A_prev.shape[0], n_H, n_W, W.shape[3])
    _check_size(z_shape, "Z")
    _check_size((A_prev.shape[0], A_prev.shape[1] + 2 * pad, A_prev.shape[2] + 2 * pad, A_prev.shape[3]), "the padded A_prev")
    return A_prev, W, b.reshape(-1), stride, pad, z_shape


def conv_forward(A_prev: Any, W: Any, b: Any, hparameters: Dict[str, Any]) -> Tuple[np.ndarray, tuple]:
    """The forward pass of a convolution.

    A_prev: (m, n_H_prev, n_W_prev, n_C_prev); W: (f, f, n_C_prev, n_C); b: (1, 1, 1, n_C);
    hparameters: {"stride": s, "pad": p}, zero padding of p pixels on every side.

    Returns (Z, cache): Z (m, n_H, n_W, n_C) with n_H = floor((n_H_prev + 2p - f) / s) + 1 (and
    likewise n_W); cache = (A_prev, W, b, hparameters) for ``conv_backward``. Rectangular
    filters (f_h, f_w, n_C_prev, n_C) are accepted too.

    Computed by convnet's convolution (Winograd or im2col + GEMM), not by the tutorial's loops.
    """
    A, W_, b_, stride, pad, _ = _conv_args(A_prev, W, b, hparameters)
    Z = _convnet.conv2d_forward(A, W_, b_, stride, pad)
    return Z, (A_prev, W, b, hparameters)


def conv_backward(dZ: Any, cache: tuple) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The backward pass of a convolution.

    dZ: (m, n_H, n_W, n_C), the gradient of the cost with respect to ``conv_forward``'s Z;
    cache: ``conv_forward``'s. Returns (dA_prev, dW, db): dA_prev (m, n_H_prev, n_W_prev,
    n_C_prev) and dW (f, f, n_C_prev, n_C) shaped like A_prev and W, db (1, 1, 1, n_C) (also for
    a b given as (n_C,)).

    Differs from the tutorial's code: that code cuts the padding off with
    ``da_prev_pad[pad:-pad, pad:-pad, :]``, which is empty for pad = 0; here pad = 0 works.
    """
    A_prev, W, b, hparameters = _unpack(cache, 4, "conv_forward's (A_prev, W, b, hparameters)")
    A, W_, _, stride, pad, z_shape = _conv_args(A_prev, W, b, hparameters)
    dZ = _f32(dZ, "dZ")
    if dZ.shape != z_shape:
        raise ValueError(f"dZ has shape {dZ.shape} but conv_forward's Z has shape {z_shape}")
    return _convnet.conv2d_backward(dZ, A, W_, stride, pad)


def _unpack(cache: Any, n: int, what: str) -> tuple:
    if not isinstance(cache, tuple) or len(cache) != n:
        raise ValueError(f"cache must be {what}, got {type(cache).__name__} of length {len(cache) if hasattr(cache, '__len__') else '?'}")
    return cache


def _mode(mode: str) -> bool:
    if mode not in ("max", "average"):
        raise ValueError(f'mode must be "max" or "average", got {mode!r}')
    return mode == "max"


def _pool_args(A_prev: Any, hparameters: Dict[str, Any]):
    A_prev = _f32(A_prev, "A_prev")
    _rank(A_prev, "A_prev", 4, "(m, n_H_prev, n_W_prev, n_C_prev)")
    f = _hparameter(hparameters, "f", 1)
    stride = _hparameter(hparameters, "stride", 1)
    what = f"pooling window over A_prev {A_prev.shape}"
    n_H = _out_size(A_prev.shape[1], f, 0, stride, "height", what)
    n_W = _out_size(A_prev.shape[2], f, 0, stride, "width", what)
    return A_prev, f, stride, (A_prev.shape[0], n_H, n_W, A_prev.shape[3])


def pool_forward(A_prev: Any, hparameters: Dict[str, Any], mode: str = "max") -> Tuple[np.ndarray, tuple]:
    """The forward pass of a pooling layer (no padding, as in the tutorial).

    A_prev: (m, n_H_prev, n_W_prev, n_C); hparameters: {"f": window size, "stride": s};
    mode: "max" or "average". Returns (A, cache): A (m, n_H, n_W, n_C) with
    n_H = floor((n_H_prev - f) / s) + 1; cache = (A_prev, hparameters).
    """
    is_max = _mode(mode)
    A, f, stride, _ = _pool_args(A_prev, hparameters)
    return _convnet.pool_forward(A, f, stride, is_max), (A_prev, hparameters)


def pool_backward(dA: Any, cache: tuple, mode: str = "max") -> np.ndarray:
    """The backward pass of a pooling layer.

    dA: (m, n_H, n_W, n_C), the gradient with respect to ``pool_forward``'s output; cache:
    ``pool_forward``'s. Returns dA_prev with A_prev's shape.

    Max pooling sends each window's gradient to its first maximum (in row-major order), as the
    forward pass's choice of that value as the output means: the derivative of the max. The
    tutorial's code (``create_mask_from_window``) sends it to every tied maximum, which counts
    it twice when two values tie (a ReLU's zeros often do). Average pooling spreads it evenly
    over the window (``distribute_value``).
    """
    is_max = _mode(mode)
    A_prev, hparameters = _unpack(cache, 2, "pool_forward's (A_prev, hparameters)")
    A, f, stride, a_shape = _pool_args(A_prev, hparameters)
    dA = _f32(dA, "dA")
    if dA.shape != a_shape:
        raise ValueError(f"dA has shape {dA.shape} but pool_forward's output has shape {a_shape}")
    return _convnet.pool_backward(dA, A, f, stride, is_max)


def create_mask_from_window(x: Any) -> np.ndarray:
    """A boolean mask of x's shape, True at the entry max pooling takes.

    Differs from the tutorial's ``x == np.max(x)``: only the first maximum (in row-major order)
    is True, so that tied maxima do not each receive the whole gradient (see ``pool_backward``).
    """
    array = np.asarray(x)
    if array.size == 0:
        raise ValueError("x is empty: a pooling window has at least one value")
    mask = np.zeros(array.shape, dtype=bool)
    mask.flat[int(np.argmax(array))] = True
    return mask


def distribute_value(dz: float, shape: Tuple[int, int]) -> np.ndarray:
    """dz spread evenly over an (n_H, n_W) window: an array of that shape, every entry
    dz / (n_H n_W), float32 (the backward pass of average pooling)."""
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 2
        or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in shape)
    ):
        raise ValueError(f"shape must be (n_H, n_W), two integers, got {shape!r}")
    n_H, n_W = shape
    if n_H < 1 or n_W < 1:
        raise ValueError(f"shape must be at least (1, 1), got {shape}")
    _check_size((n_H, n_W), "the window")
    return np.full((n_H, n_W), np.float32(dz) / np.float32(n_H * n_W), dtype=np.float32)


def relu(Z: Any) -> Tuple[np.ndarray, np.ndarray]:
    """A = max(Z, 0). Returns (A, cache), cache = Z for ``relu_backward``. Any shape."""
    Z = _f32(Z, "Z")
    return _convnet.activation_forward("relu", Z), Z


def relu_backward(dA: Any, cache: Any) -> np.ndarray:
    """dZ = dA where Z > 0, else 0 (cache = Z from ``relu``)."""
    return _convnet.activation_backward("relu", _f32(dA, "dA"), _f32(cache, "cache"))


def sigmoid(Z: Any) -> Tuple[np.ndarray, np.ndarray]:
    """A = 1 / (1 + exp(-Z)), without overflow for large |Z|. Returns (A, cache), cache = Z."""
    Z = _f32(Z, "Z")
    return _convnet.activation_forward("sigmoid", Z), Z


def sigmoid_backward(dA: Any, cache: Any) -> np.ndarray:
    """dZ = dA * s (1 - s), s = sigmoid(Z) (cache = Z from ``sigmoid``)."""
    return _convnet.activation_backward("sigmoid", _f32(dA, "dA"), _f32(cache, "cache"))


def lrn(
    A: Any, depth_radius: int = 5, bias: float = 1.0, alpha: float = 1.0, beta: float = 0.5
) -> Tuple[np.ndarray, tuple]:
    """Local response normalisation across channels, TensorFlow's definition and defaults:

        B[..., c] = A[..., c] / (bias + alpha * sum(A[..., k]^2 for |k - c| <= depth_radius)) ** beta

    A: (m, n_H, n_W, n_C). Returns (B, cache), cache = (A, {"depth_radius", "bias", "alpha",
    "beta"}). The tutorial's network uses depth_radius=4, bias=1, alpha=0.001/9, beta=0.75.
    """
    A = _f32(A, "A")
    _rank(A, "A", 4, "(m, n_H, n_W, n_C)")
    hparameters = _lrn_hparameters({"depth_radius": depth_radius, "bias": bias, "alpha": alpha, "beta": beta})
    h = hparameters
    return _convnet.lrn_forward(A, h["depth_radius"], h["bias"], h["alpha"], h["beta"]), (A, hparameters)



def _lrn_hparameters(h: Dict[str, Any]) -> Dict[str, Any]:
    """LRN's hyperparameters checked: depth_radius an integer >= 0, the others real numbers (their
    ranges are checked by the engine: bias > 0, alpha >= 0, beta >= 0)."""
    if not isinstance(h, dict):
        raise ValueError(f"lrn's hparameters must be a dict, got {type(h).__name__}")
    radius = _hparameter(h, "depth_radius", 0)
    checked: Dict[str, Any] = {"depth_radius": radius}
    for key in ("bias", "alpha", "beta"):
        if key not in h:
            raise ValueError(f'lrn\'s hparameters have no "{key}" (they hold {sorted(h)})')
        value = h[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{key} must be a real number, got {value!r}")
        checked[key] = float(value)
    return checked


def lrn_backward(dB: Any, cache: tuple) -> np.ndarray:
    """dA of ``lrn``, given dB (A's shape) and its cache."""
    A, h = _unpack(cache, 2, "lrn's (A, hparameters)")
    A = _f32(A, "cache's A")
    _rank(A, "cache's A", 4, "(m, n_H, n_W, n_C)")
    h = _lrn_hparameters(h)
    dB = _f32(dB, "dB")
    if dB.shape != A.shape:
        raise ValueError(f"dB has shape {dB.shape} but lrn's input A has shape {A.shape}")
    return _convnet.lrn_backward(dB, A, h["depth_radius"], h["bias"], h["alpha"], h["beta"])


def softmax(logits: Any) -> np.ndarray:
    """Row-wise softmax of logits (m, n_classes), computed stably (max subtracted first)."""
    return _convnet.softmax(_f32(logits, "logits"))


def _labels(labels: Any, m: int, n_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim == 2:
        if y.shape != (m, n_classes) or not np.all((y == 0) | (y == 1)) or not np.all(y.sum(axis=1) == 1):
            raise ValueError(f"labels of shape {y.shape} must be one-hot rows (m, n_classes) = ({m}, {n_classes})")
        y = np.argmax(y, axis=1)
    if y.shape != (m,):
        raise ValueError(f"labels must have shape ({m},) (one class index per row of logits), got {y.shape}")
    if y.dtype.kind not in "iub":
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    if m and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got values from {y.min()} to {y.max()}")
    return y.astype(np.int64)


def softmax_cross_entropy(logits: Any, labels: Any) -> Tuple[float, tuple]:
    """The mean cross-entropy of softmax(logits) against the labels, from the logits directly
    (log-sum-exp; the tutorial's code applied softmax twice).

    logits: (m, n_classes); labels: (m,) class indices or (m, n_classes) one-hot rows.
    Returns (loss, cache) for ``softmax_cross_entropy_backward``.
    """
    z = _f32(logits, "logits")
    _rank(z, "logits", 2, "(m, n_classes)")
    y = _labels(labels, z.shape[0], z.shape[1])
    loss, dz = _convnet.softmax_cross_entropy(z, y.tolist())
    return float(loss), (z, y, dz)


def softmax_cross_entropy_backward(cache: tuple) -> np.ndarray:
    """d loss / d logits = (softmax(logits) - one_hot(labels)) / m, logits' shape."""
    _, _, dz = _unpack(cache, 3, "softmax_cross_entropy's cache")
    if not isinstance(dz, np.ndarray):
        raise ValueError("cache must be the one softmax_cross_entropy returned")
    return dz.copy()
