"""Adaptive retrieval against the full-dim indexes a user would run instead, measured side by side in one run.

    mrl bench retrieval                                    # 240k real MRL embeddings (run `mrl demo --quick` first)
    mrl bench retrieval --size 1000000                     # 1M (17 pixel shifts of the 60k images)
    mrl bench retrieval --model runs/demo2048/models/mrl   # a 2048-d model (`mrl demo --quick --embed-dim 2048`)
    mrl bench retrieval --synthetic --size 20000           # no trained model needed

Competitors over the same vectors: FAISS ``IndexFlatIP`` (exact), ``IndexHNSWFlat`` (M=32, efSearch swept) and
``IndexIVFFlat`` (4 sqrt(N) lists, nprobe swept), all at the full dim. Ours: ``MatryoshkaIndex(d)``, ``add``, and
``autotune`` at each target recall (it picks the shortlist structure and the plan on calibration queries); the
HNSW competitor gets the same treatment: its smallest efSearch that reaches the target on the calibration
queries. Everything is then measured on other (evaluation) queries, interleaved over ``--rounds`` rounds so
that the machine's noise falls on all methods alike: recall@10 against exact full-dim search, batch-1 latency
(median and p99 over every single-query search), batched queries per second, resident bytes per vector, and
build seconds. Our tuned index is also saved and re-opened with its full-dim vectors memory-mapped (only the
prefix structures stay in RAM). Writes ``results.json`` and ``retrieval.png`` (recall vs batch-1 latency) to
``--out``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from matryoshka.bench.corpora import Corpus, shifted_embeddings, synthetic
from matryoshka.errors import InputError
from matryoshka.evaluate.metrics import recall_against
from matryoshka.index import MatryoshkaIndex
from matryoshka.index.autotune import SHORTLIST_FACTORS, autotune
from matryoshka.index.plans import AdaptivePlan, plan_to_text
from matryoshka.index.storage import normalize
from matryoshka.io import atomic_write_json

K = 10
EF_SEARCH = (4, 6, 8, 12, 16, 24, 32, 64, 128)
N_PROBE = (1, 2, 4, 8, 16, 32, 64)


def faiss_bytes(index: faiss.Index) -> int:
    return int(faiss.serialize_index(index).nbytes)


def ours_bytes(index: MatryoshkaIndex, mapped: bool = False) -> int:
    """Bytes held in RAM: full-dim codes (unless memory-mapped), ids, deletion flags, prefix norms, structures."""
    held = (
        index._ids.nbytes + index._dead.nbytes + index._dead_bits.nbytes + sum(n.nbytes for n in index._norms.values())
    )
    held += sum(faiss_bytes(s) for s in index._shortlist.values())
    return held + (0 if mapped else index._codes.nbytes)


@dataclass
class Method:
    """One configuration to time: a name, a family (one curve in the plot), a search function (queries -> ids),
    its RAM bytes and build seconds; :func:`measure` fills in the recall and the timings."""

    name: str
    family: str
    search: Callable[[np.ndarray], np.ndarray]
    bytes: int
    build_s: float
    note: str = ""
    singles: list[float] = field(default_factory=list)
    batched: list[float] = field(default_factory=list)
    recall: float = float("nan")

    def row(self, n: int, queries: int) -> dict[str, Any]:
        s = np.array(self.singles) * 1000
        return {
            "method": self.name,
            "family": self.family,
            "recall@10": self.recall,
            "p50_ms": float(np.median(s)),
            "p99_ms": float(np.percentile(s, 99)),
            "qps": queries / float(np.median(self.batched)),
            "bytes_per_vector": self.bytes / n,
            "build_s": self.build_s,
            "note": self.note,
        }


def faiss_search(index: faiss.Index, **params):
    def search(q: np.ndarray) -> np.ndarray:
        for key, value in params.items():
            target = index.hnsw if key == "efSearch" else index
            setattr(target, key, value)
        return index.search(normalize(q), K)[1]

    return search


def competitors(x: np.ndarray, hnsw_m: int) -> tuple[list[Method], dict[str, float]]:
    """faiss FlatIP, HNSWFlat and IVFFlat over the unit vectors ``x``, with their settings swept."""
    n, d = x.shape
    methods, builds = [], {}
    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    builds["flat"] = time.perf_counter() - t0
    methods.append(
        Method("faiss FlatIP (exact)", "faiss FlatIP", faiss_search(flat), faiss_bytes(flat), builds["flat"])
    )
    print(f"faiss IndexHNSWFlat({d}, M={hnsw_m}): building over {n:,} vectors", flush=True)
    t0 = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(x)
    builds["hnsw"] = time.perf_counter() - t0
    size = faiss_bytes(hnsw)
    for ef in EF_SEARCH:
        methods.append(
            Method(f"faiss HNSW efSearch={ef}", "faiss HNSWFlat", faiss_search(hnsw, efSearch=ef), size, builds["hnsw"])
        )
    nlist = max(1, int(4 * math.sqrt(n)))
    t0 = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x[:: max(1, n // (64 * nlist))])
    ivf.add(x)
    builds["ivf"] = time.perf_counter() - t0
    size = faiss_bytes(ivf)
    for nprobe in N_PROBE:
        methods.append(
            Method(
                f"faiss IVF{nlist} nprobe={nprobe}",
                "faiss IVFFlat",
                faiss_search(ivf, nprobe=nprobe),
                size,
                builds["ivf"],
            )
        )
    return methods, builds


def ours(corpus: Corpus, target: float, out: Path) -> tuple[list[Method], dict[str, Any]]:
    """Our index tuned to ``target`` (structure and plan), its K curve, and the same index memory-mapped."""
    d = corpus.vectors.shape[1]
    t0 = time.perf_counter()
    index = MatryoshkaIndex(d)
    index.add(corpus.vectors)
    add_s = time.perf_counter() - t0
    print(f"ours: autotune to recall {target} (structures and plans)", flush=True)
    t0 = time.perf_counter()
    tuned = autotune(index, corpus.calibration, K, target, verbose=True)
    tune_s = time.perf_counter() - t0
    build_s = add_s + tuned.structure.get("build_s", 0.0)
    plan = tuned.plan
    info = {
        "target": target,
        "plan": plan_to_text(plan),
        "structure": tuned.structure,
        "autotune_s": tune_s,
        "build_s": build_s,
    }
    tag = f"ours@{target}"
    index.search(corpus.calibration[:1], K, plan)  # memory counted with what the plan's searches keep (prefix norms)
    methods = [
        Method(
            f"{tag} {plan_to_text(plan)}",
            "ours (tuned)",
            lambda q: index.search(q, K, plan)[1],
            ours_bytes(index),
            build_s,
        )
    ]
    if isinstance(plan, AdaptivePlan):
        for factor in SHORTLIST_FACTORS[:9]:
            curve = AdaptivePlan(plan.shortlist_dim, int(factor * K), plan.rerank_dim)
            if curve != plan:
                methods.append(
                    Method(
                        f"{tag} curve {plan_to_text(curve)}",
                        f"ours, {tuned.structure['shortlist']} over {plan.shortlist_dim} dims",
                        lambda q, c=curve: index.search(q, K, c)[1],
                        ours_bytes(index),
                        build_s,
                    )
                )
    folder = out / f"index-{target}"
    index.save(folder)
    mapped = MatryoshkaIndex.load(folder, mmap=True)
    mapped.search(corpus.calibration[:1], K, plan)
    methods.append(
        Method(
            f"{tag} memory-mapped {plan_to_text(plan)}",
            "ours (tuned, mapped)",
            lambda q: mapped.search(q, K, plan)[1],
            ours_bytes(mapped, mapped=True),
            build_s,
            note=f"+{mapped._codes.nbytes / len(corpus.vectors):.0f} B/vector in a mapped file",
        )
    )
    return methods, info


def prefix_ceiling(
    x: np.ndarray,
    q: np.ndarray,
    exact: tuple[np.ndarray, np.ndarray],
    dims=(16, 32, 64, 128, 256),
    shortlists=(20, 50, 100, 200),
) -> dict[str, Any]:
    """How hard the corpus is for prefix shortlists: recall@10 of an exact D-dim shortlist of K re-ranked exactly
    at the full dim (no index involved), and the median cosine gap between each query's 10th and 11th neighbour.
    ``x`` and ``q`` are unit vectors; ``exact`` is their exact top-11 (scores, positions)."""
    full_scores, truth = exact
    table: dict[str, dict[str, float]] = {}
    for d in (d for d in dims if d < x.shape[1]):
        _, cand = faiss.knn(
            normalize(q[:, :d]), normalize(x[:, :d]), max(shortlists), metric=faiss.METRIC_INNER_PRODUCT
        )
        table[str(d)] = {}
        for shortlist in shortlists:
            c = cand[:, :shortlist]
            scores = np.concatenate(
                [np.einsum("qkd,qd->qk", x[c[i : i + 100]], q[i : i + 100]) for i in range(0, len(q), 100)]
            )
            top = np.take_along_axis(c, np.argsort(-scores, axis=1)[:, :K], 1)
            table[str(d)][str(shortlist)] = recall_against(top, truth[:, :K])
    gap = float(np.median(full_scores[:, K - 1] - full_scores[:, K]))
    print(f"\nexact D-dim shortlist of K, re-ranked at {x.shape[1]} dims: recall@10 (median gap 10th-11th: {gap:.1e})")
    print(f"{'D':>6}" + "".join(f"{'K=' + str(k):>9}" for k in shortlists))
    for d, row in table.items():
        print(f"{d:>6}" + "".join(f"{v:>9.4f}" for v in row.values()))
    return {"recall": table, "median_gap_10_11": gap}


def measure(methods: list[Method], corpus: Corpus, truth: np.ndarray, single: int, rounds: int) -> None:
    """Recall on the evaluation queries (``truth``: their exact top-k), then interleaved timing rounds: every
    method searches the same single queries and one batch per round, so slow spells of a shared machine fall on
    all of them."""
    for m in methods:
        m.recall = recall_against(m.search(corpus.queries), truth)
    order = np.random.default_rng(0).permutation(len(corpus.queries))
    for r in range(rounds):
        print(f"timing round {r + 1}/{rounds}", flush=True)
        for m in methods:
            count = max(3, single // 20) if "exact" in m.name else single  # an exact scan is slow
            for i in order[(r * count) % len(order) :][:count]:
                t0 = time.perf_counter()
                m.search(corpus.queries[i : i + 1])
                m.singles.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            m.search(corpus.queries)
            m.batched.append(time.perf_counter() - t0)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    families = dict.fromkeys(r["family"] for r in rows if r["family"] != "faiss FlatIP")
    for family in families:
        pts = sorted(((r["p50_ms"], r["recall@10"]) for r in rows if r["family"] == family), key=lambda p: p[1])
        style = "*" if "tuned" in family else "o-"
        ax.plot(
            [p[0] for p in pts], [p[1] for p in pts], style, label=family, markersize=10 if "tuned" in family else 4
        )
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 latency, median (ms)")
    ax.set_ylabel("recall@10 vs exact full-dim search")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def goals(d: int) -> dict[str, float]:
    big = d >= 2048
    return {"speed": 2.0 if big else 1.5, "memory": 1 / 8 if big else 1 / 4, "build": 6.0 if big else 3.0}


def run(
    *,
    model: Path = Path("runs/demo/models/mrl"),
    size: int = 240_000,
    queries: int = 1000,
    targets: str = "0.95,0.99",
    single: int = 200,
    rounds: int = 3,
    hnsw_m: int = 32,
    synthetic_dim: int = 0,
    out: Path = Path("runs/bench/retrieval"),
) -> dict[str, Any]:
    """The whole benchmark; ``synthetic_dim > 0`` uses a synthetic corpus of that dim instead of ``model``."""
    try:
        wanted = [float(t) for t in targets.split(",")]
    except ValueError:
        raise InputError(f"--targets must be comma-separated recalls, got {targets!r}") from None
    if not wanted or not all(0 < t <= 1 for t in wanted):
        raise InputError(f"--targets must lie in (0, 1], got {targets!r}")
    if synthetic_dim:
        corpus = synthetic(size, queries, synthetic_dim, clusters=max(10, size // 200))
    else:
        corpus = shifted_embeddings(model, size, queries)
    n, d = corpus.vectors.shape
    out.mkdir(parents=True, exist_ok=True)
    x, q = normalize(corpus.vectors), normalize(corpus.queries)  # once: each is a copy of the corpus
    exact = faiss.knn(q, x, K + 1, metric=faiss.METRIC_INNER_PRODUCT)
    ceiling = prefix_ceiling(x, q, exact)
    print(
        f"corpus: {corpus.name}, {n:,} x {d}; {queries} calibration + {queries} evaluation queries; "
        f"faiss threads {faiss.omp_get_max_threads()}",
        flush=True,
    )
    methods, builds = competitors(x, hnsw_m)
    tuned = []
    for target in wanted:
        mine, info = ours(corpus, target, out)
        methods += mine
        tuned.append(info)
    cal_truth = faiss.knn(normalize(corpus.calibration), x, K, metric=faiss.METRIC_INNER_PRODUCT)[1]
    hnsw_rows = [m for m in methods if m.family == "faiss HNSWFlat"]
    cal_recall = {m.name: recall_against(m.search(corpus.calibration), cal_truth) for m in hnsw_rows}
    del x, q  # the indexes hold their own copies
    measure(methods, corpus, exact[1][:, :K], single, rounds)
    rows = [m.row(n, queries) for m in methods]
    by_name = {r["method"]: r for r in rows}
    print(f"\n{'method':<52}{'R@10':>7}{'p50 ms':>8}{'p99 ms':>8}{'QPS':>8}{'B/vector':>10}{'build s':>9}")
    for r in rows:
        print(
            f"{r['method'][:51]:<52}{r['recall@10']:>7.4f}{r['p50_ms']:>8.3f}{r['p99_ms']:>8.3f}{r['qps']:>8.0f}"
            f"{r['bytes_per_vector']:>10.0f}{r['build_s']:>9.1f}  {r['note']}"
        )
    goal = goals(d)
    comparisons = []
    for info in tuned:
        target = info["target"]
        hnsw = next((m for m in hnsw_rows if cal_recall[m.name] >= target), hnsw_rows[-1])
        theirs = by_name[hnsw.name]
        for kind in ("ours (tuned)", "ours (tuned, mapped)"):
            mine = next(r for r in rows if r["family"] == kind and r["method"].startswith(f"ours@{target} "))
            c = {
                "target": target,
                "ours": mine["method"],
                "hnsw": hnsw.name,
                "recall": (mine["recall@10"], theirs["recall@10"]),
                "p50_speedup": theirs["p50_ms"] / mine["p50_ms"],
                "p99_speedup": theirs["p99_ms"] / mine["p99_ms"],
                "batched_speedup": mine["qps"] / theirs["qps"],
                "memory_ratio": mine["bytes_per_vector"] / theirs["bytes_per_vector"],
                "build_speedup": theirs["build_s"] / mine["build_s"],
            }
            comparisons.append(c)
    print(
        f"\nat matched recall (both tuned to the target on calibration queries), against faiss HNSWFlat at {d} dims;"
        f" goals: speed >= {goal['speed']}x, memory <= {goal['memory']:.3f}x, build >= {goal['build']}x"
    )
    for c in comparisons:
        mine, theirs = c["recall"]
        print(f"  target {c['target']}: {c['ours']}  vs  {c['hnsw']}  (recall {mine:.4f} vs {theirs:.4f})")
        print(
            f"    batch-1 p50 {c['p50_speedup']:.2f}x ({verdict(c['p50_speedup'] >= goal['speed'])}), "
            f"p99 {c['p99_speedup']:.2f}x ({verdict(c['p99_speedup'] >= goal['speed'])}), "
            f"batched {c['batched_speedup']:.2f}x ({verdict(c['batched_speedup'] >= goal['speed'])}), "
            f"memory {c['memory_ratio']:.3f}x ({verdict(c['memory_ratio'] <= goal['memory'])}), "
            f"build {c['build_speedup']:.2f}x faster ({verdict(c['build_speedup'] >= goal['build'])})"
        )
    plot(rows, out / "retrieval.png", f"{corpus.name} ({d} dims)")
    results = {
        "ceiling": ceiling,
        "corpus": corpus.name,
        "n": n,
        "dim": d,
        "builds": builds,
        "tuned": tuned,
        "rows": rows,
        "comparisons": comparisons,
        "goals": goal,
    }
    atomic_write_json(out / "results.json", results)
    print(f"\nwrote {out / 'results.json'} and {out / 'retrieval.png'}")
    return results
