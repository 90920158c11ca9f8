#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install Fashion-MNIST if it is missing, build in
# release mode, train the default model (configs/fashion-mnist.toml), evaluate the best
# checkpoint on the test set. Extra arguments go to `convnet train` (e.g. --epochs 5). Each run
# starts afresh in runs/fashion-mnist (--overwrite), unless --resume is given: after a Ctrl-C,
# `scripts/main.sh --resume` (with the same extra arguments) continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=/usr/share/datasets/fashion-mnist
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
  echo "Fashion-MNIST is not in $DATA: installing the Debian package dataset-fashion-mnist"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
cargo build --release --locked
FRESH=--overwrite
for arg in "$@"; do case "$arg" in --resume|--overwrite) FRESH="" ;; esac; done
./target/release/convnet train $FRESH "$@"
./target/release/convnet eval --model runs/fashion-mnist/best.safetensors
