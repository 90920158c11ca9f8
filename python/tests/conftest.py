"""Shared fixtures: random generators, a tiny learnable MNIST-format data set and a config writer.

The data set is written once per session in the IDX format that convnet's MNIST reader takes:
3 classes of 8x8 grey images (a bright horizontal bar at the top, the middle or the bottom of
the image, over noise), 200 training and 60 test images. A 2-layer network learns it to 100% in
a few epochs of a few milliseconds each.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

#: Rows of the bright bar of each class.
BARS = [(0, 2), (3, 5), (6, 8)]
N_TRAIN, N_TEST, SIZE = 200, 60, 8


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file: big-endian magic 0x0000 08 (u8) ndim, the dims as big-endian u32, the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">I", 0x00000800 | array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.tobytes())


def bar_images(n: int, rng: np.random.Generator):
    """n images (n, 8, 8) uint8 of classes 0, 1, 2, 0, 1, 2, ... and their labels (n,) uint8."""
    labels = (np.arange(n) % len(BARS)).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, SIZE, SIZE), dtype=np.uint8)
    for i, c in enumerate(labels):
        top, bottom = BARS[c]
        images[i, top:bottom, :] += 180  # at most 59 + 180 = 239: no overflow
    return images, labels


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A folder holding the tiny data set as MNIST's four IDX files."""
    directory = tmp_path_factory.mktemp("tiny-mnist")
    rng = np.random.default_rng(2024)
    x_train, y_train = bar_images(N_TRAIN, rng)
    x_test, y_test = bar_images(N_TEST, rng)
    write_idx(directory / "train-images-idx3-ubyte", x_train)
    write_idx(directory / "train-labels-idx1-ubyte", y_train)
    write_idx(directory / "t10k-images-idx3-ubyte", x_test)
    write_idx(directory / "t10k-labels-idx1-ubyte", y_test)
    return directory


@pytest.fixture(scope="session")
def tiny_arrays(tiny_data):
    """The tiny data set's arrays as written: ((x_train, y_train), (x_test, y_test)), images
    (m, 8, 8) uint8 and labels (m,) uint8, regenerated from the same seed."""
    rng = np.random.default_rng(2024)
    return bar_images(N_TRAIN, rng), bar_images(N_TEST, rng)


CONFIG = """\
name = "{name}"
input = [8, 8, 1]

[data]
dataset = "mnist"
path = "{data}"
validation = 20

[train]
batch_size = 16
epochs = {epochs}
seed = {seed}

[optimizer]
kind = "{optimizer}"
lr = {lr}

[[layers]]
type = "conv2d"
filters = 4
kernel = 3
padding = "same"

[[layers]]
type = "relu"

[[layers]]
type = "max_pool"
size = 2

[[layers]]
type = "flatten"

[[layers]]
# MNIST's reader names 10 classes ("0".."9"): the last layer must output 10, even though
# the tiny data set uses only 3 of them.
type = "dense"
units = 10
"""


@pytest.fixture
def write_config(tmp_path, tiny_data) -> Callable[..., Path]:
    """write_config(epochs=3, name="tiny", optimizer="adam", lr=0.01, seed=3) -> the path of a
    config file for a tiny conv net on the tiny data set, in this test's tmp_path."""

    def write(epochs: int = 3, name: str = "tiny", optimizer: str = "adam", lr: float = 0.01, seed: int = 3) -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(
            CONFIG.format(name=name, data=tiny_data.as_posix(), epochs=epochs, seed=seed, optimizer=optimizer, lr=lr)
        )
        return path

    return write


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's name: every test gets its own fixed numbers.
    CONVNET_TEST_SEED=N draws other ones (to check that no test depends on lucky numbers)."""
    seed = zlib.crc32(f"{request.module.__name__}::{request.node.name}".encode())
    seed ^= int(os.environ.get("CONVNET_TEST_SEED", "0"))
    return np.random.default_rng(seed)
