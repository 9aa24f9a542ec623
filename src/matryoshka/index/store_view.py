"""The read side of an :class:`~matryoshka.index.IndexStore`: its contents, settings and searches.

A store's state is one (main index, write segment) pair, swapped whole by writes and compactions; every read here
takes that pair once, so it sees one consistent snapshot without a lock.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from matryoshka.index import logged, versions
from matryoshka.index.errors import IndexInputError, UnknownIdError
from matryoshka.index.ids import listed, lookup_ids
from matryoshka.index.index import MatryoshkaIndex
from matryoshka.index.plans import Plan
from matryoshka.index.segment import Segment, merge_best
from matryoshka.index.threads import search_threads


class StoreView:
    """What a store holds and how to search it; :class:`~matryoshka.index.IndexStore` adds opening and writes."""

    def __init__(self, root: Path, compact_threshold: int | None) -> None:
        self.root = root
        self.version = ""
        self.id_kind: str | None = None
        self.torn_bytes = 0
        self._compact_threshold = compact_threshold
        self._compactor: threading.Thread | None = None
        self._state: tuple[MatryoshkaIndex, Segment]
        self._where: dict = {}  # id -> row of the main index (>= 0) or of the segment (-row - 1)
        # Writes hold it; so do lookups by id, since a compaction's commit moves rows and swaps the id map.
        self._write_lock = threading.RLock()

    # -- contents -------------------------------------------------------------------------------------------
    @property
    def index(self) -> MatryoshkaIndex:
        """The main (compacted) index; writes since the last compaction are in the segment."""
        return self._state[0]

    # The main index's settings, read through.
    dim = property(lambda self: self.index.dim)
    shortlist_dims = property(lambda self: self.index.shortlist_dims)
    encoding = property(lambda self: self.index.encoding)
    shortlist = property(lambda self: self.index.shortlist)
    hnsw_m = property(lambda self: self.index.hnsw_m)
    hnsw_ef_search = property(lambda self: self.index.hnsw_ef_search)

    @property
    def ntotal(self) -> int:
        base, segment = self._state
        return base.ntotal + segment.alive

    @property
    def ids(self) -> np.ndarray:
        base, segment = self._state
        _, ids, dead = segment.rows()
        return np.concatenate([base.ids, ids[~dead]])

    def __contains__(self, id_) -> bool:
        return id_ in self._where

    @property
    def keeps_texts(self) -> bool:
        """Whether the store keeps texts beside its ids (some row was added with one)."""
        base, segment = self._state
        return base.keeps_texts or segment.n_texts > 0

    def texts(self, ids) -> list[str | None]:
        """The text kept beside each of ``ids`` (one id or several), in their order: None for a row added without
        one; an id not in the store is an :class:`~matryoshka.index.UnknownIdError`. Costs O(len(ids)).

        Example::

            import tempfile
            import numpy as np
            from matryoshka import IndexStore

            x = np.random.default_rng(0).standard_normal((3, 8)).astype("float32")
            with IndexStore.create(tempfile.mkdtemp() + "/store", dim=8, shortlist_dims=[4]) as store:
                store.add(x, ids=["a", "b", "c"], texts=["a small dog barks", None, "rain at the weekend"])
                assert store.texts(["c", "b"]) == ["rain at the weekend", None]
        """
        values = lookup_ids(ids, self.id_kind).tolist()
        with self._write_lock:
            base, segment = self._state
            found = [self._where.get(i) for i in values]
        missing = [i for i, position in zip(values, found, strict=True) if position is None]
        if missing:
            raise UnknownIdError(f"ids not in the index: {listed(missing)}")
        positions = np.array(found, dtype=np.int64)
        out = np.full(len(positions), None, dtype=object)
        in_base = positions >= 0
        out[in_base] = base.texts_at(positions[in_base])
        out[~in_base] = segment.texts()[-positions[~in_base] - 1]
        return out.tolist()

    def info(self) -> dict:
        base, segment = self._state
        log = versions.wal_path(self.root, self.version)
        return {
            **base.options(),
            "ntotal": self.ntotal,
            "id_kind": self.id_kind,
            "version": self.version,
            "index_rows": base.rows,
            "index_deleted": base.n_deleted,
            "segment_rows": segment.n,
            "segment_deleted": segment.n_dead,
            "log_bytes": log.stat().st_size if log.exists() else 0,
            "torn_bytes_cut_at_open": self.torn_bytes,
            "compact_threshold": self.compact_threshold,
            "compacting": self._compactor is not None and self._compactor.is_alive(),
            "bytes_per_vector": base.bytes_per_vector(),
            "keeps_texts": base.keeps_texts or segment.n_texts > 0,
        }

    @property
    def compact_threshold(self) -> int:
        """Segment rows plus deletions that start a background compaction: by default a tenth of the index, at
        most 16 MiB of segment vectors, at least 1024 rows."""
        if self._compact_threshold is not None:
            return self._compact_threshold
        return max(1024, min((1 << 22) // self.dim, self.index.rows // 10))

    def bytes_per_vector(self) -> int:
        return self.index.bytes_per_vector()

    def to_index(self) -> MatryoshkaIndex:
        """Everything in the store as one compacted in-memory :class:`MatryoshkaIndex`."""
        base, segment = self._state
        return logged.folded(base, segment, self.root)

    # -- writes ---------------------------------------------------------------------------------------------
    # -- search ---------------------------------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        plan: Plan | str | None = None,
        exact: bool = False,
        return_texts: bool = False,
    ) -> tuple[np.ndarray, ...]:
        """Top-k (scores, ids), as :meth:`MatryoshkaIndex.search`, over the main index and the write segment;
        (scores, ids, texts) with ``return_texts=True``, the texts read from the same snapshot as the hits.

        Rows written since the last compaction are scored exactly at the plan's last dim and merged by score.
        """
        base, segment = self._state
        if not return_texts and not segment.alive:
            found = base._one_query(queries, k, plan, exact)  # one query, nothing written since: the prepared path
            if found is not None:
                return found
        q = base.check_vectors(queries, "queries")
        stages = base.plan_stages(plan, k, exact)
        total = base.ntotal + segment.alive
        if total == 0:
            raise IndexInputError("the index is empty")
        k = min(k, total)
        scores, ids, texts = [], [], []
        with search_threads(len(q)):
            if base.ntotal:
                s, p = base.search_positions(q, stages)
                scores.append(s[:, :k])
                ids.append(base.arrays().ids[p[:, :k]])
                if return_texts:
                    texts.append(base.texts_at(p[:, :k]))
            if segment.alive:
                s, p = segment.search(q, stages[-1][0], k)
                scores.append(s)
                ids.append(segment.rows()[1][p])
                if return_texts:
                    texts.append(segment.texts()[p])
        return tuple(merge_best(scores, [ids, texts] if return_texts else [ids], k))
