"""What the tutorial's scripts share: where things are, finding an example image, turning
signed values into grey levels, and failing with one clear line.

Not a section of the tutorial: the numbered scripts import it (it sits beside them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, NoReturn, Optional, Tuple

import numpy as np

import convnet as cn

REPO = Path(__file__).resolve().parents[2]
#: Pictures and runs go here unless --out says otherwise (.gitignore ignores runs/).
DEFAULT_OUT = REPO / "runs" / "tutorial"

#: Where each data set is looked for, in order, when --data is not given: the place the
#: configs name (relative to the repository root), then where `convnet download` puts it.
DATA_PLACES = {
    "cifar10": [(REPO / cn.DEFAULT_DATA["cifar10"]).resolve(), REPO / "data" / "cifar10"],
    "fashion-mnist": [Path(cn.DEFAULT_DATA["fashion-mnist"]), REPO / "data" / "fashion-mnist"],
}

#: The files each data set's folder must hold (IDX files may also end in .gz).
DATA_FILES = {
    "cifar10": [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin", "batches.meta.txt"],
    "fashion-mnist": ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
}

SAMPLE_IMAGE = REPO / "docs" / "images" / "sample-fire-truck.png"


def fail(message: str, code: int = 2) -> NoReturn:
    """Prints "error: message" on stderr and exits with `code` (2, as convnet's CLI does)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def has_dataset(name: str, folder: Path) -> bool:
    """Whether `folder` holds every file of the data set (IDX files raw or .gz)."""
    def present(file: str) -> bool:
        return (folder / file).is_file() or (name != "cifar10" and (folder / f"{file}.gz").is_file())

    return folder.is_dir() and all(present(f) for f in DATA_FILES[name])


def find_dataset(name: str, data: Optional[str]) -> Optional[Path]:
    """The folder of data set `name`: `data` when given and complete, else the first complete
    one of DATA_PLACES; None when there is none."""
    places = [Path(data)] if data else DATA_PLACES[name]
    return next((p for p in places if has_dataset(name, p)), None)


def missing_data_message(names: List[str], data: Optional[str]) -> str:
    looked = "; ".join(
        f"{n} in {', '.join(str(p) for p in ([Path(data)] if data else DATA_PLACES[n]))}" for n in names
    )
    return (
        f"no data set found (looked for {looked}). Fetch one with `convnet download cifar10 --dir data/cifar10` "
        "or `apt-get install dataset-fashion-mnist`, point --data at its folder, "
        f"or pass any PNG or JPEG with --image (e.g. --image {SAMPLE_IMAGE.relative_to(REPO)})"
    )


def add_out_argument(parser: argparse.ArgumentParser, what: str = "pictures") -> None:
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=str(DEFAULT_OUT),
        help=f"folder for the {what} (created if needed; default: runs/tutorial in the repository, which git ignores)",
    )


def out_dir(args: argparse.Namespace) -> Path:
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the image to work on")
    group.add_argument("--image", metavar="FILE", help="any PNG or JPEG (read in colour); overrides --dataset")
    group.add_argument(
        "--dataset",
        choices=["auto", "cifar10", "fashion-mnist"],
        default="auto",
        help="take a test image of this data set (auto: CIFAR-10 if found, else Fashion-MNIST)",
    )
    group.add_argument(
        "--data",
        metavar="DIR",
        help="the data set's folder (default: ../shared/data/cifar-10-batches-bin beside the repository or data/cifar10 "
        "for CIFAR-10; /usr/share/datasets/fashion-mnist or data/fashion-mnist for Fashion-MNIST)",
    )
    group.add_argument("--index", type=int, help="which test image (default 29, a fire truck in CIFAR-10; 0 if the test set has fewer images)")


def load_image(args: argparse.Namespace, max_side: int = 256) -> Tuple[np.ndarray, str, str]:
    """The image the arguments name, uint8 (height, width, channels), what it is ("CIFAR-10
    test image 29 (truck)") and where it came from (the file or data folder). A file larger
    than `max_side` is resized to fit (the scripts print every size)."""
    if args.image:
        path = Path(args.image)
        if not path.is_file():
            fail(f"{path}: no such image file (give a PNG or JPEG)")
        try:
            image = cn.read_image(path)
        except (ValueError, OSError) as e:
            fail(str(e))
        h, w = image.shape[:2]
        if max(h, w) > max_side:
            size = (max(1, h * max_side // max(h, w)), max(1, w * max_side // max(h, w)))
            image = cn.read_image(path, size=size)
            return image, f"{path.name}, {w}x{h} resized to {size[1]}x{size[0]}", str(path)
        return image, f"{path.name}, {w}x{h}", str(path)

    names = ["cifar10", "fashion-mnist"] if args.dataset == "auto" else [args.dataset]
    for name in names:
        folder = find_dataset(name, args.data)
        if folder is None:
            continue
        try:
            _, (x_test, y_test), classes = cn.load_dataset(name, folder)
        except (ValueError, OSError) as e:
            fail(str(e))
        index = args.index if args.index is not None else (29 if len(x_test) > 29 else 0)
        if not 0 <= index < len(x_test):
            fail(f"--index {index} is out of range: the test set in {folder} has {len(x_test)} images")
        label = classes[int(y_test[index])]
        pretty = "CIFAR-10" if name == "cifar10" else "Fashion-MNIST"
        return x_test[index], f"{pretty} test image {index} ({label})", str(folder)
    fail(missing_data_message(names, args.data))


def grey(image: np.ndarray) -> np.ndarray:
    """A uint8 (h, w, c) image as float32 (h, w) grey levels 0..255 (luma for colour)."""
    x = image.astype(np.float32)
    if x.ndim == 2:
        return x
    if x.shape[2] == 1:
        return x[:, :, 0]
    return x[:, :, :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def signed_u8(values: np.ndarray) -> np.ndarray:
    """Signed responses as grey levels: 0 is mid-grey (128), the largest |value| white (if
    positive) or black (if negative); as `convnet filter` maps edge responses."""
    v = np.asarray(values, dtype=np.float64)
    peak = float(np.abs(v).max()) if v.size else 0.0
    if peak == 0.0:
        return np.full(v.shape, 128, dtype=np.uint8)
    return np.clip(np.round(128 + v * 127 / peak), 0, 255).astype(np.uint8)


def as_tile(image: np.ndarray) -> np.ndarray:
    """A uint8 (h, w, c) image as save_grid takes it: (h, w) grey or (h, w, 3) RGB."""
    return image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image


def matrix(a: np.ndarray, fmt: str = "{:g}") -> str:
    """A 2-D array as aligned rows, for printing small examples."""
    cells = [[fmt.format(float(v)) for v in row] for row in np.asarray(a)]
    width = max(len(c) for row in cells for c in row)
    return "\n".join("    [" + "  ".join(c.rjust(width) for c in row) + "]" for row in cells)
