"""The index's errors: all are :class:`matryoshka.errors.MatryoshkaError`, so the CLI and the service report them
as one clean line (or a 4xx)."""

from matryoshka.errors import MatryoshkaError


class IndexInputError(MatryoshkaError, ValueError):
    """Bad input to an index operation (wrong dim, NaN, unknown or duplicate ids, ...)."""


class CorruptIndexError(MatryoshkaError, RuntimeError):
    """An index folder that is missing files, truncated, or fails its checksums."""


class StoreBusyError(MatryoshkaError, RuntimeError):
    """The folder is open for writing by another process."""


class CompactionError(MatryoshkaError, RuntimeError):
    """A background compaction failed (reported by the next write, which is refused)."""
