"""Caller ids: integers in [0, 2^63 - 1] or strings of at most 512 bytes (UTF-8), one kind per index.

Integers are stored as int64; -1 is FAISS's "no result" marker, so ids are never negative. Strings (UUIDs, paths,
URLs) are kept as Python strings in an object array and written to disk as one UTF-8 blob plus offsets.

Example::

    from matryoshka.index.ids import check_ids
    ids, kind = check_ids(["doc-1", "doc-2"], None)   # kind == "str"
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from matryoshka.errors import InputError
from matryoshka.index.errors import IndexInputError

MAX_ID = 2**63 - 1
MAX_ID_BYTES = 512
ID_KINDS = ("int", "str")


def _kind_of(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return "int"
    if isinstance(value, str | np.str_):
        return "str"
    return None


def check_ids(values: Iterable, kind: str | None, what: str = "ids") -> tuple[np.ndarray, str]:
    """``values`` as an id array (int64 for integers, object for strings) and their kind.

    ``kind`` is the index's id kind ("int", "str", or None while it is still empty); a mix is refused.
    """
    values = values.ravel().tolist() if isinstance(values, np.ndarray) else list(values)
    if not values:
        return (np.zeros(0, np.int64) if kind != "str" else np.zeros(0, object)), kind or "int"
    found = _kind_of(values[0])
    if found is None:
        raise InputError(f"{what} must be integers in [0, 2^63 - 1] or strings, got {values[0]!r}")
    if kind is not None and found != kind:
        have = "integer" if kind == "int" else "string"
        raise InputError(f"this index has {have} ids; got {values[0]!r}")
    if found == "int":
        bad = [v for v in values if _kind_of(v) != "int" or not 0 <= v <= MAX_ID]
        if bad:
            raise InputError(
                f"{what} must be integers in [0, 2^63 - 1] (-1 is FAISS's 'no result' marker), got {bad[0]!r}"
            )
        return np.asarray(values, dtype=np.int64), "int"
    for v in values:
        if _kind_of(v) != "str":
            raise InputError(f"{what} must all be strings or all integers, got {v!r} among strings")
        size = len(str(v).encode())
        if any(c in str(v) for c in "\n\r\x00"):
            raise InputError(f"string ids must not contain line breaks or NUL characters, got {str(v)[:40]!r}")
        if not 1 <= size <= MAX_ID_BYTES:
            raise InputError(f"string ids must be 1 to {MAX_ID_BYTES} bytes of UTF-8, got {size}: {str(v)[:40]!r}")
    ids = np.empty(len(values), dtype=object)
    ids[:] = [str(v) for v in values]
    return ids, "str"


def lookup_ids(ids: Iterable | int | str, kind: str | None) -> np.ndarray:
    """One id or several, as an id array of the index's ``kind``, to look rows up by (remove, delete, texts); ids
    of another kind or out of range are an IndexInputError."""
    if isinstance(ids, str | int | np.integer):
        ids = [ids]
    try:
        return check_ids(ids, kind)[0]
    except InputError as e:
        raise IndexInputError(str(e)) from None


def empty_ids(kind: str | None) -> np.ndarray:
    return np.zeros(0, dtype=object if kind == "str" else np.int64)


def save_ids(folder: Path, ids: np.ndarray, kind: str) -> dict[str, Path]:
    """Write ids into ``folder``; returns {name: file} of what was written (for checksums)."""
    if kind == "int":
        file = folder / "ids.npy"
        np.save(file, np.ascontiguousarray(ids, dtype=np.int64))
        return {"ids": file}
    encoded = [s.encode() for s in ids.tolist()]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    np.save(folder / "id_bytes.npy", blob)
    np.save(folder / "id_offsets.npy", offsets)
    return {"id_bytes": folder / "id_bytes.npy", "id_offsets": folder / "id_offsets.npy"}


def load_ids(arrays: dict[str, np.ndarray], kind: str) -> np.ndarray:
    """Ids from the arrays :func:`save_ids` wrote (already read by the caller)."""
    if kind == "int":
        return np.asarray(arrays["ids"], dtype=np.int64)
    blob, offsets = bytes(arrays["id_bytes"]), arrays["id_offsets"].tolist()
    ids = np.empty(len(offsets) - 1, dtype=object)
    ids[:] = [blob[a:b].decode() for a, b in itertools.pairwise(offsets)]
    return ids


def listed(values: list) -> str:
    """The first few of ``values`` for an error message, and how many more there are."""
    more = f" and {len(values) - 10} more" if len(values) > 10 else ""
    return f"{values[:10]}{more}"


def parse_id(text: str, kind: str | None) -> int | str:
    """An id typed on a command line or in a URL path, read by the index's kind."""
    if kind == "str":
        return text
    try:
        return int(text)
    except ValueError:
        if kind == "int":
            raise InputError(f"this index has integer ids; got {text!r}") from None
        return text


def check_new_ids(ids: Iterable, n: int, kind: str | None) -> np.ndarray:
    """Ids for ``n`` new vectors in an index of id ``kind``: checked for kind, range and uniqueness."""
    try:
        new_ids, _ = check_ids(ids, kind)
    except InputError as e:
        raise IndexInputError(str(e)) from None
    if new_ids.shape != (n,):
        raise IndexInputError(f"got {new_ids.size} ids for {n} vectors")
    if len(set(new_ids.tolist())) != n:
        raise IndexInputError("ids must be unique")
    return new_ids
