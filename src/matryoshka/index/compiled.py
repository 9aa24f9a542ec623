"""One compiled call per search: an adaptive plan (a shortlist structure, then a re-rank at the full dim) run as a
single FAISS call chain, ``IndexRefine(IndexPreTransform(prefix, shortlist), rows)``.

The chain projects the query onto the shortlist's prefix (the first D dims, or the first D coordinates in the
index's basis), walks the shortlist structure for K candidates, re-scores them against the stored full-dim rows
and keeps the best k, all in C++: a batch-1 search crosses from Python into FAISS once instead of a dozen times.

The rows are not copied: a float32 index keeps its full-dim rows right behind the header of a serialised
``IndexFlatIP`` (:mod:`matryoshka.index.faiss_rows`), and FAISS's zero-copy reader opens that buffer as an index
that views them.

A single query goes further: its resolved plan, chain and search parameters are prepared once per (plan, k) and
kept while the index is unchanged, so that the Python around the call is a handful of operations (``mrl bench
retrieval`` prints how many microseconds, measured against the bare call). Anything the chain cannot express
(funnels, a re-rank below the full dim, float16 / int8 rows, rows memory-mapped or on the disk tier) runs the
staged search of :mod:`matryoshka.index.stages` instead, with the same results.

Example::

    import numpy as np
    from matryoshka import MatryoshkaIndex

    x = np.random.default_rng(0).standard_normal((5000, 64)).astype("float32")
    index = MatryoshkaIndex(64, shortlist_dims=[16], shortlist="hnsw")
    index.add(x)
    scores, ids = index.search(x[:1], k=10, plan="adaptive:16:100:64")    # one FAISS call
    assert index.compiled_search(16) is not None
"""

from __future__ import annotations

import math
from typing import NamedTuple

import faiss
import numpy as np

from matryoshka.errors import InputError
from matryoshka.index.faiss_rows import as_faiss_rows, flat_view, zero_copy_reads
from matryoshka.index.plans import Plan
from matryoshka.index.storage import normalize

FLOAT32 = np.dtype(np.float32)
# The compiled functions themselves, not their Python wrappers: each wrapper costs a tenth of a microsecond.
_COMPILED = getattr(faiss, "_swigfaiss", faiss)
SWIG_PTR, SQUARED_NORM, OMP_THREADS = _COMPILED.swig_ptr, _COMPILED.fvec_norm_L2sqr, _COMPILED.omp_get_max_threads
PREPARED_MAX = 64  # (plan, k) pairs whose single-query search is kept prepared


def runs_as_one_call(stages: list[tuple[int, int]], dim: int) -> bool:
    """Whether checked ``stages`` are what the chain computes: a shortlist below the full dim, then a re-rank at it."""
    return len(stages) == 2 and stages[1][0] == dim and stages[0][0] < dim


class CompiledSearch:
    """``IndexRefine(IndexPreTransform(prefix, structure), rows)`` for one shortlist structure of an index.

    ``prefix`` is the (D x d) projection onto the index's basis, or the first D dims. It holds references to every
    part (FAISS's indexes here do not own one another) and remembers what it was built over, so that the index
    builds a new one once its rows or structure change (:meth:`serves`).
    """

    def __init__(self, rows: np.ndarray, structure: faiss.Index, basis: np.ndarray | None, flat: faiss.IndexFlatIP):
        dim, d = rows.shape[1], structure.d
        if basis is None:
            prefix = faiss.RemapDimensionsTransform(dim, d, False)  # keeps the first d dims
        else:
            prefix = faiss.LinearTransform(dim, d, False)
            faiss.copy_array_to_vector(np.ascontiguousarray(basis[:, :d].T, dtype=np.float32).ravel(), prefix.A)
            faiss.copy_array_to_vector(np.zeros(d, dtype=np.float32), prefix.b)
            prefix.is_trained = True
        self.rows, self.structure, self.flat, self.prefix = rows, structure, flat, prefix
        self.projected = faiss.IndexPreTransform(prefix, structure)
        self.chain = faiss.IndexRefine(self.projected, flat)
        self.n = len(rows)
        self._params: dict[tuple[int, int, int], tuple] = {}

    def serves(self, rows: np.ndarray, structure: faiss.Index) -> bool:
        """Whether this chain still stands for ``rows`` and ``structure`` (nothing added since it was built)."""
        return rows is self.rows and structure is self.structure and structure.ntotal == self.n

    def params(self, big_k: int, k: int, ef: int, sel: faiss.IDSelector | None) -> tuple:
        """Search parameters for K candidates re-ranked to k (a tuple: its first item is what FAISS takes, the rest
        keeps the nested parameters alive, since FAISS does not own them)."""
        key = (big_k, k, ef)
        cached = self._params.get(key) if sel is None else None
        if cached is not None:
            return cached
        if isinstance(self.structure, faiss.IndexHNSW):
            inner = faiss.SearchParametersHNSW(efSearch=ef, sel=sel) if sel else faiss.SearchParametersHNSW(efSearch=ef)
        else:
            inner = faiss.SearchParameters(sel=sel) if sel else faiss.SearchParameters()
        middle = faiss.SearchParametersPreTransform(index_params=inner)
        # IndexRefine asks its base for int(k * k_factor) candidates: the half keeps a float rounding off K - 1.
        outer = faiss.IndexRefineSearchParameters(k_factor=(big_k + 0.5) / k, base_index_params=middle)
        out = (outer, middle, inner, sel)
        if sel is None:
            self._params[key] = out
        return out

    def search(
        self, qn: np.ndarray, big_k: int, k: int, ef: int, sel: faiss.IDSelector | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, positions), (Q, k) best first, for unit queries ``qn`` (C-contiguous float32)."""
        scores = np.empty((len(qn), k), dtype=np.float32)
        positions = np.empty((len(qn), k), dtype=np.int64)
        ptr = faiss.swig_ptr
        self.chain.search_c(len(qn), ptr(qn), k, ptr(scores), ptr(positions), self.params(big_k, k, ef, sel)[0])
        return scores, positions


class Prepared(NamedTuple):
    """A single query's search, resolved: valid while the index's ``state`` and parts are the same."""

    state: tuple
    rows: np.ndarray
    d0: int
    structure: faiss.Index | None
    chain: CompiledSearch | None  # None: this search runs the general path
    params: faiss.SearchParameters | None
    k: int
    raw_dims: int  # the first-stage dims to check for an all-zero prefix (0 for a rotated index: none needed)


class CompiledPaths:
    """The compiled search paths of a :class:`~matryoshka.index.MatryoshkaIndex`."""

    def compiled_search(self, d0: int) -> CompiledSearch | None:
        """The one-call chain for plans that shortlist with the ``d0``-dim structure and re-rank at the full dim
        (:mod:`matryoshka.index.compiled`), built on first use; None where the rows are not float32 in RAM."""
        codes, structure = self._codes, self._shortlist.get(d0)
        if (
            structure is None
            or d0 >= self.dim
            or self.encoding != "float32"
            or type(codes) is not np.ndarray  # memory-mapped, or on the disk tier
            or not self.rows
            or structure.ntotal != self.rows
        ):
            return None
        chain = self._compiled.get(d0)
        if chain is not None and chain.serves(codes, structure):
            return chain
        if self._no_chain is codes or not zero_copy_reads(self.dim):
            return None  # tried on these rows already, or this FAISS release cannot view them: stage by stage
        rows = as_faiss_rows(codes)  # a copy, once, where the rows were not laid out for FAISS yet
        if rows is not codes:
            self._codes = codes = rows
        flat = flat_view(codes)
        if flat is None:
            self._no_chain = codes
            return None
        chain = self._compiled[d0] = CompiledSearch(codes, structure, self.basis, flat)
        return chain

    def _compiled_positions(self, q: np.ndarray, d0: int, k0: int, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """An adaptive plan's (scores, positions) through :meth:`compiled_search`, or None where the staged search
        must run instead (no chain, deletions in a flat structure, or a graph walk that found fewer than K)."""
        if self._n_dead and self.shortlist != "hnsw":
            return None  # a flat scan filtered by a selector is slower than over-fetching (the staged search)
        chain = self.compiled_search(d0)
        if chain is None:
            return None
        if self.basis is None:
            self.check_prefix(q, d0)  # raw prefixes: a query may be all zeros there (rotated ones need no check)
        bits = self._dead_bits  # a local reference keeps the bitmap alive during the search
        sel = faiss.IDSelectorNot(faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))) if self._n_dead else None
        scores, positions = chain.search(normalize(q), k0, k, self._ef_search(k0), sel)
        if positions.size and positions.min() < 0:
            return None
        return scores, positions

    def _search_state(self) -> tuple:
        """What a prepared search depends on besides the parts it holds (its rows and structure, by identity)."""
        return (self._n_dead, self.default_plan, self.default_plan_k, self.hnsw_ef_search)

    def _prepare(self, key: tuple) -> Prepared:
        """The single-query search of ``key`` = (plan, k, exact), kept in ``_prepared``; its ``chain`` is None when
        it does not run as one clean call (then the general path runs, and refuses bad input with its own
        messages)."""
        plan, k, exact = key
        try:
            stages = self.plan_stages(plan, k, exact)
        except InputError:
            stages = []
        d0 = stages[0][0] if stages else 0
        chain = params = None
        if runs_as_one_call(stages, self.dim) and not self._n_dead and self.ntotal:
            chain = self.compiled_search(d0)
        kk = min(stages[-1][1], stages[0][1]) if stages else 0
        if chain is not None:
            big_k = stages[0][1]
            params = chain.params(big_k, kk, self._ef_search(big_k), None)[0]  # the chain keeps them alive
        raw_dims = d0 if self.basis is None else 0
        structure = self._shortlist.get(d0)
        prepared = Prepared(self._search_state(), self._codes, d0, structure, chain, params, kk, raw_dims)
        if len(self._prepared) >= PREPARED_MAX:
            self._prepared.clear()
        self._prepared[key] = prepared
        return prepared

    def prepared(self, plan: Plan | str | None, k: int, exact: bool = False) -> Prepared:
        """The single-query search of ``plan`` for ``k`` results as the index runs it (its chain None where it runs
        stage by stage), prepared now; what ``mrl bench retrieval`` times against ``index.search``."""
        return self._prepare((plan, k, exact))

    def _one_query(self, queries: object, k: int, plan: object, exact: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """(scores, ids) of one float32 query through its prepared compiled chain, or None for the general path
        (anything else: a batch, other dtypes, bad values, a plan that runs stage by stage, deleted rows)."""
        if type(queries) is not np.ndarray or queries.shape != (1, self.dim) or queries.dtype.kind != "f":
            return None
        if queries.dtype is not FLOAT32 or not queries.flags.c_contiguous:  # (FLOAT32: native byte order)
            queries = np.ascontiguousarray(queries, dtype=np.float32)
        if type(k) is not int:
            return None  # the general path checks it (5.0 would find the entry of 5, True that of 1)
        key = (plan, k, exact)
        try:
            prepared = self._prepared.get(key)
        except TypeError:  # an unhashable plan: the general path checks it
            return None
        if (
            prepared is None
            or prepared.state != self._search_state()
            or prepared.rows is not self._codes  # a new array on every add
            or prepared.structure is not self._shortlist.get(prepared.d0)
        ):
            prepared = self._prepare(key)
        if prepared.chain is None:
            return None
        ptr = SWIG_PTR
        query = ptr(queries)
        squares = SQUARED_NORM(query, self.dim)
        if not 0.0 < squares < math.inf:
            return None  # NaN, inf or all zeros: the general path names the problem
        if prepared.raw_dims and not SQUARED_NORM(query, prepared.raw_dims) > 0:
            return None
        kk = prepared.k
        scores, positions = np.empty((1, kk), np.float32), np.empty((1, kk), np.int64)
        threads = OMP_THREADS()
        if threads > 1:
            faiss.omp_set_num_threads(1)  # one query stays on the calling thread (threads.py)
        try:
            # The query as given: the shortlist's ranking ignores its length, and the scores are scaled after.
            prepared.chain.chain.search_c(1, query, kk, ptr(scores), ptr(positions), prepared.params)
        finally:
            if threads > 1:
                faiss.omp_set_num_threads(threads)
        if positions[0, -1] < 0:
            return None
        scores *= np.float32(1.0 / math.sqrt(squares))
        return scores, self._ids[positions]
