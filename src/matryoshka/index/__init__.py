"""Retrieval over Matryoshka embeddings: adaptive and funnel search plans over an in-memory index, and the
store (write-ahead log, compaction, concurrent searches) that keeps one in a folder."""

from matryoshka.index.basis import fit_basis
from matryoshka.index.errors import (
    CompactionError,
    CorruptIndexError,
    DuplicateIdError,
    IndexInputError,
    StoreBusyError,
    StoreFullError,
    StoreWriteError,
    UnknownIdError,
)
from matryoshka.index.index import MatryoshkaIndex
from matryoshka.index.plans import AdaptivePlan, FullPlan, FunnelPlan, parse_plan
from matryoshka.index.store import IndexStore

__all__ = [
    "AdaptivePlan",
    "CompactionError",
    "CorruptIndexError",
    "DuplicateIdError",
    "FullPlan",
    "FunnelPlan",
    "IndexInputError",
    "IndexStore",
    "MatryoshkaIndex",
    "StoreBusyError",
    "StoreFullError",
    "StoreWriteError",
    "UnknownIdError",
    "fit_basis",
    "parse_plan",
]
