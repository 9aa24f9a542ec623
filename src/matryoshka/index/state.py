"""The state of a :class:`~matryoshka.index.MatryoshkaIndex` as plain arrays: what a version folder stores, what
the store and the exporters read, and how much of it sits in RAM.

``index.arrays()`` returns it, ``MatryoshkaIndex.from_arrays(arrays, **options)`` builds an index around it (no
copy), ``index.memory_bytes()`` sums what is held in RAM (rows kept on the disk or in a memory map count nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

from matryoshka.index.disk import DiskRows


@dataclass
class IndexArrays:
    """codes: the full-dim rows in the index's encoding (an array, a memory map, or :class:`DiskRows`); scales: the
    int8 row scales (else None); ids: one per row; dead: rows removed but not compacted away; shortlists: the FAISS
    structure per shortlist dim; id_kind: "int", "str", or None while empty."""

    codes: np.ndarray | DiskRows
    scales: np.ndarray | None
    ids: np.ndarray
    dead: np.ndarray
    shortlists: dict[int, faiss.Index] = field(default_factory=dict)
    id_kind: str | None = None

    def memory_bytes(self) -> int:
        held = 0 if isinstance(self.codes, DiskRows | np.memmap) else self.codes.nbytes
        held += 0 if self.scales is None else self.scales.nbytes
        held += self.dead.nbytes + _ids_bytes(self.ids)
        return held + sum(_faiss_bytes(index) for index in self.shortlists.values())


def _ids_bytes(ids: np.ndarray) -> int:
    if ids.dtype != object:
        return ids.nbytes
    return ids.nbytes + sum(len(s) + 49 for s in ids.tolist())  # a Python str object: 49 bytes + its text


def _faiss_bytes(index: faiss.Index) -> int:
    """Vectors and graph links of a flat or HNSW FAISS index (what a search touches)."""
    stored = index.ntotal * index.d * 4
    hnsw = getattr(faiss.downcast_index(index), "hnsw", None)
    return stored + (hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 if hnsw is not None else 0)
