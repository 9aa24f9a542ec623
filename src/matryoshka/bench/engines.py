"""The same plan locally, on Milvus Lite, on Qdrant's local mode and on PostgreSQL + pgvector: recall@10, agreement
with the local index, batch-1 latency and export throughput, measured side by side in one run.

1. The corpus (default: 100k real 512-d MRL embeddings of shifted Fashion-MNIST images, as ``mrl bench
   retrieval`` uses) goes into a local :class:`MatryoshkaIndex` with exact shortlist structures, and the plan is
   tuned on calibration queries (``--target-recall``), or given (``--plan``).
2. The index and its plan are exported to each engine (fresh collections under ``--out``): vectors/s.
3. Each evaluation query is searched alone on each engine and locally, idle and beside a process keeping one
   core busy: p50 / p99 ms; recall@10 against exact
   full-dim search, and the share of the local index's top-10 (same plan) that the engine returns.
   On Milvus both re-rank strategies run: a search filtered to the shortlist (``milvus``) and a fetch of the
   shortlist's vectors re-scored here (``milvus-fetch``). ``pgvector`` is the embedded PostgreSQL server (the
   ``pgserver`` wheel, pgvector 0.6) in ``--out``; ``--postgres URI`` adds a server of the user's (``pgvector-server``,
   and ``pgvector-server-half`` with halfvec prefixes where its pgvector is 0.7 or later). The export time of
   pgvector includes its HNSW build, which runs once the rows are in.

Goals: top-10 agreement >= 0.99 on every engine; export to Milvus Lite >= 20,000 vectors/s and to pgvector >= 10,000
vectors/s for 512-d vectors. Engine latency is reported beside ours with no goal: those engines are made for
clusters, and a PostgreSQL search pays a round trip to the server.

    mrl bench engines [--size 100000] [--queries 200] [--plan adaptive:16:200:512] [--engines milvus,qdrant,pgvector]
                      [--postgres postgresql://USER@HOST:5432/DB]
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from matryoshka.bench.busy import busy_process
from matryoshka.bench.corpora import Corpus
from matryoshka.bench.corpora import load as load_corpus
from matryoshka.engines import connect, export_index, parse_uri, search
from matryoshka.errors import InputError
from matryoshka.evaluate.ranking import recall_against
from matryoshka.index import MatryoshkaIndex
from matryoshka.index.autotune import autotune
from matryoshka.index.plans import parse_plan, plan_to_text
from matryoshka.normalize import normalize

K = 10
AGREEMENT_GOAL = 0.99
EXPORT_GOALS = {"milvus": ("Milvus Lite", 20_000.0), "pgvector": ("pgvector (embedded)", 10_000.0)}
ENGINES = ("milvus", "milvus-fetch", "qdrant", "pgvector")
SERVER_ROWS = ("pgvector-server", "pgvector-server-half")  # with --postgres URI


def _local_index(data: Corpus, plan: str | None, target_recall: float) -> MatryoshkaIndex:
    d = data.vectors.shape[1]
    shortlist_dims = sorted({min(d, s) for s in (16, 32, 64)})
    index = MatryoshkaIndex.build(data.vectors, shortlist_dims=shortlist_dims)
    if plan:
        index.default_plan = plan_to_text(parse_plan(plan))
    else:
        tuned = autotune(index, data.calibration, K, target_recall, structures="keep")
        index.default_plan = plan_to_text(tuned.plan)
    return index


def _timed(search_one, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query searched alone: (ids (Q, k), milliseconds per query)."""
    search_one(queries[:1])  # warm-up: connections, loaded collections, caches
    ids, ms = [], []
    for q in queries:
        start = time.perf_counter()
        _, found = search_one(q[None])
        ms.append((time.perf_counter() - start) * 1000)
        ids.append(found[0])
    return np.asarray(ids), np.asarray(ms)


def _address(name: str, folder: Path, postgres: str | None) -> tuple[str, dict[str, Any]]:
    if name == "qdrant":
        return f"qdrant:{folder / 'qdrant'}", {}
    if name == "pgvector":
        return f"postgres:{folder / 'pg'}", {}
    if name in SERVER_ROWS:
        return str(postgres), {"halfvec": name.endswith("-half")}
    return f"milvus:{folder / 'milvus.db'}", {"rerank": "fetch"} if name == "milvus-fetch" else {}


def _engine_row(
    name: str, index: MatryoshkaIndex, folder: Path, queries, truth, local_ids, postgres: str | None = None
) -> dict[str, Any] | None:
    uri, options = _address(name, folder, postgres)
    with connect(uri, **options) as engine:
        if name == "pgvector-server-half" and engine.version < (0, 7):
            print(f"{name}: skipped, the server's pgvector {engine.version} has no halfvec (0.7 and later)")
            return None
        collection = "mrl_bench_half" if name.endswith("-half") else "mrl_bench"
        if name != "milvus-fetch":  # the fetch variant searches the collection milvus exported
            engine.drop(collection)
            report = export_index(index, engine, collection)
            rate = report.rate
        else:
            report = rate = None
        row = _row(name, lambda q: search(engine, collection, q, K), queries, truth, local_ids, rate)[0]
        row["load_vectors_per_s"] = report.load_rate if report else None
        row["index_seconds"] = report.index_seconds if report else None
        if name in SERVER_ROWS:
            engine.drop(collection)  # the user's database keeps nothing of the benchmark
        return row


def _row(name, search_one, queries, truth, local_ids, rate) -> tuple[dict[str, Any], np.ndarray]:
    """Single-query searches timed idle, then again beside a process keeping one core busy; the row and the ids
    found (``local_ids`` None: the local index itself)."""
    ids, ms = _timed(search_one, queries)
    with busy_process():
        _, busy_ms = _timed(search_one, queries)
    return {
        "engine": name,
        "recall_at_10": recall_against(ids, truth),
        "agreement_with_local": recall_against(ids, ids if local_ids is None else local_ids),
        "p50_ms": float(np.median(ms)),
        "p99_ms": float(np.percentile(ms, 99)),
        "busy_p50_ms": float(np.median(busy_ms)),
        "busy_p99_ms": float(np.percentile(busy_ms, 99)),
        "export_vectors_per_s": rate,
    }, ids


def _print(rows: list[dict], data_name: str, plan: str, dims: list[int]) -> None:
    print(f"\ncorpus: {data_name}; plan {plan}; exported prefixes {dims}; k={K}, batch 1")
    head = f"{'engine':<14}{'recall@10':>10}{'vs local':>10}{'p50 ms':>9}{'p99 ms':>9}{'busy p50':>10}{'busy p99':>10}"
    print(f"{head}{'p50 vs ours':>13}{'export/s':>11}{'load/s':>10}{'index s':>9}")
    ours = rows[0]["p50_ms"]
    for r in rows:
        rate = f"{r['export_vectors_per_s']:,.0f}" if r["export_vectors_per_s"] else "-"
        load = f"{r['load_vectors_per_s']:,.0f}" if r.get("load_vectors_per_s") else "-"
        indexing = f"{r['index_seconds']:.1f}" if r.get("index_seconds") is not None else "-"
        print(
            f"{r['engine']:<14}{r['recall_at_10']:>10.4f}{r['agreement_with_local']:>10.4f}{r['p50_ms']:>9.2f}"
            f"{r['p99_ms']:>9.2f}{r['busy_p50_ms']:>10.2f}{r['busy_p99_ms']:>10.2f}"
            f"{r['p50_ms'] / ours:>12.1f}x{rate:>11}{load:>10}{indexing:>9}"
        )
    print("export/s: the whole export; load/s: the writes alone; index s: the engine's indexing at the end (the HNSW "
          "build of PostgreSQL, Milvus's flush)")  # fmt: skip
    for r in rows[1:]:
        verdict = "met" if r["agreement_with_local"] >= AGREEMENT_GOAL else "NOT met"
        print(f"goal: {r['engine']} returns >= {AGREEMENT_GOAL} of the local top-10: {verdict}")
    for r in rows:
        if r["engine"] in EXPORT_GOALS:
            label, goal = EXPORT_GOALS[r["engine"]]
            verdict = "met" if r["export_vectors_per_s"] >= goal else "NOT met"
            loading = f"; the writes alone {r['load_vectors_per_s']:,.0f}/s" if r.get("load_vectors_per_s") else ""
            print(f"goal: export to {label} >= {goal:,.0f} vectors/s: {verdict} ({r['export_vectors_per_s']:,.0f}/s"
                  f"{loading})")  # fmt: skip


def run(
    *,
    corpus: str = "images",
    model: Path = Path("runs/demo/models/mrl"),
    text_model: Path = Path("runs/wordnet_minilm_quick"),
    size: int = 100_000,
    queries: int = 200,
    plan: str | None = None,
    target_recall: float = 0.95,
    engines: str = ",".join(ENGINES),
    postgres: str | None = None,
    synthetic_dim: int = 0,
    out: Path = Path("runs/bench/engines"),
) -> dict[str, Any]:
    """Run the benchmark; returns (and writes to ``out/results.json``) the table's rows."""
    chosen = [e.strip() for e in engines.split(",") if e.strip()]
    unknown = sorted(set(chosen) - set(ENGINES))
    if unknown:
        raise InputError(f"unknown engine {unknown[0]!r}; choose among {', '.join(ENGINES)}")
    if postgres:
        parse_uri(postgres)  # a bad address is the first thing to say, before the corpus loads
        chosen += list(SERVER_ROWS)
    data = load_corpus(corpus, model, text_model, size, queries, synthetic_dim)
    print(f"corpus: {data.name}, {len(data.vectors):,} x {data.vectors.shape[1]}", flush=True)
    index = _local_index(data, plan, target_recall)
    q = data.queries[:queries]
    truth = faiss.knn(normalize(q), normalize(data.vectors), K, metric=faiss.METRIC_INNER_PRODUCT)[1]
    local, local_ids = _row("local", lambda x: index.search(x, K), q, truth, None, None)
    rows = [local]
    work = out / "engines"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in chosen:
        print(f"{name}: export and {len(q)} single-query searches", flush=True)
        row = _engine_row(name, index, work, q, truth, local_ids, postgres)
        if row is not None:
            rows.append(row)
    dims = sorted({index.dim, *(d for d, _ in parse_plan(index.default_plan).stages(index.dim, K))})
    _print(rows, data.name, index.default_plan, dims)
    result = {"corpus": data.name, "plan": index.default_plan, "dims": dims, "rows": rows}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    return result
