"""Full-dim float32 rows laid out behind the header of a serialised FAISS ``IndexFlatIP``, so that FAISS's
zero-copy reader opens them as an index that views them (:func:`flat_view`): the one-call search of
:mod:`matryoshka.index.compiled` re-ranks against the stored rows themselves, with no second copy in RAM.

No byte offset of FAISS's format is written here: the header and its two size fields are found by serialising
small indexes and comparing them, and every view is checked to point at the rows before it is used. Where either
step fails (another FAISS release), the rows are plain arrays and searches run stage by stage.

Example::

    import numpy as np
    from matryoshka.index.faiss_rows import as_faiss_rows, flat_view

    rows = as_faiss_rows(np.eye(8, dtype="float32"))
    flat = flat_view(rows)                 # an IndexFlatIP over `rows` (keep `rows` alive while it is used)
    scores, positions = flat.search(rows[:1], 2)
    assert positions[0, 0] == 0
"""

from __future__ import annotations

import functools

import faiss
import numpy as np

ALIGN = 64  # rows start on a cache line


@functools.lru_cache(maxsize=64)
def _header_fields(d: int) -> tuple[bytes, int, int] | None:
    """The serialised header of an ``IndexFlatIP`` of dim ``d`` and where its two size fields sit: (header, offset
    of the row count, offset of the float count). Found by serialising one, two and three rows and comparing, so
    that no byte offset of FAISS's format is written here; None if the format is not that simple."""
    headers = []
    for n in (1, 2, 3):
        flat = faiss.IndexFlatIP(d)
        flat.add(np.ones((n, d), dtype=np.float32))
        data = faiss.serialize_index(flat).tobytes()
        headers.append(data[: len(data) - 4 * n * d])
    if len({len(h) for h in headers}) != 1 or len(headers[0]) < 16:
        return None

    def reads(at: int, factor: int) -> bool:
        return all(int.from_bytes(h[at : at + 8], "little") == n * factor for n, h in enumerate(headers, 1))

    floats_at = len(headers[0]) - 8  # the vector's length comes right before its data
    rows = [at for at in range(floats_at - 7) if reads(at, 1)]
    if not reads(floats_at, d) or not rows:
        return None
    return headers[0], rows[0], floats_at


def zero_copy_reads(d: int) -> bool:
    """Whether this FAISS release opens rows of dim ``d`` in place (its zero-copy reader came with 1.11)."""
    return hasattr(faiss, "ZeroCopyIOReader") and hasattr(faiss, "IO_FLAG_MMAP_IFC") and _header_fields(d) is not None


def faiss_rows(n: int, d: int) -> np.ndarray:
    """An uninitialised float32 (n, d) array laid out behind an ``IndexFlatIP`` header, so that :func:`flat_view`
    opens it without a copy (a plain array where FAISS's format does not allow it)."""
    fields = _header_fields(d)
    if fields is None:
        return np.empty((n, d), dtype=np.float32)
    header, rows_at, floats_at = fields
    raw = np.empty(len(header) + 4 * n * d + ALIGN, dtype=np.uint8)
    start = (-(raw.ctypes.data + len(header))) % ALIGN
    head = bytearray(header)
    head[rows_at : rows_at + 8] = n.to_bytes(8, "little")
    head[floats_at : floats_at + 8] = (n * d).to_bytes(8, "little")
    raw[start : start + len(head)] = np.frombuffer(bytes(head), dtype=np.uint8)
    body = start + len(head)
    return raw[body : body + 4 * n * d].view(np.float32).reshape(n, d)


def as_faiss_rows(rows: np.ndarray) -> np.ndarray:
    """``rows`` (float32, (n, d)) if they already lie behind their header, else a copy that does."""
    return rows if _header_start(rows) is not None else concatenated_rows([rows], rows.shape[1])


def kept_rows(rows: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``rows[keep]`` for float32 rows and a boolean mask, laid out for :func:`flat_view`."""
    out = faiss_rows(int(np.count_nonzero(keep)), rows.shape[1])
    np.compress(keep, rows, axis=0, out=out)
    return out


def concatenated_rows(parts: list[np.ndarray], d: int) -> np.ndarray:
    """``np.concatenate(parts)`` for float32 rows of dim ``d``, laid out for :func:`flat_view`."""
    return np.concatenate(parts, out=faiss_rows(sum(len(p) for p in parts), d))


def load_rows(path) -> np.ndarray:
    """A float32 (n, d) ``.npy`` file read straight into :func:`faiss_rows` (no second copy); other arrays as
    ``np.load`` reads them."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if dtype != np.float32 or fortran or len(shape) != 2:
            return np.load(path)
        rows = faiss_rows(*shape)
        view = memoryview(rows.reshape(-1).view(np.uint8))
        if f.readinto(view) != rows.nbytes:
            raise ValueError(f"{path} is truncated: fewer bytes than its header announces")
        return rows


def _header_start(rows: np.ndarray) -> int | None:
    """Offset in ``rows.base`` of the header in front of ``rows``, or None when there is none."""
    base = rows.base
    fields = _header_fields(rows.shape[1]) if rows.ndim == 2 and rows.dtype == np.float32 else None
    if fields is None or not isinstance(base, np.ndarray) or base.dtype != np.uint8 or not rows.flags.c_contiguous:
        return None
    start = rows.ctypes.data - base.ctypes.data - len(fields[0])
    if start < 0 or start + len(fields[0]) + rows.nbytes > base.nbytes:
        return None
    head = base[start : start + len(fields[0])].tobytes()
    _, rows_at, floats_at = fields
    n, d = rows.shape
    if int.from_bytes(head[rows_at : rows_at + 8], "little") != n:
        return None
    if int.from_bytes(head[floats_at : floats_at + 8], "little") != n * d:
        return None
    return start


def flat_view(rows: np.ndarray) -> faiss.IndexFlatIP | None:
    """An ``IndexFlatIP`` whose vectors are ``rows`` themselves (no copy; the caller keeps ``rows`` alive), or None
    when they do not lie behind their header (:func:`faiss_rows`)."""
    start = _header_start(rows)
    if start is None or not zero_copy_reads(rows.shape[1]):
        return None
    base = rows.base
    size = len(_header_fields(rows.shape[1])[0]) + rows.nbytes
    reader = faiss.ZeroCopyIOReader(faiss.swig_ptr(base[start:]), size)
    try:
        flat = faiss.read_index(reader, faiss.IO_FLAG_MMAP_IFC)
    except RuntimeError:  # a header this release reads otherwise
        return None
    if not isinstance(flat, faiss.IndexFlatIP) or flat.ntotal != len(rows) or flat.d != rows.shape[1]:
        return None
    if len(rows) and faiss.rev_swig_ptr(flat.get_xb(), 1).ctypes.data != rows.ctypes.data:
        return None  # FAISS copied the rows after all (a release without zero-copy reads): a view is the point
    return flat
