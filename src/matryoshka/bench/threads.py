"""Where searches should stop running single-threaded: one thread against all of them per batch size, idle and
beside a busy process.

    mrl bench threads                                 # synthetic 100k x 512, HNSW over 32 dims, adaptive:32:100:512
    mrl bench threads --embeddings z.npy --plan adaptive:16:200:384

A parallel region waits for its slowest thread; beside a busy process that thread waits a whole time slice for a
core. The table gives, per batch size, the median and p99 milliseconds of one batch and the mean per query, with
one thread and with all; the suggested cut-over is the smallest batch from which all threads are at least as fast
per query beside the busy process as one thread. :data:`matryoshka.index.threads.PARALLEL_MIN_BATCH` is the
cut-over searches use.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from matryoshka.bench.busy import busy_process
from matryoshka.bench.corpora import synthetic
from matryoshka.errors import InputError
from matryoshka.index import MatryoshkaIndex
from matryoshka.index.threads import PARALLEL_MIN_BATCH
from matryoshka.io import atomic_write_json

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def time_batches(index: MatryoshkaIndex, queries: np.ndarray, stages, batch: int, threads: int, searches: int):
    """Seconds per batch of ``batch`` queries over ``searches`` batches, with ``threads`` OpenMP threads."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        times = []
        for i in range(searches):
            start = (i * batch) % max(1, len(queries) - batch)
            q = queries[start : start + batch]
            t0 = time.perf_counter()
            index.search_positions(q, stages)
            times.append(time.perf_counter() - t0)
        return np.array(times)
    finally:
        faiss.omp_set_num_threads(before)


def load_corpus(embeddings: Path | None, size: int) -> tuple[np.ndarray, np.ndarray]:
    if embeddings is None:
        corpus = synthetic(size, 1000, 512, clusters=max(10, size // 200))
        return corpus.vectors, corpus.queries
    x = np.load(embeddings, mmap_mode="r")
    if x.ndim != 2 or len(x) < 2000:
        raise InputError(f"{embeddings}: need (N, d) embeddings with N >= 2000, got shape {x.shape}")
    x = np.asarray(x[:size], dtype=np.float32)
    return x[1000:], x[:1000]


def run(
    *,
    embeddings: Path | None = None,
    size: int = 100_000,
    plan: str = "",
    work: float = 0.5,
    out: Path = Path("runs/bench/threads"),
) -> dict[str, Any]:
    """The table; ``work`` is the seconds of searching timed per cell (at least 5 batches)."""
    vectors, queries = load_corpus(embeddings, size)
    d = vectors.shape[1]
    small = max(8, d // 16)
    index = MatryoshkaIndex(d, shortlist_dims=[small], shortlist="hnsw", hnsw_m=16, hnsw_ef_search=16)
    print(f"building HNSW over {small} dims of {len(vectors):,} x {d}", flush=True)
    index.add(vectors)
    stages = index.plan_stages(plan or f"adaptive:{small}:100:{d}", 10)
    q = index.check_vectors(queries, "queries")
    cores = faiss.omp_get_max_threads()
    rows = []
    for neighbour in ("idle", "busy"):
        with busy_process() if neighbour == "busy" else contextlib.nullcontext():
            for batch in BATCHES:
                one = time_batches(index, q, stages, batch, 1, 3)
                searches = int(max(5, min(2000, work / max(float(np.median(one)), 1e-6))))
                cells = {}
                for threads in (1, cores):
                    t = time_batches(index, q, stages, batch, threads, searches) * 1000
                    cells[threads] = {"p50_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99))}
                    cells[threads]["per_query_ms"] = float(t.mean() / batch)
                rows.append({"neighbour": neighbour, "batch": batch, "one": cells[1], "all": cells[cores]})
                r = rows[-1]
                print(
                    f"{neighbour:>5} batch {batch:>4}: 1 thread p50 {r['one']['p50_ms']:8.3f} p99 "
                    f"{r['one']['p99_ms']:8.3f} per query {r['one']['per_query_ms']:.4f} | {cores} threads p50 "
                    f"{r['all']['p50_ms']:8.3f} p99 {r['all']['p99_ms']:8.3f} per query {r['all']['per_query_ms']:.4f}",
                    flush=True,
                )
    busy = [r for r in rows if r["neighbour"] == "busy"]
    wins = [r["batch"] for r in busy if r["all"]["per_query_ms"] <= r["one"]["per_query_ms"]]
    suggested = next((b for b in BATCHES if all(w in wins for w in BATCHES if w >= b)), None)
    print(
        f"\nsuggested cut-over (all threads from this batch on, beside a busy process): {suggested or 'never'}; "
        f"searches use PARALLEL_MIN_BATCH = {PARALLEL_MIN_BATCH}"
    )
    results = {"threads": cores, "rows": rows, "suggested": suggested, "parallel_min_batch": PARALLEL_MIN_BATCH}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", results)
    return results
