#!/usr/bin/env bash
# Side-by-side throughput of the seed network: convnet against PyTorch
# (../shared/bench/seed_model_bench.py) in one sitting, on the same machine.
# Needs a PyTorch venv: python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch numpy
# Usage: scripts/bench_vs_pytorch.sh [REPS] [OUT.jsonl]
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-5}
OUT=${2:-/tmp/bench_vs_pytorch.jsonl}
PY=${PYTHON:-/tmp/torch-venv/bin/python}
BENCH=../shared/bench/seed_model_bench.py
cargo build --release --locked -q
C=./target/release/convnet
CFG=configs/cifar10-seed.toml
: > "$OUT"
run() { echo "+ $*" >&2; "$@" | tail -n 1 | tee -a "$OUT"; }
for threads in 2 1; do
  run $C bench --config $CFG --mode train --threads $threads --reps "$REPS" --json
  run "$PY" $BENCH --mode train --threads $threads --reps "$REPS"
  run "$PY" $BENCH --mode train --threads $threads --reps "$REPS" --channels-last
done
for mode in infer latency; do
  run $C bench --config $CFG --mode $mode --threads 2 --reps "$REPS" --json
  run "$PY" $BENCH --mode $mode --threads 2 --reps "$REPS"
  run "$PY" $BENCH --mode $mode --threads 2 --reps "$REPS" --channels-last
done
# Peak memory (maximum resident set size) of a whole training benchmark process.
for cmd in "$C bench --config $CFG --mode train --threads 2 --reps 2 --json" "$PY $BENCH --mode train --threads 2 --reps 2"; do
  echo "+ peak RSS: $cmd" >&2
  /usr/bin/time -f "{\"peak_rss_kib\": %M, \"command\": \"$cmd\"}" $cmd 2>&1 >/dev/null | tail -n 1 | tee -a "$OUT"
done
