import threading

import numpy as np
import pytest
from kill_helpers import kill_after_acks

from matryoshka.index import (
    AdaptivePlan,
    CorruptIndexError,
    FullPlan,
    IndexInputError,
    IndexStore,
    MatryoshkaIndex,
    StoreBusyError,
    versions,
)

DIM = 32


def _vectors(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, DIM)) * np.linspace(2, 0.2, DIM)).astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    MatryoshkaIndex.build(_vectors(2000), shortlist_dims=[8]).save(tmp_path / "ix")
    return tmp_path / "ix"


def _reference(history, queries, k=10):
    """Brute-force full-dim top-k ids over what the history leaves in the store."""
    ids, rows = list(history), np.stack(list(history.values()))
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    order = np.argsort(-(qn @ rows.T), axis=1, kind="stable")[:, :k]
    return [[ids[j] for j in row] for row in order]


def test_writes_are_logged_visible_at_once_and_survive_reopen(folder):
    history = dict(enumerate(_vectors(2000)))
    queries = _vectors(20, seed=1)
    with IndexStore.open(folder) as store:
        added = _vectors(30, seed=2)
        assert store.add(added).tolist() == list(range(2000, 2030))
        history.update(zip(range(2000, 2030), added, strict=True))
        store.delete([5, 2003, 17])
        for i in (5, 2003, 17):
            del history[i]
        assert store.ntotal == len(history) and 5 not in store and 2004 in store
        assert store.search(queries, 10)[1].tolist() == _reference(history, queries)
        info = store.info()
        assert (info["segment_rows"], info["segment_deleted"], info["index_deleted"]) == (30, 1, 2)
        assert info["log_bytes"] > 0 and info["version"] == "v-000001"
    # Nothing compacted: the log alone carries the writes.
    with IndexStore.open(folder, writable=False) as reader:
        assert reader.search(queries, 10)[1].tolist() == _reference(history, queries)
    assert MatryoshkaIndex.load(folder).ntotal == len(history)


def test_compaction_folds_the_log_and_keeps_the_contents(folder):
    queries = _vectors(10, seed=3)
    with IndexStore.open(folder) as store:
        store.add(_vectors(100, seed=4))
        store.delete(list(range(50)))
        before = store.search(queries, 10)[1]
        assert store.compact() == "v-000002"
        info = store.info()
        assert (info["segment_rows"], info["index_deleted"], info["log_bytes"]) == (0, 0, 0)
        assert info["index_rows"] == 2050
        np.testing.assert_array_equal(store.search(queries, 10)[1], before)
    assert sorted(p.name for p in folder.iterdir()) == ["CURRENT", "LOCK", "v-000002", "wal-000002.log"]
    np.testing.assert_array_equal(IndexStore.open(folder, writable=False).search(queries, 10)[1], before)


def test_string_ids(tmp_path):
    names = [f"https://example.com/doc/{i}?lang=en" for i in range(300)]
    MatryoshkaIndex.build(_vectors(300), names, shortlist_dims=[8]).save(tmp_path / "ix")
    with IndexStore.open(tmp_path / "ix") as store:
        assert store.id_kind == "str"
        store.add(_vectors(2, seed=5), ["uuid-1", "ünïcode/päth"])
        _, ids = store.search(_vectors(2, seed=5), 1, AdaptivePlan(8, 50, DIM))
        assert ids.tolist() == [["uuid-1"], ["ünïcode/päth"]]
        store.delete([names[0], "uuid-1"])
        with pytest.raises(IndexInputError, match="string ids; got 7"):
            store.add(_vectors(1), [7])
        with pytest.raises(IndexInputError, match="give the ids"):
            store.add(_vectors(1))
        with pytest.raises(IndexInputError, match="512 bytes"):
            store.add(_vectors(1), ["x" * 513])
        with pytest.raises(IndexInputError, match="already in the index"):
            store.add(_vectors(1), [names[1]])
        with pytest.raises(IndexInputError, match="not in the index"):
            store.delete(["uuid-1"])
        store.compact()
    reopened = IndexStore.open(tmp_path / "ix", writable=False)
    assert "ünïcode/päth" in reopened and names[0] not in reopened and reopened.ntotal == 300


def test_bad_writes_leave_nothing_behind(folder):
    with IndexStore.open(folder) as store:
        size = store.info()["log_bytes"]
        for vectors, ids, match in [
            (_vectors(1), [-1], r"\[0, 2\^63 - 1\]"),
            (_vectors(1), [2**63], r"\[0, 2\^63 - 1\]"),
            (np.zeros((1, DIM)), None, "all zeros"),
            (_vectors(2), [9000, 9000], "unique"),
            (_vectors(1), [3], "already in the index"),
            (_vectors(1)[:, :5], None, "shape"),
        ]:
            with pytest.raises(IndexInputError, match=match):
                store.add(vectors, ids)
        with pytest.raises(IndexInputError, match="not in the index"):
            store.delete([3, 99999])  # all or none: 3 stays
        assert 3 in store and store.ntotal == 2000 and store.info()["log_bytes"] == size
        with pytest.raises(IndexInputError, match="shortlist structures only"):
            store.search(_vectors(1), 5, AdaptivePlan(16, 50, DIM))
        store.search(_vectors(1), 5, AdaptivePlan(16, 50, DIM), exact=True)


def test_one_writer_many_readers(folder):
    with IndexStore.open(folder):
        with pytest.raises(StoreBusyError, match="open for writing"):
            IndexStore.open(folder)
        with pytest.raises(StoreBusyError):
            MatryoshkaIndex.build(_vectors(10)).save(folder)
        assert IndexStore.open(folder, writable=False).ntotal == 2000
    IndexStore.open(folder).close()  # released


def test_torn_last_record_is_cut_off_and_a_damaged_one_is_refused(folder):
    with IndexStore.open(folder) as store:
        store.add(_vectors(3, seed=6), [5000, 5001, 5002])
    log = versions.wal_path(folder, "v-000001")
    whole = log.read_bytes()
    with IndexStore.open(folder) as store:
        store.add(_vectors(1, seed=7), [6000])
        store.add(_vectors(1, seed=8), [6001])
    two_more = log.read_bytes()
    log.write_bytes(two_more[:-10])  # a crash in the middle of the last append
    with pytest.warns(UserWarning, match="torn last log record"), IndexStore.open(folder) as store:
        assert 6000 in store and 6001 not in store and store.info()["torn_bytes_cut_at_open"] > 0
    log.write_bytes(whole + b"\x00" * 300)  # zeros a crash left after the last record
    with pytest.warns(UserWarning), IndexStore.open(folder) as store:
        assert 5002 in store and 6000 not in store
    assert log.read_bytes() == whole  # cut back to the last whole record
    damaged = bytearray(two_more)
    damaged[40] ^= 0xFF  # a flipped bit inside the first record, acknowledged records after it
    log.write_bytes(bytes(damaged))
    for writable in (True, False):
        with pytest.raises(CorruptIndexError, match="damaged and .* bytes of log follow it"):
            IndexStore.open(folder, writable=writable)
    assert log.read_bytes() == bytes(damaged)  # left as it is


def test_a_log_that_does_not_fit_its_version_is_refused(folder):
    with IndexStore.open(folder) as store:
        store.delete([1])
    (folder / "CURRENT").write_text("v-000001")
    versions.wal_path(folder, "v-000001").write_bytes(versions.wal_path(folder, "v-000001").read_bytes() * 2)
    with pytest.raises(CorruptIndexError, match="does not apply"):
        IndexStore.open(folder, writable=False)


def test_searches_and_writes_in_parallel_with_background_compaction(folder):
    queries = _vectors(5, seed=8)
    errors: list[BaseException] = []
    stop = threading.Event()
    history = dict(enumerate(_vectors(2000)))

    def searcher():
        try:
            while not stop.is_set():
                _, ids = store.search(queries, 10, AdaptivePlan(8, 100, DIM))
                assert ids.shape == (5, 10)
        except BaseException as e:
            errors.append(e)

    with IndexStore.open(folder, compact_threshold=64) as store:
        threads = [threading.Thread(target=searcher) for _ in range(3)]
        for t in threads:
            t.start()
        for i in range(300):
            vec = _vectors(1, seed=100 + i)
            store.add(vec, [10_000 + i])
            history[10_000 + i] = vec[0]
            if i % 3 == 0:
                store.delete([i])
                del history[i]
        stop.set()
        for t in threads:
            t.join()
        store.close()  # waits for a running compaction
        assert not errors, errors[0]
        assert int(store.version[2:]) > 1  # compactions ran while writes went on
    with IndexStore.open(folder, writable=False) as reader:
        assert sorted(reader.ids.tolist()) == sorted(history)
        assert reader.search(queries, 10, FullPlan())[1].tolist() == _reference(history, queries)


KILL_SCRIPT = """
import sys, numpy as np
from matryoshka.index import IndexStore
store = IndexStore.open(sys.argv[1], compact_threshold=int(sys.argv[2]))
rng = np.random.default_rng(0)
i = 0
while True:
    store.add(rng.standard_normal((1, 32)).astype(np.float32) + 0.1, [100_000 + i])
    if i % 7 == 3:
        store.delete([i])
    print(i, flush=True)  # acknowledged
    i += 1
"""


@pytest.mark.parametrize("threshold,tier", [(0, "ram"), (200, "ram"), (200, "disk")])
def test_kill_9_mid_append_or_mid_compaction_keeps_every_acknowledged_write(tmp_path, threshold, tier):
    MatryoshkaIndex.build(_vectors(50_000), shortlist_dims=[8], full_vectors=tier).save(tmp_path / "ix")
    acked = kill_after_acks(KILL_SCRIPT, [str(tmp_path / "ix"), str(threshold)], enough=1500)
    assert acked > 100
    with IndexStore.open(tmp_path / "ix") as store:
        for i in range(acked + 1):
            assert 100_000 + i in store, i
            assert (i in store) == (i % 7 != 3), i
        assert 100_000 + acked + 2 not in store  # nothing beyond the one write that may have been in flight
        assert (int(store.version[2:]) > 1) == (threshold > 0)  # compactions ran (and one was likely cut short)
        assert (type(store.index.arrays().codes).__name__ == "DiskRows") == (tier == "disk")


def test_a_failed_background_compaction_loses_nothing_and_is_reported_once(folder, monkeypatch):
    from matryoshka.index import CompactionError

    real = versions.write_version

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(versions, "write_version", full_disk)
    with IndexStore.open(folder, compact_threshold=4) as store:
        store.add(_vectors(4, seed=9), [7000, 7001, 7002, 7003])  # starts a compaction that fails
        store._compactor.join()
        with pytest.raises(CompactionError, match="No space left"):
            store.add(_vectors(1, seed=10), [7004])
        assert 7004 not in store and 7003 in store
        monkeypatch.setattr(versions, "write_version", real)
        store.add(_vectors(1, seed=10), [7004])  # goes through and compacts again
        store._compactor.join()
        assert store.version == "v-000002" and store.info()["segment_rows"] == 0
    assert 7004 in IndexStore.open(folder, writable=False)


def test_convenient_and_refused_inputs(folder):
    with IndexStore.open(folder) as store:
        assert store.delete(7) == 1 and 7 not in store  # one id, not a list
        _, by_text = store.search(_vectors(2, seed=13), 5, "adaptive:8:50:32")
        np.testing.assert_array_equal(by_text, store.search(_vectors(2, seed=13), 5, AdaptivePlan(8, 50, 32))[1])
        prefix_zero = _vectors(1, seed=14)
        prefix_zero[:, :8] = 0
        with pytest.raises(IndexInputError, match="all zeros in its first 8 dims"):
            store.search(prefix_zero, 5, "adaptive:8:50:32")
        store.search(prefix_zero, 5)  # the full dim has a direction
        assert store.compact() == "v-000002"
        assert store.compact() == "v-000002"  # nothing logged since: no new version
        with pytest.raises(IndexInputError, match="cannot parse plan"):
            store.search(_vectors(1), 5, "adaptive:8")
    with pytest.raises(CorruptIndexError, match="not an index folder"):
        IndexStore.open(folder.parent / "nothing-here")


def test_string_ids_refuse_line_breaks_and_nul(tmp_path):
    MatryoshkaIndex.build(_vectors(10), [f"d{i}" for i in range(10)], shortlist_dims=[8]).save(tmp_path / "ix")
    with IndexStore.open(tmp_path / "ix") as store:
        for bad in ("a\nb", "a\x00b", "a\rb"):
            with pytest.raises(IndexInputError, match="line breaks or NUL"):
                store.add(_vectors(1), [bad])
        with pytest.raises(IndexInputError, match=r"and 2 more"):
            store.delete([f"x{i}" for i in range(12)])
