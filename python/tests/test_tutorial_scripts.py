"""Each script of examples/tutorial/ runs, on small data made here: a tiny CIFAR-10 binary
folder (50 training and 20 test images) and a tiny Fashion-MNIST IDX folder, so that no data
set needs to be installed. Each script is run as a user runs it, in a subprocess, from a folder
outside the repository; its exit code, the lines that show its point and its pictures are
checked. About 15 s on 2 cores."""

from __future__ import annotations

import gzip
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "examples" / "tutorial"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(script: str, *args: str, cwd: Path, expect: int = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAYON_NUM_THREADS="2", PYTHONDONTWRITEBYTECODE="1")  # no __pycache__ in the checkout
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == expect, f"{script} {' '.join(args)} exited with {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return done


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert path.stat().st_size > 1000, f"{path} is suspiciously small"


def images(rng: np.random.Generator, n: int, side: int, channels: int) -> tuple:
    """n images with a light square on a dark noisy background (so that there are edges),
    and labels cycling through the 10 classes."""
    x = rng.integers(0, 60, size=(n, side, side, channels), dtype=np.uint8)
    for i in range(n):
        top, left = rng.integers(2, side // 2, size=2)
        x[i, top : top + side // 3, left : left + side // 3] = 200 + i % 50
    return x, (np.arange(n) % 10).astype(np.uint8)


@pytest.fixture(scope="module")
def tutorial_data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tutorial-data")
    rng = np.random.default_rng(0)

    # CIFAR-10, binary version: data_batch_1..5.bin and test_batch.bin of 3073-byte records
    # (label, then the 32x32 red, green and blue planes), and batches.meta.txt.
    cifar = root / "cifar-10-batches-bin"
    cifar.mkdir()
    for name, n in [(f"data_batch_{i}.bin", 10) for i in range(1, 6)] + [("test_batch.bin", 20)]:
        x, y = images(rng, n, 32, 3)
        planes = x.transpose(0, 3, 1, 2).reshape(n, 3072)
        (cifar / name).write_bytes(np.concatenate([y[:, None], planes], axis=1).tobytes())
    (cifar / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n")

    # Fashion-MNIST, IDX: big-endian magic 0x00000803 (images) / 0x00000801 (labels), u32 sizes,
    # then the bytes; the training files gzip-compressed as the Debian package ships them.
    fashion = root / "fashion-mnist"
    fashion.mkdir()
    for prefix, n, compress in [("train", 30, True), ("t10k", 10, False)]:
        x, y = images(rng, n, 28, 1)
        files = {
            f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 0x803, n, 28, 28) + x.tobytes(),
            f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 0x801, n) + y.tobytes(),
        }
        for name, content in files.items():
            if compress:
                (fashion / f"{name}.gz").write_bytes(gzip.compress(content))
            else:
                (fashion / name).write_bytes(content)

    # The tutorial's network, narrowed (8 filters, 32 units) so that an epoch takes a moment:
    # the same layers as configs/cifar10-seed.toml.
    seed = (REPO / "configs" / "cifar10-seed.toml").read_text()
    tiny = re.sub(r"^filters = 64", "filters = 8", seed, flags=re.M)
    tiny = re.sub(r"^units = 256", "units = 32", tiny, flags=re.M)
    tiny = re.sub(r"^validation = \d+", "validation = 8", tiny, flags=re.M)
    tiny = re.sub(r'^name = "cifar10-seed"', 'name = "cifar10-tiny"', tiny, flags=re.M)
    assert tiny.count("filters = 8") == 2 and "units = 32" in tiny and "validation = 8" in tiny
    config = root / "cifar10-tiny.toml"
    config.write_text(tiny)
    return {"cifar": cifar, "fashion": fashion, "config": config, "empty": root}


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("[0-9][0-9]_*.py")))
def test_every_script_explains_itself_with_help(script, tmp_path):
    done = run(script, "--help", cwd=tmp_path)
    assert done.stdout.startswith("usage:") and "--out" in done.stdout


def test_the_scripts_are_the_tutorials_sections():
    names = sorted(p.name for p in SCRIPTS.glob("[0-9][0-9]_*.py"))
    assert names == ["01_edge_detection.py", "02_padding_and_stride.py", "03_pooling.py", "04_backward_pass.py", "05_train_cifar10.py"]


def test_edge_detection_gives_377_and_draws_the_edges(tutorial_data, tmp_path):
    out = run("01_edge_detection.py", "--data", str(tutorial_data["cifar"]), "--index", "3", "--out", str(tmp_path), cwd=tmp_path).stdout
    assert "conv_single_step(patch, kernel, b=0) = 377" in out
    assert "Z shape (1, 1, 1, 1), Z = 377" in out
    assert "588 - 211 = 377" in out and "328" in out
    assert "[ 0  30  30   0]" in out, "the vertical kernel on the 6x6 step edge"
    assert "CIFAR-10 test image 3 (cat)" in out
    assert "-> Z (1, 30, 30, 2)" in out
    assert_png(tmp_path / "01_edges.png")


def test_edge_detection_reads_fashion_mnist_and_image_files(tutorial_data, tmp_path):
    out = run("01_edge_detection.py", "--dataset", "fashion-mnist", "--data", str(tutorial_data["fashion"]), "--index", "0", "--out", str(tmp_path), cwd=tmp_path).stdout
    assert "Fashion-MNIST test image 0 (T-shirt/top)" in out and "-> Z (1, 26, 26, 2)" in out
    sample = REPO / "docs" / "images" / "sample-fire-truck.png"
    out = run("01_edge_detection.py", "--image", str(sample), "--out", str(tmp_path / "image"), cwd=tmp_path).stdout
    assert "sample-fire-truck.png, 192x192" in out and "-> Z (1, 190, 190, 2)" in out and "W (3, 3, 3, 2)" in out
    assert_png(tmp_path / "image" / "01_edges.png")


@pytest.mark.parametrize("script", ["01_edge_detection.py", "03_pooling.py", "05_train_cifar10.py"])
def test_missing_data_is_one_clear_line_and_exit_code_2(tutorial_data, script, tmp_path):
    done = run(script, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path), cwd=tmp_path, expect=2)
    assert done.stderr.startswith("error: no data set found") and str(tmp_path / "nowhere") in done.stderr
    assert "convnet download cifar10" in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.glob("*.png"))


def test_padding_and_stride_sizes_agree_with_the_formula(tutorial_data, tmp_path):
    out = run("02_padding_and_stride.py", "--data", str(tutorial_data["cifar"]), "--out", str(tmp_path), cwd=tmp_path).stdout
    assert "zero_pad(x, 2).shape = (4, 7, 7, 2)" in out
    rows = [line for line in out.splitlines() if re.match(r"^\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s+(ok|DIFFERENT)", line)]
    assert len(rows) == 9 and all(" ok " in row for row in rows), rows
    assert "227  11   0   4       55    55  ok" in out
    assert "largest difference from the loops" in out
    assert "SAME      p 1, s 1: floor((32 + 2 - 3) / 1) + 1 = 32 -> Z 32x32" in out
    assert_png(tmp_path / "02_padding_and_stride.png")


def test_pooling_the_4x4_example(tutorial_data, tmp_path):
    out = run("03_pooling.py", "--data", str(tutorial_data["cifar"]), "--out", str(tmp_path), cwd=tmp_path).stdout
    assert "max pooling -> 2x2:\n    [9  2]\n    [6  3]" in out
    assert "average pooling -> 2x2:\n    [3.75  1.25]\n    [3.75     2]" in out
    assert "32x32 -> 16x16" in out and "32x32 -> 8x8" in out
    assert_png(tmp_path / "03_pooling.png")


def test_backward_passes_match_finite_differences(tutorial_data, tmp_path):
    out = run("04_backward_pass.py", "--dataset", "fashion-mnist", "--data", str(tutorial_data["fashion"]), "--out", str(tmp_path), cwd=tmp_path).stdout
    assert "FAILED" not in out
    assert "all gradients within 0.002 of finite differences" in out
    checked = [line for line in out.splitlines() if re.search(r"\d\.\de-\d\d\s+\d\.\de-\d\d$", line)]
    assert len(checked) == 23, checked
    for what in ["conv_backward, 3x3, pad 0", "pool_backward, max", "pool_backward, average", "lrn_backward", "chained"]:
        assert any(what in line for line in checked), what
    assert "the tutorial's mask x == max(x): [[1, 1], [0, 0]], total gradient 2" in out
    assert "da_prev_pad[0:-0, 0:-0, :].shape = (0, 0, 3)" in out
    assert_png(tmp_path / "04_backward_pass.png")


def test_a_failing_gradient_check_exits_with_1(tutorial_data, tmp_path):
    done = run("04_backward_pass.py", "--tolerance", "1e-12", "--data", str(tutorial_data["cifar"]), "--out", str(tmp_path), cwd=tmp_path, expect=1)
    assert "FAILED" in done.stdout and "over the tolerance" in done.stderr


def test_training_the_tutorials_network(tutorial_data, tmp_path):
    args = ["--config", str(tutorial_data["config"]), "--data", str(tutorial_data["cifar"]), "--epochs", "1", "--predict", "8", "--quiet", "--out", str(tmp_path)]
    out = run("05_train_cifar10.py", *args, cwd=tmp_path).stdout
    assert "layer 0 (conv2d + relu)  [32, 32, 8]" in out, "the model summary"
    assert "42 training, 8 validation, 20 test images" in out
    assert re.search(r"^\s+1\s+\d+\.\d{4}\s+\d+\.\d%", out, flags=re.M), "the epoch's line"
    assert "Model.load(best.safetensors): cifar10-tiny" in out
    assert "test accuracy by Model.predict on 20 images" in out
    assert len(re.findall(r"^\s+\d+: \w+\s+-> \w+\s+\d+\.\d%\s+(right|WRONG)$", out, flags=re.M)) == 8
    run_dir = tmp_path / "05_cifar10-tiny"
    for name in ["best.safetensors", "last.safetensors", "metrics.csv", "config.toml"]:
        assert (run_dir / name).is_file(), name
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 2
    assert_png(tmp_path / "05_accuracy.png")
    assert_png(tmp_path / "05_predictions.png")

    # The run is there: a second training refuses to replace it unless asked.
    done = run("05_train_cifar10.py", *args, cwd=tmp_path, expect=2)
    assert "earlier run" in done.stderr and "--overwrite" in done.stderr

    # A subset of the data, written as a smaller CIFAR-10 folder, replacing the run.
    out = run("05_train_cifar10.py", *args, "--train-images", "20", "--test-images", "10", "--overwrite", cwd=tmp_path).stdout
    assert "subset: the first 20 training and 10 test images" in out
    assert "18 training, 2 validation, 10 test images" in out
    assert (tmp_path / "05_data" / "data_batch_5.bin").stat().st_size == 4 * 3073
