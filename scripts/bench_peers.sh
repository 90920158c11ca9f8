#!/usr/bin/env bash
# Side-by-side throughput of the modern configs (and the seed network) against PyTorch
# (channels_last) and TensorFlow, in one sitting on the same machine, with the same
# definitions as `convnet bench` (scripts/torch_config_bench.py and scripts/tf_config_bench.py:
# ../shared/bench's scripts with the airbench network's layers added).
# Needs the peers' venvs (see ../shared/bench/README.md):
#   python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch numpy
#   python3 -m venv /tmp/tf-venv && /tmp/tf-venv/bin/pip install tensorflow-cpu
# Usage: scripts/bench_peers.sh [REPS] [OUT.jsonl] [CONFIG...]
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-5}
OUT=${2:-/tmp/bench_peers.jsonl}
shift $(( $# > 2 ? 2 : $# ))
if (( $# )); then CONFIGS=("$@"); else CONFIGS=(configs/cifar10-resnet.toml configs/fashion-mnist-bn.toml configs/cifar10-seed.toml); fi
TORCH=${TORCH_PYTHON:-/tmp/torch-venv/bin/python}
TF=${TF_PYTHON:-/tmp/tf-venv/bin/python}
# CONVNET_BIN: another build of convnet (scripts/bench_sitting_avx2.sh); else this one, built.
if [[ -z ${CONVNET_BIN:-} ]]; then cargo build --release --locked -q; fi
C=${CONVNET_BIN:-./target/release/convnet}
: > "$OUT"
# One JSON line per measurement; the training runs also get their process's peak RSS.
run() {
  echo "+ $*" >&2
  /usr/bin/time -f '{"peak_rss_kib": %M}' -o /tmp/bench_peers_rss "$@" 2>/dev/null | tail -n 1 | tee -a "$OUT"
  if [[ " $* " == *" train "* ]]; then tee -a "$OUT" < /tmp/bench_peers_rss; fi
}
for cfg in "${CONFIGS[@]}"; do
  train_batch=$(sed -n 's/^batch_size *= *\([0-9]*\).*/\1/p' "$cfg" | head -n 1)
  for mode in train infer latency; do
    case $mode in train) batch=${train_batch:-64} ;; infer) batch=64 ;; latency) batch=1 ;; esac
    run $C bench --config "$cfg" --mode $mode --batch-size "$batch" --threads 2 --reps "$REPS" --json
    run "$TORCH" scripts/torch_config_bench.py --config "$cfg" --mode $mode --batch "$batch" --threads 2 --reps "$REPS" --channels-last
    run "$TF" scripts/tf_config_bench.py --config "$cfg" --mode $mode --batch "$batch" --threads 2 --reps "$REPS"
  done
done
