"""convnet's models and training from Python: ``Model``, ``train``, ``import_onnx``, data and
pictures. Everything runs in the engine (the code behind the ``convnet`` command), with the GIL
released while it computes."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _convnet
from .functions import _f32

#: The largest image `read_image` makes (as `convnet predict` refuses larger files).
MAX_IMAGE_PIXELS = 50_000_000

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["Model", "train", "import_onnx", "load_dataset", "read_image", "save_grid", "DEFAULT_DATA"]

#: Where ``load_dataset`` looks when no path is given (the same defaults as config files).
DEFAULT_DATA = {
    "cifar10": "../shared/data/cifar-10-batches-bin",
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": "/usr/share/datasets/mnist",
}


class Model:
    """A network with its config, class names and input normalisation.

    Build one with ``Model.from_config(path)`` (fresh weights from the config's seed),
    ``Model.load(checkpoint)`` (a file written by ``convnet train`` or ``Model.save``) or
    ``convnet.import_onnx(path)``.
    """

    def __init__(self, native: "_convnet.Model") -> None:
        self._native = native

    @staticmethod
    def from_config(path: PathLike) -> "Model":
        """A freshly initialised model of a config file (TOML, as ``configs/*.toml``): the weights
        from the config's seed, classes named "0", "1", ..., no input normalisation (mean 0, std 1
        on the [0, 1] scale)."""
        return Model(_convnet.Model.from_config(os.fspath(path)))

    @staticmethod
    def load(path: PathLike) -> "Model":
        """A trained model from a checkpoint (.safetensors), with its class names and the
        normalisation it was trained with."""
        return Model(_convnet.Model.load(os.fspath(path)))

    def predict(self, images: Any, logits: bool = False) -> np.ndarray:
        """Class probabilities of images.

        images: (m, h, w, c) or one image (h, w, c), NHWC, of the model's input size: uint8
        (0..255, as read from files) or floats on the [0, 1] scale (a uint8 image / 255). They
        are normalised as in training. Returns (m, n_classes) probabilities (rows summing to 1),
        or (n_classes,) for one image; raw logits with ``logits=True``.
        """
        array, single = self._batch(images)
        out = self._native.predict(array, logits)
        return out[0] if single else out

    def _batch(self, images: Any) -> Tuple[np.ndarray, bool]:
        """images as a batch (m, h, w, c) of the model's input size, contiguous uint8 or float32
        (what the engine reads), and whether it was one image."""
        array = np.asarray(images)
        single = array.ndim == 3
        if single:
            array = array[np.newaxis]
        if array.ndim != 4 or array.shape[1:] != tuple(self.input_shape):
            h, w, c = self.input_shape
            raise ValueError(
                f"images must have shape (m, {h}, {w}, {c}) or ({h}, {w}, {c}) for model {self.name!r}, "
                f"got {np.shape(images)}"
            )
        if array.dtype == np.uint8:
            return np.ascontiguousarray(array), single
        if array.dtype.kind == "f":
            return _f32(array, "images"), single
        raise TypeError(
            f"images must be uint8 (0..255) or float ([0, 1]), got dtype {array.dtype}: "
            "convert with .astype(np.uint8) or / 255.0"
        )

    def activations(self, images: Any) -> List[Tuple[str, np.ndarray]]:
        """Every layer's output for images (as ``predict`` takes them, uint8 or [0, 1] floats):
        [(label, array)], e.g. ("layer 0 (conv2d + relu)", (m, 32, 32, 64)); the last is the
        logits. For pictures of feature maps."""
        array, _ = self._batch(images)
        return self._native.activations(array)

    def summary(self) -> str:
        """A Keras-style table: each layer, its output shape, parameters and MFLOPs per image."""
        return self._native.summary()

    def save(self, path: PathLike) -> None:
        """Writes the model as a checkpoint (.safetensors) that ``Model.load`` and every convnet
        command read. Atomic: an existing file is replaced only once the new one is whole."""
        self._native.save(os.fspath(path))

    def export_onnx(self, path: PathLike) -> None:
        """Writes the model as ONNX (opset 17, input "input" float32 NCHW in [0, 1] with the
        normalisation inside, output "logits"), as ``convnet export`` does (docs/interop.md)."""
        self._native.export_onnx(os.fspath(path))

    def export_pytorch(self, directory: PathLike) -> None:
        """Writes a PyTorch module into a folder (model.py and its state_dict model.safetensors), as
        ``convnet export --format pytorch`` does (docs/interop.md)."""
        self._native.export_pytorch(os.fspath(directory))

    def parameters(self) -> Dict[str, np.ndarray]:
        """A copy of every parameter by name ("0.conv2d.weight": (f, f, c_in, c_out), ...)."""
        return self._native.parameters()

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        """(height, width, channels) of one input image."""
        return self._native.input_shape

    @property
    def class_names(self) -> List[str]:
        return self._native.class_names

    @class_names.setter
    def class_names(self, names: Sequence[str]) -> None:
        if isinstance(names, str):
            raise ValueError(f"class_names must be a list of names, got the string {names!r}")
        self._native.class_names = list(names)

    @property
    def num_params(self) -> int:
        return self._native.num_params

    @property
    def normalization(self) -> Tuple[List[float], List[float]]:
        """(mean, std) per channel on the [0, 1] scale, applied to images before the first layer."""
        return self._native.normalization

    def config_toml(self) -> str:
        """The model and its run settings as config-file text."""
        return self._native.config_toml()

    def __repr__(self) -> str:
        return repr(self._native)


def import_onnx(path: PathLike, class_names: Optional[Sequence[str]] = None) -> Model:
    """A model from an ONNX file (as ``convnet import`` reads it: docs/interop.md says which
    graphs). Notes on what was assumed or left out are printed to stderr."""
    native, notes = _convnet.Model.import_onnx(os.fspath(path), None if class_names is None else list(class_names))
    for note in notes:
        print(f"note: {note}", file=__import__("sys").stderr)
    return Model(native)


def train(
    config: PathLike,
    data: Optional[PathLike] = None,
    epochs: Optional[int] = None,
    out: Optional[PathLike] = None,
    on_epoch: Optional[Callable[[Dict[str, float]], Any]] = None,
    resume: bool = False,
    overwrite: bool = False,
    init_from: Optional[PathLike] = None,
    verbose: bool = True,
) -> Dict[str, Any]:
    """Trains the model of a config file, as ``convnet train --config`` does.

    config: a config file (TOML); data: the data set's folder (default: the config's
    ``[data] path``, else the data set's usual place); epochs: overrides the config's;
    out: the run folder (default ``runs/<model name>``), which gets config.toml, metrics.csv,
    last.safetensors and best.safetensors; on_epoch: called after every epoch with that epoch's
    metrics (a dict: epoch, train_loss, train_accuracy, val_loss, val_accuracy, test_loss,
    test_accuracy, lr, seconds, images_per_second); an exception it raises ends the run and is
    re-raised; resume: continue the run in ``out`` from last.safetensors; overwrite: replace it
    (without either, an earlier run in ``out`` is an error); init_from: start from a
    checkpoint's weights (fine-tuning); verbose: progress bar and per-epoch lines on stderr.

    Ctrl-C stops the run after the step in progress, with last.safetensors holding its position
    (``resume=True`` continues it exactly), then raises KeyboardInterrupt.

    Returns {"epochs": [metrics per epoch], "test_loss", "test_accuracy" (the final weights on
    the test set), "class_names", "stopped", "run_dir", "checkpoint"}.
    """
    if on_epoch is not None and not callable(on_epoch):
        raise ValueError(f"on_epoch must be callable (a function of one dict), got {on_epoch!r}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    return _convnet.train(
        os.fspath(config),
        data=None if data is None else os.fspath(data),
        epochs=epochs,
        out=None if out is None else os.fspath(out),
        on_epoch=on_epoch,
        resume=resume,
        overwrite=overwrite,
        init_from=None if init_from is None else os.fspath(init_from),
        verbose=verbose,
    )


def load_dataset(
    name: str, path: Optional[PathLike] = None
) -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray], List[str]]:
    """((x_train, y_train), (x_test, y_test), class_names) of "cifar10" (binary version),
    "fashion-mnist" or "mnist" (IDX files, raw or .gz) in ``path`` (default: ``DEFAULT_DATA``).
    Images uint8 (m, h, w, c); labels int64 (m,). ``convnet download NAME`` fetches them."""
    if name not in DEFAULT_DATA:
        raise ValueError(f'unknown data set {name!r}: expected one of {", ".join(DEFAULT_DATA)}')
    return _convnet.load_dataset(name, os.fspath(path) if path is not None else DEFAULT_DATA[name])


def read_image(path: PathLike, size: Optional[Tuple[int, int]] = None, channels: int = 3) -> np.ndarray:
    """A PNG or JPEG file as uint8 (height, width, channels): 3 for RGB, 1 for grey; resized
    to ``size`` = (height, width) when given."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if size is not None:
        if len(size) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in size):
            raise ValueError(f"size must be (height, width), two positive integers, got {size!r}")
        if size[0] * size[1] > MAX_IMAGE_PIXELS:
            raise ValueError(f"size {size} is over {MAX_IMAGE_PIXELS} pixels")
    return _convnet.read_image(os.fspath(path), size, channels)


def _tile_u8(array: Any) -> np.ndarray:
    """A tile as uint8: uint8 as is; anything else scaled from its own [min, max] to 0..255."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    a = a.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.full(a.shape, 128, dtype=np.uint8)
    return np.ascontiguousarray(np.round((a - lo) / (hi - lo) * 255.0).astype(np.uint8))


def save_grid(
    path: PathLike,
    tiles: Sequence[Tuple[Any, str]],
    title: str = "",
    columns: int = 0,
    scale: int = 4,
    notes: Sequence[str] = (),
) -> None:
    """Writes a PNG of labelled pictures: tiles = [(array, label)], each (h, w) grey or
    (h, w, 3) RGB; uint8 as is, other values scaled from their own min..max to black..white.
    ``scale`` enlarges every pixel; ``columns`` 0 fits as many as 1600 pixels allow."""
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 64:
        raise ValueError(f"scale must be an integer from 1 to 64, got {scale!r}")
    if isinstance(columns, bool) or not isinstance(columns, int) or not 0 <= columns <= 10_000:
        raise ValueError(f"columns must be an integer from 0 (as many as fit) to 10000, got {columns!r}")
    converted = [(_tile_u8(a), str(label)) for a, label in tiles]
    _convnet.save_grid(os.fspath(path), converted, title, columns, scale, list(notes))
