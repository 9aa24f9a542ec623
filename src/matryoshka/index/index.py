"""An in-memory index for Matryoshka embeddings: every vector stored once at full dim, a FAISS index over a
low-dim prefix for the shortlist, and vectorised re-ranking with larger prefixes.

Kusupati et al. 2022, Sec. 4.3 (adaptive retrieval, funnel retrieval). Scores are cosine similarities of
re-normalised prefixes: <q[:D], x[:D]> / (|q[:D]| |x[:D]|). For a folder that takes writes while it serves
searches (write-ahead log, compaction, concurrent readers), see :class:`matryoshka.index.IndexStore`.

See :class:`MatryoshkaIndex` for an example.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np

from matryoshka.errors import InputError
from matryoshka.index import logged, storage, versions
from matryoshka.index.basis import check_basis
from matryoshka.index.compiled import CompiledPaths, CompiledSearch, Prepared
from matryoshka.index.disk import DiskRows, check_tier
from matryoshka.index.errors import DuplicateIdError, IndexInputError, UnknownIdError
from matryoshka.index.faiss_rows import concatenated_rows
from matryoshka.index.ids import check_new_ids, empty_ids, listed, lookup_ids
from matryoshka.index.plans import Plan, check_rotated_stages, checked_stages, plan_or_default
from matryoshka.index.shortlists import ShortlistStructures, check_shortlist_codes, structure_bytes
from matryoshka.index.stages import StagedSearch
from matryoshka.index.state import IndexArrays, live_arrays
from matryoshka.index.storage import normalize, row_squares
from matryoshka.index.texts import check_texts, joined
from matryoshka.index.threads import search_threads
from matryoshka.index.variants import IndexVariants
from matryoshka.io import return_freed_memory


class MatryoshkaIndex(ShortlistStructures, StagedSearch, CompiledPaths, IndexVariants):
    """Add, remove and search full-dim vectors with multi-stage (prefix) plans.

    Args:
        dim: full embedding size d.
        shortlist_dims: prefix sizes that get a FAISS inner-product index for first-stage search.
        encoding: storage of the full vectors: "float32", "float16" or "int8".
        shortlist: "flat" (exact, default) or "hnsw" (approximate graph search: far faster first stages on
            large corpora; building it takes minutes per million vectors).
        hnsw_m, hnsw_ef_search: HNSW graph degree and search breadth (raised to the stage's K when smaller).
        shortlist_codes: how an HNSW shortlist stores its prefixes: "float32", "float16", "int8" or "int4"
            (faiss's scalar quantiser, trained on the first rows added): a half, a quarter or an eighth of the
            graph's vector bytes; or "pq4" / "pq2" (product quantiser, 4 or 2 bits a dim, also fitted on the
            first rows added; the shortlist dims must be even / multiples of 4).
        full_vectors: where the full-dim vectors live once the index is saved and opened again: "ram", "mmap"
            (memory-mapped) or "disk" (read per query with direct I/O; only the prefix structures stay in RAM,
            see :mod:`matryoshka.index.disk`). :meth:`load` can choose another.
        default_plan: the plan of a search that names none (text form, e.g. "adaptive:64:40:512"); set by
            :func:`~matryoshka.index.autotune.autotune` and saved with the index. None: exact full-dim search.
        default_plan_k: the k it was tuned for; a search for more results scales its candidate counts alike.

    An index may hold an orthogonal ``basis`` (:meth:`with_basis`, chosen by autotune): its shortlist structures
    then hold the first D coordinates of each row in that basis, queries are projected the same way, and every
    later stage re-ranks at a shortlist dim (in the basis) or at the full dim (the stored rows, exact).

    Ids are integers in [0, 2^63 - 1] or strings (at most 512 bytes), one kind per index. A removal only marks
    the row deleted (searches skip it); :meth:`compacted` and :meth:`save` drop deleted rows for good.

    Each row may keep a text beside its id (the document it stands for: ``add(..., texts=...)``); searches return
    them with ``return_texts=True`` and :meth:`texts` looks them up by id. An index without texts stores nothing
    for them.

    Example::

        import numpy as np
        from matryoshka import AdaptivePlan, MatryoshkaIndex

        corpus = np.random.default_rng(0).standard_normal((5000, 128)).astype("float32")
        index = MatryoshkaIndex(dim=128, shortlist_dims=[16], encoding="int8")
        index.add(corpus)                                      # ids 0..N-1 unless given
        scores, ids = index.search(corpus[:3], k=10, plan=AdaptivePlan(16, 200, 128))
        index.remove([4, 5])
        index.add(corpus[:2] + 1, ids=[9000, 9001], texts=["a small dog barks", "rain at the weekend"])
        scores, ids, texts = index.search(corpus[:1] + 1, k=2, return_texts=True)   # None for rows without one
        assert index.texts([9001, 7]) == ["rain at the weekend", None]
    """

    def __init__(
        self,
        dim: int,
        shortlist_dims: Iterable[int] = (16,),
        encoding: str = "float32",
        shortlist: str = "flat",
        hnsw_m: int = 32,
        hnsw_ef_search: int = 128,
        full_vectors: str = "ram",
        shortlist_codes: str = "float32",
        default_plan: str | None = None,
        default_plan_k: int = 10,
    ) -> None:
        if dim < 1:
            raise IndexInputError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.shortlist_dims = sorted(set(int(d) for d in shortlist_dims))
        for d in self.shortlist_dims:
            if not 1 <= d <= dim:
                raise IndexInputError(f"shortlist dim {d} must be in [1, {dim}]")
        if encoding not in storage.ENCODINGS:
            raise IndexInputError(f"unknown encoding {encoding!r}; choose one of {storage.ENCODINGS}")
        self.encoding = encoding
        if shortlist not in ("flat", "hnsw"):
            raise IndexInputError(f"unknown shortlist index {shortlist!r}; choose flat or hnsw")
        self.shortlist = shortlist
        check_shortlist_codes(shortlist, shortlist_codes, self.shortlist_dims)
        self.shortlist_codes = shortlist_codes
        self.hnsw_m = hnsw_m
        self.hnsw_ef_search = hnsw_ef_search
        self.full_vectors = check_tier(full_vectors)
        self.default_plan, self.default_plan_k = default_plan, default_plan_k
        self.id_kind: str | None = None  # "int" or "str", fixed by the first add
        self._codes = np.zeros((0, dim), dtype=storage.encode(np.zeros((0, dim)), encoding)[0].dtype)
        self._scales: np.ndarray | None = np.zeros(0, np.float32) if encoding == "int8" else None
        self._ids = empty_ids(None)
        self._dead = np.zeros(0, dtype=bool)  # rows removed but not yet compacted away
        self._dead_bits = np.zeros(0, dtype=np.uint8)  # the same, packed for FAISS's IDSelectorBitmap
        self._texts: np.ndarray | None = None  # the text kept beside each row (str or None); None: keeps none
        self._n_dead = 0
        self._shortlist = {d: self._new_shortlist(d) for d in self.shortlist_dims}
        self._params: dict[int, faiss.SearchParameters] = {}
        self._norms: dict[int, np.ndarray] = {}  # prefix lengths for compiled re-ranking, by prefix size
        self.basis: np.ndarray | None = None  # (dim, dim) orthogonal: shortlist prefixes are x @ basis[:, :D]
        self._basis_rows: dict[int, np.ndarray] = {}  # basis[:, :D].T, contiguous, by D
        self._compiled: dict[int, CompiledSearch] = {}  # one-call search chains, by shortlist dim
        self._prepared: dict[tuple, Prepared] = {}  # single-query searches resolved, by (plan, k, exact)
        self._no_chain: np.ndarray | None = None  # rows on which no chain could be built (not tried again)

    def options(self) -> dict:
        """The constructor arguments (everything but the contents)."""
        return {
            "dim": self.dim,
            "shortlist_dims": list(self.shortlist_dims),
            "encoding": self.encoding,
            "shortlist": self.shortlist,
            "hnsw_m": self.hnsw_m,
            "hnsw_ef_search": self.hnsw_ef_search,
            "shortlist_codes": self.shortlist_codes,
            "full_vectors": self.full_vectors,
            "default_plan": self.default_plan,
            "default_plan_k": self.default_plan_k,
        }

    @classmethod
    def build(
        cls, vectors: np.ndarray, ids: Iterable | None = None, texts: Iterable | None = None, **options
    ) -> MatryoshkaIndex:
        """A new index holding ``vectors`` (N, d), its dim taken from them, with ``texts`` kept beside them (one per
        row, or None); ``options`` as for the constructor."""
        if np.ndim(vectors) != 2:
            raise IndexInputError(f"embeddings must be 2-D (N, d), got shape {np.shape(vectors)}")
        index = cls(np.shape(vectors)[1], **options)
        index.add(vectors, ids, texts)
        return index

    # -- contents -------------------------------------------------------------------------------------------
    # -- state ----------------------------------------------------------------------------------------------
    def arrays(self) -> IndexArrays:
        """What the index holds, as arrays (no copy): see :mod:`matryoshka.index.state`."""
        shortlists = dict(self._shortlist)
        return IndexArrays(
            self._codes, self._scales, self._ids, self._dead, shortlists, self.id_kind, self.basis, self._texts
        )

    @classmethod
    def from_arrays(cls, arrays: IndexArrays, **options) -> MatryoshkaIndex:
        """An index around ``arrays`` (no copy) with ``options`` as for the constructor (see :meth:`options`)."""
        index = cls(**options)
        index.id_kind = arrays.id_kind
        index._codes, index._scales, index._ids = arrays.codes, arrays.scales, arrays.ids
        index._dead = arrays.dead
        index._texts = arrays.texts
        index._dead_bits = np.packbits(arrays.dead, bitorder="little")
        index._n_dead = int(arrays.dead.sum())
        if arrays.basis is not None:
            index.basis = check_basis(arrays.basis, index.dim)
        index._shortlist.update(arrays.shortlists)
        return index

    def memory_bytes(self) -> int:
        """Bytes held in RAM: rows (unless memory-mapped or on the disk), ids and shortlist structures."""
        return self.arrays().memory_bytes()

    def forget_prefix_norms(self) -> None:
        """Drop the cached prefix lengths (autotune tries many plans; later searches compute what they need)."""
        self._norms.clear()

    @property
    def rows(self) -> int:
        """Stored rows, deleted ones included (row numbers are positions in the stored arrays)."""
        return len(self._ids)

    @property
    def ntotal(self) -> int:
        """Vectors in the index (deleted ones excluded)."""
        return self.rows - self._n_dead

    @property
    def n_deleted(self) -> int:
        return self._n_dead

    @property
    def ids(self) -> np.ndarray:
        return self._ids[~self._dead] if self._n_dead else self._ids.copy()

    def alive_positions(self) -> np.ndarray:
        return np.flatnonzero(~self._dead)

    @property
    def keeps_texts(self) -> bool:
        """Whether the index keeps texts beside its ids (some row was added with one)."""
        return self._texts is not None

    def texts(self, ids: Iterable) -> list[str | None]:
        """The text kept beside each of ``ids``, in their order: None for a row added without one; an id not in the
        index is an :class:`~matryoshka.index.UnknownIdError`. O(N log N) per call: it sorts the ids (an
        :class:`~matryoshka.index.IndexStore` looks them up in its id map instead)."""
        wanted = lookup_ids(ids, self.id_kind)
        live = self.alive_positions()
        order = np.argsort(self._ids[live], kind="stable")
        stored = self._ids[live][order]
        at = np.minimum(np.searchsorted(stored, wanted), max(len(stored) - 1, 0))
        found = (stored[at] == wanted) if len(stored) else np.zeros(len(wanted), dtype=bool)
        if not found.all():
            raise UnknownIdError(f"ids not in the index: {listed(wanted[~found].tolist())}")
        return self.texts_at(live[order[at]]).tolist()

    def texts_at(self, positions: np.ndarray) -> np.ndarray:
        """The texts of rows at ``positions`` (any shape), None where a row has none (an object array)."""
        positions = np.asarray(positions, dtype=np.int64)
        if self._texts is None:
            return np.full(positions.shape, None, dtype=object)
        return self._texts[positions]

    def vectors(self, positions: np.ndarray, d: int | None = None, bulk: bool = False) -> np.ndarray:
        """Stored (unit, decoded) vectors at row ``positions``, cut to their first ``d`` dims; ``bulk``: many rows
        in order (an export), read from the disk tier through its memory map rather than one direct read each."""
        return self._rows(np.asarray(positions, dtype=np.int64), d or self.dim, bulk=bulk)

    def bytes_per_vector(self) -> int:
        """Storage of one vector: the full-dim codes, its shortlist structures (prefixes in their codes, the bottom
        layer of each HNSW graph; :func:`~matryoshka.index.shortlists.structure_bytes`) and its id."""
        structures = structure_bytes(self.shortlist, self.shortlist_dims, self.hnsw_m, self.shortlist_codes)
        return storage.bytes_per_vector(self.dim, self.encoding) + structures + 8

    def check_vectors(self, x: np.ndarray, what: str) -> np.ndarray:
        """``x`` as float32 (n, dim); refuses wrong shapes, NaN/inf and all-zero rows."""
        return storage.checked_rows(x, self.dim, what)

    def next_ids(self, n: int) -> np.ndarray:
        """Default integer ids: consecutive after the largest so far."""
        if self.id_kind == "str":
            raise IndexInputError("this index has string ids: give the ids of the new vectors")
        start = int(self._ids.max()) + 1 if self.rows else 0
        return np.arange(start, start + n, dtype=np.int64)

    def add(self, vectors: np.ndarray, ids: Iterable | None = None, texts: Iterable | None = None) -> np.ndarray:
        """Add vectors (n, dim); ids default to consecutive integers after the largest id so far; ``texts``: one
        text (or None) per vector, kept beside its id (see :mod:`matryoshka.index.texts`)."""
        x = self.check_vectors(vectors, "vectors")
        new_texts = check_texts(texts, len(x))
        if ids is None:
            new_ids, kind = self.next_ids(len(x)), "int"
        else:
            new_ids = check_new_ids(ids, len(x), self.id_kind)
            kind = "str" if new_ids.dtype == object else "int"
            clash = np.intersect1d(new_ids, self.ids) if kind == "int" else sorted(set(new_ids) & set(self.ids))
            if len(clash):
                raise DuplicateIdError(f"ids already in the index: {listed(list(clash))}")
        self.append(normalize(x), new_ids, kind, new_texts)
        return new_ids

    def append(self, unit: np.ndarray, new_ids: np.ndarray, kind: str, texts: np.ndarray | None = None) -> None:
        """Append unit vectors with already checked ids and texts (O(N): the arrays are copied)."""
        if isinstance(self._codes, DiskRows):
            raise IndexInputError(
                "this index keeps its full-dim vectors on the disk tier, which takes no appends: add through "
                "IndexStore (mrl index add, mrl serve), which logs the writes and compacts them into a new version, "
                "or load it with full_vectors='ram'"
            )
        codes, scales = storage.encode(unit, self.encoding)
        if self.encoding == "float32":  # laid out for the one-call search (see compiled.py)
            self._codes = concatenated_rows([self._codes, codes], self.dim)
        else:
            self._codes = np.concatenate([self._codes, codes])
        self._compiled, self._prepared = {}, {}  # they hold the former rows: let them go with them
        if scales is not None:
            self._scales = np.concatenate([self._scales, scales])
        if self.id_kind is None:
            self.id_kind, self._ids = kind, empty_ids(kind)
        self._texts = joined(self._texts, self.rows, texts, len(new_ids))
        self._ids = np.concatenate([self._ids, new_ids])
        self._dead = np.concatenate([self._dead, np.zeros(len(new_ids), dtype=bool)])
        self._dead_bits = np.packbits(self._dead, bitorder="little")
        self._add_to_shortlists(storage.decode(codes, scales, self.encoding))

    def remove(self, ids: Iterable) -> int:
        """Remove vectors by id (one id or several); unknown ids are an error (nothing is removed then)."""
        ids = lookup_ids(ids, self.id_kind)
        positions = np.flatnonzero(np.isin(self._ids, ids) & ~self._dead)
        missing = sorted(set(ids.tolist()) - set(self._ids[positions].tolist()))
        if missing:
            raise UnknownIdError(f"ids not in the index: {listed(missing)}")
        self.delete_positions(positions)
        return int(positions.size)

    def delete_positions(self, positions: np.ndarray) -> None:
        """Mark rows deleted: O(len(positions)); searches running at the same time may or may not see it."""
        positions = np.unique(np.asarray(positions, dtype=np.int64))
        newly = int((~self._dead[positions]).sum())  # counted, not recounted over the whole index
        self._dead[positions] = True
        np.bitwise_or.at(self._dead_bits, positions >> 3, (1 << (positions & 7)).astype(np.uint8))
        self._n_dead += newly

    def compacted(
        self,
        unit: np.ndarray | None = None,
        new_ids: np.ndarray | None = None,
        dead: np.ndarray | None = None,
        texts: np.ndarray | None = None,
    ) -> MatryoshkaIndex:
        """A new index with this one's live rows, then ``unit`` vectors (already unit length) with ``new_ids`` and
        ``texts`` (checked; None: no texts).

        ``dead`` replaces the deletion flags (a snapshot taken earlier). Shortlist structures are copied and
        extended when no row was deleted, rebuilt otherwise.
        """
        out = MatryoshkaIndex.from_arrays(live_arrays(self.arrays(), dead, new_ids, unit), **self.options())
        if out.rows < self.rows:
            out._fill_shortlist()
        if unit is not None and len(unit):
            out.append(unit, new_ids, out.id_kind, texts)
        return out

    # -- search ---------------------------------------------------------------------------------------------
    def _rows(self, positions: np.ndarray, d: int, bulk: bool = False) -> np.ndarray:
        """Decoded rows at ``positions`` cut to ``d`` dims; ``bulk``: many rows in order (a scan), which the disk
        tier reads through its memory map rather than one direct read each."""
        stored = self._codes
        if isinstance(stored, DiskRows):
            codes = stored.read_rows(positions, d) if bulk else stored.take(positions, d)
        else:
            codes = stored[:, :d][positions]
        scales = self._scales[positions] if self._scales is not None else None
        return storage.decode(codes, scales, self.encoding)

    def plan_stages(self, plan: Plan | str | None, k: int, exact: bool = False) -> list[tuple[int, int]]:
        """The plan's (dim, K) stages, checked (:func:`~matryoshka.index.plans.checked_stages`), K cut to the
        corpus size."""
        plan = plan_or_default(plan, self.default_plan, self.default_plan_k, k)
        try:
            stages = checked_stages(plan, k, self.dim, self.shortlist_dims, max(self.ntotal, 1), exact)
            if self.basis is not None:
                check_rotated_stages(stages, self.dim, self.shortlist_dims)
        except InputError as e:
            raise IndexInputError(str(e)) from None
        return stages

    def check_prefix(self, q: np.ndarray, d0: int) -> np.ndarray:
        """The queries' first-stage prefix (:meth:`query_prefix`), refused where it is all zeros (no direction to
        shortlist by)."""
        first = np.ascontiguousarray(self.query_prefix(q, d0))
        zero = np.flatnonzero(row_squares(first) == 0)
        if zero.size:
            raise IndexInputError(f"query {int(zero[0])} is all zeros in its first {d0} dims, where the plan starts")
        return first

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        plan: Plan | str | None = None,
        exact: bool = False,
        return_texts: bool = False,
    ) -> tuple[np.ndarray, ...]:
        """Top-k (scores, ids), each (Q, min(k, ntotal)), best first, following ``plan`` (default: the index's
        :attr:`default_plan`, set by autotune; exact full-dim search when it has none).

        ``exact=True`` lets a plan shortlist with a dim that has no shortlist structure (a full scan).
        ``return_texts=True`` returns (scores, ids, texts): the hits' kept texts too, an object array of the same
        shape (None where a row has none).
        """
        if not return_texts:
            found = self._one_query(queries, k, plan, exact)  # one query, prepared: the shortest path
            if found is not None:
                return found
        q = self.check_vectors(queries, "queries")
        stages = self.plan_stages(plan, k, exact)
        if self.ntotal == 0:
            raise IndexInputError("the index is empty")
        k = min(k, self.ntotal)
        with search_threads(len(q)):
            scores, positions = self.search_positions(q, stages)
        positions = positions[:, :k]
        if return_texts:
            return scores[:, :k], self._ids[positions], self.texts_at(positions)
        return scores[:, :k], self._ids[positions]

    # -- persistence ----------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write a new version of the index under ``path`` and switch ``path/CURRENT`` to it atomically.

        Deleted rows are compacted away first. The folder then holds exactly this index (an earlier
        version's write-ahead log is dropped with it).
        """
        if self._n_dead:
            self.__dict__.update(self.compacted().__dict__)
        return versions.save(self, path)

    @classmethod
    def load(
        cls, path: str | os.PathLike, mmap: bool = False, verify: bool = True, full_vectors: str | None = None
    ) -> MatryoshkaIndex:
        """Open the current version with its logged writes. ``full_vectors``: where the full-dim codes live, "ram",
        "mmap" (memory-mapped; also ``mmap=True``) or "disk" (read per query with direct I/O, only the prefix
        structures in RAM); default: the tier the index was saved for, else "ram"."""
        root = Path(path)
        current = versions.read_current(root, mmap, verify, full_vectors)
        base = cls.from_arrays(current.stored.state, **current.stored.options)
        index = logged.with_log(base, current.records, root)
        return_freed_memory()  # what reading freed would otherwise stay with this process
        return index
