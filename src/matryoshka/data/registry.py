"""Data sets by name: ``load_dataset(name) -> ImageData`` with train / val / test splits."""

from __future__ import annotations

from matryoshka.data.base import ImageData
from matryoshka.data.digits import load_digits
from matryoshka.data.fashion_mnist import load_fashion_mnist
from matryoshka.errors import InputError

DATASETS = ("fashion_mnist", "digits")


def load_dataset(name: str, root: str | None = None, val_size: int | None = None, seed: int = 0) -> ImageData:
    """Load a data set by name; ``val_size`` defaults to each data set's own (5,000 / 180)."""
    if name == "fashion_mnist":
        return load_fashion_mnist(root, seed=seed, **({} if val_size is None else {"val_size": val_size}))
    if name == "digits":
        return load_digits(seed=seed, **({} if val_size is None else {"val_size": val_size}))
    raise InputError(f"unknown data set {name!r}; choose one of {DATASETS}")
