"""The write-ahead log: every add and delete is appended as one checksummed record and fsynced before it is
acknowledged, so a write costs O(batch) bytes on disk however large the index is.

Record layout (little-endian): magic ``MRLW``, op (1 add, 2 delete), n (rows), payload length, CRC-32 of the
payload; the payload is the ids as JSON (length-prefixed) then, for adds, n x dim float32 unit vectors.
A process killed mid-append leaves a torn last record; :func:`read_records` stops before it and the store
cuts it off (that write was never acknowledged).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matryoshka.io import FILE_MODE, fsync_dir

MAGIC = b"MRLW"
HEADER = struct.Struct("<4sBIII")
LENGTH = struct.Struct("<I")
ADD, DELETE = 1, 2


@dataclass
class Record:
    op: int
    ids: list
    vectors: np.ndarray | None  # (n, dim) float32 for ADD


def encode_record(op: int, ids: list, vectors: np.ndarray | None = None) -> bytes:
    id_bytes = json.dumps(ids, separators=(",", ":")).encode()
    payload = LENGTH.pack(len(id_bytes)) + id_bytes
    if op == ADD:
        payload += np.ascontiguousarray(vectors, dtype="<f4").tobytes()
    return HEADER.pack(MAGIC, op, len(ids), len(payload), zlib.crc32(payload)) + payload


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
    if magic != MAGIC or op not in (ADD, DELETE):
        return None, -1
    start, end = offset + HEADER.size, offset + HEADER.size + size
    payload = data[start:end]
    if end > len(data) or zlib.crc32(payload) != crc:
        return None, end
    try:
        (id_size,) = LENGTH.unpack_from(payload, 0)
        ids = json.loads(payload[LENGTH.size : LENGTH.size + id_size])
        vectors = None
        if op == ADD:
            vectors = np.frombuffer(payload, dtype="<f4", offset=LENGTH.size + id_size).reshape(n, dim)
    except (struct.error, ValueError) as e:
        raise CorruptLogError(f"record at byte {offset} has a valid checksum but does not decode: {e}") from e
    return Record(op, ids, vectors), end


def _torn_tail(data: bytes, offset: int, end: int) -> bool:
    """Whether a bad record at ``offset`` is an append cut short by a crash (nothing whole can follow it)."""
    if end >= len(data):
        return True  # the record runs to (or past) the end of the file
    return not any(data[offset:])  # zeros a crash left after the last record


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

    def append(self, record: bytes) -> None:
        """Write and fsync one record; on any error the log is cut back to where it was."""
        start = self.size
        try:
            self._file.write(record)
            os.fdatasync(self._file.fileno())
        except BaseException:
            self._file.truncate(start)
            self._file.seek(start)
            raise
        self.size = start + len(record)

    def copy_from(self, other: Path, start: int, end: int) -> None:
        """Append bytes [start, end) of another log (the writes that arrived during a compaction)."""
        with open(other, "rb") as f:
            f.seek(start)
            data = f.read(end - start)
        if data:
            self.append(data)

    def close(self) -> None:
        self._file.close()
