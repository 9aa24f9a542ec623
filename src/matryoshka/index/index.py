"""A persisted index for Matryoshka embeddings: every vector stored once at full dim, a FAISS index over a
low-dim prefix for the shortlist, and vectorised re-ranking with larger prefixes.

Kusupati et al. 2022, Sec. 4.3 (adaptive retrieval, funnel retrieval). Scores are cosine similarities of
re-normalised prefixes: <q[:D], x[:D]> / (|q[:D]| |x[:D]|).

Example::

    import numpy as np
    from matryoshka.index import MatryoshkaIndex, AdaptivePlan

    index = MatryoshkaIndex(dim=512, shortlist_dims=[16])
    index.add(corpus)                                    # (N, 512) float32; ids 0..N-1 unless given
    scores, ids = index.search(queries, k=10, plan=AdaptivePlan(16, 200, 512))
    index.save("my_index")                               # atomic; MatryoshkaIndex.load("my_index", mmap=True)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np

from matryoshka.errors import MatryoshkaError
from matryoshka.index import storage
from matryoshka.index.plans import FullPlan, Plan, validate_stages
from matryoshka.io import atomic_write_bytes, atomic_write_json, fsync_dir, sha256_file

EXACT_CHUNK = 1 << 16  # corpus rows per block in exact (non-shortlist) first stages
RERANK_FLOATS = 1 << 23  # gathered floats per re-ranking block (32 MiB)
FORMAT_VERSION = 1


class IndexInputError(MatryoshkaError, ValueError):
    """Bad input to an index operation (wrong dim, NaN, unknown or duplicate ids, ...)."""


class CorruptIndexError(MatryoshkaError, RuntimeError):
    """An index folder that is missing files, truncated, or fails its checksums."""


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class MatryoshkaIndex:
    """Add, remove and search full-dim vectors with multi-stage (prefix) plans.

    Args:
        dim: full embedding size d.
        shortlist_dims: prefix sizes that get a FAISS flat inner-product index for first-stage search.
        encoding: storage of the full vectors: "float32", "float16" or "int8".
        shortlist: "flat" (exact, default) or "hnsw" (approximate graph search: far faster first stages on
            large corpora; building it takes minutes per million vectors, and a removal rebuilds it).
        hnsw_m, hnsw_ef_search: HNSW graph degree and search breadth (raised to the stage's K when smaller).
    """

    def __init__(
        self,
        dim: int,
        shortlist_dims: Iterable[int] = (16,),
        encoding: str = "float32",
        shortlist: str = "flat",
        hnsw_m: int = 32,
        hnsw_ef_search: int = 128,
    ) -> None:
        if dim < 1:
            raise IndexInputError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.shortlist_dims = sorted(set(int(d) for d in shortlist_dims))
        for d in self.shortlist_dims:
            if not 1 <= d <= dim:
                raise IndexInputError(f"shortlist dim {d} must be in [1, {dim}]")
        if encoding not in storage.ENCODINGS:
            raise IndexInputError(f"unknown encoding {encoding!r}; choose one of {storage.ENCODINGS}")
        self.encoding = encoding
        if shortlist not in ("flat", "hnsw"):
            raise IndexInputError(f"unknown shortlist index {shortlist!r}; choose flat or hnsw")
        self.shortlist = shortlist
        self.hnsw_m = hnsw_m
        self.hnsw_ef_search = hnsw_ef_search
        self._codes = np.zeros((0, dim), dtype=storage.encode(np.zeros((0, dim)), encoding)[0].dtype)
        self._scales: np.ndarray | None = np.zeros(0, np.float32) if encoding == "int8" else None
        self._ids = np.zeros(0, dtype=np.int64)
        self._shortlist = {d: self._new_shortlist(d) for d in self.shortlist_dims}
        self._stale = False  # an HNSW shortlist after a removal, rebuilt before the next search

    def _new_shortlist(self, d: int) -> faiss.Index:
        if self.shortlist == "hnsw":
            index = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 64
            return index
        return faiss.IndexFlatIP(d)

    def _fill_shortlist(self) -> None:
        """(Re)build every shortlist index from the stored vectors."""
        self._shortlist = {d: self._new_shortlist(d) for d in self.shortlist_dims}
        for start in range(0, self.ntotal, EXACT_CHUNK):
            pos = np.arange(start, min(start + EXACT_CHUNK, self.ntotal))
            for d, index in self._shortlist.items():
                index.add(np.ascontiguousarray(_normalize(self._rows(pos, d))))
        self._stale = False

    @classmethod
    def build(cls, vectors: np.ndarray, ids: Iterable[int] | None = None, **options) -> MatryoshkaIndex:
        """A new index holding ``vectors`` (N, d), its dim taken from them; ``options`` as for the constructor."""
        if np.ndim(vectors) != 2:
            raise IndexInputError(f"embeddings must be 2-D (N, d), got shape {np.shape(vectors)}")
        index = cls(np.shape(vectors)[1], **options)
        index.add(vectors, ids)
        return index

    # -- contents -------------------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        return self._ids.copy()

    def bytes_per_vector(self) -> int:
        """Storage of one vector: the full-dim codes plus its shortlist prefixes (float32)."""
        return storage.bytes_per_vector(self.dim, self.encoding) + 4 * sum(self.shortlist_dims) + 8

    def _check_vectors(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise IndexInputError(f"{what} must have shape (n, {self.dim}), got {tuple(np.shape(x))}")
        if not np.issubdtype(x.dtype, np.number):
            raise IndexInputError(f"{what} must be numeric, got dtype {x.dtype}")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise IndexInputError(f"{what} contain NaN or infinite values")
        zero = np.flatnonzero(~x.any(axis=1))
        if zero.size:
            raise IndexInputError(f"{what} row {int(zero[0])} is all zeros: it has no direction to compare by cosine")
        return x

    @staticmethod
    def _check_ids(ids: Iterable[int], what: str = "ids") -> np.ndarray:
        """Ids as int64, each in [0, 2^63 - 1]: -1 is FAISS's "no result" marker, and larger ones do not fit."""
        values = list(ids) if not isinstance(ids, np.ndarray) else ids.ravel().tolist()
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 0 <= v < 2**63]
        if bad:
            raise IndexInputError(f"{what} must be integers in [0, 2^63 - 1], got {bad[0]!r}")
        return np.asarray(values, dtype=np.int64)

    def add(self, vectors: np.ndarray, ids: Iterable[int] | None = None) -> np.ndarray:
        """Add vectors (n, dim); ids default to consecutive integers after the largest id so far."""
        x = self._check_vectors(vectors, "vectors")
        if ids is None:
            start = int(self._ids.max()) + 1 if self.ntotal else 0
            new_ids = np.arange(start, start + len(x), dtype=np.int64)
        else:
            new_ids = self._check_ids(ids)
            if new_ids.shape != (len(x),):
                raise IndexInputError(f"got {new_ids.size} ids for {len(x)} vectors")
            if len(np.unique(new_ids)) != len(new_ids):
                raise IndexInputError("ids must be unique")
            clash = np.intersect1d(new_ids, self._ids)
            if clash.size:
                raise IndexInputError(f"ids already in the index: {clash[:10].tolist()}")
        # Stored as unit vectors: cosine at any prefix is unchanged, and full-dim search is a plain inner product.
        codes, scales = storage.encode(_normalize(x), self.encoding)
        self._codes = np.concatenate([self._codes, codes])
        if scales is not None:
            self._scales = np.concatenate([self._scales, scales])
        self._ids = np.concatenate([self._ids, new_ids])
        decoded = storage.decode(codes, scales, self.encoding)
        if not self._stale:
            for d, index in self._shortlist.items():
                index.add(np.ascontiguousarray(_normalize(decoded[:, :d])))
        return new_ids

    def remove(self, ids: Iterable[int]) -> int:
        """Remove vectors by id; unknown ids are an error (nothing is removed then)."""
        ids = self._check_ids(ids)
        mask = np.isin(self._ids, ids)
        missing = np.setdiff1d(ids, self._ids[mask])
        if missing.size:
            raise IndexInputError(f"ids not in the index: {missing[:10].tolist()}")
        positions = np.flatnonzero(mask)
        keep = ~mask
        self._codes = self._codes[keep]
        if self._scales is not None:
            self._scales = self._scales[keep]
        self._ids = self._ids[keep]
        if self.shortlist == "hnsw":
            self._stale = True  # HNSW cannot remove: rebuilt lazily before the next search
        else:
            selector = faiss.IDSelectorBatch(positions.astype(np.int64))
            for flat in self._shortlist.values():
                flat.remove_ids(selector)  # a flat index compacts in order, like the arrays above
        return int(positions.size)

    # -- search ---------------------------------------------------------------------------------------------
    def _rows(self, positions: np.ndarray, d: int) -> np.ndarray:
        codes = self._codes[:, :d][positions]
        scales = self._scales[positions] if self._scales is not None else None
        return storage.decode(codes, scales, self.encoding)

    def _exact(self, q: np.ndarray, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and positions of the top-k by prefix cosine over the whole corpus, best first."""
        qn = np.ascontiguousarray(_normalize(q[:, :d]))
        if d == self.dim and self.encoding == "float32":
            # Stored vectors are unit length: one exact inner-product search, no copy of the corpus.
            return faiss.knn(qn, np.ascontiguousarray(self._codes), k, metric=faiss.METRIC_INNER_PRODUCT)
        best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
        best_p = np.zeros((len(q), 0), dtype=np.int64)
        for start in range(0, self.ntotal, EXACT_CHUNK):
            block = self._rows(np.arange(start, min(start + EXACT_CHUNK, self.ntotal)), d)
            s, p = faiss.knn(
                qn, np.ascontiguousarray(_normalize(block)), min(k, len(block)), metric=faiss.METRIC_INNER_PRODUCT
            )
            best_s = np.concatenate([best_s, s], axis=1)
            best_p = np.concatenate([best_p, p + start], axis=1)
            if best_s.shape[1] > k:
                top = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
                best_s = np.take_along_axis(best_s, top, 1)
                best_p = np.take_along_axis(best_p, top, 1)
        order = np.argsort(-best_s, axis=1, kind="stable")
        return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_p, order, 1)

    def _rerank(self, q: np.ndarray, positions: np.ndarray, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Re-score candidate positions (Q, K) with the d-dim prefix; keep the best k, best first."""
        rows = self._rows(positions, d)  # (Q, K, d)
        qn = _normalize(q[:, :d]).astype(np.float32)
        dots = np.einsum("qkd,qd->qk", rows, qn)
        norms = np.sqrt(np.einsum("qkd,qkd->qk", rows, rows))
        scores = dots / np.maximum(norms, 1e-12)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(positions, order, 1)

    def search(self, queries: np.ndarray, k: int = 10, plan: Plan | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids), each (Q, min(k, ntotal)), best first, following ``plan`` (default: exact full dim)."""
        q = self._check_vectors(queries, "queries")
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
            raise IndexInputError(f"k must be a positive int, got {k!r}")
        if self.ntotal == 0:
            raise IndexInputError("the index is empty")
        plan = plan or FullPlan()
        stages = plan.stages(self.dim, k)
        try:
            validate_stages(stages, self.dim, k)
        except ValueError as e:
            raise IndexInputError(str(e)) from None
        n = self.ntotal
        k = min(k, n)
        stages = [(d, min(kk, n)) for d, kk in stages]
        d0, k0 = stages[0]
        if self._stale:
            self._fill_shortlist()
        if d0 in self._shortlist:
            params = None
            if self.shortlist == "hnsw":
                params = faiss.SearchParametersHNSW(efSearch=max(self.hnsw_ef_search, k0))
            shortlist_q = np.ascontiguousarray(_normalize(q[:, :d0]))
            scores, positions = self._shortlist[d0].search(shortlist_q, k0, params=params)
            if (positions < 0).any():  # HNSW may return fewer than k0 candidates: keep the valid ones
                positions = np.where(positions < 0, positions.max(axis=1, keepdims=True), positions)
        else:
            scores, positions = self._exact(q, d0, k0)
        if len(stages) > 1:
            # Re-rank in query blocks so that gathered candidates stay around RERANK_FLOATS floats.
            widest = max(kk * d for d, kk in stages[1:])
            step = max(1, RERANK_FLOATS // widest)
            out_s, out_p = [], []
            for start in range(0, len(q), step):
                s_blk, p_blk = None, positions[start : start + step]
                for d, kk in stages[1:]:
                    s_blk, p_blk = self._rerank(q[start : start + step], p_blk, d, kk)
                out_s.append(s_blk)
                out_p.append(p_blk)
            scores, positions = np.concatenate(out_s), np.concatenate(out_p)
        return scores[:, :k].astype(np.float32), self._ids[positions[:, :k]]

    # -- persistence ----------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write a new version of the index under ``path`` and switch ``path/CURRENT`` to it atomically."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        versions = sorted(p.name for p in root.glob("v-*") if p.is_dir())
        name = f"v-{int(versions[-1][2:]) + 1:06d}" if versions else "v-000001"
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
        try:
            arrays = {"codes": self._codes, "ids": self._ids}
            if self._scales is not None:
                arrays["scales"] = self._scales
            checksums = {}
            for key, arr in arrays.items():
                file = tmp / f"{key}.npy"
                with open(file, "wb") as f:
                    np.save(f, np.ascontiguousarray(arr))
                    f.flush()
                    os.fsync(f.fileno())
                checksums[key] = sha256_file(file)
            if self._stale:
                self._fill_shortlist()
            for d, index in self._shortlist.items():
                file = tmp / f"shortlist-{d}.faiss"
                faiss.write_index(index, str(file))
                with open(file, "rb") as f:
                    os.fsync(f.fileno())
                checksums[f"shortlist-{d}"] = sha256_file(file)
            meta = {
                "format": FORMAT_VERSION,
                "dim": self.dim,
                "encoding": self.encoding,
                "shortlist_dims": self.shortlist_dims,
                "shortlist": self.shortlist,
                "hnsw_m": self.hnsw_m,
                "hnsw_ef_search": self.hnsw_ef_search,
                "ntotal": self.ntotal,
                "sha256": checksums,
            }
            atomic_write_json(tmp / "meta.json", meta)
            os.replace(tmp, root / name)
            fsync_dir(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        atomic_write_bytes(root / "CURRENT", name.encode())
        for old in versions:
            shutil.rmtree(root / old, ignore_errors=True)
        for leftover in root.glob(".v-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        return root / name

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = False, verify: bool = True) -> MatryoshkaIndex:
        """Open the current version; ``mmap`` maps the full-dim codes instead of reading them into memory."""
        root = Path(path)
        pointer = root / "CURRENT"
        if not pointer.exists():
            raise CorruptIndexError(f"{root} is not an index folder (no CURRENT file)")
        folder = root / pointer.read_text().strip()
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CorruptIndexError(f"cannot read {folder / 'meta.json'}: {e}") from e
        if meta.get("format") != FORMAT_VERSION:
            raise CorruptIndexError(f"{folder} has index format {meta.get('format')}, expected {FORMAT_VERSION}")
        arrays = {}
        for key, digest in meta["sha256"].items():
            file = folder / (f"{key}.faiss" if key.startswith("shortlist-") else f"{key}.npy")
            if not file.exists():
                raise CorruptIndexError(f"{file} is missing")
            if verify and sha256_file(file) != digest:
                raise CorruptIndexError(f"{file} does not match its checksum: the index is corrupt")
            try:
                if key.startswith("shortlist-"):
                    arrays[key] = faiss.read_index(str(file))
                else:
                    arrays[key] = np.load(file, mmap_mode="r" if (mmap and key == "codes") else None)
            except (ValueError, OSError, RuntimeError) as e:
                raise CorruptIndexError(f"{file} is not a readable array (truncated?): {e}") from e
        index = cls(
            meta["dim"],
            meta["shortlist_dims"],
            meta["encoding"],
            meta.get("shortlist", "flat"),
            meta.get("hnsw_m", 32),
            meta.get("hnsw_ef_search", 128),
        )
        codes, ids = arrays["codes"], arrays["ids"]
        if codes.shape != (meta["ntotal"], meta["dim"]) or ids.shape != (meta["ntotal"],):
            raise CorruptIndexError(f"{folder} arrays do not match its meta.json ({codes.shape}, {ids.shape})")
        index._codes, index._ids = codes, ids
        index._scales = arrays.get("scales")
        for d in index.shortlist_dims:
            shortlist = arrays.get(f"shortlist-{d}")
            if shortlist is None or shortlist.ntotal != index.ntotal or shortlist.d != d:
                raise CorruptIndexError(f"{folder}: the shortlist index for dim {d} is missing or does not match")
            index._shortlist[d] = shortlist
        return index
