"""The search stages of :class:`~matryoshka.index.MatryoshkaIndex`: a first stage through a shortlist
structure (or an exact scan of a prefix), then re-ranking with larger prefixes.

Every stage runs in FAISS's compiled, multi-threaded code where the rows it reads are stored contiguously: the
full-dim float32 vectors and each shortlist structure's own prefixes are scored in place
(``fvec_inner_products_by_idx``), so the Python around a batch-1 search stays a few numpy calls. Other prefixes
(and float16 / int8 storage) are gathered and scored with numpy.
"""

from __future__ import annotations

import faiss
import numpy as np

from matryoshka.index.compiled import runs_as_one_call
from matryoshka.index.storage import best_first, keep_live, normalize

EXACT_CHUNK = 1 << 16  # corpus rows per block in exact (non-shortlist) first stages
RERANK_FLOATS = 1 << 23  # gathered floats per re-ranking block (32 MiB)
MAX_OVERFETCH = 2048  # up to this many deleted rows, exact searches ask for k + deleted and drop them after


class StagedSearch:
    """Search stages over the arrays a :class:`~matryoshka.index.MatryoshkaIndex` keeps."""

    def _exact(self, q: np.ndarray, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and positions of the top-k live rows by prefix cosine over the whole corpus, best first."""
        qn = normalize(q[:, :d])
        dead = self._dead if self._n_dead else None
        n_dead = self._n_dead
        if (
            d == self.dim
            and self.encoding == "float32"
            and n_dead <= MAX_OVERFETCH
            and isinstance(self._codes, np.ndarray)
        ):
            # Stored vectors are unit length: one exact inner-product search, no copy of the corpus.
            codes = np.ascontiguousarray(self._codes)
            scores, positions = faiss.knn(qn, codes, min(k + n_dead, self.rows), metric=faiss.METRIC_INNER_PRODUCT)
            return keep_live(scores, positions, self._dead, k) if n_dead else (scores, positions)
        best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
        best_p = np.zeros((len(q), 0), dtype=np.int64)
        for start in range(0, self.rows, EXACT_CHUNK):
            pos = np.arange(start, min(start + EXACT_CHUNK, self.rows))
            if dead is not None:
                pos = pos[~dead[pos]]
            if not len(pos):
                continue
            block = normalize(self._prefix_rows(pos, d, bulk=True))
            s, p = faiss.knn(qn, block, min(k, len(pos)), metric=faiss.METRIC_INNER_PRODUCT)
            best_s = np.concatenate([best_s, s], axis=1)
            best_p = np.concatenate([best_p, pos[p]], axis=1)
            if best_s.shape[1] > k:
                top = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
                best_s = np.take_along_axis(best_s, top, 1)
                best_p = np.take_along_axis(best_p, top, 1)
        return best_first(best_s, best_p, k)

    def _prefix_rows(self, positions: np.ndarray, d: int, bulk: bool = False) -> np.ndarray:
        """The d-prefixes of rows at ``positions`` (any shape) as the index compares them: the stored rows cut to d
        dims (``bulk`` as for ``_rows``), or for a rotated index below the full dim its shortlist structure's own
        (the only place it holds them: in place when float32, else decoded)."""
        if self.basis is None or d >= self.dim:
            return self._rows(positions, d, bulk=bulk)
        table = self._table(d)
        return table[1][positions] if table is not None else self.structure_rows(d, positions)

    def _table(self, d: int) -> tuple[object, np.ndarray, int, np.ndarray | None] | None:
        """Where d-prefixes are stored contiguously enough for FAISS's compiled scoring: (owner, rows, step, norms).

        Row ``i``'s d-prefix is ``rows[i * step]``; ``norms`` holds prefix lengths where the rows are not unit
        vectors; ``owner`` owns the memory of ``rows`` (the caller holds it while FAISS reads them). Found for the
        unit full-dim float32 vectors, a shortlist structure's own vectors, and (by viewing the float32 matrix as
        ``dim // d`` rows per vector) any prefix size that divides ``dim``; None elsewhere.
        """
        index = self._shortlist.get(d)
        if index is not None and d < self.dim:
            flat = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
            if isinstance(flat, faiss.IndexFlat) and flat.ntotal == self.rows:  # not scalar-quantised codes
                return index, faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * d).reshape(flat.ntotal, d), 1, None
        if self.basis is not None and d < self.dim:
            return None  # rotated prefixes are not prefixes of the stored rows
        codes = self._codes
        disk = not isinstance(codes, np.ndarray)  # rows on the disk tier are read per query instead
        if disk or self.encoding != "float32" or not codes.flags.c_contiguous or self.dim % d:
            return None
        if d == self.dim:
            return codes, codes, 1, None
        return codes, codes.reshape(-1, d), self.dim // d, self._prefix_norms(codes, d)

    def _prefix_norms(self, codes: np.ndarray, d: int) -> np.ndarray:
        """Lengths of every row's d-prefix (computed once per prefix size and kept: 4 bytes a row)."""
        norms = self._norms.get(d)
        if norms is None or len(norms) != len(codes):
            norms = np.empty(len(codes), dtype=np.float32)
            for start in range(0, len(codes), EXACT_CHUNK):
                block = codes[start : start + EXACT_CHUNK, :d]
                norms[start : start + len(block)] = np.sqrt(np.einsum("nd,nd->n", block, block))
            np.maximum(norms, 1e-12, out=norms)
            self._norms[d] = norms
        return norms

    def _rerank(self, q: np.ndarray, positions: np.ndarray, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Re-score candidate positions (Q, K) with the d-dim prefix; keep the best k, best first."""
        qn = normalize(q[:, :d])
        table = self._table(d)
        if table is not None:
            # Scored in FAISS's compiled loop straight from the stored rows: no (Q, K, d) copy is made.
            _owner, rows, step, norms = table  # _owner keeps the memory behind rows alive during the call
            positions = np.ascontiguousarray(positions, dtype=np.int64)
            at = positions * step if step > 1 else positions
            scores = np.empty(positions.shape, dtype=np.float32)
            ptr = faiss.swig_ptr
            faiss.fvec_inner_products_by_idx(ptr(scores), ptr(qn), ptr(rows), ptr(at), d, *positions.shape)
            if norms is not None:
                scores /= norms[positions]
        else:
            rows = self._prefix_rows(positions, d)  # (Q, K, d)
            dots = np.einsum("qkd,qd->qk", rows, qn)
            scores = dots / np.maximum(np.sqrt(np.einsum("qkd,qkd->qk", rows, rows)), 1e-12)
        return best_first(scores, positions, k)

    def _ef_search(self, k0: int) -> int:
        """The HNSW search breadth of a first stage keeping ``k0`` candidates (raised to K); 0 for a flat one."""
        return max(self.hnsw_ef_search, k0) if self.shortlist == "hnsw" else 0

    def _search_params(self, k0: int, sel: faiss.IDSelector | None) -> faiss.SearchParameters:
        ef = self._ef_search(k0)
        if sel is not None:
            return faiss.SearchParametersHNSW(efSearch=ef, sel=sel) if ef else faiss.SearchParameters(sel=sel)
        params = self._params.get(ef)  # cached: building one costs as much as a small search
        if params is None:
            params = faiss.SearchParametersHNSW(efSearch=ef) if ef else faiss.SearchParameters()
            self._params[ef] = params
        return params

    def _shortlist_search(self, q: np.ndarray, d0: int, k0: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k0 live rows by the d0-prefix through the shortlist structure (exact where it falls short)."""
        sel, n_dead, fetch = None, self._n_dead, k0
        bits = self._dead_bits  # a local reference keeps the bitmap alive during the search
        if n_dead and (self.shortlist == "hnsw" or n_dead > MAX_OVERFETCH):
            sel = faiss.IDSelectorNot(faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)))
        elif n_dead:
            fetch = min(k0 + n_dead, self.rows)  # a flat scan filtered by a selector is slower than this
        qn = normalize(q[:, :d0])
        scores = np.empty((len(q), fetch), dtype=np.float32)
        positions = np.empty((len(q), fetch), dtype=np.int64)
        ptr = faiss.swig_ptr
        # search_c skips FAISS's Python-side argument handling, which costs as much as a small search.
        self._shortlist[d0].search_c(len(q), ptr(qn), fetch, ptr(scores), ptr(positions), self._search_params(k0, sel))
        if fetch > k0:
            scores, positions = keep_live(scores, positions, self._dead, k0)
        if positions.size and positions.min() < 0:
            # A graph walk (filtered by many deletions) found fewer than K: scan those queries exactly.
            short = (positions < 0).any(axis=1)
            scores[short], positions[short] = self._exact(q[short], d0, k0)
        return scores, positions

    def search_positions(self, q: np.ndarray, stages: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """(scores, row positions) of checked queries through checked stages, best first.

        An adaptive plan that re-ranks at the full dim runs as one compiled call (:meth:`compiled_search`), the
        other plans stage by stage. A query whose first-stage prefix is all zeros (no direction to shortlist by) is
        an :class:`~matryoshka.index.IndexInputError`, except in a rotated index's compiled call, which needs no
        unit prefix and returns the exact top k of whatever the structure shortlists.
        """
        d0, k0 = stages[0]
        k0 = min(k0, self.ntotal)
        if runs_as_one_call(stages, self.dim):
            found = self._compiled_positions(q, d0, k0, min(stages[1][1], k0))
            if found is not None:
                return found
        q0 = self.check_prefix(q, d0)
        if d0 in self._shortlist:
            scores, positions = self._shortlist_search(q0, d0, k0)
        else:
            scores, positions = self._exact(q0, d0, k0)
        if len(stages) == 1:
            return scores, positions
        # Re-rank in query blocks so that gathered candidates stay around RERANK_FLOATS floats.
        step = max(1, RERANK_FLOATS // max(kk * d for d, kk in stages[1:]))
        if len(q) <= step:
            for d, kk in stages[1:]:
                scores, positions = self._rerank(self.query_prefix(q, d), positions, d, kk)
            return scores, positions
        out_s, out_p = [], []
        for start in range(0, len(q), step):
            s_blk, p_blk = None, positions[start : start + step]
            for d, kk in stages[1:]:
                s_blk, p_blk = self._rerank(self.query_prefix(q[start : start + step], d), p_blk, d, kk)
            out_s.append(s_blk)
            out_p.append(p_blk)
        return np.concatenate(out_s), np.concatenate(out_p)
