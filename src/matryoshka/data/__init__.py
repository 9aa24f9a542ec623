"""Offline data sets behind one interface: ``load_dataset(name) -> ImageData`` with train / val / test splits."""

from matryoshka.data.base import CorruptDataError, DataNotFoundError, ImageData, Split
from matryoshka.data.registry import DATASETS, load_dataset

__all__ = ["DATASETS", "CorruptDataError", "DataNotFoundError", "ImageData", "Split", "load_dataset"]
