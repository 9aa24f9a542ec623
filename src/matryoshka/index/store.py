"""An index folder that takes writes while it serves searches: the store behind ``mrl serve`` and ``mrl index``.

* Writes cost O(batch): an add or delete is appended to a write-ahead log and fsynced before it returns, then
  applied in memory: added vectors (with their ids and the texts kept beside them) go to a small write segment
  (searched exactly, merged with the main index's results); deletes mark rows (searches skip them).
* Compaction folds the log into a new version of the main index (``mrl index compact``, or in the background
  once the segment and deletions pass ``compact_threshold`` rows), while searches and writes go on; it commits
  by switching ``CURRENT``, so kill -9 at any moment leaves a folder that opens with every acknowledged write.
* Searches take no lock: each reads one consistent (index, segment) pair; writes are serialised by a lock,
  and only one process at a time may open a folder for writing (``LOCK``, flock).

See :class:`IndexStore` for an example.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from matryoshka.index import logged, versions, wal
from matryoshka.index.disk import DiskRows
from matryoshka.index.errors import (
    CompactionError,
    CorruptIndexError,
    DuplicateIdError,
    IndexInputError,
    UnknownIdError,
)
from matryoshka.index.ids import check_new_ids, listed, lookup_ids
from matryoshka.index.index import MatryoshkaIndex
from matryoshka.index.segment import Segment
from matryoshka.index.storage import normalize
from matryoshka.index.store_view import StoreView
from matryoshka.index.texts import check_texts


class IndexStore(StoreView):
    """A folder holding a :class:`MatryoshkaIndex` version, its write-ahead log and a write segment.

    Open with :meth:`open` (or :meth:`create` for a new, empty one); use as a context manager or call
    :meth:`close`. ``writable=False`` opens a read-only snapshot (no lock: many readers may open it).

    Example::

        import tempfile
        import numpy as np
        from matryoshka import IndexStore

        folder = tempfile.mkdtemp() + "/store"
        x = np.random.default_rng(0).standard_normal((1000, 32)).astype("float32")
        with IndexStore.create(folder, dim=32, shortlist_dims=[8]) as store:
            store.add(x, ids=[f"doc-{i}" for i in range(1000)])  # in the fsynced log before it returns
            store.delete(["doc-3"])
            scores, ids = store.search(x[:2], k=5)
            assert ids[0][0] == "doc-0"
            store.add(x[:1] + 1, ids=["faq-1"], texts=["how to repair a flat bicycle tyre"])  # kept beside the id
            scores, ids, texts = store.search(x[:1] + 1, k=2, return_texts=True)
            assert texts[0].tolist() == ["how to repair a flat bicycle tyre", None]
    """

    def __init__(self, root: Path, writable: bool, compact_threshold: int | None) -> None:
        super().__init__(root, compact_threshold)
        self.writable = writable
        self._compact_lock = threading.Lock()
        self._compact_error: BaseException | None = None
        self._deleted_during: list | None = None  # ids deleted while a compaction runs
        self._lock_cm: contextlib.AbstractContextManager | None = None
        self._wal: wal.WriteAheadLog | None = None

    # -- opening --------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, dim: int, **options) -> IndexStore:
        """A new, empty store in ``path`` (which must not hold an index yet); options as for MatryoshkaIndex."""
        root = Path(path)
        if (root / "CURRENT").exists():
            raise IndexInputError(f"{root} already holds an index; open it with IndexStore.open")
        MatryoshkaIndex(dim, **options).save(root)
        return cls.open(root)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        writable: bool = True,
        mmap: bool = False,
        verify: bool = True,
        compact_threshold: int | None = None,
        full_vectors: str | None = None,
    ) -> IndexStore:
        """Open an index folder; ``compact_threshold``: segment rows plus deletions that start a background
        compaction (default: see :attr:`compact_threshold`; 0 turns it off)."""
        root = Path(path)
        store = cls(root, writable, compact_threshold)
        if writable:
            if not (root / "CURRENT").exists():
                raise CorruptIndexError(f"{root} is not an index folder (no CURRENT file)")
            store._lock_cm = versions.folder_lock(root)
            store._lock_cm.__enter__()
        try:
            store._load(mmap, verify, full_vectors)
        except BaseException:
            store.close()
            raise
        return store

    def _load(self, mmap: bool, verify: bool, full_vectors: str | None) -> None:
        current = versions.read_current(self.root, mmap, verify, full_vectors, retry=not self.writable)
        name, stored, records, offset, size = current
        base = MatryoshkaIndex.from_arrays(stored.state, **stored.options)
        self.version = name
        self._state = (base, Segment(base.dim, base.id_kind))
        self.id_kind = base.id_kind
        self._where = logged.live_where(base)
        stored_ids = base.arrays().ids
        self._next_id = int(stored_ids.max()) + 1 if base.rows and base.id_kind == "int" else 0
        logged.replay(records, lambda: self.id_kind, self._apply_add, self._apply_delete, self.root)
        self.torn_bytes = size - offset
        if self.writable:
            if self.torn_bytes:  # a torn last record is a write that was never acknowledged: cut it off
                warnings.warn(f"{self.root}: cut {self.torn_bytes} bytes of a torn last log record", stacklevel=3)
            self._wal = wal.WriteAheadLog(versions.wal_path(self.root, name), offset)
            versions.remove_others(self.root, name)

    def close(self) -> None:
        """Wait for a running compaction, then release the log and the folder lock."""
        if self._compactor is not None:
            self._compactor.join()
        if self._wal is not None:
            self._wal.close()
            self._wal = None
        if self._lock_cm is not None:
            self._lock_cm.__exit__(None, None, None)
            self._lock_cm = None

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _require_writable(self) -> None:
        """Refuse a write on a read-only store, and once after a failed background compaction (so that the failure
        is seen; the store itself is intact, and the next write goes through and may start a new compaction)."""
        if self._wal is None:
            raise IndexInputError(f"{self.root} is open read-only (or closed): open it with writable=True to write")
        if self._compact_error is not None:
            error, self._compact_error = self._compact_error, None
            raise CompactionError(f"the background compaction failed ({error}); nothing was lost, retry the write")

    def add(self, vectors: np.ndarray, ids: Iterable | None = None, texts: Iterable | None = None) -> np.ndarray:
        """Add vectors (n, dim), durable when this returns; ids default to consecutive integers; ``texts``: one text
        (or None) per vector, kept beside its id in the same log record (:meth:`texts`, ``search(...,
        return_texts=True)``)."""
        x = self.index.check_vectors(vectors, "vectors")
        new_texts = check_texts(texts, len(x))
        with self._write_lock:
            self._require_writable()
            if ids is None:
                if self.id_kind == "str":
                    raise IndexInputError("this index has string ids: give the ids of the new vectors")
                new_ids = np.arange(self._next_id, self._next_id + len(x), dtype=np.int64)
            else:
                new_ids = check_new_ids(ids, len(x), self.id_kind)
                clash = [i for i in new_ids.tolist() if i in self._where]
                if clash:
                    raise DuplicateIdError(f"ids already in the index: {listed(clash)}")
            unit = normalize(x).astype(np.float32)
            logged_texts = new_texts.tolist() if new_texts is not None else None
            self._wal.append(wal.encode_record(wal.ADD, new_ids.tolist(), unit, logged_texts))
            self._apply_add(unit, new_ids, new_texts)
        self._maybe_compact()
        return new_ids

    def delete(self, ids: Iterable) -> int:
        """Delete vectors by id (one id or several), durable when this returns; an unknown id is an error (nothing
        is deleted then)."""
        with self._write_lock:
            self._require_writable()
            ids = lookup_ids(ids, self.id_kind)
            values = ids.tolist()
            if len(set(values)) != len(values):
                raise IndexInputError("ids must be unique")
            missing = [i for i in values if i not in self._where]
            if missing:
                raise UnknownIdError(f"ids not in the index: {listed(missing)}")
            self._wal.append(wal.encode_record(wal.DELETE, values))
            self._apply_delete(ids)
        self._maybe_compact()
        return len(values)

    def _apply_add(self, unit: np.ndarray, ids: np.ndarray, texts: np.ndarray | None = None) -> None:
        if self.id_kind is None:
            self.id_kind = "str" if ids.dtype == object else "int"
        logged.add_rows(self._where, self._state[1], unit, ids, texts)
        if self.id_kind == "int" and len(ids):
            self._next_id = max(self._next_id, int(ids.max()) + 1)

    def _apply_delete(self, ids: np.ndarray) -> None:
        base, segment = self._state
        logged.delete_rows(base, self._where, segment, ids)
        if self._deleted_during is not None:
            self._deleted_during.extend(ids.tolist())

    def record_plan(self, plan: str | None, k: int = 10) -> None:
        """Make ``plan`` (text form; None: exact search) the default of searches that name none, tuned for ``k``:
        at once here, and in the current version's meta.json for every later open and compaction."""
        with self._compact_lock, self._write_lock:  # a compaction copies the options of the index it folds
            self._require_writable()
            base = self._state[0]
            versions.record_plan(self.root, self.version, plan, k)
            base.default_plan, base.default_plan_k = plan, k

    # -- compaction -----------------------------------------------------------------------------------------
    def _maybe_compact(self) -> None:
        base, segment = self._state
        threshold = self.compact_threshold
        if not threshold or segment.n + base.n_deleted < threshold:
            return
        if self._compactor is not None and self._compactor.is_alive():
            return
        self._compactor = threading.Thread(target=self._compact_in_background, name="mrl-compact", daemon=True)
        self._compactor.start()

    def _compact_in_background(self) -> None:
        try:
            self.compact()
        except BaseException as e:  # reported by the next write
            self._compact_error = e

    def compact(self) -> str:
        """Fold the log and the segment into a new version of the main index; returns the version's name.

        Searches and writes go on meanwhile; the commit (switching ``CURRENT``) holds the write lock only while
        the log's newest records are carried over.
        """
        with self._compact_lock:
            with self._write_lock:
                self._require_writable()
                base, segment = self._state
                if segment.n == 0 and base.n_deleted == 0:
                    return self.version  # nothing logged since the last compaction
                n0, log_offset = segment.n, self._wal.size
                vectors, ids, dead = (a.copy() for a in segment.rows())
                texts = segment.texts().copy() if segment.n_texts else None
                base_dead = base.arrays().dead.copy()
                self._deleted_during = []
            live_texts = texts[~dead] if texts is not None else None
            new_base = base.compacted(vectors[~dead], ids[~dead], base_dead, live_texts)  # the state at the snapshot
            name = versions.write_version(new_base, self.root)
            if isinstance(base.arrays().codes, DiskRows):  # the new version's rows stay on the disk as well
                state = new_base.arrays()
                state.codes = DiskRows(self.root / name / "codes.npy")
                new_base = MatryoshkaIndex.from_arrays(state, **new_base.options())
            where = dict(zip(new_base.arrays().ids.tolist(), range(new_base.rows), strict=True))
            with self._write_lock:
                try:
                    for id_ in self._deleted_during:
                        position = where.pop(id_, None)
                        if position is not None:
                            new_base.delete_positions(np.array([position]))
                    new_segment = self._state[1].tail(n0)
                    new_wal = wal.WriteAheadLog(versions.wal_path(self.root, name))
                    try:
                        new_wal.copy_from(self._wal.path, log_offset, self._wal.size)
                        versions.set_current(self.root, name)  # the commit point
                    except BaseException:
                        new_wal.close()
                        raise
                except BaseException:
                    self._deleted_during = None
                    raise
                old_wal, self._wal = self._wal, new_wal
                old_wal.close()
                _, tail_ids, tail_dead = new_segment.rows()
                for position, id_ in enumerate(tail_ids.tolist()):
                    if not tail_dead[position]:
                        where[id_] = -position - 1
                self._where = where
                self._state = (new_base, new_segment)
                self._deleted_during = None
                self.version = name
            versions.remove_others(self.root, name)
            return name
