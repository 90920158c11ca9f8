"""Accuracy of an exported ONNX model on the Fashion-MNIST (or MNIST) test set, in onnxruntime:
the same number `convnet eval --model CKPT` prints for the checkpoint it was exported from.

    convnet export --model runs/fashion-mnist/best.safetensors model.onnx
    python scripts/onnx_eval.py model.onnx /usr/share/datasets/fashion-mnist

Pixels go in as the exported graph takes them: float32 NCHW in [0, 1] (the normalisation is
inside the graph).
"""
import gzip
import pathlib
import sys
import time

import numpy as np
import onnxruntime as ort


def idx(folder, stem):
    for name in (stem, stem + ".gz"):
        path = pathlib.Path(folder) / name
        if path.exists():
            data = (gzip.open if name.endswith(".gz") else open)(path, "rb").read()
            dims = data[3]
            shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
    sys.exit(f"{folder}: no {stem}(.gz)")


def main(model, folder):
    images = idx(folder, "t10k-images-idx3-ubyte").astype(np.float32)[:, None] / 255.0
    labels = idx(folder, "t10k-labels-idx1-ubyte")
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    start = time.perf_counter()
    logits = np.concatenate([sess.run(["logits"], {"input": images[i : i + 256]})[0] for i in range(0, len(images), 256)])
    seconds = time.perf_counter() - start
    accuracy = float((logits.argmax(1) == labels).mean())
    print(f"{model}: test accuracy {100 * accuracy:.2f}% on {len(labels)} images ({len(labels) / seconds:.0f} images/s in onnxruntime {ort.__version__})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
