"""The index's errors: all are :class:`matryoshka.errors.MatryoshkaError`, so the CLI and the service report them
as one clean line (or a 4xx)."""

from matryoshka.errors import InputError, MatryoshkaError


class IndexInputError(InputError):
    """Bad input to an index operation (wrong dim, NaN, a bad plan, ...)."""


class DuplicateIdError(IndexInputError):
    """Adding an id the index already holds (the service answers 409)."""


class UnknownIdError(IndexInputError):
    """Removing or reading an id the index does not hold (the service answers 404)."""


class CorruptIndexError(MatryoshkaError, RuntimeError):
    """An index folder that is missing files, truncated, or fails its checksums."""


class StoreBusyError(MatryoshkaError, RuntimeError):
    """The folder is open for writing by another process."""


class CompactionError(MatryoshkaError, RuntimeError):
    """A background compaction failed (reported by the next write, which is refused)."""


class StoreWriteError(MatryoshkaError, OSError):
    """The disk refused a write (an I/O error on write or fsync); nothing of that write is kept (the service
    answers 503). Also an ``OSError``, with the ``errno`` of the failure."""

    def __str__(self) -> str:  # the one-line message, not OSError's "[Errno N] strerror: filename"
        return str(self.args[0]) if self.args else super().__str__()


class StoreFullError(StoreWriteError):
    """No space left on the device (or over a disk quota): the write is refused, the store stays usable, and writes
    go through again once space is freed (the service answers 507)."""
