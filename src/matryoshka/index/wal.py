"""The write-ahead log: every add and delete is appended as one checksummed record and fsynced before it is
acknowledged, so a write costs O(batch) bytes on disk however large the index is.

Record layout (little-endian): magic ``MRLW``, op (1 add, 2 delete, 3 add with texts), n (rows), payload length,
CRC-32 of the payload; the payload is the ids as JSON (length-prefixed), for an add with texts the n texts (str or
null) as JSON (length-prefixed), then for adds n x dim float32 unit vectors. Logs written before texts were kept
hold no op 3 and read as before.
A process killed mid-append leaves a torn last record; :func:`read_records` stops before it and the store
cuts it off (that write was never acknowledged). A write the disk refuses (no space, an I/O error on write or
fsync) is cut back at once and raised as :class:`~matryoshka.index.errors.StoreFullError` or
:class:`~matryoshka.index.errors.StoreWriteError`; the next write goes through once the disk takes it again.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matryoshka.index.errors import StoreFullError, StoreWriteError
from matryoshka.io import FILE_MODE, fsync_dir

MAGIC = b"MRLW"
HEADER = struct.Struct("<4sBIII")
LENGTH = struct.Struct("<I")
ADD, DELETE = 1, 2
ADD_TEXTS = 3  # on disk only: an ADD whose record carries texts (Record.op is ADD, Record.texts set)


@dataclass
class Record:
    op: int
    ids: list
    vectors: np.ndarray | None  # (n, dim) float32 for ADD
    texts: list | None = None  # the n texts (str or None) an ADD keeps beside its ids, or None: no texts


def encode_record(op: int, ids: list, vectors: np.ndarray | None = None, texts: list | None = None) -> bytes:
    payload = _length_prefixed_json(ids)
    if texts is not None:
        op = ADD_TEXTS
        payload += _length_prefixed_json(texts)
    if op != DELETE:
        payload += np.ascontiguousarray(vectors, dtype="<f4").tobytes()
    return HEADER.pack(MAGIC, op, len(ids), len(payload), zlib.crc32(payload)) + payload


def _length_prefixed_json(values: list) -> bytes:
    data = json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()  # UTF-8: 2-3x smaller than \u escapes
    return LENGTH.pack(len(data)) + data


class CorruptLogError(ValueError):
    """A record that fails its checks with more log after it: not a torn append, so not cut off silently."""


def read_records(path: Path, dim: int) -> tuple[list[Record], int, int]:
    """All whole records of a log, the byte offset just after the last one, and the file size.

    Only a torn *last* record (a header or payload cut short, a bad checksum on the final record, or zeros the
    file system left after the last record) ends the log quietly; a bad record with more log after it raises
    :class:`CorruptLogError`, so that acknowledged writes behind it are never dropped.
    """
    data = path.read_bytes() if path.exists() else b""
    records, offset = [], 0
    while offset < len(data):
        record, end = _parse(data, offset, dim)
        if record is None:
            if not _torn_tail(data, offset, end):
                raise CorruptLogError(
                    f"{path}: the record at byte {offset} is damaged and {len(data) - offset} bytes of log follow it"
                )
            break
        records.append(record)
        offset = end
    return records, offset, len(data)


def _parse(data: bytes, offset: int, dim: int) -> tuple[Record | None, int]:
    """The record at ``offset`` and where it ends, or (None, its declared end, or -1 if it has no valid header)."""
    if offset + HEADER.size > len(data):
        return None, len(data)
    magic, op, n, size, crc = HEADER.unpack_from(data, offset)
    if magic != MAGIC or op not in (ADD, DELETE, ADD_TEXTS):
        return None, -1
    start, end = offset + HEADER.size, offset + HEADER.size + size
    payload = data[start:end]
    if end > len(data) or zlib.crc32(payload) != crc:
        return None, end
    try:
        ids, at = _read_json(payload, 0)
        texts, vectors = None, None
        if op == ADD_TEXTS:
            texts, at = _read_json(payload, at)
            if not isinstance(texts, list) or len(texts) != n:
                raise ValueError(f"{n} rows but {len(texts) if isinstance(texts, list) else 'no list of'} texts")
        if op != DELETE:
            vectors = np.frombuffer(payload, dtype="<f4", offset=at).reshape(n, dim)
    except (struct.error, ValueError) as e:
        raise CorruptLogError(f"record at byte {offset} has a valid checksum but does not decode: {e}") from e
    return Record(ADD if op == ADD_TEXTS else op, ids, vectors, texts), end


def _read_json(payload: bytes, at: int) -> tuple[object, int]:
    """The length-prefixed JSON value at ``at`` in ``payload``, and where it ends."""
    (size,) = LENGTH.unpack_from(payload, at)
    start = at + LENGTH.size
    if start + size > len(payload):
        raise ValueError("a length runs past the record")
    return json.loads(payload[start : start + size]), start + size


def _torn_tail(data: bytes, offset: int, end: int) -> bool:
    """Whether a bad record at ``offset`` is an append cut short by a crash (nothing whole can follow it)."""
    if end >= len(data):
        return True  # the record runs to (or past) the end of the file
    return not any(data[offset:])  # zeros a crash left after the last record


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written: on a file system that fills up, a write can take part of the bytes
    and return, and only the next one fails."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "the file system wrote nothing")
        view = view[written:]


def refused_write(error: OSError, path: Path, cut: bool = True) -> StoreWriteError:
    """The store's error for a write the disk refused: :class:`StoreFullError` when out of space or quota."""
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    why = "no space left on the device" if full else f"an I/O error ({error.strerror or error})"
    if cut:
        then = "nothing of it was kept; free some space and retry" if full else "nothing of it was kept; retry"
    else:
        # The record may have reached the disk whole: its outcome is unknown, and the user is told so.
        then = "it could not be cut back from the log (it may reappear after a reopen); reopen the store to write"
    refused = (StoreFullError if full else StoreWriteError)(f"write refused in {path.parent}: {why}; {then}")
    refused.errno, refused.strerror, refused.filename = error.errno, error.strerror, str(path)
    return refused


class WriteAheadLog:
    """An append-only log file opened for writing at ``offset`` (anything after it, a torn tail, is cut)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        self._file = os.fdopen(fd, "r+b", buffering=0)
        self._file.truncate(offset)
        self._file.seek(offset)
        os.fsync(self._file.fileno())
        if created:
            fsync_dir(path.parent)
        self.size = offset
        self._broken: str | None = None  # why writes are refused (a refused record could not be cut back)

    def append(self, record: bytes) -> None:
        """Write and fsync one record. On a failure the log is cut back to where it was, so the refused write leaves
        nothing behind and the next one starts on a whole record; if even the cut fails, every later write is
        refused until the store is reopened (opening cuts a torn tail)."""
        if self._broken is not None:
            raise StoreWriteError(f"{self.path}: writes are refused since {self._broken}; reopen the store")
        start = self.size
        fd = self._file.fileno()
        try:
            _write_all(fd, record)
            os.fdatasync(fd)
        except BaseException as e:
            cut = self._cut_back(start)
            if isinstance(e, OSError):
                raise refused_write(e, self.path, cut) from e
            raise
        self.size = start + len(record)

    def _cut_back(self, start: int) -> bool:
        """Truncate the log to ``start`` durably (so a refused record cannot come back after a crash); on failure,
        mark the log broken and say so."""
        fd = self._file.fileno()
        try:
            os.ftruncate(fd, start)
            os.lseek(fd, start, os.SEEK_SET)
            os.fdatasync(fd)
        except OSError as e:
            self._broken = f"a refused write could not be cut back from the log ({e.strerror or e})"
            return False
        return True

    def copy_from(self, other: Path, start: int, end: int) -> None:
        """Append bytes [start, end) of another log (the writes that arrived during a compaction)."""
        with open(other, "rb") as f:
            f.seek(start)
            data = f.read(end - start)
        if data:
            self.append(data)

    def close(self) -> None:
        self._file.close()
