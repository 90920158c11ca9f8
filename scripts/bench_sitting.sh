#!/usr/bin/env bash
# One sitting of issue 19's table: the ResNet, Fashion-MNIST and seed configs against PyTorch and
# TensorFlow (scripts/bench_peers.sh), then the airbench network at training batch 512 (8 steps a
# sample: its config's 1,024 would take the peers half an hour) and inference batch 64, then the
# machine's SGEMM ceiling. One JSON line per measurement in OUT (training runs also get their
# process's peak RSS). Needs the peers' venvs (see scripts/bench_peers.sh). CONVNET_BIN names
# another build of convnet (scripts/bench_sitting_avx2.sh).
# Usage: scripts/bench_sitting.sh [OUT.jsonl]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/bench_sitting.jsonl}
TORCH=${TORCH_PYTHON:-/tmp/torch-venv/bin/python}
TF=${TF_PYTHON:-/tmp/tf-venv/bin/python}
export TORCH_PYTHON=$TORCH TF_PYTHON=$TF
date >&2
scripts/bench_peers.sh 5 "$OUT"
C=${CONVNET_BIN:-./target/release/convnet}
AIR=configs/cifar10-airbench.toml
for mode in train infer; do
  case $mode in train) batch=512; steps=(--steps 8) ;; infer) batch=64; steps=() ;; esac
  for side in convnet torch tf; do
    case $side in
      convnet) cmd=("$C" bench --config $AIR --mode $mode --batch-size $batch --threads 2 --reps 5 "${steps[@]}" --json) ;;
      torch) cmd=("$TORCH" scripts/torch_config_bench.py --config $AIR --mode $mode --batch $batch --threads 2 --reps 5 "${steps[@]}" --channels-last) ;;
      tf) cmd=("$TF" scripts/tf_config_bench.py --config $AIR --mode $mode --batch $batch --threads 2 --reps 5 "${steps[@]}") ;;
    esac
    echo "+ ${cmd[*]}" >&2
    /usr/bin/time -f '{"peak_rss_kib": %M}' -o /tmp/bench_sitting_rss "${cmd[@]}" 2>/dev/null | tail -n 1 | tee -a "$OUT"
    if [[ $mode == train ]]; then tee -a "$OUT" < /tmp/bench_sitting_rss; fi
  done
done
"$TORCH" ../shared/bench/gemm_peak.py | grep '^{' | tee -a "$OUT"
date >&2
