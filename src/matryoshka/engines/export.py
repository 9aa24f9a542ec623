"""Move an index (and its tuned plan) into an engine collection: batched, with a progress bar, resumable."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from matryoshka.engines.base import CollectionInfo, Engine
from matryoshka.engines.connect import connect
from matryoshka.engines.uri import EngineURI
from matryoshka.errors import InputError
from matryoshka.index.index import MatryoshkaIndex
from matryoshka.index.plans import Plan, parse_plan, plan_to_text, validate_stages
from matryoshka.index.store import IndexStore
from matryoshka.normalize import normalize


@dataclass
class ExportReport:
    """sent: vectors written now; skipped: ids already in the collection; seconds: wall time of the upload, of
    which index_seconds the engine spent making the rows searchable at the end (PostgreSQL's HNSW build, Milvus's
    flush)."""

    collection: str
    sent: int
    skipped: int
    seconds: float
    index_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Vectors per second, the final indexing included."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def load_rate(self) -> float:
        """Vectors per second of the writes alone."""
        loading = self.seconds - self.index_seconds
        return self.sent / loading if loading > 0 else 0.0


def export_index(
    source: MatryoshkaIndex | IndexStore | str | Path,
    to: str | EngineURI | Engine,
    collection: str,
    dims: Sequence[int] | None = None,
    plan: Plan | str | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    replace: bool = False,
) -> ExportReport:
    """Write every vector of ``source`` (an index, a store, or an index folder) to ``collection`` on the engine
    ``to``, one vector field per prefix size in ``dims``.

    ``dims`` default to the dims of the plan and the full dim (without a plan: the index's shortlist dims and its
    full dim). The plan (default: the one the index was tuned to) is recorded in the collection, so a search that
    names none runs it. Ids already in the collection are skipped, so an interrupted export resumes where it
    stopped; string ids are kept. No engine adds vector fields to an existing collection, so another set of
    ``dims`` goes to a new collection, or with ``replace=True`` the collection is dropped first and written anew.

    Example::

        import numpy as np
        from matryoshka import MatryoshkaIndex
        from matryoshka.engines import export_index, search

        x = np.random.default_rng(0).standard_normal((1000, 64)).astype("float32")
        index = MatryoshkaIndex(64, shortlist_dims=[16])
        index.add(x)
        export_index(index, "qdrant::memory:", "docs", plan="adaptive:16:100:64", progress=False)
    """
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}")
    index = _as_index(source)
    if index.ntotal == 0:
        raise InputError("the index is empty: nothing to export")
    plan_text = plan_to_text(parse_plan(plan) if isinstance(plan, str) else plan) if plan else index.default_plan
    info = CollectionInfo(
        dim=index.dim,
        dims=_export_dims(index, dims, plan_text),
        id_kind=index.id_kind or "int",
        plan=plan_text,
        plan_k=index.default_plan_k,
    )
    rotated = [d for d in info.dims if d < index.dim] if index.rotated else []
    if rotated:  # the prefix fields hold the index's rotated prefixes, so the tuned plan holds on the engine
        info.basis = CollectionInfo.encode_basis(index.basis[:, : max(rotated)])
    engine = to if isinstance(to, Engine) else connect(to)
    try:
        with engine.refusals():
            if replace:
                engine.drop(collection)
            return _upload(index, engine, collection, info, batch_size or engine.export_batch, progress)
    finally:
        if engine is not to:
            engine.close()


def _as_index(source: MatryoshkaIndex | IndexStore | str | Path) -> MatryoshkaIndex:
    if isinstance(source, MatryoshkaIndex):
        return source
    if isinstance(source, IndexStore):
        return source.to_index()
    with IndexStore.open(source, writable=False) as store:
        return store.to_index()


def _export_dims(index: MatryoshkaIndex, dims: Sequence[int] | None, plan: str | None) -> list[int]:
    stages = parse_plan(plan).stages(index.dim, index.default_plan_k) if plan else []
    if stages:
        validate_stages(stages, index.dim, index.default_plan_k)
    plan_dims = {d for d, _ in stages}
    default = {*plan_dims, index.dim} if plan else {*index.shortlist_dims, index.dim}
    chosen = sorted({int(d) for d in dims} if dims else default)
    for d in chosen:
        if not 1 <= d <= index.dim:
            raise InputError(f"prefix size {d} must be in [1, {index.dim}] (the index's dim)")
    missing = sorted(plan_dims - set(chosen))
    if missing:
        raise InputError(f"the plan {plan} uses prefix {missing[0]}, which is not among the exported dims {chosen}")
    return chosen


def _open_collection(engine: Engine, collection: str, info: CollectionInfo) -> bool:
    """Create the collection, or check that an existing one holds the same layout; True if it existed (then each
    batch is checked for ids already there: a row count can lag behind unflushed writes)."""
    held = engine.collection(collection)
    if held is None:
        first = parse_plan(info.plan).stages(info.dim, 1)[0][0] if info.plan else min(info.dims)
        engine.create(collection, info, ann_dims=[first])
        return False
    if (held.basis is None) != (info.basis is None) or (held.basis and held.basis != info.basis):
        raise InputError(
            f"collection {collection!r} on {engine.uri} holds prefixes of another basis than this index's (raw, or "
            "rotated by another fit): export to another collection, or pass --replace to drop it and export again"
        )
    if (held.dim, held.dims, held.id_kind) != (info.dim, info.dims, info.id_kind):
        raise InputError(
            f"collection {collection!r} on {engine.uri} holds prefixes {held.dims} of {held.dim}-d vectors with "
            f"{held.id_kind} ids; this export has {info.dims} of {info.dim}-d vectors with {info.id_kind} ids: "
            f"export to another collection, pass --dims {','.join(map(str, held.dims))} to resume into this one, or "
            f"--replace to drop it and export {info.dims}"
        )
    return True


def _upload(
    index: MatryoshkaIndex, engine: Engine, collection: str, info: CollectionInfo, batch_size: int, progress: bool
) -> ExportReport:
    resuming = _open_collection(engine, collection, info)
    positions = index.alive_positions()
    all_ids = index.arrays().ids[positions].tolist()
    columns = (TextColumn("export"), BarColumn(), MofNCompleteColumn(), TextColumn("vectors"))
    start, skipped = time.perf_counter(), 0
    with (
        Progress(
            *columns, TimeRemainingColumn(), console=Console(stderr=True), disable=not progress, transient=True
        ) as bar,
        ThreadPoolExecutor(engine.insert_workers) as pool,
    ):
        task = bar.add_task("export", total=len(all_ids))
        pending: list[tuple[Future, int]] = []
        for begin in range(0, len(all_ids), batch_size):
            pos, ids = positions[begin : begin + batch_size], all_ids[begin : begin + batch_size]
            if resuming:  # an interrupted export: send only the ids the collection lacks
                held = engine.existing(collection, ids)
                keep = np.fromiter((i not in held for i in ids), dtype=bool, count=len(ids))
                pos, ids, skipped = pos[keep], [i for i in ids if i not in held], skipped + len(held)
            if ids:
                rows = index.vectors(pos, bulk=True)
                prefixes = {d: normalize(info.query_prefix(rows, d)) for d in info.dims}
                pending.append((pool.submit(engine.insert, collection, ids, prefixes), batch_size))
            else:
                bar.advance(task, batch_size)
            while len(pending) > engine.insert_workers:  # bounded: packed batches wait for the engine, not RAM
                future, done = pending.pop(0)
                future.result()
                bar.advance(task, done)
        for future, _ in pending:
            future.result()
        bar.update(task, completed=len(all_ids))
    loaded = time.perf_counter()
    with Console(stderr=True).status(f"{engine.name}: indexing {collection!r}") if progress else nullcontext():
        engine.finish(collection)  # an engine may build its ANN graph only now (PostgreSQL's HNSW)
    end = time.perf_counter()
    return ExportReport(collection, len(all_ids) - skipped, skipped, end - start, end - loaded)
