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
from matryoshka.index.faiss_rows import kept_rows
from matryoshka.index.ids import empty_ids
from matryoshka.index.texts import kept_any, texts_bytes


@dataclass
class IndexArrays:
    """codes: the full-dim rows in the index's encoding (an array, a memory map, or :class:`DiskRows`); scales: the
    int8 row scales (else None); ids: one per row; dead: rows removed but not compacted away; shortlists: the FAISS
    structure per shortlist dim; id_kind: "int", "str", or None while empty; basis: the (d, d) orthogonal basis
    the shortlist prefixes are coordinates in (None: raw prefixes); texts: the text kept beside each row (an object
    array of str or None, see :mod:`matryoshka.index.texts`), or None when the index keeps no texts."""

    codes: np.ndarray | DiskRows
    scales: np.ndarray | None
    ids: np.ndarray
    dead: np.ndarray
    shortlists: dict[int, faiss.Index] = field(default_factory=dict)
    id_kind: str | None = None
    basis: np.ndarray | None = None
    texts: np.ndarray | None = None

    def memory_bytes(self) -> int:
        held = 0 if isinstance(self.codes, DiskRows | np.memmap) else self.codes.nbytes
        held += 0 if self.scales is None else self.scales.nbytes
        held += self.dead.nbytes + _ids_bytes(self.ids) + (0 if self.basis is None else self.basis.nbytes)
        held += texts_bytes(self.texts)
        return held + sum(_faiss_bytes(index) for index in self.shortlists.values())


def live_arrays(
    state: IndexArrays,
    dead: np.ndarray | None = None,
    new_ids: np.ndarray | None = None,
    unit: np.ndarray | None = None,
) -> IndexArrays:
    """The live rows of ``state`` (``dead``: the deletion flags to use, default its own), as new arrays; the
    shortlist structures are copied when no row is dropped (else left for the caller to rebuild). ``new_ids`` and
    ``unit``: rows about to be appended, which fix the id kind of an empty index and keep disk rows from moving."""
    dead = state.dead if dead is None else dead
    n_dead = int(dead.sum())
    alive = ~dead
    kind = state.id_kind or ("str" if new_ids is not None and new_ids.dtype == object else "int")
    if isinstance(state.codes, DiskRows) and not n_dead and (unit is None or not len(unit)):
        codes = state.codes  # nothing changes: the rows stay on the disk
    else:
        if n_dead and state.codes.dtype == np.float32:
            codes = kept_rows(state.codes, alive)  # laid out for the one-call search (faiss_rows.py)
        else:
            codes = np.ascontiguousarray(state.codes[alive] if n_dead else state.codes)
    scales = None if state.scales is None else (state.scales[alive] if n_dead else state.scales.copy())
    ids = state.ids[alive] if n_dead else state.ids.copy()
    if state.id_kind is None:
        ids = empty_ids(kind)
    shortlists = {} if n_dead else {d: faiss.clone_index(index) for d, index in state.shortlists.items()}
    texts = None if state.texts is None else (state.texts[alive] if n_dead else state.texts.copy())
    if not kept_any(texts):
        texts = None  # every row that had a text was deleted: the index keeps none
    return IndexArrays(codes, scales, ids, np.zeros(len(ids), dtype=bool), shortlists, kind, state.basis, texts)


def _ids_bytes(ids: np.ndarray) -> int:
    if ids.dtype != object:
        return ids.nbytes
    return ids.nbytes + sum(len(s) + 49 for s in ids.tolist())  # a Python str object: 49 bytes + its text


def _faiss_bytes(index: faiss.Index) -> int:
    """Vectors and graph links of a flat or HNSW FAISS index (what a search touches)."""
    index = faiss.downcast_index(index)
    storage = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
    stored = index.ntotal * getattr(storage, "code_size", index.d * 4)
    hnsw = getattr(index, "hnsw", None)
    links = hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8 if hnsw is not None else 0
    return stored + links
