"""A store whose disk fills up or fails: refused writes leave nothing, acknowledged ones survive, writes resume.

The disk is simulated by patching ``os.write`` / ``os.fdatasync`` / ``os.ftruncate`` for the files of the store's
folder only: a write takes the bytes that still fit and returns (as a real file system does), then fails with
ENOSPC; a sync or a cut can be made to fail with EIO.
"""

import errno
import os
import warnings

import numpy as np
import pytest
from fastapi.testclient import TestClient

from matryoshka.index import IndexStore, MatryoshkaIndex, StoreFullError, StoreWriteError
from matryoshka.service import create_app

DIM = 16
KEY = "test-key"


def _vectors(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


class FakeDisk:
    """``free`` bytes left for the folder's files (None: unlimited); ``sync_error`` / ``cut_error``: the errno the
    next fdatasync / ftruncate of those files fails with (once)."""

    def __init__(self, folder, monkeypatch):
        self.folder = str(folder.resolve())
        self.free: int | None = None
        self.sync_error: int | None = None
        self.cut_error: int | None = None
        self._write, self._sync, self._cut = os.write, os.fdatasync, os.ftruncate
        monkeypatch.setattr(os, "write", self.write)
        monkeypatch.setattr(os, "fdatasync", self.fdatasync)
        monkeypatch.setattr(os, "ftruncate", self.ftruncate)

    def ours(self, fd):
        try:
            return os.path.realpath(f"/proc/self/fd/{fd}").startswith(self.folder)
        except OSError:
            return False

    def write(self, fd, data):
        if self.free is None or not self.ours(fd):
            return self._write(fd, data)
        if self.free == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self._write(fd, bytes(data[: self.free]))  # a short write: what still fits
        self.free -= written
        return written

    def fdatasync(self, fd):
        if self.sync_error is not None and self.ours(fd):
            code, self.sync_error = self.sync_error, None
            raise OSError(code, os.strerror(code))
        return self._sync(fd)

    def ftruncate(self, fd, length):
        if self.cut_error is not None and self.ours(fd):
            code, self.cut_error = self.cut_error, None
            raise OSError(code, os.strerror(code))
        return self._cut(fd, length)


@pytest.fixture
def folder(tmp_path):
    MatryoshkaIndex.build(_vectors(200), shortlist_dims=[8]).save(tmp_path / "ix")
    return tmp_path / "ix"


def _reopened_ids(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a refused write was cut back at once: no torn tail to cut on reopening
        with IndexStore.open(folder, writable=False) as store:
            return store.ntotal, {i for i in range(1000, 1100) if i in store}


def test_filling_the_disk_keeps_every_acknowledged_id_and_none_of_the_refused(folder, monkeypatch):
    disk = FakeDisk(folder, monkeypatch)
    acknowledged, refused = [], []
    with IndexStore.open(folder, compact_threshold=0) as store:
        disk.free = 3000  # a 10-row add is ~700 bytes: four fit, the fifth is cut short
        for batch in range(8):
            ids = list(range(1000 + 10 * batch, 1010 + 10 * batch))
            try:
                store.add(_vectors(10, seed=batch + 1), ids)
                acknowledged += ids
            except StoreFullError as e:
                assert "no space left on the device" in str(e) and "\n" not in str(e)
                assert e.errno == errno.ENOSPC and isinstance(e, OSError)
                refused += ids
                assert not any(i in store for i in ids)  # nothing of its rows is visible
        assert len(acknowledged) == 40 and len(refused) == 40
        assert store.ntotal == 240
        with pytest.raises(StoreFullError):
            store.delete([1000])
        assert 1000 in store
        disk.free = None  # space returns: writes go through again
        store.add(_vectors(10, seed=50), list(range(1090, 1100)))
        acknowledged += list(range(1090, 1100))
        found = store.search(_vectors(10, seed=50), 1)[1][:, 0].tolist()
        assert found == list(range(1090, 1100))
    assert _reopened_ids(folder) == (250, set(acknowledged))


@pytest.mark.parametrize("where", ["sync", "write"])
def test_an_io_error_refuses_that_write_only(folder, monkeypatch, where):
    disk = FakeDisk(folder, monkeypatch)
    with IndexStore.open(folder, compact_threshold=0) as store:
        store.add(_vectors(5, seed=1), list(range(1000, 1005)))
        if where == "sync":
            disk.sync_error = errno.EIO
        else:
            disk.free = 100  # part of the record goes to the file; the rest fails (as ENOSPC here)
        with pytest.raises(StoreWriteError) as refused:
            store.add(_vectors(5, seed=2), list(range(1005, 1010)))
        assert ("I/O error" in str(refused.value)) == (where == "sync")
        assert not any(i in store for i in range(1005, 1010))
        disk.free = None
        store.add(_vectors(5, seed=3), list(range(1010, 1015)))
    assert _reopened_ids(folder) == (210, set(range(1000, 1005)) | set(range(1010, 1015)))


def test_a_log_that_cannot_be_cut_back_refuses_writes_until_reopened(folder, monkeypatch):
    disk = FakeDisk(folder, monkeypatch)
    with IndexStore.open(folder, compact_threshold=0) as store:
        store.add(_vectors(5, seed=1), list(range(1000, 1005)))
        disk.free, disk.cut_error = 100, errno.EIO  # a torn record stays in the log
        with pytest.raises(StoreWriteError, match="could not be cut back"):
            store.add(_vectors(5, seed=2), list(range(1005, 1010)))
        disk.free = None
        with pytest.raises(StoreWriteError, match="writes are refused since .*; reopen the store"):
            store.add(_vectors(5, seed=3), list(range(1010, 1015)))  # would land after the torn bytes
        assert store.ntotal == 205
    with pytest.warns(UserWarning, match="cut 100 bytes of a torn last log record"):
        store = IndexStore.open(folder, compact_threshold=0)
    with store:
        store.add(_vectors(5, seed=3), list(range(1010, 1015)))
    assert _reopened_ids(folder) == (210, set(range(1000, 1005)) | set(range(1010, 1015)))


def test_the_service_answers_507_or_503_in_one_line_and_resumes(folder, monkeypatch):
    disk = FakeDisk(folder, monkeypatch)
    app = create_app(folder, api_key=KEY, compact_threshold=0)
    client, headers = TestClient(app), {"X-API-Key": KEY}

    def add(ids, seed):
        return client.post("/vectors", json={"vectors": _vectors(len(ids), seed).tolist(), "ids": ids}, headers=headers)

    try:
        disk.free = 0
        full = add([1000, 1001], 1)
        assert full.status_code == 507, full.text
        assert "no space left on the device" in full.json()["detail"] and "\n" not in full.json()["detail"]
        assert client.delete("/vectors/3", headers=headers).status_code == 507
        disk.free, disk.sync_error = None, errno.EIO
        broken = add([1000, 1001], 1)
        assert broken.status_code == 503 and "I/O error" in broken.json()["detail"]
        assert client.get("/health").json()["ntotal"] == 200
        ok = add([1002, 1003], 2)
        assert ok.status_code == 200 and ok.json()["ids"] == [1002, 1003]
    finally:
        app.state.store.close()
    assert _reopened_ids(folder) == (202, {1002, 1003})
