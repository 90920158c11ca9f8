"""conv_forward and conv_backward on the tutorial network's second layer, three ways:

  loops   the tutorial's NumPy code (four nested loops around conv_single_step)
  im2col  a vectorised NumPy version (sliding windows, one matrix product; col2im by f*f adds)
  convnet convnet.conv_forward / conv_backward (the engine's kernels, GIL released)

The layer: batch 64, input 16x16x64, 5x5x64 filters, stride 1, pad 2 (SAME). Times are medians
of --repeats runs (the loops: one run, on --loop-batch images, scaled to the batch: the loops'
cost is linear in the batch). The outputs of the three are checked equal first.

    python python/benches/conv_layer.py [--repeats 5] [--loop-batch 64] [--threads N]

Run with RAYON_NUM_THREADS (or --threads, which sets it) to fix convnet's thread count; NumPy's
BLAS threads follow OMP_NUM_THREADS / OPENBLAS_NUM_THREADS.
"""

import argparse
import os
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="timed runs of im2col and convnet (median reported)")
    p.add_argument("--loop-batch", type=int, default=64, help="images the loop version runs on (scaled to the batch)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="sets RAYON_NUM_THREADS and the BLAS thread variables")
    return p.parse_args()


args = parse_args()
if args.threads:
    for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

import numpy as np  # noqa: E402  (after the thread variables are set)

import convnet as cn  # noqa: E402


# --- the tutorial's loops -------------------------------------------------------------------
def zero_pad(X, pad):
    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=0)


def conv_single_step(a_slice_prev, W, b):
    return np.sum(a_slice_prev * W) + b.item()  # the tutorial wrote float(b), refused by NumPy 2.4


def loops_conv_forward(A_prev, W, b, hparameters):
    (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
    (f, f, n_C_prev, n_C) = W.shape
    stride, pad = hparameters["stride"], hparameters["pad"]
    n_H = int((n_H_prev - f + 2 * pad) / stride) + 1
    n_W = int((n_W_prev - f + 2 * pad) / stride) + 1
    Z = np.zeros((m, n_H, n_W, n_C), dtype=A_prev.dtype)
    A_prev_pad = zero_pad(A_prev, pad)
    for i in range(m):
        a_prev_pad = A_prev_pad[i]
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vs, hs = h * stride, w * stride
                    a_slice_prev = a_prev_pad[vs : vs + f, hs : hs + f, :]
                    Z[i, h, w, c] = conv_single_step(a_slice_prev, W[:, :, :, c], b[:, :, :, c])
    return Z, (A_prev, W, b, hparameters)


def loops_conv_backward(dZ, cache):
    (A_prev, W, b, hparameters) = cache
    (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
    (f, f, n_C_prev, n_C) = W.shape
    stride, pad = hparameters["stride"], hparameters["pad"]
    (m, n_H, n_W, n_C) = dZ.shape
    dA_prev = np.zeros(A_prev.shape, dtype=A_prev.dtype)
    dW = np.zeros(W.shape, dtype=W.dtype)
    db = np.zeros((1, 1, 1, n_C), dtype=W.dtype)
    A_prev_pad = zero_pad(A_prev, pad)
    dA_prev_pad = zero_pad(dA_prev, pad)
    for i in range(m):
        a_prev_pad = A_prev_pad[i]
        da_prev_pad = dA_prev_pad[i]
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vs, hs = h * stride, w * stride
                    a_slice = a_prev_pad[vs : vs + f, hs : hs + f, :]
                    da_prev_pad[vs : vs + f, hs : hs + f, :] += W[:, :, :, c] * dZ[i, h, w, c]
                    dW[:, :, :, c] += a_slice * dZ[i, h, w, c]
                    db[:, :, :, c] += dZ[i, h, w, c]
        # (the tutorial's [pad:-pad] slice, written so that pad = 0 works)
        dA_prev[i, :, :, :] = da_prev_pad[pad : pad + n_H_prev, pad : pad + n_W_prev, :]
    return dA_prev, dW, db


# --- vectorised NumPy (im2col) -------------------------------------------------------------
def im2col_conv_forward(A_prev, W, b, hparameters):
    stride, pad = hparameters["stride"], hparameters["pad"]
    f, _, c_in, c_out = W.shape
    A = zero_pad(A_prev, pad)
    windows = np.lib.stride_tricks.sliding_window_view(A, (f, f), axis=(1, 2))[:, ::stride, ::stride]
    # windows: (m, n_H, n_W, c_in, f, f) -> columns (m * n_H * n_W, f * f * c_in) in W's order
    m, n_H, n_W = windows.shape[:3]
    cols = windows.transpose(0, 1, 2, 4, 5, 3).reshape(m * n_H * n_W, f * f * c_in)
    Z = cols @ W.reshape(f * f * c_in, c_out) + b.reshape(1, c_out)
    return Z.reshape(m, n_H, n_W, c_out), (A_prev, W, b, hparameters)


def im2col_conv_backward(dZ, cache):
    A_prev, W, b, hparameters = cache
    stride, pad = hparameters["stride"], hparameters["pad"]
    f, _, c_in, c_out = W.shape
    m, n_H, n_W, _ = dZ.shape
    A = zero_pad(A_prev, pad)
    windows = np.lib.stride_tricks.sliding_window_view(A, (f, f), axis=(1, 2))[:, ::stride, ::stride]
    cols = windows.transpose(0, 1, 2, 4, 5, 3).reshape(m * n_H * n_W, f * f * c_in)
    dz = dZ.reshape(m * n_H * n_W, c_out)
    dW = (cols.T @ dz).reshape(W.shape)
    db = dz.sum(axis=0).reshape(1, 1, 1, c_out)
    dcols = (dz @ W.reshape(f * f * c_in, c_out).T).reshape(m, n_H, n_W, f, f, c_in)
    dA = np.zeros_like(A)
    for ki in range(f):
        for kj in range(f):
            dA[:, ki : ki + stride * n_H : stride, kj : kj + stride * n_W : stride, :] += dcols[:, :, :, ki, kj, :]
    return dA[:, pad : pad + A_prev.shape[1], pad : pad + A_prev.shape[2], :], dW, db


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def main():
    rng = np.random.default_rng(0)
    m = args.batch
    A = rng.standard_normal((m, 16, 16, 64)).astype(np.float32)
    W = (rng.standard_normal((5, 5, 64, 64)) * 0.05).astype(np.float32)
    b = rng.standard_normal((1, 1, 1, 64)).astype(np.float32)
    hp = {"stride": 1, "pad": 2}
    dZ = rng.standard_normal((m, 16, 16, 64)).astype(np.float32)

    # Equal results first.
    lb = min(args.loop_batch, m)
    Z_cn, cache_cn = cn.conv_forward(A, W, b, hp)
    Z_im, cache_im = im2col_conv_forward(A, W, b, hp)
    t0 = time.perf_counter()
    Z_lp, cache_lp = loops_conv_forward(A[:lb], W, b, hp)
    loop_fwd = (time.perf_counter() - t0) * m / lb
    t0 = time.perf_counter()
    grads_lp = loops_conv_backward(dZ[:lb], cache_lp)
    loop_bwd = (time.perf_counter() - t0) * m / lb
    grads_cn = cn.conv_backward(dZ, cache_cn)
    grads_im = im2col_conv_backward(dZ, cache_im)
    errs = [rel_err(Z_cn[:lb], Z_lp), rel_err(Z_im, Z_cn)]
    # dA_prev image by image; dW and db are sums over the batch, so against the loops' on its first lb images
    errs.append(rel_err(grads_cn[0][:lb], grads_lp[0]))
    grads_cn_lb = cn.conv_backward(dZ[:lb], cn.conv_forward(A[:lb], W, b, hp)[1])
    errs += [rel_err(g, l) for g, l in zip(grads_cn_lb[1:], grads_lp[1:])]
    errs += [rel_err(g, i) for g, i in zip(grads_cn, grads_im)]
    if max(errs) > 1e-3:
        sys.exit(f"the three versions disagree: relative errors {errs}")

    im_fwd = median_seconds(lambda: im2col_conv_forward(A, W, b, hp), args.repeats)
    im_bwd = median_seconds(lambda: im2col_conv_backward(dZ, cache_im), args.repeats)
    cn_fwd = median_seconds(lambda: cn.conv_forward(A, W, b, hp), args.repeats)
    cn_bwd = median_seconds(lambda: cn.conv_backward(dZ, cache_cn), args.repeats)

    # What the engine's one copy of its input costs (a memcpy of A, as the binding makes).
    copy = median_seconds(lambda: A.copy(), max(args.repeats, 9))
    threads = os.environ.get("RAYON_NUM_THREADS", str(os.cpu_count()))
    print(f"conv 5x5, 64 -> 64 channels, 16x16, batch {m}, pad 2; convnet threads: {threads}; numpy {np.__version__}")
    print(f"(loops timed on {lb} images, scaled to {m}; largest relative difference between versions {max(errs):.1e})")
    print(f"{'':10} {'forward ms':>12} {'backward ms':>12} {'fwd speed-up':>13} {'bwd speed-up':>13}")
    for name, f, bw in (("loops", loop_fwd, loop_bwd), ("im2col", im_fwd, im_bwd), ("convnet", cn_fwd, cn_bwd)):
        print(f"{name:10} {f * 1e3:12.1f} {bw * 1e3:12.1f} {loop_fwd / f:12.0f}x {loop_bwd / bw:12.0f}x")
    print(f"copy of A into the engine: {copy * 1e3:.2f} ms, {100 * copy / cn_fwd:.1f}% of convnet's forward")
    print(f"convnet / im2col: forward {im_fwd / cn_fwd:.1f}x, backward {im_bwd / cn_bwd:.1f}x faster")


if __name__ == "__main__":
    main()
