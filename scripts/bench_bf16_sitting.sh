#!/usr/bin/env bash
# One sitting of issue 20's table: the ResNet and airbench configs, training and inference, in
# float32 and bfloat16, convnet beside PyTorch (channels_last, `--bf16` = torch.autocast to
# bfloat16). The airbench network trains at batch 512 for 8 steps a sample (its config's 1,024
# would take the peers too long). One JSON line per measurement in OUT (with its "round"),
# training runs followed by their process's peak RSS. Needs the PyTorch venv
# (scripts/bench_peers.sh says how).
#
# ROUNDS > 1 runs each workload's four sides that many times in turn, each round in another
# order, so that a slow minute of the machine (this VM's speed moves 20% between runs) falls on
# every side alike; `scripts/bench_bf16_table.py OUT` prints the medians over the rounds and
# each round's ratio.
# Usage: scripts/bench_bf16_sitting.sh [OUT.jsonl] [REPS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/bench_bf16_sitting.jsonl}
REPS=${2:-5}
ROUNDS=${3:-1}
TORCH=${TORCH_PYTHON:-/tmp/torch-venv/bin/python}
C=./target/release/convnet
date >&2
lscpu | grep -o -E 'avx512_bf16|amx_bf16' | sort -u | tr '\n' ' ' >&2; echo >&2
SIDES=(convnet-f32 convnet-bf16 torch-f32 torch-bf16)
for config in configs/cifar10-resnet.toml configs/cifar10-airbench.toml; do
  for mode in train infer; do
    steps=()
    case $config:$mode in
      *airbench*:train) batch=512; steps=(--steps 8) ;;
      *:train) batch=128 ;;
      *:infer) batch=64 ;;
    esac
    for round in $(seq "$ROUNDS"); do
      for i in 0 1 2 3; do
        # Round r starts at side r - 1: each side takes each place in turn.
        side=${SIDES[$(( (i + round - 1) % 4 ))]}
        case $side in
          convnet-*) cmd=("$C" bench --config $config --mode $mode --batch-size $batch --threads 2 --reps "$REPS" "${steps[@]}" --precision "${side#convnet-}" --json) ;;
          torch-f32) cmd=("$TORCH" scripts/torch_config_bench.py --config $config --mode $mode --batch $batch --threads 2 --reps "$REPS" "${steps[@]}" --channels-last) ;;
          torch-bf16) cmd=("$TORCH" scripts/torch_config_bench.py --config $config --mode $mode --batch $batch --threads 2 --reps "$REPS" "${steps[@]}" --channels-last --bf16) ;;
        esac
        echo "+ ${cmd[*]}" >&2
        /usr/bin/time -f '{"peak_rss_kib": %M}' -o /tmp/bench_bf16_rss "${cmd[@]}" 2>/dev/null | tail -n 1 | sed "s/^{/{\"side\":\"$side\",\"round\":$round,/" | tee -a "$OUT"
        if [[ $mode == train ]]; then tee -a "$OUT" < /tmp/bench_bf16_rss; fi
      done
    done
  done
done
date >&2
