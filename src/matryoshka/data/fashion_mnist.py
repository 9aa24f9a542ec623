"""Fashion-MNIST (Xiao et al. 2017): 60k/10k 28x28 grey images of 10 clothing classes.

Read from the Debian package ``dataset-fashion-mnist`` (IDX files under /usr/share/datasets/fashion-mnist);
another folder with the same four files can be given as ``root`` or in $MATRYOSHKA_FASHION_MNIST.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from matryoshka.data.base import ImageData, Split, split_train_val
from matryoshka.data.errors import CorruptDataError, DataNotFoundError
from matryoshka.data.images import Preprocess

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# Coarse super-classes (tops / bottoms / dresses / footwear / bags), used by multi-granularity recipes.
SUPERCLASS = [0, 1, 0, 2, 0, 3, 0, 3, 4, 3]
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (gzip or plain): big-endian magic (0, 0, dtype, ndim), then ndim uint32 sizes, then data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise CorruptDataError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CorruptDataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise CorruptDataError(f"{path} holds {len(raw)} bytes, but its header {shape} needs {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_root(root: str | os.PathLike | None) -> Path:
    path = Path(root or os.environ.get("MATRYOSHKA_FASHION_MNIST") or DEFAULT_ROOT)
    missing = [name for pair in _FILES.values() for name in pair if not (path / name).exists()]
    if missing:
        raise DataNotFoundError(
            f"Fashion-MNIST not found in {path} (missing {', '.join(missing)}). "
            "Install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), "
            "or point root= / $MATRYOSHKA_FASHION_MNIST at a folder holding the four IDX .gz files."
        )
    return path


def load_fashion_mnist(root: str | os.PathLike | None = None, val_size: int = 5000, seed: int = 0) -> ImageData:
    """Train (60k minus ``val_size``), validation (seeded) and the official 10k test split, standardised."""
    path = _find_root(root)
    arrays = {}
    for split, (images, labels) in _FILES.items():
        x, y = read_idx(path / images), read_idx(path / labels)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise CorruptDataError(f"{split} images {x.shape} and labels {y.shape} do not match")
        arrays[split] = (torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))
    (train_x, train_y), (test_x, test_y) = arrays["train"], arrays["test"]
    scaled = train_x.float() / 255.0
    preprocess = Preprocess("image", (1, 28, 28), (scaled.mean().item(),), (scaled.std().item(),))
    del scaled
    train_x, test_x = preprocess.normalize(train_x), preprocess.normalize(test_x)
    train, val = split_train_val(train_x, train_y, val_size, seed)
    return ImageData("fashion_mnist", train, val, Split(test_x, test_y), list(CLASS_NAMES), preprocess)
