#!/usr/bin/env bash
# Trains the web demo's two small models (web/models/*.toml) and copies their best checkpoints
# to web/models/*.safetensors, then writes the sample images (web/samples/). Needs
# Fashion-MNIST (/usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist) and
# CIFAR-10's binary version (../shared/data/cifar-10-batches-bin, or `convnet download cifar10`
# and edit the path in web/models/cifar10.toml). About 1 and 3 minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
for name in fashion-mnist cifar10; do
    target/release/convnet train --config "web/models/$name.toml" --out "runs/web-$name" --overwrite
    cp "runs/web-$name/best.safetensors" "web/models/$name.safetensors"
done
python3 scripts/make_web_samples.py
