"""convnet's tutorial functions against the tutorial's own NumPy code.

The oracle is the code of the "Convolution model - step by step" tutorial written out below with
its loops, in float64, with two fixes that convnet documents as its behaviour:

* ``conv_backward`` cuts the padding off with ``[pad:pad + n_H_prev, pad:pad + n_W_prev]``:
  the tutorial's ``da_prev_pad[pad:-pad, pad:-pad, :]`` is empty for pad = 0;
* ``create_mask_from_window`` marks the FIRST maximum of the window (row-major order) only,
  where the tutorial's ``x == np.max(x)`` marks every tied maximum.

Every input is drawn as float32 values and handed to the oracle as float64, so that convnet
(which computes in float32) and the oracle see exactly the same numbers; the only difference
left is float32 rounding inside convnet, and the relative error
max|convnet - oracle| / max(max|oracle|, 1e-6) must be at most 1e-4.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import convnet as cn

RTOL = 1e-4


# ----------------------------------------------------------------------------------------------
# The oracle: the tutorial's code, float64, loops and all.
# ----------------------------------------------------------------------------------------------


def ref_zero_pad(X, pad):
    X_pad = np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=(0, 0))
    return X_pad


def ref_conv_single_step(a_slice_prev, W, b):
    s = np.multiply(a_slice_prev, W)
    Z = np.sum(s)
    Z = Z + float(np.asarray(b).item())
    return Z


def ref_conv_forward(A_prev, W, b, hparameters):
    (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
    (f_h, f_w, n_C_prev, n_C) = W.shape
    stride = hparameters["stride"]
    pad = hparameters["pad"]
    n_H = int((n_H_prev - f_h + 2 * pad) / stride) + 1
    n_W = int((n_W_prev - f_w + 2 * pad) / stride) + 1
    Z = np.zeros((m, n_H, n_W, n_C))
    A_prev_pad = ref_zero_pad(A_prev, pad)
    for i in range(m):
        a_prev_pad = A_prev_pad[i]
        for h in range(n_H):
            vert_start = h * stride
            vert_end = vert_start + f_h
            for w in range(n_W):
                horiz_start = w * stride
                horiz_end = horiz_start + f_w
                for c in range(n_C):
                    a_slice_prev = a_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :]
                    weights = W[:, :, :, c]
                    biases = b[:, :, :, c]
                    Z[i, h, w, c] = ref_conv_single_step(a_slice_prev, weights, biases)
    assert Z.shape == (m, n_H, n_W, n_C)
    cache = (A_prev, W, b, hparameters)
    return Z, cache


def ref_conv_backward(dZ, cache):
    (A_prev, W, b, hparameters) = cache
    (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
    (f_h, f_w, n_C_prev, n_C) = W.shape
    stride = hparameters["stride"]
    pad = hparameters["pad"]
    (m, n_H, n_W, n_C) = dZ.shape
    dA_prev = np.zeros((m, n_H_prev, n_W_prev, n_C_prev))
    dW = np.zeros((f_h, f_w, n_C_prev, n_C))
    db = np.zeros((1, 1, 1, n_C))
    A_prev_pad = ref_zero_pad(A_prev, pad)
    dA_prev_pad = ref_zero_pad(dA_prev, pad)
    for i in range(m):
        a_prev_pad = A_prev_pad[i]
        da_prev_pad = dA_prev_pad[i]
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vert_start = h * stride
                    vert_end = vert_start + f_h
                    horiz_start = w * stride
                    horiz_end = horiz_start + f_w
                    a_slice = a_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :]
                    da_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :] += W[:, :, :, c] * dZ[i, h, w, c]
                    dW[:, :, :, c] += a_slice * dZ[i, h, w, c]
                    db[:, :, :, c] += dZ[i, h, w, c]
        # The tutorial's da_prev_pad[pad:-pad, pad:-pad, :] is empty for pad = 0.
        dA_prev[i, :, :, :] = da_prev_pad[pad : pad + n_H_prev, pad : pad + n_W_prev, :]
    assert dA_prev.shape == (m, n_H_prev, n_W_prev, n_C_prev)
    return dA_prev, dW, db


def ref_pool_forward(A_prev, hparameters, mode="max"):
    (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
    f = hparameters["f"]
    stride = hparameters["stride"]
    n_H = int(1 + (n_H_prev - f) / stride)
    n_W = int(1 + (n_W_prev - f) / stride)
    n_C = n_C_prev
    A = np.zeros((m, n_H, n_W, n_C))
    for i in range(m):
        for h in range(n_H):
            vert_start = h * stride
            vert_end = vert_start + f
            for w in range(n_W):
                horiz_start = w * stride
                horiz_end = horiz_start + f
                for c in range(n_C):
                    a_prev_slice = A_prev[i, vert_start:vert_end, horiz_start:horiz_end, c]
                    if mode == "max":
                        A[i, h, w, c] = np.max(a_prev_slice)
                    elif mode == "average":
                        A[i, h, w, c] = np.mean(a_prev_slice)
    cache = (A_prev, hparameters)
    assert A.shape == (m, n_H, n_W, n_C)
    return A, cache


def ref_create_mask_from_window(x):
    # The tutorial's mask is x == np.max(x); convnet (and this oracle) marks the first maximum.
    mask = np.zeros(x.shape, dtype=bool)
    mask[np.unravel_index(np.argmax(x), x.shape)] = True
    return mask


def ref_distribute_value(dz, shape):
    (n_H, n_W) = shape
    average = dz / (n_H * n_W)
    a = np.ones(shape) * average
    return a


def ref_pool_backward(dA, cache, mode="max"):
    (A_prev, hparameters) = cache
    stride = hparameters["stride"]
    f = hparameters["f"]
    m, n_H_prev, n_W_prev, n_C_prev = A_prev.shape
    m, n_H, n_W, n_C = dA.shape
    dA_prev = np.zeros(A_prev.shape)
    for i in range(m):
        a_prev = A_prev[i]
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vert_start = h * stride
                    vert_end = vert_start + f
                    horiz_start = w * stride
                    horiz_end = horiz_start + f
                    if mode == "max":
                        a_prev_slice = a_prev[vert_start:vert_end, horiz_start:horiz_end, c]
                        mask = ref_create_mask_from_window(a_prev_slice)
                        dA_prev[i, vert_start:vert_end, horiz_start:horiz_end, c] += np.multiply(mask, dA[i, h, w, c])
                    elif mode == "average":
                        da = dA[i, h, w, c]
                        shape = (f, f)
                        dA_prev[i, vert_start:vert_end, horiz_start:horiz_end, c] += ref_distribute_value(da, shape)
    assert dA_prev.shape == A_prev.shape
    return dA_prev


def ref_relu(Z):
    return np.maximum(0, Z)


def ref_relu_backward(dA, Z):
    dZ = np.array(dA, copy=True)
    dZ[Z <= 0] = 0
    return dZ


def ref_sigmoid(Z):
    return 1 / (1 + np.exp(-Z))


def ref_sigmoid_backward(dA, Z):
    s = 1 / (1 + np.exp(-Z))
    return dA * s * (1 - s)


def ref_lrn_scale(A, depth_radius, bias, alpha):
    """bias + alpha * sqr_sum, sqr_sum over the channels c - r .. c + r (TensorFlow's LRN)."""
    n_C = A.shape[-1]
    s = np.zeros(A.shape)
    for c in range(n_C):
        lo, hi = max(0, c - depth_radius), min(n_C, c + depth_radius + 1)
        sqr_sum = np.sum(A[..., lo:hi] ** 2, axis=-1)
        s[..., c] = bias + alpha * sqr_sum
    return s


def ref_lrn(A, depth_radius, bias, alpha, beta):
    return A / ref_lrn_scale(A, depth_radius, bias, alpha) ** beta


def ref_lrn_backward(dB, A, depth_radius, bias, alpha, beta):
    """B_c = A_c s_c^-beta with s_c = bias + alpha sum_{|k-c|<=r} A_k^2, so
    dA_j = dB_j s_j^-beta - 2 alpha beta A_j sum_{c: |j-c|<=r} dB_c A_c s_c^(-beta-1)."""
    n_C = A.shape[-1]
    s = ref_lrn_scale(A, depth_radius, bias, alpha)
    dA = dB * s**-beta
    for c in range(n_C):
        lo, hi = max(0, c - depth_radius), min(n_C, c + depth_radius + 1)
        coeff = dB[..., c] * A[..., c] * s[..., c] ** (-beta - 1)
        dA[..., lo:hi] -= 2 * alpha * beta * A[..., lo:hi] * coeff[..., None]
    return dA


def ref_softmax(z):
    e = np.exp(z - np.max(z, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


def ref_softmax_cross_entropy(z, labels):
    m = z.shape[0]
    shifted = z - np.max(z, axis=1, keepdims=True)
    log_sum_exp = np.log(np.sum(np.exp(shifted), axis=1))
    return float(np.mean(log_sum_exp - shifted[np.arange(m), labels]))


def ref_softmax_cross_entropy_backward(z, labels):
    m, n = z.shape
    return (ref_softmax(z) - np.eye(n)[labels]) / m


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def rel_err(actual, expected) -> float:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    if expected.size == 0:
        return 0.0
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-6))


def assert_close(actual, expected, rtol=RTOL, what=""):
    err = rel_err(actual, expected)
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}"


def randn(rng, shape, scale=1.0):
    """Normal values rounded to float32, returned as float64 (exactly float32 numbers)."""
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(np.float64)


def grid(rng, shape, scale=1.0):
    """Normal values rounded to multiples of 2^-10: x +- 2^-7 is then exact in float32, so a
    finite difference perturbs exactly what it means to."""
    return np.round(rng.standard_normal(shape) * scale * 1024) / 1024


def out_size(n, f, pad, stride):
    return (n + 2 * pad - f) // stride + 1


# ----------------------------------------------------------------------------------------------
# Convolution against the oracle
# ----------------------------------------------------------------------------------------------

# (m, n_H_prev, n_W_prev, n_C_prev, n_C): odd and even sizes, 3/4/8 channels, batch 2-3.
SMALL_SHAPES = [(2, 7, 5, 3, 4), (3, 9, 9, 4, 8), (2, 6, 8, 8, 3), (3, 5, 7, 3, 8)]


def _conv_cases():
    cases = []
    i = 0
    for stride in (1, 2):
        for pad in (0, 1, 2):
            for f in (1, 2, 3, 5):
                m, h, w, c_in, c_out = SMALL_SHAPES[i % len(SMALL_SHAPES)]
                i += 1
                cases.append(
                    pytest.param((m, h, w, c_in), (f, f, c_in, c_out), stride, pad, id=f"s{stride}-p{pad}-k{f}-{m}x{h}x{w}x{c_in}to{c_out}")
                )
    # convnet's fast kernels differ with the channels: Winograd F(4x4, 3x3) for 3x3 stride 1 with
    # >= 32 channels in and out (forward and dA_prev), F(2x2, 5x5) for 5x5 stride 1 with >= 16
    # input channels (dA_prev, a convolution from n_C to n_C_prev channels, only when n_C >= 16).
    for pad in (0, 1, 2):
        cases.append(pytest.param((2, 10, 10, 32), (3, 3, 32, 32), 1, pad, id=f"winograd3x3-p{pad}"))
        cases.append(pytest.param((2, 9, 9, 16), (5, 5, 16, 16), 1, pad, id=f"winograd5x5-p{pad}"))
    cases.append(pytest.param((2, 9, 7, 16), (5, 5, 16, 8), 1, 2, id="winograd5x5-forward-only"))
    cases.append(pytest.param((2, 11, 9, 32), (3, 3, 32, 40), 2, 1, id="3x3-32ch-stride2"))
    # Rectangular filters, which conv_forward accepts too.
    cases.append(pytest.param((2, 7, 9, 3), (3, 2, 3, 4), 1, 1, id="rect3x2-s1-p1"))
    cases.append(pytest.param((3, 8, 7, 4), (2, 5, 4, 3), 2, 2, id="rect2x5-s2-p2"))
    return cases


CONV_CASES = _conv_cases()


@pytest.mark.parametrize("a_shape, w_shape, stride, pad", CONV_CASES)
def test_conv_forward_matches_the_tutorial_loops(rng, a_shape, w_shape, stride, pad):
    A = randn(rng, a_shape)
    W = randn(rng, w_shape, scale=0.5)
    b = randn(rng, (1, 1, 1, w_shape[3]))
    hp = {"stride": stride, "pad": pad}
    Z, cache = cn.conv_forward(A, W, b, hp)
    Z_ref, _ = ref_conv_forward(A, W, b, hp)
    m, h, w, _ = a_shape
    assert Z.shape == (m, out_size(h, w_shape[0], pad, stride), out_size(w, w_shape[1], pad, stride), w_shape[3])
    assert Z.dtype == np.float32
    assert_close(Z, Z_ref, what="Z")
    # The cache is the tutorial's (A_prev, W, b, hparameters).
    assert isinstance(cache, tuple) and len(cache) == 4
    assert cache[0] is A and cache[1] is W and cache[2] is b and cache[3] == hp


@pytest.mark.parametrize("a_shape, w_shape, stride, pad", CONV_CASES)
def test_conv_backward_matches_the_tutorial_loops(rng, a_shape, w_shape, stride, pad):
    A = randn(rng, a_shape)
    W = randn(rng, w_shape, scale=0.5)
    b = randn(rng, (1, 1, 1, w_shape[3]))
    hp = {"stride": stride, "pad": pad}
    Z, cache = cn.conv_forward(A, W, b, hp)
    dZ = randn(rng, Z.shape)
    dA_prev, dW, db = cn.conv_backward(dZ, cache)
    dA_ref, dW_ref, db_ref = ref_conv_backward(dZ, (A, W, b, hp))
    assert dA_prev.shape == A.shape and dW.shape == W.shape and db.shape == (1, 1, 1, w_shape[3])
    assert dA_prev.dtype == dW.dtype == db.dtype == np.float32
    assert_close(dA_prev, dA_ref, what="dA_prev")
    assert_close(dW, dW_ref, what="dW")
    assert_close(db, db_ref, what="db")


def test_conv_backward_with_pad_0_is_not_empty(rng):
    """The tutorial's code returns nothing useful for pad = 0 (its slice [0:-0] is empty)."""
    A = randn(rng, (2, 5, 5, 3))
    W = randn(rng, (3, 3, 3, 2))
    b = np.zeros((1, 1, 1, 2))
    Z, cache = cn.conv_forward(A, W, b, {"stride": 1, "pad": 0})
    dA_prev, _, _ = cn.conv_backward(np.ones(Z.shape), cache)
    assert dA_prev.shape == (2, 5, 5, 3)
    # The centre pixel is in all 9 windows: its gradient is the sum of each filter's weights.
    np.testing.assert_allclose(dA_prev[0, 2, 2], W.sum(axis=(0, 1, 3)), rtol=1e-5)


def test_conv_single_step_matches_the_tutorial(rng):
    a = randn(rng, (4, 4, 3))
    W = randn(rng, (4, 4, 3))
    b = randn(rng, (1, 1, 1))
    z = cn.conv_single_step(a, W, b)
    assert isinstance(z, float)
    assert abs(z - ref_conv_single_step(a, W, b)) <= RTOL * max(abs(ref_conv_single_step(a, W, b)), 1.0)
    # A scalar bias is accepted too.
    assert cn.conv_single_step(a, W, float(b.item())) == pytest.approx(z, rel=1e-6)


def test_zero_pad_matches_the_tutorial(rng):
    x = randn(rng, (4, 3, 3, 2))
    for pad in (0, 1, 2, 3):
        x_pad = cn.zero_pad(x, pad)
        assert x_pad.dtype == np.float32
        assert x_pad.shape == (4, 3 + 2 * pad, 3 + 2 * pad, 2)
        np.testing.assert_array_equal(x_pad, ref_zero_pad(x, pad))
    # The tutorial's own check: x_pad[1, 1] is all zeros for pad 3.
    assert not cn.zero_pad(x, 3)[1, 1].any()


# ----------------------------------------------------------------------------------------------
# Known answers
# ----------------------------------------------------------------------------------------------

EDGE_KERNEL = np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], dtype=np.float64)
PATCH = np.array([[200, 199, 189], [203, 23, 34], [177, 12, 22]], dtype=np.float64)


def test_edge_kernel_on_the_tutorials_patch_gives_377():
    # 200 + 199 + 189 - (177 + 12 + 22) = 377
    Z, _ = cn.conv_forward(PATCH.reshape(1, 3, 3, 1), EDGE_KERNEL.reshape(3, 3, 1, 1), np.zeros((1, 1, 1, 1)), {"stride": 1, "pad": 0})
    assert Z.shape == (1, 1, 1, 1)
    assert Z[0, 0, 0, 0] == 377.0
    assert cn.conv_single_step(PATCH.reshape(3, 3, 1), EDGE_KERNEL.reshape(3, 3, 1), np.zeros((1, 1, 1))) == 377.0


def test_6x8_input_with_a_3x3_kernel_gives_4x6(rng):
    Z, _ = cn.conv_forward(randn(rng, (1, 6, 8, 1)), randn(rng, (3, 3, 1, 1)), np.zeros((1, 1, 1, 1)), {"stride": 1, "pad": 0})
    assert Z.shape == (1, 4, 6, 1)


def test_softmax_cross_entropy_of_1_2_3_with_label_2():
    expected = math.log(math.e + math.e**2 + math.e**3) - 3  # 0.40760596...
    loss, cache = cn.softmax_cross_entropy(np.array([[1.0, 2.0, 3.0]]), np.array([2]))
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected, rel=1e-6)
    # Its gradient: softmax - one_hot.
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(cn.softmax_cross_entropy_backward(cache), [e / e.sum() - [0, 0, 1]], rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# Pooling against the oracle
# ----------------------------------------------------------------------------------------------

POOL_SHAPES = [(2, 7, 5, 3), (3, 9, 9, 4), (2, 6, 8, 8)]


def _pool_cases():
    cases = []
    i = 0
    for f, stride in [(1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (2, 3), (5, 2)]:
        for mode in ("max", "average"):
            shape = POOL_SHAPES[i % len(POOL_SHAPES)]
            i += 1
            cases.append(pytest.param(shape, f, stride, mode, id=f"{mode}-f{f}-s{stride}-{'x'.join(map(str, shape))}"))
    return cases


POOL_CASES = _pool_cases()


@pytest.mark.parametrize("a_shape, f, stride, mode", POOL_CASES)
def test_pool_forward_matches_the_tutorial_loops(rng, a_shape, f, stride, mode):
    A = randn(rng, a_shape)
    hp = {"f": f, "stride": stride}
    out, cache = cn.pool_forward(A, hp, mode=mode)
    out_ref, _ = ref_pool_forward(A, hp, mode)
    m, h, w, c = a_shape
    assert out.shape == (m, out_size(h, f, 0, stride), out_size(w, f, 0, stride), c)
    assert out.dtype == np.float32
    assert_close(out, out_ref, what=f"{mode} pool")
    assert isinstance(cache, tuple) and len(cache) == 2 and cache[0] is A and cache[1] == hp


@pytest.mark.parametrize("a_shape, f, stride, mode", POOL_CASES)
def test_pool_backward_matches_the_tutorial_loops(rng, a_shape, f, stride, mode):
    A = randn(rng, a_shape)
    hp = {"f": f, "stride": stride}
    out, cache = cn.pool_forward(A, hp, mode=mode)
    dA = randn(rng, out.shape)
    dA_prev = cn.pool_backward(dA, cache, mode=mode)
    assert dA_prev.shape == A.shape and dA_prev.dtype == np.float32
    assert_close(dA_prev, ref_pool_backward(dA, (A, hp), mode), what=f"{mode} pool backward")


def test_pool_forward_default_mode_is_max(rng):
    A = randn(rng, (2, 4, 4, 3))
    out, _ = cn.pool_forward(A, {"f": 2, "stride": 2})
    assert_close(out, ref_pool_forward(A, {"f": 2, "stride": 2}, "max")[0])


def test_max_pool_backward_sends_a_tied_window_gradient_to_the_first_maximum_only():
    # One 2x2 window holding three tied maxima (1) and a 0: the tutorial's mask would send the
    # gradient 5 to all three (15 in all); the derivative of the max sends it to one, the first
    # in row-major order.
    A = np.array([[1.0, 1.0], [0.0, 1.0]]).reshape(1, 2, 2, 1)
    out, cache = cn.pool_forward(A, {"f": 2, "stride": 2}, mode="max")
    assert out.reshape(-1).tolist() == [1.0]
    dA_prev = cn.pool_backward(np.full((1, 1, 1, 1), 5.0), cache, mode="max")
    np.testing.assert_array_equal(dA_prev.reshape(2, 2), [[5.0, 0.0], [0.0, 0.0]])

    # Overlapping windows (f 2, stride 1) over a ReLU's zeros: each window's gradient goes to its
    # own first zero.
    Z = np.zeros((1, 3, 3, 1))
    out, cache = cn.pool_forward(Z, {"f": 2, "stride": 1}, mode="max")
    dA = np.array([1.0, 2.0, 4.0, 8.0]).reshape(1, 2, 2, 1)
    dA_prev = cn.pool_backward(dA, cache, mode="max")
    np.testing.assert_array_equal(dA_prev.reshape(3, 3), [[1, 2, 0], [4, 8, 0], [0, 0, 0]])
    np.testing.assert_array_equal(dA_prev, ref_pool_backward(dA, (Z, {"f": 2, "stride": 1}), "max"))


def test_create_mask_from_window_marks_one_entry_the_first_maximum(rng):
    x = np.array([[1.0, 3.0], [3.0, 2.0]])
    mask = cn.create_mask_from_window(x)
    assert mask.dtype == bool and mask.shape == (2, 2)
    np.testing.assert_array_equal(mask, [[False, True], [False, False]])
    assert cn.create_mask_from_window(np.zeros((3, 3))).sum() == 1
    assert cn.create_mask_from_window(np.zeros((3, 3)))[0, 0]
    for _ in range(20):
        x = randn(rng, (3, 3))
        np.testing.assert_array_equal(cn.create_mask_from_window(x), ref_create_mask_from_window(x))
    # The tutorial's own example: x = [[1.62, -0.61, -0.53], [-1.07, 0.87, -2.30]].
    x = np.array([[1.62434536, -0.61175641, -0.52817175], [-1.07296862, 0.86540763, -2.3015387]])
    np.testing.assert_array_equal(cn.create_mask_from_window(x), [[True, False, False], [False, False, False]])


@pytest.mark.parametrize("dz, shape", [(2.0, (2, 2)), (-3.0, (3, 3)), (1.5, (2, 5)), (7.0, (1, 1))])
def test_distribute_value_matches_the_tutorial(dz, shape):
    a = cn.distribute_value(dz, shape)
    assert a.shape == shape and a.dtype == np.float32
    assert_close(a, ref_distribute_value(dz, shape), rtol=1e-6)
    assert float(a.sum()) == pytest.approx(dz, rel=1e-6)


# ----------------------------------------------------------------------------------------------
# Activations, LRN, softmax against the oracle
# ----------------------------------------------------------------------------------------------

ACT_SHAPES = [(2, 7, 5, 3), (3, 9, 9, 8), (4, 10), (17,)]


@pytest.mark.parametrize("shape", ACT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_relu_and_relu_backward_match_the_oracle(rng, shape):
    Z = randn(rng, shape)
    A, cache = cn.relu(Z)
    assert A.shape == shape and A.dtype == np.float32
    assert_close(A, ref_relu(Z))
    dA = randn(rng, shape)
    dZ = cn.relu_backward(dA, cache)
    assert dZ.shape == shape and dZ.dtype == np.float32
    assert_close(dZ, ref_relu_backward(dA, Z))


@pytest.mark.parametrize("shape", ACT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_sigmoid_and_sigmoid_backward_match_the_oracle(rng, shape):
    Z = randn(rng, shape, scale=3.0)
    A, cache = cn.sigmoid(Z)
    assert A.shape == shape and A.dtype == np.float32
    assert_close(A, ref_sigmoid(Z))
    dA = randn(rng, shape)
    dZ = cn.sigmoid_backward(dA, cache)
    assert dZ.shape == shape and dZ.dtype == np.float32
    assert_close(dZ, ref_sigmoid_backward(dA, Z))


def test_sigmoid_does_not_overflow():
    with np.errstate(all="raise"):
        A, _ = cn.sigmoid(np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0]))
    assert np.all(np.isfinite(A))
    np.testing.assert_allclose(A, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)


LRN_PARAMS = [
    pytest.param(dict(), id="tf-defaults"),  # depth_radius 5, bias 1, alpha 1, beta 0.5
    pytest.param(dict(depth_radius=4, bias=1.0, alpha=0.001 / 9, beta=0.75), id="tutorial"),
    pytest.param(dict(depth_radius=2, bias=2.0, alpha=0.3, beta=0.75), id="r2"),
    pytest.param(dict(depth_radius=0, bias=1.0, alpha=0.5, beta=1.0), id="r0"),
    pytest.param(dict(depth_radius=1, bias=0.5, alpha=0.2, beta=0.0), id="beta0"),
]


@pytest.mark.parametrize("params", LRN_PARAMS)
@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (3, 5, 5, 4), (2, 3, 9, 8)], ids=lambda s: "x".join(map(str, s)))
def test_lrn_and_lrn_backward_match_the_oracle(rng, params, shape):
    A = randn(rng, shape, scale=2.0)
    full = dict(depth_radius=5, bias=1.0, alpha=1.0, beta=0.5)
    full.update(params)
    B, cache = cn.lrn(A, **params)
    assert B.shape == shape and B.dtype == np.float32
    assert_close(B, ref_lrn(A, **full), what="lrn")
    assert cache[1] == full
    dB = randn(rng, shape)
    dA = cn.lrn_backward(dB, cache)
    assert dA.shape == shape and dA.dtype == np.float32
    assert_close(dA, ref_lrn_backward(dB, A, **full), what="lrn_backward")


@pytest.mark.parametrize("shape", [(1, 3), (3, 5), (4, 10), (2, 1)], ids=lambda s: "x".join(map(str, s)))
def test_softmax_and_cross_entropy_match_the_oracle(rng, shape):
    z = randn(rng, shape, scale=3.0)
    p = cn.softmax(z)
    assert p.shape == shape and p.dtype == np.float32
    assert_close(p, ref_softmax(z))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    labels = rng.integers(0, shape[1], size=shape[0])
    loss, cache = cn.softmax_cross_entropy(z, labels)
    assert loss == pytest.approx(ref_softmax_cross_entropy(z, labels), rel=RTOL, abs=1e-6)
    dz = cn.softmax_cross_entropy_backward(cache)
    assert dz.shape == shape and dz.dtype == np.float32
    assert_close(dz, ref_softmax_cross_entropy_backward(z, labels))
    # One-hot rows give the same answer as class indices.
    loss_1h, cache_1h = cn.softmax_cross_entropy(z, np.eye(shape[1])[labels])
    assert loss_1h == loss
    np.testing.assert_array_equal(cn.softmax_cross_entropy_backward(cache_1h), dz)


def test_softmax_is_stable_for_large_logits():
    with np.errstate(all="raise"):
        p = cn.softmax(np.array([[1000.0, 0.0, -1000.0], [1e4, 1e4, 0.0]]))
    np.testing.assert_allclose(p, [[1, 0, 0], [0.5, 0.5, 0]], atol=1e-7)
    loss, _ = cn.softmax_cross_entropy(np.array([[1000.0, 0.0]]), [1])
    assert loss == pytest.approx(1000.0, rel=1e-6)


def test_softmax_cross_entropy_backward_returns_a_fresh_array(rng):
    _, cache = cn.softmax_cross_entropy(randn(rng, (3, 4)), [0, 1, 2])
    first = cn.softmax_cross_entropy_backward(cache)
    first[:] = 123.0
    assert not np.any(cn.softmax_cross_entropy_backward(cache) == 123.0)


# ----------------------------------------------------------------------------------------------
# dtypes and memory layouts
# ----------------------------------------------------------------------------------------------


def _layouts(x):
    """x (float64) as float32, float64, a strided slice of a bigger array, a transposed view and
    Fortran order: every one holds the same numbers."""
    big = np.zeros((x.shape[0] * 2,) + x.shape[1:-1] + (x.shape[-1] * 3,))
    big[::2, ..., 1::3] = x
    strided = big[::2, ..., 1::3]
    transposed = np.ascontiguousarray(np.swapaxes(x, 0, -1)).swapaxes(0, -1)
    layouts = {
        "float32": x.astype(np.float32),
        "float64": x,
        "strided": strided,
        "transposed": transposed,
        "fortran": np.asfortranarray(x),
    }
    assert not strided.flags.c_contiguous and not transposed.flags.c_contiguous
    for v in layouts.values():
        np.testing.assert_array_equal(v, x)
    return layouts


def test_conv_forward_and_backward_give_the_same_results_for_every_dtype_and_layout(rng):
    A = randn(rng, (3, 7, 5, 4))
    W = randn(rng, (3, 3, 4, 5))
    b = randn(rng, (1, 1, 1, 5))
    hp = {"stride": 2, "pad": 1}
    Z0, cache = cn.conv_forward(A.astype(np.float32), W.astype(np.float32), b.astype(np.float32), hp)
    dZ = randn(rng, Z0.shape)
    grads0 = cn.conv_backward(dZ.astype(np.float32), cache)
    for name, A_ in _layouts(A).items():
        for wname, W_ in _layouts(W).items():
            Z, cache = cn.conv_forward(A_, W_, b, hp)
            assert Z.dtype == np.float32
            np.testing.assert_array_equal(Z, Z0, err_msg=f"A {name}, W {wname}")
        for dname, dZ_ in _layouts(dZ).items():
            grads = cn.conv_backward(dZ_, cn.conv_forward(A_, W, b, hp)[1])
            for g, g0 in zip(grads, grads0):
                assert g.dtype == np.float32
                np.testing.assert_array_equal(g, g0, err_msg=f"A {name}, dZ {dname}")
    # Integers are numbers too.
    Ai = rng.integers(-5, 5, size=(2, 5, 5, 2))
    Wi = rng.integers(-2, 3, size=(3, 3, 2, 3))
    Z, _ = cn.conv_forward(Ai, Wi, np.zeros((1, 1, 1, 3), dtype=np.int64), {"stride": 1, "pad": 1})
    np.testing.assert_array_equal(Z, ref_conv_forward(Ai.astype(float), Wi.astype(float), np.zeros((1, 1, 1, 3)), {"stride": 1, "pad": 1})[0])


def test_pool_lrn_and_activations_give_the_same_results_for_every_dtype_and_layout(rng):
    A = randn(rng, (3, 7, 5, 6))
    hp = {"f": 3, "stride": 2}
    for mode in ("max", "average"):
        out0, cache0 = cn.pool_forward(A.astype(np.float32), hp, mode)
        dA = randn(rng, out0.shape)
        back0 = cn.pool_backward(dA.astype(np.float32), cache0, mode)
        for name, A_ in _layouts(A).items():
            out, cache = cn.pool_forward(A_, hp, mode)
            np.testing.assert_array_equal(out, out0, err_msg=f"{mode} {name}")
            for dname, dA_ in _layouts(dA).items():
                np.testing.assert_array_equal(cn.pool_backward(dA_, cache, mode), back0, err_msg=f"{mode} {name} {dname}")
    B0, cache0 = cn.lrn(A.astype(np.float32), depth_radius=2, alpha=0.1)
    dB = randn(rng, A.shape)
    dA0 = cn.lrn_backward(dB.astype(np.float32), cache0)
    for name, A_ in _layouts(A).items():
        B, cache = cn.lrn(A_, depth_radius=2, alpha=0.1)
        np.testing.assert_array_equal(B, B0, err_msg=f"lrn {name}")
        for dname, dB_ in _layouts(dB).items():
            np.testing.assert_array_equal(cn.lrn_backward(dB_, cache), dA0, err_msg=f"lrn_backward {name} {dname}")
    for forward, backward in ((cn.relu, cn.relu_backward), (cn.sigmoid, cn.sigmoid_backward)):
        out0, cache0 = forward(A.astype(np.float32))
        back0 = backward(dB.astype(np.float32), cache0)
        for name, A_ in _layouts(A).items():
            out, cache = forward(A_)
            assert out.dtype == np.float32
            np.testing.assert_array_equal(out, out0, err_msg=f"{forward.__name__} {name}")
            np.testing.assert_array_equal(backward(_layouts(dB)[name], cache), back0, err_msg=f"{backward.__name__} {name}")
    z = randn(rng, (4, 7))
    p0 = cn.softmax(z.astype(np.float32))
    for name, z_ in _layouts(z).items():
        np.testing.assert_array_equal(cn.softmax(z_), p0, err_msg=f"softmax {name}")
        assert cn.softmax_cross_entropy(z_, [0, 1, 2, 6])[0] == cn.softmax_cross_entropy(z.astype(np.float32), [0, 1, 2, 6])[0]


def test_the_functions_do_not_modify_their_inputs(rng):
    A = randn(rng, (2, 6, 6, 4))
    W = randn(rng, (3, 3, 4, 4))
    b = randn(rng, (1, 1, 1, 4))
    saved = [A.copy(), W.copy(), b.copy()]
    Z, cache = cn.conv_forward(A, W, b, {"stride": 1, "pad": 1})
    dZ = randn(rng, Z.shape)
    dZ_saved = dZ.copy()
    cn.conv_backward(dZ, cache)
    cn.pool_backward(cn.pool_forward(A, {"f": 2, "stride": 2})[0], cn.pool_forward(A, {"f": 2, "stride": 2})[1])
    cn.lrn_backward(A, cn.lrn(A)[1])
    cn.relu_backward(A, cn.relu(A)[1])
    A32 = A.astype(np.float32)
    A32_saved = A32.copy()
    cn.relu(A32)
    cn.sigmoid_backward(A32, cn.sigmoid(A32)[1])
    for x, x0 in zip([A, W, b, dZ, A32], saved + [dZ_saved, A32_saved]):
        np.testing.assert_array_equal(x, x0)


# ----------------------------------------------------------------------------------------------
# Gradient checks: central finite differences through convnet's own forward functions
# ----------------------------------------------------------------------------------------------
#
# The loss is a fixed random linear function of the output, L = sum(R * out), summed in float64,
# so dL/d out = R is what the backward functions get. Inputs lie on a 2^-10 grid and EPS = 2^-7,
# so x +- EPS is exact in float32 and the perturbation is exactly what it says. For the linear ops
# (convolution, average pooling) and max pooling (whose winners do not change: its inputs are
# spaced 0.25 apart, far more than EPS) the central difference is then exact but for convnet's
# float32 rounding of the outputs, ~6e-8 x |out| for each output the entry touches, divided by
# 2 EPS = 1/64: about 1e-7 of the largest gradient (measured). For the smooth nonlinear ops (LRN,
# sigmoid, softmax cross-entropy) the central difference's truncation error EPS^2 / 6 x f''' adds
# ~1e-5 (measured). GRAD_RTOL = 1e-3 leaves a 100x margin over both in float32, and still catches
# a gradient that is 0.1% off, let alone a wrong factor or a dropped term.

EPS = 2.0**-7
GRAD_RTOL = 1e-3


def numeric_grad(loss, x, eps=EPS):
    g = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        old = x[idx]
        x[idx] = old + eps
        plus = loss(x)
        x[idx] = old - eps
        minus = loss(x)
        x[idx] = old
        g[idx] = (plus - minus) / (2 * eps)
    return g


def linear_loss(R):
    return lambda out: float(np.sum(R * np.asarray(out, dtype=np.float64)))


def assert_grad_close(analytic, numeric, what):
    analytic = np.asarray(analytic, dtype=np.float64)
    assert analytic.shape == numeric.shape, what
    scale = max(np.max(np.abs(numeric)), 1e-3)
    err = np.max(np.abs(analytic - numeric)) / scale
    assert err <= GRAD_RTOL, f"{what}: gradient check error {err:.3g} > {GRAD_RTOL:g}"


@pytest.mark.parametrize(
    "a_shape, w_shape, stride, pad",
    [
        pytest.param((2, 5, 5, 3), (3, 3, 3, 4), 1, 1, id="k3-s1-p1"),
        pytest.param((2, 7, 5, 2), (3, 3, 2, 3), 2, 2, id="k3-s2-p2"),
        pytest.param((3, 6, 5, 2), (2, 2, 2, 2), 2, 0, id="k2-s2-p0"),
    ],
)
def test_conv_backward_gradient_check(rng, a_shape, w_shape, stride, pad):
    A = grid(rng, a_shape)
    W = grid(rng, w_shape, scale=0.5)
    b = grid(rng, (1, 1, 1, w_shape[3]))
    hp = {"stride": stride, "pad": pad}
    Z, cache = cn.conv_forward(A, W, b, hp)
    R = rng.standard_normal(Z.shape)
    L = linear_loss(R)
    dA_prev, dW, db = cn.conv_backward(R, cache)
    assert_grad_close(dA_prev, numeric_grad(lambda a: L(cn.conv_forward(a, W, b, hp)[0]), A), "dA_prev")
    assert_grad_close(dW, numeric_grad(lambda w: L(cn.conv_forward(A, w, b, hp)[0]), W), "dW")
    assert_grad_close(db, numeric_grad(lambda bb: L(cn.conv_forward(A, W, bb, hp)[0]), b), "db")


@pytest.mark.parametrize("f, stride", [(2, 2), (3, 2), (2, 1)])
@pytest.mark.parametrize("mode", ["max", "average"])
def test_pool_backward_gradient_check(rng, mode, f, stride):
    shape = (2, 7, 5, 3)
    # Distinct values 0.25 apart: no window changes its maximum under a +-EPS perturbation.
    A = (rng.permutation(int(np.prod(shape))) * 0.25 - 20.0).reshape(shape)
    hp = {"f": f, "stride": stride}
    out, cache = cn.pool_forward(A, hp, mode)
    R = rng.standard_normal(out.shape)
    L = linear_loss(R)
    dA_prev = cn.pool_backward(R, cache, mode)
    assert_grad_close(dA_prev, numeric_grad(lambda a: L(cn.pool_forward(a, hp, mode)[0]), A), f"{mode} pool")


@pytest.mark.parametrize("params", [dict(depth_radius=2, bias=1.0, alpha=0.2, beta=0.75), dict(depth_radius=1, bias=2.0, alpha=1.0, beta=0.5)])
def test_lrn_backward_gradient_check(rng, params):
    A = grid(rng, (2, 3, 4, 5))
    B, cache = cn.lrn(A, **params)
    R = rng.standard_normal(B.shape)
    L = linear_loss(R)
    assert_grad_close(cn.lrn_backward(R, cache), numeric_grad(lambda a: L(cn.lrn(a, **params)[0]), A), "lrn")


def _away_from_zero(rng, shape):
    # ReLU's kink at 0: keep every value at least 0.125 (>> EPS) away from it, on the grid.
    x = grid(rng, shape)
    return np.where(np.abs(x) < 0.125, np.where(x < 0, -0.125, 0.125) + x, x)


@pytest.mark.parametrize("name", ["relu", "sigmoid"])
def test_activation_backward_gradient_check(rng, name):
    forward, backward = {"relu": (cn.relu, cn.relu_backward), "sigmoid": (cn.sigmoid, cn.sigmoid_backward)}[name]
    Z = _away_from_zero(rng, (2, 4, 3, 5))
    R = rng.standard_normal(Z.shape)
    # Elementwise functions: perturbing every entry at once gives every partial derivative.
    numeric = R * (forward(Z + EPS)[0].astype(np.float64) - forward(Z - EPS)[0].astype(np.float64)) / (2 * EPS)
    assert_grad_close(backward(R, forward(Z)[1]), numeric, name)
    # And entry by entry, through the linear loss, on a corner of it.
    Zs, Rs = Z[:1, :2].copy(), R[:1, :2]
    Ls = linear_loss(Rs)
    assert_grad_close(backward(Rs, forward(Zs)[1]), numeric_grad(lambda z: Ls(forward(z)[0]), Zs), name)


@pytest.mark.parametrize("shape", [(3, 5), (1, 4), (6, 2)])
def test_softmax_cross_entropy_backward_gradient_check(rng, shape):
    z = grid(rng, shape, scale=2.0)
    labels = rng.integers(0, shape[1], size=shape[0])
    _, cache = cn.softmax_cross_entropy(z, labels)
    numeric = numeric_grad(lambda zz: cn.softmax_cross_entropy(zz, labels)[0], z)
    assert_grad_close(cn.softmax_cross_entropy_backward(cache), numeric, "softmax cross-entropy")


# ----------------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------------

A5 = np.zeros((2, 5, 5, 3))
W3 = np.zeros((3, 3, 3, 2))
B2 = np.zeros((1, 1, 1, 2))
HP = {"stride": 1, "pad": 0}
_, CONV_CACHE = cn.conv_forward(A5, W3, B2, HP)  # Z: (2, 3, 3, 2)
_, POOL_CACHE = cn.pool_forward(A5, {"f": 2, "stride": 1})  # out: (2, 4, 4, 3)
_, LRN_CACHE = cn.lrn(A5)


def _e(text):
    return re.escape(text)


BAD_INPUTS = [
    # Wrong ranks.
    ("A_prev rank", lambda: cn.conv_forward(A5[0], W3, B2, HP), ValueError, _e("A_prev must have 4 dimensions") + ".*" + _e("(5, 5, 3)")),
    ("W rank", lambda: cn.conv_forward(A5, W3[..., 0], B2, HP), ValueError, _e("W must have 4 dimensions") + ".*" + _e("(3, 3, 3)")),
    ("pool rank", lambda: cn.pool_forward(A5[0], {"f": 2, "stride": 1}), ValueError, _e("A_prev must have 4 dimensions") + ".*" + _e("(5, 5, 3)")),
    ("zero_pad rank", lambda: cn.zero_pad(A5[0], 1), ValueError, _e("X must have 4 dimensions") + ".*" + _e("(5, 5, 3)")),
    ("lrn rank", lambda: cn.lrn(A5[0]), ValueError, _e("A must have 4 dimensions") + ".*" + _e("(5, 5, 3)")),
    ("softmax rank", lambda: cn.softmax(np.zeros(3)), ValueError, "logits must have 2 dimensions.*3"),
    ("softmax_cross_entropy rank", lambda: cn.softmax_cross_entropy(np.zeros(3), [0]), ValueError, _e("logits must have 2 dimensions") + ".*" + _e("(3,)")),
    # Channels and bias.
    (
        "channel mismatch",
        lambda: cn.conv_forward(A5, np.zeros((3, 3, 4, 2)), B2, HP),
        ValueError,
        _e("W has shape (3, 3, 4, 2), for 4 input channels, but A_prev has shape (2, 5, 5, 3), with 3 channels"),
    ),
    ("b shape", lambda: cn.conv_forward(A5, W3, np.zeros((1, 1, 1, 3)), HP), ValueError, _e("b must have shape (1, 1, 1, 2) for W of shape (3, 3, 3, 2), got (1, 1, 1, 3)")),
    ("b rank", lambda: cn.conv_forward(A5, W3, np.zeros((2, 1)), HP), ValueError, _e("b must have shape (1, 1, 1, 2)") + ".*" + _e("got (2, 1)")),
    # Hyperparameters.
    ("missing pad", lambda: cn.conv_forward(A5, W3, B2, {"stride": 1}), ValueError, _e('hparameters has no "pad"')),
    ("missing stride", lambda: cn.conv_forward(A5, W3, B2, {"pad": 1}), ValueError, _e('hparameters has no "stride"')),
    ("missing f", lambda: cn.pool_forward(A5, {"stride": 1}), ValueError, _e('hparameters has no "f"')),
    ("negative pad", lambda: cn.conv_forward(A5, W3, B2, {"stride": 1, "pad": -1}), ValueError, _e('hparameters["pad"] must be at least 0, got -1')),
    ("negative stride", lambda: cn.pool_forward(A5, {"f": 2, "stride": -2}), ValueError, _e('hparameters["stride"] must be at least 1, got -2')),
    ("stride 0", lambda: cn.conv_forward(A5, W3, B2, {"stride": 0, "pad": 0}), ValueError, _e('hparameters["stride"] must be at least 1, got 0')),
    ("pool stride 0", lambda: cn.pool_forward(A5, {"f": 2, "stride": 0}), ValueError, _e('hparameters["stride"] must be at least 1, got 0')),
    ("pool f 0", lambda: cn.pool_forward(A5, {"f": 0, "stride": 1}), ValueError, _e('hparameters["f"] must be at least 1, got 0')),
    ("float stride", lambda: cn.conv_forward(A5, W3, B2, {"stride": 1.5, "pad": 0}), ValueError, _e('hparameters["stride"] must be an integer, got 1.5')),
    ("float pad", lambda: cn.conv_forward(A5, W3, B2, {"stride": 1, "pad": 1.0}), ValueError, _e('hparameters["pad"] must be an integer, got 1.0')),
    ("bool stride", lambda: cn.conv_forward(A5, W3, B2, {"stride": True, "pad": 0}), ValueError, _e('hparameters["stride"] must be an integer, got True')),
    ("string f", lambda: cn.pool_forward(A5, {"f": "2", "stride": 1}), ValueError, _e("hparameters[\"f\"] must be an integer, got '2'")),
    ("hparameters not a dict", lambda: cn.conv_forward(A5, W3, B2, [1, 0]), ValueError, _e("hparameters must be a dict, got list")),
    ("zero_pad negative", lambda: cn.zero_pad(A5, -1), ValueError, _e("pad must be a non-negative integer, got -1")),
    ("zero_pad float", lambda: cn.zero_pad(A5, 1.5), ValueError, _e("pad must be a non-negative integer, got 1.5")),
    # Windows that do not fit.
    ("filter too large", lambda: cn.conv_forward(A5, np.zeros((7, 7, 3, 2)), B2, HP), ValueError, _e("W (7, 7, 3, 2) over A_prev (2, 5, 5, 3) is 7 wide and does not fit in the height 5 + 2 x pad 0 = 5")),
    (
        "filter too wide",
        lambda: cn.conv_forward(np.zeros((1, 9, 4, 3)), np.zeros((3, 7, 3, 2)), B2, {"stride": 1, "pad": 1}),
        ValueError,
        _e("is 7 wide and does not fit in the width 4 + 2 x pad 1 = 6"),
    ),
    ("pool window too large", lambda: cn.pool_forward(A5, {"f": 6, "stride": 1}), ValueError, _e("pooling window over A_prev (2, 5, 5, 3) is 6 wide and does not fit in the height 5")),
    # Gradients of the wrong shape.
    ("dZ shape", lambda: cn.conv_backward(np.zeros((2, 3, 3, 3)), CONV_CACHE), ValueError, _e("dZ has shape (2, 3, 3, 3) but conv_forward's Z has shape (2, 3, 3, 2)")),
    ("dZ rank", lambda: cn.conv_backward(np.zeros((3, 3, 2)), CONV_CACHE), ValueError, _e("dZ has shape (3, 3, 2) but conv_forward's Z has shape (2, 3, 3, 2)")),
    ("dA shape", lambda: cn.pool_backward(np.zeros((2, 3, 3, 3)), POOL_CACHE), ValueError, _e("dA has shape (2, 3, 3, 3) but pool_forward's output has shape (2, 4, 4, 3)")),
    ("dB shape", lambda: cn.lrn_backward(np.zeros((1, 5, 5, 3)), LRN_CACHE), ValueError, _e("dB has shape (1, 5, 5, 3) but lrn's input A has shape (2, 5, 5, 3)")),
    ("relu_backward shape", lambda: cn.relu_backward(np.zeros((2, 3)), np.zeros((3, 2))), ValueError, _e("dA has shape [2, 3] but the cached Z has shape [3, 2]")),
    ("sigmoid_backward shape", lambda: cn.sigmoid_backward(np.zeros((4,)), np.zeros((5,))), ValueError, _e("dA has shape [4] but the cached Z has shape [5]")),
    # Pool mode.
    ("pool_forward mode", lambda: cn.pool_forward(A5, {"f": 2, "stride": 1}, mode="min"), ValueError, _e("mode must be \"max\" or \"average\", got 'min'")),
    ("pool_backward mode", lambda: cn.pool_backward(np.zeros((2, 4, 4, 3)), POOL_CACHE, mode="avg"), ValueError, _e("mode must be \"max\" or \"average\", got 'avg'")),
    # Labels.
    ("label too large", lambda: cn.softmax_cross_entropy(np.zeros((2, 3)), [0, 3]), ValueError, _e("labels must lie in [0, 3), got values from 0 to 3")),
    ("negative label", lambda: cn.softmax_cross_entropy(np.zeros((2, 3)), [-1, 2]), ValueError, _e("labels must lie in [0, 3), got values from -1 to 2")),
    ("label count", lambda: cn.softmax_cross_entropy(np.zeros((2, 3)), [0, 1, 2]), ValueError, _e("labels must have shape (2,)") + ".*" + _e("got (3,)")),
    ("float labels", lambda: cn.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0])), ValueError, _e("labels must be integer class indices, got dtype float64")),
    ("bad one-hot", lambda: cn.softmax_cross_entropy(np.zeros((2, 3)), np.ones((2, 3))), ValueError, _e("labels of shape (2, 3) must be one-hot rows (m, n_classes) = (2, 3)")),
    # Caches of the wrong type.
    ("conv cache list", lambda: cn.conv_backward(np.zeros((2, 3, 3, 2)), list(CONV_CACHE)), ValueError, _e("cache must be conv_forward's (A_prev, W, b, hparameters), got list of length 4")),
    ("conv cache None", lambda: cn.conv_backward(np.zeros((2, 3, 3, 2)), None), ValueError, _e("cache must be conv_forward's (A_prev, W, b, hparameters), got NoneType")),
    ("conv cache of pool", lambda: cn.conv_backward(np.zeros((2, 3, 3, 2)), POOL_CACHE), ValueError, _e("cache must be conv_forward's (A_prev, W, b, hparameters), got tuple of length 2")),
    ("pool cache of conv", lambda: cn.pool_backward(np.zeros((2, 4, 4, 3)), CONV_CACHE), ValueError, _e("cache must be pool_forward's (A_prev, hparameters), got tuple of length 4")),
    ("lrn cache", lambda: cn.lrn_backward(A5, (A5,)), ValueError, _e("cache must be lrn's (A, hparameters), got tuple of length 1")),
    ("softmax cache", lambda: cn.softmax_cross_entropy_backward((1, 2)), ValueError, _e("cache must be softmax_cross_entropy's cache, got tuple of length 2")),
    # The small helpers.
    ("conv_single_step shapes", lambda: cn.conv_single_step(np.zeros((3, 3, 2)), np.zeros((3, 3, 3)), 0.0), ValueError, _e("a_slice_prev has shape (3, 3, 2) but W has shape (3, 3, 3)")),
    ("conv_single_step b", lambda: cn.conv_single_step(np.zeros((3, 3, 2)), np.zeros((3, 3, 2)), np.zeros(2)), ValueError, _e("b must hold one value, got shape (2,)")),
    ("distribute_value shape", lambda: cn.distribute_value(1.0, (0, 2)), ValueError, _e("shape must be at least (1, 1), got (0, 2)")),
    ("empty window", lambda: cn.create_mask_from_window(np.zeros((0, 2))), ValueError, "x is empty"),
    # LRN's parameters.
    ("lrn bias", lambda: cn.lrn(A5, bias=0.0), ValueError, "bias must be a positive finite number, got 0"),
    ("lrn alpha", lambda: cn.lrn(A5, alpha=-1.0), ValueError, "alpha must be a non-negative finite number, got -1"),
    ("lrn beta", lambda: cn.lrn(A5, beta=float("nan")), ValueError, "beta must be a non-negative finite number"),
    # Not real numbers.
    ("complex A_prev", lambda: cn.conv_forward(A5.astype(complex), W3, B2, HP), TypeError, _e("A_prev must hold real numbers, got an array of dtype complex128")),
    ("object W", lambda: cn.conv_forward(A5, W3.astype(object), B2, HP), TypeError, _e("W must hold real numbers, got an array of dtype object")),
    ("string b", lambda: cn.conv_forward(A5, W3, np.array(["a", "b"]), HP), TypeError, "b must hold real numbers"),
    ("complex dZ", lambda: cn.conv_backward(np.zeros((2, 3, 3, 2), complex), CONV_CACHE), TypeError, "dZ must hold real numbers"),
    ("complex pool", lambda: cn.pool_forward(A5.astype(complex), {"f": 2, "stride": 1}), TypeError, "A_prev must hold real numbers"),
    ("object dA", lambda: cn.pool_backward(np.zeros((2, 4, 4, 3), object), POOL_CACHE), TypeError, "dA must hold real numbers"),
    ("complex relu", lambda: cn.relu(np.zeros(3, complex)), TypeError, "Z must hold real numbers"),
    ("object sigmoid", lambda: cn.sigmoid(np.array([1, None], dtype=object)), TypeError, "Z must hold real numbers"),
    ("complex lrn", lambda: cn.lrn(A5.astype(complex)), TypeError, "A must hold real numbers"),
    ("complex logits", lambda: cn.softmax(np.zeros((2, 3), complex)), TypeError, "logits must hold real numbers"),
    ("complex zero_pad", lambda: cn.zero_pad(A5.astype(complex), 1), TypeError, "X must hold real numbers"),
    ("complex conv_single_step", lambda: cn.conv_single_step(np.zeros((3, 3, 2), complex), np.zeros((3, 3, 2)), 0.0), TypeError, "a_slice_prev must hold real numbers"),
]


@pytest.mark.parametrize("call, error, message", [pytest.param(c, e, m, id=i) for i, c, e, m in BAD_INPUTS])
def test_bad_inputs_raise_with_a_message_naming_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ----------------------------------------------------------------------------------------------
# Package bugs found while writing these tests (fixed since): empty axes, LRN's hyperparameters and
# cached A, 0-d activations, a predict image without its channel axis, negative epochs.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, shape",
    [
        pytest.param(lambda: cn.conv_forward(np.ones((2, 5, 5, 3)), np.ones((3, 3, 3, 0)), np.zeros((1, 1, 1, 0)), HP)[0], (2, 3, 3, 0), id="conv_forward-0-filters"),
        pytest.param(
            lambda: cn.conv_backward(np.ones((1, 3, 3, 2)), (np.ones((1, 5, 5, 0)), np.ones((3, 3, 0, 2)), np.zeros(2), HP))[0], (1, 5, 5, 0), id="conv_backward-0-input-channels"
        ),
        pytest.param(lambda: cn.pool_forward(np.ones((1, 4, 4, 0)), {"f": 2, "stride": 2})[0], (1, 2, 2, 0), id="pool_forward-0-channels"),
        pytest.param(lambda: cn.softmax(np.ones((2, 0))), (2, 0), id="softmax-0-classes"),
    ],
)
def test_zero_channels_give_an_empty_result_or_a_value_error(call, shape):
    try:
        out = call()
    except ValueError:
        return
    assert out.shape == shape


@pytest.mark.parametrize("radius", [-1, 1.5, "2"], ids=["negative", "float", "string"])
def test_lrn_rejects_a_bad_depth_radius(radius):
    with pytest.raises(ValueError, match="depth_radius"):
        cn.lrn(A5, depth_radius=radius)


@pytest.mark.parametrize("which", ["float64-A", "incomplete-dict"])
def test_lrn_backward_takes_any_real_cached_A_and_checks_the_dict(rng, which):
    A = randn(rng, (2, 3, 3, 4))
    dB = randn(rng, A.shape)
    h = {"depth_radius": 1, "bias": 1.0, "alpha": 0.5, "beta": 0.75}
    if which == "float64-A":
        assert_close(cn.lrn_backward(dB, (A, h)), ref_lrn_backward(dB, A, **h))
    else:
        with pytest.raises(ValueError, match="depth_radius"):
            cn.lrn_backward(dB, (A.astype(np.float32), {"bias": 1.0, "alpha": 0.5, "beta": 0.75}))


@pytest.mark.parametrize("forward", [cn.relu, cn.sigmoid], ids=["relu", "sigmoid"])
def test_activations_keep_a_0d_shape(forward):
    A, cache = forward(np.array(-2.0))
    assert A.shape == ()


def test_more_bad_arguments_are_value_errors():
    A = np.ones((1, 4, 4, 2), np.float32)
    W = np.ones((3, 3, 2, 3), np.float32)
    b = np.zeros((1, 1, 1, 3), np.float32)
    with pytest.raises(ValueError, match=r"over 2147483648 values"):
        cn.conv_forward(A, W, b, {"stride": 1, "pad": 2**22})
    with pytest.raises(ValueError, match=r'"stride"\] is too large'):
        cn.conv_forward(A, W, b, {"stride": 2**70, "pad": 0})
    with pytest.raises(ValueError, match=re.escape("W (3, 3, 2, 3) over A_prev (1, 2, 2, 2)")):
        cn.conv_forward(np.ones((1, 2, 2, 2)), W, b, {"stride": 1, "pad": 0})
    with pytest.raises(ValueError, match='has no "f"'):
        cn.pool_forward(A, {1: 2, "stride": 1})
    for shape in [(2, 2, 2), 4, (2.0, 2)]:
        with pytest.raises(ValueError, match="shape must be"):
            cn.distribute_value(1.0, shape)
    with pytest.raises(ValueError, match="cache must be"):
        cn.softmax_cross_entropy_backward((1, 2, 3))


def test_a_huge_lrn_radius_is_the_whole_channel_window():
    rng = np.random.default_rng(5)
    A = rng.standard_normal((1, 2, 2, 6)).astype(np.float32)
    dB = rng.standard_normal(A.shape).astype(np.float32)
    B_huge, cache_huge = cn.lrn(A, depth_radius=2**31)
    B_all, cache_all = cn.lrn(A, depth_radius=6)
    np.testing.assert_array_equal(B_huge, B_all)
    np.testing.assert_array_equal(cn.lrn_backward(dB, cache_huge), cn.lrn_backward(dB, cache_all))
    assert cache_huge[1]["depth_radius"] == 2**31


def test_a_misaligned_float32_view_gives_the_same_result():
    raw = bytearray(4 * 32 + 1)
    A = np.frombuffer(raw, np.float32, offset=1, count=32).reshape(1, 2, 4, 4)
    assert not A.flags.aligned
    A_aligned = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4) - 10
    np.frombuffer(raw, np.uint8, offset=1, count=128)[:] = A_aligned.view(np.uint8).reshape(-1)
    np.testing.assert_array_equal(cn.relu(A)[0], cn.relu(A_aligned)[0])


def test_the_gil_is_released_while_the_engine_computes():
    # A Python thread notes the time over and over while conv_forward runs (about 0.1 s here). With
    # the GIL held by the call, that thread could run only around its start and end (a switch
    # interval is 5 ms), never in the middle; released, it runs throughout.
    import threading
    import time

    A = np.ones((64, 32, 32, 64), np.float32)
    W = np.ones((5, 5, 64, 64), np.float32) * 0.01
    b = np.zeros((1, 1, 1, 64), np.float32)
    stamps, running = [], [True]

    def note_times():
        while running[0]:
            stamps.append(time.perf_counter())

    t = threading.Thread(target=note_times)
    t.start()
    try:
        start = time.perf_counter()
        cn.conv_forward(A, W, b, {"stride": 1, "pad": 2})
        end = time.perf_counter()
    finally:
        running[0] = False
        t.join()
    margin = max(0.02, (end - start) / 4)
    inside = [s for s in stamps if start + margin < s < end - margin]
    assert end - start > 2 * margin + 0.005, f"conv_forward took {end - start:.3f} s, too short to tell"
    assert len(inside) > 100, f"{len(inside)} notes in the middle of a {end - start:.3f} s call"
