"""The disk tier: full-dim vectors that stay in their file and are read per query with direct I/O.

Only the prefix structures live in RAM; a search's re-ranking reads its K candidate rows straight from the disk
(``O_DIRECT``: the page cache is bypassed, so no latency figure depends on how much of the file the operating
system happens to cache). The K reads go to the kernel in batched submissions (Linux native AIO, ``io_submit``,
up to :data:`MAX_EVENTS` reads each), so they run in parallel on the device instead of one after another.

Bulk reads (compaction, an exact full scan) go through a read-only memory map: they read the file in order, where
the page cache helps and does no harm.

Where the file system refuses ``O_DIRECT`` (tmpfs, some network file systems) or the kernel refuses AIO, rows
are read through the memory map instead, with a warning.

Autotune times plans on the tier the index will use (:class:`DiskTier`), and :func:`read_cost_flops` prices a
direct read in the cost model's multiply-adds.

Example::

    from matryoshka.index import MatryoshkaIndex

    index = MatryoshkaIndex.load("my_index", full_vectors="disk")   # or: mrl index build --full-vectors disk
    scores, ids = index.search(queries, k=10, plan="adaptive:32:40:512")
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import errno
import mmap
import os
import platform
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from matryoshka.index.errors import CorruptIndexError, IndexInputError

BLOCK = 4096  # O_DIRECT offsets, lengths and buffers are aligned to this
MAX_EVENTS = 256  # reads in flight per submission (more are submitted in turns); one AIO context per thread
TIERS = ("ram", "mmap", "disk")

# System call numbers of Linux native AIO: io_setup, io_destroy, io_getevents, io_submit.
_SYSCALLS = {"x86_64": (206, 207, 208, 209), "aarch64": (0, 1, 4, 2)}
_SYS_IO_SETUP, _SYS_IO_DESTROY, _SYS_IO_GETEVENTS, _SYS_IO_SUBMIT = _SYSCALLS.get(platform.machine(), (-1,) * 4)
_IOCB = np.dtype(
    [
        ("data", "<u8"),
        ("key", "<u4"),
        ("rw_flags", "<u4"),
        ("opcode", "<u2"),
        ("reqprio", "<i2"),
        ("fildes", "<u4"),
        ("buf", "<u8"),
        ("nbytes", "<u8"),
        ("offset", "<i8"),
        ("reserved2", "<u8"),
        ("flags", "<u4"),
        ("resfd", "<u4"),
    ]
)  # struct iocb of <linux/aio_abi.h>, 64 bytes
_PREAD = 0


def check_tier(full_vectors: str) -> str:
    if full_vectors not in TIERS:
        raise IndexInputError(f"unknown --full-vectors {full_vectors!r}; choose one of {', '.join(TIERS)}")
    return full_vectors


class _Aio:
    """One thread's AIO context and aligned read buffer (threads never share them; see :func:`_thread_aio`)."""

    def __init__(self, libc: ctypes.CDLL, slot: int) -> None:
        self.libc, self.slot, self.pid = libc, slot, os.getpid()
        self.ctx = ctypes.c_ulong(0)
        if _SYS_IO_SETUP < 0:
            raise OSError(errno.ENOSYS, f"no native AIO system calls known for {platform.machine()}")
        if libc.syscall(_SYS_IO_SETUP, MAX_EVENTS, ctypes.byref(self.ctx)) != 0:
            raise OSError(ctypes.get_errno(), "io_setup failed")
        self.buffer = mmap.mmap(-1, MAX_EVENTS * slot)  # page-aligned, as O_DIRECT needs
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.buffer))
        self.events = np.zeros((MAX_EVENTS, 4), dtype=np.int64)  # struct io_event: data, obj, res, res2

    def __del__(self) -> None:  # at thread exit: give the kernel its context back (it waits for reads in flight)
        if self.pid == os.getpid():  # a forked child has no kernel context behind the id it inherited
            with contextlib.suppress(Exception):  # at interpreter exit ctypes may already be gone
                self.libc.syscall(_SYS_IO_DESTROY, self.ctx)

    def read(self, fd: int, offsets: np.ndarray, lengths: np.ndarray, needed: np.ndarray) -> np.ndarray:
        """Read ``lengths[i]`` bytes (whole blocks, at most the slot) at each block-aligned offset (at most
        MAX_EVENTS) into the buffer, one slot per read; one submission, then wait for every completion. Read ``i``
        must return at least ``needed[i]`` bytes (the last block of the file is short)."""
        n = len(offsets)
        cbs = np.zeros(n, dtype=_IOCB)
        cbs["opcode"], cbs["fildes"], cbs["nbytes"], cbs["offset"] = _PREAD, fd, lengths, offsets
        cbs["data"] = np.arange(n)  # completions arrive in any order; each names its read
        cbs["buf"] = self.address + np.arange(n, dtype=np.uint64) * self.slot
        pointers = cbs.ctypes.data + np.arange(n, dtype=np.uint64) * _IOCB.itemsize
        done = 0
        while done < n:
            submitted = self.libc.syscall(
                _SYS_IO_SUBMIT, self.ctx, n - done, ctypes.c_void_p(pointers.ctypes.data + 8 * done)
            )
            if submitted <= 0:
                raise OSError(ctypes.get_errno(), "io_submit failed")
            done += submitted
        got = 0
        while got < n:
            count = self.libc.syscall(
                _SYS_IO_GETEVENTS, self.ctx, n - got, n - got, ctypes.c_void_p(self.events.ctypes.data), None
            )
            if count < 0:
                if ctypes.get_errno() == errno.EINTR:
                    continue
                raise OSError(ctypes.get_errno(), "io_getevents failed")
            results, which = self.events[:count, 2], self.events[:count, 0]
            short = results < needed[which]
            if short.any():
                bad = int(results[short][0])
                raise OSError(-bad if bad < 0 else errno.EIO, f"a direct read returned {bad} bytes, too few")
            got += count
        return np.frombuffer(self.buffer, dtype=np.uint8, count=n * self.slot).reshape(n, self.slot)


_threads = threading.local()


def _thread_aio(libc: ctypes.CDLL, slot: int) -> _Aio:
    """The calling thread's AIO context, with a buffer of at least ``slot`` bytes per read (a new one after a
    fork, whose child cannot use its parent's context)."""
    aio = getattr(_threads, "aio", None)
    if aio is None or aio.slot < slot or aio.pid != os.getpid():
        _threads.aio = None  # the old context is destroyed before the new one is made
        aio = _threads.aio = _Aio(libc, max(slot, aio.slot if aio and aio.pid == os.getpid() else 0))
    return aio


def _drop_thread_aio() -> None:
    """Forget the calling thread's context after a failed read: destroying it waits for the reads still in
    flight, so none of them can land in a buffer a later read uses."""
    _threads.aio = None


class DiskRows:
    """The rows of a saved ``.npy`` matrix (N, d), read on demand: :meth:`take` for a query's candidates (direct
    I/O), indexing and ``np.asarray`` for bulk work (memory map)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self._fd = -1
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(f)
                self.header = f.tell()
        except (OSError, ValueError) as e:
            raise CorruptIndexError(f"{self.path} is not a readable array: {e}") from e
        if fortran or len(shape) != 2:
            raise CorruptIndexError(f"{self.path} must hold a C-ordered 2-D array, got shape {shape}")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = self.shape[1] * self.dtype.itemsize
        expected = self.header + self.shape[0] * self.row_bytes
        stat = os.stat(self.path)
        if stat.st_size != expected:
            raise CorruptIndexError(
                f"{self.path} holds {stat.st_size:,} bytes where its {self.shape[0]:,} rows need {expected:,}: "
                "the file is truncated or was changed after the build"
            )
        self._identity = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        self.mapped = np.load(self.path, mmap_mode="r")
        # A row may straddle a block boundary: each read covers the row's span rounded out to whole blocks.
        self.slot = (-(-(self.row_bytes + BLOCK - 1) // BLOCK)) * BLOCK
        self.direct = False
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECT)
            self._libc = ctypes.CDLL(None, use_errno=True)
            self._libc.syscall.restype = ctypes.c_long
            self._aio()  # fails here, not at the first search, where the kernel refuses AIO
            self.direct = True
        except (OSError, AttributeError) as e:
            self.close()
            warnings.warn(
                f"{self.path}: direct I/O is not available here ({e}); the disk tier reads through the page cache",
                stacklevel=3,
            )

    # -- the ndarray surface that bulk code uses -----------------------------------------------------------
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return 0  # nothing of it is held in RAM

    def __getitem__(self, key):
        return self.mapped[key]

    def __array__(self, dtype=None, copy=None):
        return np.array(self.mapped, dtype=dtype)

    # -- per-query reads -----------------------------------------------------------------------------------
    def _aio(self) -> _Aio:
        return _thread_aio(self._libc, self.slot)

    def check_unchanged(self) -> None:
        # fstat of the open file: a compaction that removed an old version's folder has not changed its rows.
        try:
            stat = os.fstat(self._fd) if self._fd >= 0 else os.stat(self.path)
        except FileNotFoundError:
            return  # an old version removed by a compaction: the memory map still holds its rows
        if (stat.st_size, stat.st_mtime_ns, stat.st_ino) != self._identity:
            raise CorruptIndexError(f"{self.path} was changed after the index was opened: open the index again")

    def take(self, positions: np.ndarray, d: int) -> np.ndarray:
        """The first ``d`` columns of the rows at ``positions`` (any shape), as an array of shape
        ``positions.shape + (d,)``: a query's candidates, read with direct I/O in submissions of up to
        :data:`MAX_EVENTS` reads."""
        positions = np.asarray(positions, dtype=np.int64)
        flat = positions.reshape(-1)
        if not self.direct:
            return self.read_rows(flat, d).reshape(*positions.shape, d)
        self.check_unchanged()
        starts = self.header + flat * self.row_bytes
        aligned = starts - starts % BLOCK
        skips = starts - aligned  # few distinct values: the row size's multiples modulo the block size
        width = d * self.dtype.itemsize
        # Only the blocks a row's first d columns span: a row that straddles no block boundary costs one block,
        # not the two of the slot (a smaller read completes sooner).
        lengths = (skips + width + BLOCK - 1) // BLOCK * BLOCK
        out = np.empty((len(flat), width), dtype=np.uint8)
        try:
            aio = self._aio()
        except OSError as e:
            self._fall_back(f"this thread cannot set up AIO ({e})")
            return self.take(positions, d)
        try:
            for begin in range(0, len(flat), MAX_EVENTS):
                end = min(begin + MAX_EVENTS, len(flat))
                raw = aio.read(self._fd, aligned[begin:end], lengths[begin:end], skips[begin:end] + width)
                part, part_skips = out[begin:end], skips[begin:end]
                for skip in np.unique(part_skips):
                    rows = part_skips == skip
                    part[rows] = raw[rows, skip : skip + width]
        except BaseException:
            _drop_thread_aio()
            raise
        return out.view(self.dtype).reshape(*positions.shape, d)

    def read_rows(self, positions: np.ndarray, d: int) -> np.ndarray:
        """Many rows in file order (an exact scan, a compaction): through the memory map, where the page cache
        helps; refused like :meth:`take` when the file changed."""
        self.check_unchanged()
        return self.mapped[:, :d][np.asarray(positions, dtype=np.int64)]

    def _fall_back(self, why: str) -> None:
        warnings.warn(f"{self.path}: {why}; the disk tier reads through the page cache", stacklevel=3)
        self.direct = False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


# -- tuning on the disk tier --------------------------------------------------------------------------------------
READ_SAMPLE = 128  # rows read (one batched submission) to price a direct read
PRICE_ROUNDS = 5  # medians of this many rounds


def spill(codes: np.ndarray, folder: str | os.PathLike) -> DiskRows:
    """``codes`` (N, d) written to a new file in ``folder`` and opened as the disk tier reads it. The file is unlinked
    at once: its open descriptor and memory map keep the rows until the :class:`DiskRows` is dropped, so nothing is
    left behind however the caller ends."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=folder, prefix=".tuning-", suffix=".npy")
    try:
        with os.fdopen(handle, "wb") as f:
            np.save(f, np.ascontiguousarray(codes))
        return DiskRows(name)
    finally:
        os.unlink(name)


class DiskTier:
    """The disk tier an index will read its full-dim rows from once saved, for autotune to time plans on: each
    distinct rows array of the indexes it is shown is written once to a file in ``folder`` (the device the index
    will be read from). Recall is measured elsewhere, on rows in RAM or through the page cache: it is the same on
    every tier, and a calibration batch re-ranks far more candidates than a batch-1 search reads."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._spilled: dict[int, tuple[object, DiskRows]] = {}  # id(rows) -> (rows, kept alive so ids stay unique)

    @classmethod
    def of(cls, index) -> DiskTier | None:
        """The tier of an index whose rows are already on the disk (their file's folder), else None."""
        codes = getattr(index, "_codes", None)
        return cls(codes.path.parent) if isinstance(codes, DiskRows) else None

    def timed(self, index):
        """``index`` (a MatryoshkaIndex; shallow copy) reading its rows from this tier with direct I/O."""
        codes = index._codes
        if isinstance(codes, DiskRows):
            return index
        if id(codes) not in self._spilled:
            self._spilled[id(codes)] = (codes, spill(codes, self.folder))
        twin = copy.copy(index)
        twin._codes = self._spilled[id(codes)][1]
        return twin

    @staticmethod
    def searched(index):
        """``index`` reading disk-tier rows through their memory map (the page cache), for recall measurements."""
        codes = getattr(index, "_codes", None)
        if not isinstance(codes, DiskRows):
            return index
        twin = copy.copy(index)
        twin._codes, twin._norms = codes.mapped, {}
        return twin


def read_cost_flops(rows: DiskRows, sample: int = READ_SAMPLE) -> float:
    """How many multiply-adds (a compiled inner-product scan, as the cost model counts them) take as long as one
    row read with direct I/O here, in a batched submission of ``sample`` reads: the price of a candidate that a
    re-ranking stage fetches from the disk tier. 0 where the rows are read through the page cache."""
    if not rows.direct or len(rows) == 0:
        return 0.0
    positions = np.random.default_rng(0).choice(len(rows), min(sample, len(rows)), replace=False)
    per_read = _median_seconds(lambda: rows.take(positions, rows.shape[1])) / len(positions)
    block = np.asarray(rows[: min(len(rows), 1 << 14)], dtype=np.float32)
    query = np.ascontiguousarray(block[0])
    per_flop = _median_seconds(lambda: block @ query) / block.size
    return per_read / max(per_flop, 1e-13)


def _median_seconds(work) -> float:
    times = []
    for _ in range(PRICE_ROUNDS):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
