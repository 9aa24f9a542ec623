"""Adaptive and funnel retrieval against exact full-dim search, measured side by side.

    mrl bench retrieval                               # 1M x 512 synthetic corpus + Fashion-MNIST MRL embeddings
    mrl bench retrieval --n 200000 --skip-real        # a smaller corpus, synthetic part only

Synthetic corpus (no data set of 1M real MRL embeddings ships offline): clustered vectors whose per-dim scale
decays as j^-alpha (default 0.75) from the first dims to the last, a coarse-to-fine spectrum like a Matryoshka
embedding's; 1,000 clusters are the relevance classes and queries are held-out draws. With the defaults a
16-dim shortlist of 200 keeps about 95% of the exact neighbours, less than on the real Fashion-MNIST MRL
embeddings (99.5%), so the synthetic corpus is the harder of the two. Baselines are FAISS ``IndexFlatIP`` at
the full dim (and HNSW with ``--hnsw``). Prints latency at batch 1 (median of single queries) and batched,
speed-ups, mAP@10 and recall@10 against the exact full-dim neighbours, and memory per vector for each storage encoding.

The real part indexes the MRL embeddings of the Fashion-MNIST train+val images (60k) from a trained run
(default ``runs/demo/models/mrl``, made by ``mrl demo``) and queries with the 10k test images.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from matryoshka.evaluate.metrics import class_ranking_metrics, recall_against
from matryoshka.index import AdaptivePlan, FullPlan, FunnelPlan, MatryoshkaIndex
from matryoshka.index.evaluation import evaluate_plans
from matryoshka.index.storage import ENCODINGS, Encoding, bytes_per_vector


def synthetic(n: int, n_queries: int, d: int, clusters: int, alpha: float = 0.75, noise: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    spectrum = (np.arange(1, d + 1) ** -alpha).astype(np.float32)  # coarse-to-fine scale per dim
    centers = rng.standard_normal((clusters, d), dtype=np.float32) * spectrum
    labels = rng.integers(0, clusters, n + n_queries)
    x = np.empty((n + n_queries, d), dtype=np.float32)
    for start in range(0, len(x), 100_000):
        sl = slice(start, start + 100_000)
        x[sl] = centers[labels[sl]] + noise * rng.standard_normal((len(labels[sl]), d), dtype=np.float32) * spectrum
    return x[:n], labels[:n], x[n:], labels[n:]


def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def compare_methods(
    corpus: tuple[np.ndarray, np.ndarray],
    queries: tuple[np.ndarray, np.ndarray],
    single_queries: int = 30,
    repeats: int = 3,
    shortlist_dim: int = 16,
    encoding: Encoding = "float32",
    hnsw: bool = False,
) -> list[dict[str, Any]]:
    """Latency (batched and batch 1), speed-up, mAP@10 and recall@10 against exact search of each method on a
    labelled (vectors, classes) corpus and queries; prints the table and the memory per vector."""
    (x, y), (q, qy) = corpus, queries
    d = x.shape[1]
    flat = faiss.IndexFlatIP(d)
    flat.add(normalized(x))
    index = MatryoshkaIndex(d, [shortlist_dim], encoding)
    t0 = time.perf_counter()
    index.add(x)
    print(f"index (flat shortlist) built in {time.perf_counter() - t0:.1f}s")
    hnsw_index = MatryoshkaIndex(d, [shortlist_dim, 2 * shortlist_dim], encoding, shortlist="hnsw")
    t0 = time.perf_counter()
    hnsw_index.add(x)
    print(
        f"index (HNSW shortlists at {shortlist_dim} and {2 * shortlist_dim} dims, M=32) built in "
        f"{time.perf_counter() - t0:.1f}s"
    )
    qn = np.ascontiguousarray(normalized(q))
    k = 10
    _, truth = flat.search(qn, k)
    ds = shortlist_dim
    methods = {
        "faiss IndexFlatIP, full dim": lambda qq: flat.search(np.ascontiguousarray(normalized(qq)), k)[1],
        "ours, full dim (exact)": lambda qq: index.search(qq, k, FullPlan())[1],
        f"ours, adaptive D_s={ds} K=200 D_r={d}": lambda qq: index.search(qq, k, AdaptivePlan(ds, 200, d))[1],
        "ours, funnel": lambda qq: index.search(qq, k, FunnelPlan(funnel_steps(ds, d)))[1],
        f"ours, HNSW shortlist, adaptive D_s={ds} K=200": lambda qq: hnsw_index.search(qq, k, AdaptivePlan(ds, 200, d))[
            1
        ],
        "ours, HNSW shortlist, funnel": lambda qq: hnsw_index.search(qq, k, FunnelPlan(funnel_steps(ds, d)))[1],
        f"ours, HNSW shortlist, adaptive D_s={ds} K=1000": lambda qq: hnsw_index.search(
            qq, k, AdaptivePlan(ds, 1000, d)
        )[1],
        f"ours, HNSW shortlist, adaptive D_s={2 * ds} K=1000": lambda qq: hnsw_index.search(
            qq, k, AdaptivePlan(2 * ds, 1000, d)
        )[1],
    }
    if hnsw:
        hnsw_flat = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        t0 = time.perf_counter()
        hnsw_flat.add(normalized(x))
        print(f"HNSW (M=32) built in {time.perf_counter() - t0:.1f}s")
        methods["faiss HNSW (M=32, efSearch=64), full dim"] = lambda qq: hnsw_flat.search(normalized(qq), k)[1]
    singles = q[:single_queries]
    rows = []
    for name, fn in methods.items():
        batched_s, ids = timed(lambda fn=fn: fn(q), repeats)
        per_query = [timed(lambda fn=fn, i=i: fn(singles[i : i + 1]), 1)[0] for i in range(len(singles))]
        m = class_ranking_metrics(ids, y, qy)
        rows.append(
            {
                "method": name,
                "batched_s": batched_s,
                "single_s": statistics.median(per_query),
                "map@10": m["map@10"],
                "recall_vs_exact": recall_against(ids, truth),
            }
        )
    base_batch, base_single = rows[0]["batched_s"], rows[0]["single_s"]
    print(
        f"\nfaiss threads={faiss.omp_get_max_threads()}, torch threads={torch.get_num_threads()}; "
        f"batched = {len(q)} queries in one call (median of {repeats}); batch 1 = median over "
        f"{len(singles)} single queries"
    )
    print(
        f"{'method':<48}{'batched s':>10}{'speed-up':>9}{'batch-1 ms':>11}{'speed-up':>9}{'mAP@10':>8}"
        f"{'R@10 vs exact':>14}"
    )
    for r in rows:
        b, s1 = r["batched_s"], r["single_s"]
        print(
            f"{r['method']:<48}{b:>10.3f}{base_batch / b:>8.1f}x{1000 * s1:>11.2f}{base_single / s1:>8.1f}x"
            f"{100 * r['map@10']:>8.2f}{r['recall_vs_exact']:>14.3f}"
        )
    print("\nmemory per vector (full-dim codes + shortlist prefix + id):")
    for enc in ENCODINGS:
        print(f"  {enc:<8} {bytes_per_vector(d, enc) + 4 * ds + 8:>6} bytes   (faiss IndexFlatIP full dim: {4 * d})")
    return rows


def funnel_steps(ds: int, d: int) -> list[tuple[int, int]]:
    dims, k = [ds], [200]
    while dims[-1] * 2 < d:
        dims.append(dims[-1] * 2)
        k.append(max(10, k[-1] // 2))
    return [*zip(dims, k, strict=True), (d, 10)]


def run_real(checkpoint: Path = Path("runs/demo/models/mrl")) -> list[dict[str, Any]]:
    """Metrics of each plan on the MRL embeddings of a trained run (none when there is no trained model)."""
    from matryoshka.inference import encode, load_run
    from matryoshka.train import CheckpointError

    try:
        model, _, data = load_run(checkpoint, "cpu")
    except CheckpointError as e:
        print(f"\nskipping the Fashion-MNIST part: {e} (run `mrl demo` first)")
        return []
    db = torch.cat([encode(model, data.train.x), encode(model, data.val.x)]).numpy()
    db_y = torch.cat([data.train.y, data.val.y]).numpy()
    q, qy = encode(model, data.test.x).numpy(), data.test.y.numpy()
    d = db.shape[1]
    index = MatryoshkaIndex(d, [8, 16])
    index.add(db)
    plans = [
        FullPlan(),
        AdaptivePlan(8, 200, d),
        AdaptivePlan(16, 200, d),
        AdaptivePlan(16, 50, 64),
        FunnelPlan(funnel_steps(16, d)),
    ]
    print(
        f"\nFashion-MNIST MRL embeddings ({checkpoint}): corpus {len(db):,} x {d}, {len(q):,} test queries, "
        "same-class relevance"
    )
    print(f"{'plan':<56}{'mAP@10':>8}{'P@10':>8}{'R@10 vs exact':>14}{'seconds':>9}")
    rows = evaluate_plans(index, q, qy, db_y, plans)
    for row in rows:
        print(
            f"{row['plan']:<56}{100 * row['map@10']:>8.2f}{100 * row['p@10']:>8.2f}"
            f"{row['recall_vs_exact']:>14.3f}{row['seconds']:>9.2f}"
        )
    return rows


def run(
    *,
    n: int = 1_000_000,
    dim: int = 512,
    clusters: int = 1000,
    alpha: float = 0.75,
    noise: float = 1.0,
    queries: int = 1000,
    single_queries: int = 30,
    repeats: int = 3,
    shortlist_dim: int = 16,
    encoding: Encoding = "float32",
    hnsw: bool = False,
    checkpoint: Path = Path("runs/demo/models/mrl"),
    skip_real: bool = False,
    skip_synthetic: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """The synthetic part (:func:`compare_methods` on a :func:`synthetic` corpus) and the real part
    (:func:`run_real`), each unless skipped."""
    results = {}
    if not skip_synthetic:
        print(f"building synthetic corpus: {n:,} x {dim}, {clusters} clusters, {queries} queries")
        x, y, q, qy = synthetic(n, queries, dim, clusters, alpha, noise)
        results["synthetic"] = compare_methods((x, y), (q, qy), single_queries, repeats, shortlist_dim, encoding, hnsw)
    if not skip_real:
        results["real"] = run_real(checkpoint)
    return results
