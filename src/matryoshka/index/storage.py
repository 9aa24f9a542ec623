"""Full-dim vectors stored once, as float32, float16 or int8 (symmetric scalar quantisation per vector), always
as unit vectors (:func:`normalize`)."""

from __future__ import annotations

from typing import Literal

import faiss
import numpy as np

from matryoshka.errors import InputError
from matryoshka.index.errors import IndexInputError
from matryoshka.normalize import normalize as normalize  # re-exported: the index modules import it from here

Encoding = Literal["float32", "float16", "int8"]
ENCODINGS: tuple[str, ...] = ("float32", "float16", "int8")


def encode(vectors: np.ndarray, encoding: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes (and per-vector scales for int8) of float vectors (N, d)."""
    if encoding == "float32":
        return np.ascontiguousarray(vectors, dtype=np.float32), None
    if encoding == "float16":
        return np.ascontiguousarray(vectors, dtype=np.float16), None
    if encoding == "int8":
        scale = np.abs(vectors).max(axis=1).astype(np.float32) / 127.0
        scale[scale == 0] = 1.0
        codes = np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8)
        return codes, scale
    raise InputError(f"unknown storage encoding {encoding!r}; choose one of {ENCODINGS}")


def decode(codes: np.ndarray, scales: np.ndarray | None, encoding: str) -> np.ndarray:
    """float32 vectors from codes; works on any leading shape (e.g. gathered (Q, K, d) rows)."""
    if encoding == "int8":
        return codes.astype(np.float32) * scales[..., None]
    return codes.astype(np.float32, copy=False)


def bytes_per_vector(dim: int, encoding: str) -> int:
    return {"float32": 4 * dim, "float16": 2 * dim, "int8": dim + 4}[encoding]


def row_squares(x: np.ndarray) -> np.ndarray:
    """Squared length of each row of a C-contiguous float32 (n, d) array (FAISS's compiled loop)."""
    out = np.empty(len(x), dtype=np.float32)
    if len(x):
        faiss.fvec_norms_L2sqr(faiss.swig_ptr(out), faiss.swig_ptr(x), x.shape[1], len(x))
    return out


def best_first(scores: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row of (Q, K) scores and their positions, best first (ties keep their order)."""
    if len(scores) == 1:  # batch 1: plain indexing is several times cheaper than the 2-D form
        order = np.argsort(-scores[0], kind="stable")[:k]
        return scores[:, order], positions[:, order]
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(scores))[:, None]
    return scores[rows, order], positions[rows, order]


def keep_live(scores: np.ndarray, positions: np.ndarray, dead: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first k live results of each row (over-fetched results, best first)."""
    live = (positions >= 0) & ~dead[np.maximum(positions, 0)]
    order = np.argsort(~live, axis=1, kind="stable")[:, :k]  # live ones first, in their order
    return np.take_along_axis(scores, order, 1), np.take_along_axis(positions, order, 1)


def checked_rows(x: np.ndarray, dim: int, what: str) -> np.ndarray:
    """``x`` as C-contiguous float32 (n, dim); wrong shapes, NaN/inf and all-zero rows are an IndexInputError."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise IndexInputError(f"{what} must have shape (n, {dim}), got {tuple(np.shape(x))}")
    if not np.issubdtype(x.dtype, np.number):
        raise IndexInputError(f"{what} must be numeric, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    squares = row_squares(x)  # one compiled pass finds NaN, inf and all-zero rows
    if len(x) and squares.min() > 0 and squares.max() < np.inf:
        return x
    if not np.isfinite(x).all():
        raise IndexInputError(f"{what} contain NaN or infinite values")
    zero = np.flatnonzero(squares == 0)
    if zero.size:
        raise IndexInputError(f"{what} row {int(zero[0])} is all zeros: it has no direction to compare by cosine")
    if len(x):
        raise IndexInputError(f"{what} have values too large to square in float32 (about 1e19 and above)")
    return x
