"""Data sources behind one interface: ``load_data(cfg) -> ImageData`` with train / val / test splits."""

from matryoshka.data.base import ImageData, Split
from matryoshka.data.errors import CorruptDataError, DataNotFoundError
from matryoshka.data.fashion_mnist import CLASS_NAMES, SUPERCLASS
from matryoshka.data.files import ImageFileSplit
from matryoshka.data.images import Preprocess
from matryoshka.data.registry import DATASETS, data_sources, is_data_source, load_data, load_dataset, register_data

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "SUPERCLASS",
    "CorruptDataError",
    "DataNotFoundError",
    "ImageData",
    "ImageFileSplit",
    "Preprocess",
    "Split",
    "data_sources",
    "is_data_source",
    "load_data",
    "load_dataset",
    "register_data",
]
