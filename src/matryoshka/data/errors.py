"""The data errors, apart from the data classes, so every reader (images, tables, pairs, WordNet) can raise them."""

from matryoshka.errors import MatryoshkaError


class DataNotFoundError(MatryoshkaError, FileNotFoundError):
    """A data set's files are missing; the message says which package provides them."""


class CorruptDataError(MatryoshkaError, ValueError):
    """A data file exists but cannot be parsed."""


__all__ = ["CorruptDataError", "DataNotFoundError"]
