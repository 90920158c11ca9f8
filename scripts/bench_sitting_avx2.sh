#!/usr/bin/env bash
# Issue 19's sitting (scripts/bench_sitting.sh) as on an AVX2-only machine, on a machine that
# has AVX-512 (and AMX): every side held to AVX2 + FMA.
#   convnet:    built without the GEMM crate's AVX-512 kernels (--no-default-features, into
#               target/avx2-only) and run with CONVNET_SIMD=avx2 (our own kernels' AVX2 copies);
#   PyTorch:    ATEN_CPU_CAPABILITY=avx2 (ATen's kernels), MKL_ENABLE_INSTRUCTIONS=AVX2 (MKL),
#               ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN's convolutions);
#   TensorFlow: ONEDNN_MAX_CPU_ISA=AVX2 (its oneDNN; its Eigen kernels are built for AVX2 at most).
# convnet's JSON lines name the SIMD level it ran at ("avx2"). The SGEMM ceiling at the end is
# MKL's under the same limits. What this cannot imitate: an AVX2-only CPU's caches and clocks.
# Usage: scripts/bench_sitting_avx2.sh [OUT.jsonl]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/bench_sitting_avx2.jsonl}
cargo build --release --locked -q --no-default-features --target-dir target/avx2-only
export CONVNET_BIN=target/avx2-only/release/convnet CONVNET_SIMD=avx2
export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
scripts/bench_sitting.sh "$OUT"
