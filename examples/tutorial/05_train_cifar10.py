"""Section 5, the tutorial's CIFAR-10 network: train it, then use it.

conv 5x5x64 SAME + ReLU, max pool 3x3/2 SAME, LRN, conv 5x5x64 + ReLU, max pool 2x2/2, LRN,
dense 256 + ReLU, dense 10, softmax cross-entropy: configs/cifar10-seed.toml, trained by
convnet.train (Adam 1e-4, batch 64, L2 on the weights). Prints the network and a line per
epoch; then loads the best checkpoint with Model.load, measures it on the test set and predicts
a few test images. Saves 05_accuracy.png (loss and accuracy per epoch) and 05_predictions.png.

    python examples/tutorial/05_train_cifar10.py --epochs 3                  # ~45 s an epoch on 2 cores
    python examples/tutorial/05_train_cifar10.py --epochs 1 --train-images 5000 --test-images 1000
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

import convnet as cn
from _common import REPO, add_out_argument, fail, find_dataset, missing_data_message, out_dir

COLOURS = {"train": (31, 119, 180), "validation": (255, 127, 14), "test": (44, 160, 44)}


def write_cifar10(folder: Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, classes: List[str]) -> None:
    """A CIFAR-10 binary folder: the training images split over data_batch_1..5.bin, the test
    images in test_batch.bin, 3073-byte records (label, then the red, green and blue planes)."""
    folder.mkdir(parents=True, exist_ok=True)

    def records(x: np.ndarray, y: np.ndarray) -> bytes:
        planes = x.transpose(0, 3, 1, 2).reshape(len(x), 3 * 32 * 32)
        return np.concatenate([y.astype(np.uint8)[:, None], planes], axis=1).tobytes()

    for i, part in enumerate(np.array_split(np.arange(len(x_train)), 5), start=1):
        (folder / f"data_batch_{i}.bin").write_bytes(records(x_train[part], y_train[part]))
    (folder / "test_batch.bin").write_bytes(records(x_test, y_test))
    (folder / "batches.meta.txt").write_text("\n".join(classes) + "\n")


def config_value(text: str, key: str) -> str:
    match = re.search(rf'^\s*{key}\s*=\s*"?([^"#\n]*?)"?\s*(#.*)?$', text, flags=re.M)
    return match.group(1).strip() if match else ""


def with_validation(text: str, n: int) -> str:
    """The config text with [data] validation = n."""
    if re.search(r"^\s*validation\s*=", text, flags=re.M):
        return re.sub(r"^(\s*validation\s*=\s*)\d+", rf"\g<1>{n}", text, count=1, flags=re.M)
    return re.sub(r"^\[data\]\s*$", f"[data]\nvalidation = {n}", text, count=1, flags=re.M)


def percent(x: float) -> str:
    return "    -" if x is None or math.isnan(x) else f"{100 * x:5.1f}%"


def nice_ceiling(v: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least v (an axis's top)."""
    power = 10.0 ** math.floor(math.log10(max(v, 1e-6)))
    return next(k * power for k in (1, 2, 5, 10) if k * power >= v)


def draw_curves(history: List[Dict[str, float]], key: str, top: float, size=(260, 420)) -> np.ndarray:
    """An RGB plot (uint8) of history's train / val / test `key` per epoch on a white canvas,
    from 0 (bottom) to `top`, with a light grid at tenths: no plotting library needed."""
    h, w = size
    img = np.full((h, w, 3), 255, dtype=np.uint8)
    left, right, bottom, up = 8, w - 8, h - 8, 8
    for k in range(11):
        y = bottom - round(k * (bottom - up) / 10)
        img[y, left:right] = 225 if k not in (0, 10) else 120
    img[up:bottom + 1, left] = img[up:bottom + 1, right - 1] = 120
    n = len(history)

    def xy(i: int, v: float):
        x = left + (right - 1 - left) * (i / (n - 1) if n > 1 else 0.5)
        y = bottom - (bottom - up) * min(max(v / top, 0.0), 1.0)
        return x, y

    for split, prefix in [("train", "train"), ("validation", "val"), ("test", "test")]:
        values = [m[f"{prefix}_{key}"] for m in history]
        points = [xy(i, v) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
        colour = COLOURS[split]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            steps = int(max(abs(x1 - x0), abs(y1 - y0))) * 2 + 1
            for t in np.linspace(0, 1, steps):
                x, y = round(x0 + t * (x1 - x0)), round(y0 + t * (y1 - y0))
                img[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = colour
        for x, y in points:
            x, y = round(x), round(y)
            img[max(y - 4, 0) : y + 5, max(x - 4, 0) : x + 5] = colour
    return img


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Section 5 of the tutorial: train the tutorial's CIFAR-10 network (configs/cifar10-seed.toml) "
        "with convnet.train, printing a line per epoch; then load the best checkpoint with Model.load, measure it "
        "on the test set and predict a few test images. Saves 05_accuracy.png and 05_predictions.png in --out, and "
        "the run (config.toml, metrics.csv, last.safetensors, best.safetensors) in --out/05_<model name>.",
    )
    parser.add_argument("--config", metavar="FILE", default=str(REPO / "configs" / "cifar10-seed.toml"), help="the network and its training (default: configs/cifar10-seed.toml)")
    parser.add_argument("--data", metavar="DIR", help="the CIFAR-10 binary folder (default: ../shared/data/cifar-10-batches-bin beside the repository, or data/cifar10)")
    parser.add_argument("--epochs", type=int, metavar="N", help="epochs to train (default: the config's, 10 for cifar10-seed.toml)")
    parser.add_argument("--train-images", type=int, metavar="N", help="train on the first N training images only (a copy of them is written to --out/05_data)")
    parser.add_argument("--test-images", type=int, metavar="N", help="test on the first N test images only (with --train-images, or alone)")
    parser.add_argument("--validation", type=int, metavar="N", help="images kept from the end of the training set for validation (default: the config's, "
                        "or a tenth of --train-images if that is smaller)")
    parser.add_argument("--predict", type=int, default=16, metavar="N", help="test images to predict and draw (default 16)")
    parser.add_argument("--resume", action="store_true", help="continue the earlier run in --out/05_<name> from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace the earlier run in --out/05_<name>")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (the per-epoch lines are still printed)")
    add_out_argument(parser, "pictures and the run")
    args = parser.parse_args()

    config = Path(args.config)
    if not config.is_file():
        fail(f"{config}: no such config file")
    text = config.read_text()
    if config_value(text, "dataset") != "cifar10":
        fail(f"{config} trains on {config_value(text, 'dataset') or 'an unnamed data set'}: this script is for CIFAR-10 configs")
    name = config_value(text, "name") or config.stem
    data = find_dataset("cifar10", args.data)
    if data is None:
        fail(missing_data_message(["cifar10"], args.data))
    for flag in ["epochs", "train_images", "test_images", "predict"]:
        value = getattr(args, flag)
        if value is not None and value < 1:
            fail(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    if args.validation is not None and args.validation < 0:
        fail(f"--validation must be at least 0, got {args.validation}")
    out = out_dir(args)
    run_dir = out / f"05_{name}"

    print(f"The network ({config}):")
    print(cn.Model.from_config(config).summary())

    # A subset is a smaller CIFAR-10 folder of the first images, so that an epoch takes seconds.
    (x_train, y_train), (x_test, y_test), classes = cn.load_dataset("cifar10", data)
    validation = int(config_value(text, "validation") or 0)
    if args.train_images or args.test_images:
        x_train, y_train = x_train[: args.train_images], y_train[: args.train_images]
        x_test, y_test = x_test[: args.test_images], y_test[: args.test_images]
        if len(x_train) < 5:
            fail(f"--train-images {len(x_train)}: at least 5 are needed (one per data_batch file)")
        validation = min(validation, len(x_train) // 10)
        data = out / "05_data"
        write_cifar10(data, x_train, y_train, x_test, y_test, classes)
        print(f"subset: the first {len(x_train)} training and {len(x_test)} test images, written to {data}")
    if args.validation is not None:
        validation = args.validation
    if validation >= len(x_train):
        fail(f"validation {validation} leaves no training images out of {len(x_train)}")
    if validation != int(config_value(text, "validation") or 0):
        config = out / f"05_{config.stem}.toml"
        config.write_text(with_validation(text, validation))
        print(f"config with validation = {validation}: {config}")
    print(f"data: {data}: {len(x_train) - validation} training, {validation} validation, {len(x_test)} test images; "
          f"classes {', '.join(classes)}")

    print(f"\ntraining into {run_dir}")
    header = f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'val loss':>8} {'val acc':>7} {'test loss':>9} {'test acc':>8} {'seconds':>7} {'images/s':>8}"
    print(header)

    def on_epoch(m: Dict[str, float]) -> None:
        val_loss = "       -" if math.isnan(m["val_loss"]) else f"{m['val_loss']:8.4f}"
        print(f"{m['epoch']:>5} {m['train_loss']:>10.4f} {percent(m['train_accuracy']):>9} {val_loss} {percent(m['val_accuracy']):>7} "
              f"{m['test_loss']:>9.4f} {percent(m['test_accuracy']):>8} {m['seconds']:>7.1f} {m['images_per_second']:>8.0f}", flush=True)

    started = time.time()
    try:
        report = cn.train(config, data=data, epochs=args.epochs, out=run_dir, on_epoch=on_epoch, resume=args.resume,
                          overwrite=args.overwrite, verbose=not args.quiet)
    except KeyboardInterrupt:
        print(f"\nstopped: {run_dir / 'last.safetensors'} holds the position; run again with --resume to continue", file=sys.stderr)
        return 130
    except FloatingPointError as e:
        fail(str(e), code=1)
    except (ValueError, OSError) as e:
        fail(f"{e}" + (" (this script's flags: --resume, --overwrite)" if "earlier run" in str(e) else ""))
    history = report["epochs"]
    print(f"{len(history)} epoch(s) in {time.time() - started:.0f} s; final weights: test accuracy {percent(report['test_accuracy']).strip()}")

    # The best checkpoint (best validation accuracy; the test set's when there is no validation).
    best = run_dir / "best.safetensors"
    model = cn.Model.load(best if best.exists() else run_dir / "last.safetensors")
    scores = [m["val_accuracy"] if validation else m["test_accuracy"] for m in history]
    best_epoch = history[int(np.nanargmax(scores))]["epoch"]
    print(f"\nModel.load({best.name}): {model.name}, {model.num_params:,} parameters, input {model.input_shape}, "
          f"normalisation mean {np.round(model.normalization[0], 3).tolist()} std {np.round(model.normalization[1], 3).tolist()}")
    probabilities = np.concatenate([model.predict(x_test[i : i + 500]) for i in range(0, len(x_test), 500)])
    predicted = probabilities.argmax(axis=1)
    accuracy = float(np.mean(predicted == y_test))
    print(f"test accuracy by Model.predict on {len(x_test)} images: {100 * accuracy:.2f}% (train's figure for epoch {best_epoch}: "
          f"{percent(history[best_epoch - 1]['test_accuracy']).strip()})")
    per_class = [float(np.mean(predicted[y_test == c] == c)) if np.any(y_test == c) else float("nan") for c in range(len(classes))]
    print("per class: " + ", ".join(f"{c} {percent(a).strip()}" for c, a in zip(classes, per_class)))

    n = min(args.predict, len(x_test))
    print(f"\nthe first {n} test images:")
    tiles = []
    for i in range(n):
        p, t = int(predicted[i]), int(y_test[i])
        mark = "right" if p == t else "WRONG"
        print(f"  {i:>3}: {classes[t]:<10} -> {classes[p]:<10} {100 * probabilities[i, p]:5.1f}%  {mark}")
        tiles.append((x_test[i], f"{classes[p]} {100 * probabilities[i, p]:.0f}%" + ("" if p == t else f" ({classes[t]})")))
    path = out / "05_predictions.png"
    cn.save_grid(path, tiles, title=f"{model.name}: predictions on the first {n} test images", columns=8, scale=3,
                 notes=[f"the predicted class and its probability; the true class in brackets when it is wrong; "
                        f"{100 * accuracy:.1f}% of all {len(x_test)} test images right"])
    print(f"saved {path}")

    top_loss = nice_ceiling(max(m[k] for m in history for k in ("train_loss", "val_loss", "test_loss") if not math.isnan(m[k])))
    path = out / "05_accuracy.png"
    cn.save_grid(
        path,
        [(draw_curves(history, "accuracy", 1.0), "accuracy, 0 to 100%"), (draw_curves(history, "loss", top_loss), f"loss, 0 to {top_loss:g}")],
        title=f"{model.name}: {len(history)} epoch(s)",
        scale=1,
        notes=["blue: training (averaged over the epoch), orange: validation, green: test; one dot per epoch; grid lines at tenths",
               "accuracy per epoch: " + ", ".join(f"{m['epoch']}: {percent(m['test_accuracy']).strip()} test" for m in history)],
    )
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
