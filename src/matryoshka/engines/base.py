"""What every engine does for the plans: hold one vector field per prefix size, take batches of rows, and run a
plan's stages. :class:`CollectionInfo` is what an export records in the collection, so that a later search (in
another process, on another machine) knows the index's dim, its prefix fields, its id kind and its tuned plan."""

from __future__ import annotations

import base64
import functools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

from matryoshka.engines.uri import EngineURI
from matryoshka.errors import InputError, MatryoshkaError
from matryoshka.normalize import normalize

METADATA_KEY = "matryoshka"


class EngineError(MatryoshkaError, RuntimeError):
    """An engine could not be reached, or refused a request (the message names the engine and its address)."""


def field_name(dim: int) -> str:
    """The vector field holding the ``dim``-sized prefix: ``dim16``, ``dim512``; the same on every engine."""
    return f"dim{dim}"


@dataclass
class CollectionInfo:
    """dim: the full dim of the exported index; dims: the prefix sizes held (one vector field each); id_kind:
    "int" or "str"; plan / plan_k: the index's tuned plan (text form) and the k it was tuned for, or None;
    basis: for an index with rotated prefixes, the first columns of its basis (base64 of float32, (dim, D) with
    D the widest rotated field): every field below the full dim then holds rotated prefixes, and a query is
    projected onto them the same way (:meth:`query_prefix`)."""

    dim: int
    dims: list[int]
    id_kind: str
    plan: str | None = None
    plan_k: int = 10
    basis: str | None = None

    @staticmethod
    def encode_basis(columns: np.ndarray) -> str:
        return base64.b64encode(np.ascontiguousarray(columns, dtype="<f4").tobytes()).decode()

    def basis_columns(self) -> np.ndarray | None:
        return None if self.basis is None else _decoded_basis(self.basis, self.dim)

    def query_prefix(self, queries: np.ndarray, d: int) -> np.ndarray:
        """The (Q, d) prefix of full-dim queries that field ``dimN`` is compared with: the first d dims, or its
        rotated coordinates."""
        columns = self.basis_columns() if d < self.dim else None
        return queries[:, :d] if columns is None else queries @ columns[:, :d]

    def to_metadata(self) -> dict:
        return {METADATA_KEY: asdict(self)}

    @classmethod
    def from_metadata(cls, metadata: dict | None) -> CollectionInfo | None:
        fields = (metadata or {}).get(METADATA_KEY)
        if not isinstance(fields, dict):
            return None
        return cls(
            dim=int(fields["dim"]),
            dims=sorted(int(d) for d in fields["dims"]),
            id_kind=str(fields["id_kind"]),
            plan=fields.get("plan"),
            plan_k=int(fields.get("plan_k") or 10),
            basis=fields.get("basis"),
        )


@functools.lru_cache(maxsize=16)  # searches decode it once (a str caches its own hash)
def _decoded_basis(text: str, dim: int) -> np.ndarray:
    columns = np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(dim, -1)
    return np.ascontiguousarray(columns, dtype=np.float32)


class Engine(ABC):
    """A connection to one engine (see :func:`matryoshka.engines.connect`); use it as a context manager."""

    name: str
    uri: EngineURI
    insert_workers = 1  # batches in flight at once during an export
    export_batch = 256  # rows per insert call (Milvus Lite writes small batches faster than large ones)
    error_types: tuple[type[BaseException], ...] = ()  # what the engine's client raises when a request fails

    @contextmanager
    def refusals(self) -> Iterator[None]:
        """Turn an error of the engine's client into one :class:`EngineError` line naming the engine."""
        try:
            yield
        except MatryoshkaError:
            raise
        except self.error_types as e:
            raise EngineError(f"{self.name} at {self.uri.host_port} refused the request: {error_line(e)}") from None

    @abstractmethod
    def collection(self, name: str) -> CollectionInfo | None:
        """What an export recorded in collection ``name``, or None if there is no such collection."""

    @abstractmethod
    def create(self, name: str, info: CollectionInfo, ann_dims: list[int]) -> None:
        """A new collection with a vector field per prefix in ``info.dims``; ``ann_dims`` get an ANN structure
        (the first stages of plans), the others only serve re-ranking."""

    @abstractmethod
    def count(self, name: str) -> int:
        """Vectors stored in the collection."""

    @abstractmethod
    def existing(self, name: str, ids: list) -> set:
        """Those of ``ids`` (the index's own ids) that the collection already holds."""

    @abstractmethod
    def insert(self, name: str, ids: list, prefixes: dict[int, np.ndarray]) -> None:
        """Store rows: ``prefixes`` maps each prefix size to its (n, size) unit-length vectors."""

    def finish(self, name: str) -> None:  # noqa: B027 - optional: engines that buffer writes flush them here
        """Make everything inserted durable and searchable."""

    @abstractmethod
    def run_stages(
        self, name: str, info: CollectionInfo, queries: np.ndarray, stages: list[tuple[int, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of checked ``stages`` for full-dim ``queries``: the first an ANN search over the smallest
        prefix's field, each later one a re-rank of the previous stage's survivors."""

    @abstractmethod
    def drop(self, name: str) -> None:
        """Delete the collection (no error if it does not exist)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release the connection (local engines unlock their files)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def error_line(e: BaseException) -> str:
    """The first line of an engine client's error (its ``message`` where it has one), or the error's type."""
    text = str(getattr(e, "message", "") or e).strip().splitlines()
    return text[0] if text else type(e).__name__


def ranked_arrays(scores: list[list[float]], ids: list[list], id_kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-query ranked (scores, ids) lists as (Q, w) arrays, w the shortest list's length (every query gets as
    many results); ids int64, or object for string ids."""
    width = min((len(row) for row in ids), default=0)
    kind = object if id_kind == "str" else np.int64
    return (
        np.asarray([row[:width] for row in scores], np.float32).reshape(len(ids), -1),
        np.asarray([row[:width] for row in ids], dtype=kind).reshape(len(ids), -1),
    )


def rerank_fetched(
    queries: np.ndarray, candidates: np.ndarray, vectors: np.ndarray, stages: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """The re-rank stages of a plan over fetched vectors, in numpy: ``candidates`` (Q, K0) are rows of
    ``vectors`` (the widest prefix the stages use; -1 pads a short shortlist); returns (scores, rows), (Q, k).

    A prefix of a unit vector re-normalised equals the stored shorter prefix, so one fetch serves every stage.
    """
    step = max(1, (1 << 24) // max(1, candidates.shape[1] * vectors.shape[1]))  # (step, K0, d) floats: <= 64 MB
    parts = [
        _rerank(queries[i : i + step], candidates[i : i + step], vectors, stages) for i in range(0, len(queries), step)
    ]
    return np.concatenate([s for s, _ in parts]), np.concatenate([r for _, r in parts])


def _rerank(queries, candidates, vectors, stages):
    rows = candidates
    scores = np.zeros(rows.shape, np.float32)
    for d, keep in stages:
        q = normalize(queries[:, :d])
        cand = normalize(vectors[np.maximum(rows, 0), :d].reshape(-1, d)).reshape(*rows.shape, d)
        scores = np.einsum("qkd,qd->qk", cand, q)
        scores[rows < 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :keep]
        rows = np.take_along_axis(rows, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
    return scores, rows


def check_prefixes(info: CollectionInfo, stages: list[tuple[int, int]], where: str, export: str = "") -> None:
    """Every stage's prefix must be a field of the collection; in a collection of rotated prefixes, only the first
    stage may read one (the re-ranks read full-dim vectors). ``export``: the command that exported it (without its
    --dims), for a hint that can be run as it is."""
    rotated_reranks = sorted({d for d, _ in stages[1:] if d < info.dim}) if info.basis is not None else []
    if rotated_reranks:
        raise InputError(
            f"the plan re-ranks with the {rotated_reranks[0]}-dim prefix, but {where} holds rotated prefixes, which "
            f"serve only the first stage: re-rank at the full dim ({info.dim})"
        )
    missing = sorted({d for d, _ in stages} - set(info.dims))
    if missing:
        raise InputError(
            f"the plan asks for prefix {missing[0]}, which {where} does not hold (it holds {info.dims}); "
            f"export the index again: {export or 'mrl index export ...'} --dims "
            f"{','.join(str(d) for d in sorted({*info.dims, *missing}))} --replace (the collection is dropped and "
            "written anew: an engine adds no fields to a collection), or into a new collection"
        )
