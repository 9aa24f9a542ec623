"""The write segment: vectors added to a store since its last compaction, kept as unit float32 rows in RAM (with
their ids and kept texts) and searched exactly (they are few: compaction folds them into the main index)."""

from __future__ import annotations

import numpy as np

from matryoshka.index.storage import best_first, normalize
from matryoshka.index.threads import is_small

QUERY_BLOCK_FLOATS = 1 << 22  # queries x segment rows scored at once


class Segment:
    """Vectors added since the last compaction: unit float32 rows, ids, deletion flags and texts (str or None) in
    arrays that grow by doubling.

    A search reads ``n`` and then the arrays, which always hold at least ``n`` rows; appends write the new rows
    before raising ``n``, so a concurrent search sees a consistent prefix without a lock.
    """

    def __init__(self, dim: int, kind: str | None, capacity: int = 1024) -> None:
        self.dim, self.kind = dim, kind
        self._arrays = self._new_arrays(capacity)
        self.n = 0
        self.n_dead = 0
        self.n_texts = 0  # rows appended with a text (deleted ones included)

    def _new_arrays(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ids = np.empty(size, dtype=object) if self.kind == "str" else np.zeros(size, dtype=np.int64)
        return np.zeros((size, self.dim), np.float32), ids, np.zeros(size, bool), np.full(size, None, dtype=object)

    @property
    def alive(self) -> int:
        return self.n - self.n_dead

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(unit vectors, ids, dead flags) of the first ``n`` rows, as views."""
        n = self.n
        vectors, ids, dead, _ = self._arrays
        return vectors[:n], ids[:n], dead[:n]

    def texts(self) -> np.ndarray:
        """The texts of the first ``n`` rows (None where a row has none), as a view."""
        n = self.n  # before the arrays, as in rows(): they always hold at least n rows
        return self._arrays[3][:n]

    def append(self, unit: np.ndarray, ids: np.ndarray, kind: str, texts: np.ndarray | None = None) -> int:
        """Append rows (with their texts, or None); returns the position of the first one."""
        if self.kind is None:
            self.kind = kind
            self._arrays = (self._arrays[0], self._new_arrays(len(self._arrays[0]))[1], *self._arrays[2:])
        start, end = self.n, self.n + len(unit)
        if end > len(self._arrays[0]):
            grown = self._new_arrays(max(end, 2 * len(self._arrays[0])))
            for new, old in zip(grown, self._arrays, strict=True):
                new[:start] = old[:start]
            self._arrays = grown
        vectors, old_ids, _, old_texts = self._arrays
        vectors[start:end] = unit
        old_ids[start:end] = ids
        if texts is not None:
            old_texts[start:end] = texts
            self.n_texts += int(np.not_equal(texts, None).sum())
        self.n = end
        return start

    def delete(self, position: int) -> None:
        self._arrays[2][position] = True
        self.n_dead += 1

    def search(self, q: np.ndarray, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (scores, row positions) by d-dim prefix cosine over the live rows, best first."""
        vectors, ids, dead = self.rows()
        prefix = vectors[:, :d]
        inverse_norms = 1.0 / np.maximum(np.linalg.norm(prefix, axis=1), 1e-12)
        qn = normalize(q[:, :d])
        k = min(k, len(ids) - int(dead.sum()))
        if k <= 0:  # every row was deleted since the caller looked
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), dtype=np.int64)
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
        return np.concatenate(out_s).astype(np.float32), np.concatenate(out_p)

    def tail(self, start: int) -> Segment:
        """A new segment holding rows from ``start`` on (with their deletions)."""
        vectors, ids, dead = self.rows()
        out = Segment(self.dim, self.kind, max(1024, 2 * (len(ids) - start)))
        if len(ids) > start:
            out.append(vectors[start:], ids[start:], self.kind, self.texts()[start:] if self.n_texts else None)
            out._arrays[2][: len(ids) - start] = dead[start:]
            out.n_dead = int(dead[start:].sum())
        return out


def merge_best(scores: list[np.ndarray], columns: list[list[np.ndarray]], k: int) -> list[np.ndarray]:
    """The top-k of several per-query result lists, by score (ties keep the earlier list first): [scores, then each
    column (ids, texts...) of ``columns[c][list]``] in that order."""
    if len(scores) == 1:
        return [scores[0], *(column[0] for column in columns)]
    all_s = np.concatenate(scores, axis=1)
    order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
    merged = [np.take_along_axis(np.concatenate(column, axis=1), order, 1) for column in columns]
    return [np.take_along_axis(all_s, order, 1), *merged]
