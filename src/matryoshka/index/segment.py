"""The write segment: vectors added to a store since its last compaction, kept as unit float32 rows in RAM and
searched exactly (they are few: compaction folds them into the main index)."""

from __future__ import annotations

import numpy as np

from matryoshka.index.storage import best_first, normalize
from matryoshka.index.threads import is_small

QUERY_BLOCK_FLOATS = 1 << 22  # queries x segment rows scored at once


class Segment:
    """Vectors added since the last compaction: unit float32 rows in arrays that grow by doubling.

    A search reads ``n`` and then the arrays, which always hold at least ``n`` rows; appends write the new rows
    before raising ``n``, so a concurrent search sees a consistent prefix without a lock.
    """

    def __init__(self, dim: int, kind: str | None, capacity: int = 1024) -> None:
        self.dim, self.kind = dim, kind
        self._arrays = (np.zeros((capacity, dim), np.float32), self._ids_array(capacity), np.zeros(capacity, bool))
        self.n = 0
        self.n_dead = 0

    def _ids_array(self, size: int) -> np.ndarray:
        return np.empty(size, dtype=object) if self.kind == "str" else np.zeros(size, dtype=np.int64)

    @property
    def alive(self) -> int:
        return self.n - self.n_dead

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(unit vectors, ids, dead flags) of the first ``n`` rows, as views."""
        n = self.n
        vectors, ids, dead = self._arrays
        return vectors[:n], ids[:n], dead[:n]

    def append(self, unit: np.ndarray, ids: np.ndarray, kind: str) -> int:
        """Append rows; returns the position of the first one."""
        if self.kind is None:
            self.kind = kind
            self._arrays = (self._arrays[0], self._ids_array(len(self._arrays[0])), self._arrays[2])
        vectors, old_ids, _ = self._arrays
        start, end = self.n, self.n + len(unit)
        if end > len(vectors):
            size = max(end, 2 * len(vectors))
            grown = (np.zeros((size, self.dim), np.float32), self._ids_array(size), np.zeros(size, bool))
            for new, old in zip(grown, self._arrays, strict=True):
                new[:start] = old[:start]
            self._arrays = vectors, old_ids, _ = grown
        vectors[start:end] = unit
        old_ids[start:end] = ids
        self.n = end
        return start

    def delete(self, position: int) -> None:
        self._arrays[2][position] = True
        self.n_dead += 1

    def search(self, q: np.ndarray, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (scores, ids) by d-dim prefix cosine over the live rows, best first."""
        vectors, ids, dead = self.rows()
        prefix = vectors[:, :d]
        inverse_norms = 1.0 / np.maximum(np.linalg.norm(prefix, axis=1), 1e-12)
        qn = normalize(q[:, :d])
        k = min(k, len(ids) - int(dead.sum()))
        if k <= 0:  # every row was deleted since the caller looked
            return np.zeros((len(q), 0), np.float32), np.empty((len(q), 0), dtype=ids.dtype)
        step = max(1, QUERY_BLOCK_FLOATS // max(1, len(ids)))
        out_s, out_p = [], []
        for start in range(0, len(q), step):
            block = qn[start : start + step]
            # A matrix product would call BLAS, whose threads stall beside a busy process (see threads.py).
            dots = np.einsum("nd,qd->qn", prefix, block) if is_small(len(q)) else block @ prefix.T
            scores = dots * inverse_norms
            scores[:, dead] = -np.inf
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            top_s, top = best_first(np.take_along_axis(scores, top, 1), top, k)
            out_s.append(top_s)
            out_p.append(top)
        return np.concatenate(out_s).astype(np.float32), ids[np.concatenate(out_p)]

    def tail(self, start: int) -> Segment:
        """A new segment holding rows from ``start`` on (with their deletions)."""
        vectors, ids, dead = self.rows()
        out = Segment(self.dim, self.kind, max(1024, 2 * (len(ids) - start)))
        if len(ids) > start:
            out.append(vectors[start:], ids[start:], self.kind)
            out._arrays[2][: len(ids) - start] = dead[start:]
            out.n_dead = int(dead[start:].sum())
        return out


def merge_best(scores: list[np.ndarray], ids: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-k of several per-query (scores, ids) lists, by score (ties keep the earlier list first)."""
    if len(scores) == 1:
        return scores[0], ids[0]
    all_s, all_i = np.concatenate(scores, axis=1), np.concatenate(ids, axis=1)
    order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_s, order, 1), np.take_along_axis(all_i, order, 1)
