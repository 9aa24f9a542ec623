"""Adaptive retrieval against the full-dim indexes a user would run instead, measured side by side in one run.

    mrl bench retrieval                                    # 240k real MRL embeddings (run `mrl demo --quick` first)
    mrl bench retrieval --size 1000000                     # 1M (17 pixel shifts of the 60k images)
    mrl bench retrieval --model runs/demo2048/models/mrl   # a 2048-d model (`mrl demo --quick --embed-dim 2048`)
    mrl bench retrieval --synthetic 64 --size 20000        # no trained model needed
    mrl bench retrieval --corpus text --size 500000        # distinct real texts, a Matryoshka MiniLM (384-d)

Peers over the same vectors, all at the full dim (``--peers``; each skipped with a message when its package is
missing, ``pip install 'matryoshka-mrl[bench]'``): faiss ``IndexHNSWFlat`` (M=32) and ``IndexIVFFlat``,
hnswlib (M=16), usearch (f32, f16, i8) and ScaNN (tree + asymmetric hashing + reorder), and for the disk regime
faiss IVF with its inverted lists memory-mapped (no DiskANN binding searches here); faiss ``IndexFlatIP`` is the
exact reference. Every peer is tuned like ours: on calibration queries, the fastest batch-1 setting among the
first that reach each target recall. Ours: ``MatryoshkaIndex(d)``, ``add`` and ``autotune`` per target (it picks
the shortlist structure and the plan). Everything is then measured on other (evaluation) queries, interleaved over
``--rounds`` rounds so that the machine's noise falls on all methods alike: recall@10 against exact full-dim
search, batch-1 latency (median and p99, idle and beside a busy process), batched queries per second, RAM (the
resident anonymous memory a fresh process gains by opening the saved index: page cache excluded, see
:mod:`matryoshka.bench.rss`), file bytes and build seconds. Our tuned index is also re-opened with its full-dim
vectors memory-mapped, and on the disk tier (``full_vectors="disk"``: rows read per query with direct I/O; no
DiskANN binding is run here, see docs/retrieval.md). Writes ``results.json`` and ``retrieval.png`` (recall vs
batch-1 latency) to ``--out``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from matryoshka.bench import rss
from matryoshka.bench.busy import busy_process
from matryoshka.bench.corpora import Corpus
from matryoshka.bench.corpora import load as load_corpus
from matryoshka.bench.overhead import overhead_line, search_overhead
from matryoshka.bench.peers import PEERS, Peer, available
from matryoshka.bench.prefixes import fidelity_goal, prefix_ceiling, rotated_ceiling
from matryoshka.bench.retrieval_report import compare, goals, plot, print_rows
from matryoshka.errors import InputError
from matryoshka.evaluate.ranking import recall_against
from matryoshka.index import MatryoshkaIndex
from matryoshka.index.autotune import SHORTLIST_FACTORS, autotune
from matryoshka.index.disk import DiskTier
from matryoshka.index.plans import AdaptivePlan, parse_plan, plan_to_text
from matryoshka.index.storage import normalize
from matryoshka.index.timing import median_batch1_ms
from matryoshka.io import atomic_write_json

K = 10
PEER_TIMED = 4  # settings reaching the target that are timed per peer (the fastest is kept)
OVERHEAD_QUERIES = 300  # calibration queries that time the Python around one search


@dataclass
class Method:
    """One configuration to time: a name, a family (one curve in the plot), a search function (queries -> ids),
    its RAM in bytes (as a fresh process that opens the saved index measures it, :mod:`matryoshka.bench.rss`), its
    file bytes and build seconds; :func:`measure` fills in the recall and the timings."""

    name: str
    family: str
    search: Callable[[np.ndarray], np.ndarray]
    bytes: int
    build_s: float
    note: str = ""
    file_bytes: int = 0
    target: float | None = None  # the recall target it was tuned to (None: a curve point or a reference)
    reached: bool = True  # whether its tuned setting reached the target on the calibration queries
    singles: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)
    batched: list[float] = field(default_factory=list)
    recall: float = float("nan")

    def row(self, n: int, queries: int) -> dict[str, Any]:
        s = np.array(self.singles) * 1000
        busy = np.array(self.busy) * 1000 if self.busy else np.array([np.nan])
        return {
            "method": self.name,
            "family": self.family,
            "target": self.target,
            "reached": self.reached,
            "recall@10": self.recall,
            "p50_ms": float(np.median(s)),
            "p99_ms": float(np.percentile(s, 99)),
            "busy_p50_ms": float(np.median(busy)),
            "busy_p99_ms": float(np.percentile(busy, 99)),
            "qps": queries / float(np.median(self.batched)),
            "bytes_per_vector": self.bytes / n,
            "file_bytes_per_vector": self.file_bytes / n,
            "build_s": self.build_s,
            "note": self.note,
        }


def tune_peer(peer: Peer, calibration: np.ndarray, truth: np.ndarray, target: float) -> tuple[Any, float]:
    """The peer's fastest setting (batch 1, timed on calibration queries) among the first few that reach
    ``target`` recall on the calibration queries; the last setting when none does. Returns (setting, recall)."""
    reached = []
    for setting in peer.settings:
        recall = recall_against(peer.search(calibration, setting), truth)
        if recall >= target:
            reached.append((setting, recall))
            if len(reached) == PEER_TIMED:
                break
    if not reached:
        last = peer.settings[-1]
        return last, recall_against(peer.search(calibration, last), truth)
    timed = [(median_batch1_ms(lambda q, s=s: peer.search(q, s), calibration), s, r) for s, r in reached]
    _, setting, recall = min(timed, key=lambda t: t[0])
    return setting, recall


def peer_methods(
    names: list[str], x: np.ndarray, corpus: Corpus, cal_truth: np.ndarray, targets: list[float], out: Path
) -> tuple[list[Method], dict[str, float]]:
    """Each peer built over the unit vectors ``x``, tuned to every target on the calibration queries, saved and
    its RAM measured in a fresh process. faiss HNSW also keeps its whole efSearch curve for the plot."""
    methods, builds = [], {}
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    exact = Method("faiss FlatIP (exact)", "faiss FlatIP", lambda q: flat.search(normalize(q), K)[1], x.nbytes, 0.0)
    methods.append(exact)
    usable, skipped = available(names)
    for line in skipped:
        print(line, flush=True)
    (out / "peers").mkdir(parents=True, exist_ok=True)
    for name in usable:
        print(f"{name}: building over {len(x):,} x {x.shape[1]}", flush=True)
        t0 = time.perf_counter()
        peer = PEERS[name][1](x)
        builds[name] = build_s = time.perf_counter() - t0
        path = (out / "peers" / name).resolve()  # ScaNN resolves its files against the folder it was given
        peer.save(path)
        ram, size = rss.measure(peer.load_kind, path), rss.file_bytes(path)
        for target in targets:
            setting, recall = tune_peer(peer, corpus.calibration, cal_truth, target)
            print(f"  {peer.describe(setting)}: calibration recall {recall:.4f} (target {target})", flush=True)
            methods.append(
                Method(
                    f"{peer.describe(setting)} @{target}",
                    peer.family,
                    lambda q, p=peer, s=setting: p.search(q, s),
                    ram,
                    build_s,
                    file_bytes=size,
                    target=target,
                    note="" if recall >= target else f"never reaches {target} (calibration {recall:.4f})",
                    reached=recall >= target,
                )
            )
        if name == "faiss-hnsw":
            for setting in peer.settings:
                curve = lambda q, p=peer, s=setting: p.search(q, s)  # noqa: E731
                methods.append(Method(f"{peer.describe(setting)}", "faiss HNSW curve", curve, ram, build_s))
    return methods, builds


def tuned_index(
    corpus: Corpus, target: float, objective: str, budget: float | None = None, disk: Path | None = None
) -> tuple[MatryoshkaIndex, dict[str, Any]]:
    """``MatryoshkaIndex(d)``, ``add``, then ``autotune`` (structures, plan and, for ``objective="memory"`` or a
    ``budget`` of bytes per vector in RAM, the codes of the full-dim rows and of the graph's prefixes); ``disk``: a
    folder where the rows of an index built for the disk tier are timed with direct reads."""
    t0 = time.perf_counter()
    index = MatryoshkaIndex(corpus.vectors.shape[1], full_vectors="disk" if disk else "ram")
    index.add(corpus.vectors)
    add_s = time.perf_counter() - t0
    within = f" within {budget:.0f} B/vector" if budget else ""
    print(f"ours: autotune to recall {target} for {objective}{within} (structures and plans)", flush=True)
    t0 = time.perf_counter()
    tier = DiskTier(disk) if disk else None  # it makes its folder when it writes the rows
    tuned = autotune(
        index,
        corpus.calibration,
        K,
        target,
        verbose=True,
        objective=objective,
        max_bytes_per_vector=budget,
        disk_tier=tier,
    )
    info = {
        "target": target,
        "objective": objective,
        "plan": plan_to_text(tuned.plan),
        "structure": tuned.structure,
        "autotune_s": time.perf_counter() - t0,
        "build_s": add_s + tuned.structure.get("build_s", 0.0),
    }
    return index, info


def ours(
    corpus: Corpus, target: float, out: Path, hnsw_bytes: float | None = None
) -> tuple[list[Method], dict[str, Any]]:
    """Our index tuned to ``target`` for speed (its K curve, the same index memory-mapped and on the disk tier),
    for memory (the smallest index whose plan reaches the target) and, given faiss HNSW's bytes per vector, for
    speed within half of them."""
    index, info = tuned_index(corpus, target, "latency")
    plan, build_s, tag = parse_plan(info["plan"]), info["build_s"], f"ours@{target}"
    if info["structure"].get("basis") == "svd":
        tag += " rotated"
    folder = out / f"index-{target}"
    index.save(folder)
    size = rss.file_bytes(folder)
    info["overhead"] = search_overhead(index, corpus.calibration[:OVERHEAD_QUERIES], K, plan)
    print(overhead_line(info["overhead"], info["plan"]), flush=True)
    methods = [
        Method(
            f"{tag} {info['plan']}",
            "ours (tuned)",
            lambda q: index.search(q, K, plan)[1],
            rss.measure("ours", folder),
            build_s,
            file_bytes=size,
            target=target,
        )
    ]
    if isinstance(plan, AdaptivePlan):
        for factor in SHORTLIST_FACTORS[:9]:
            curve = AdaptivePlan(plan.shortlist_dim, int(factor * K), plan.rerank_dim)
            if curve != plan:
                methods.append(
                    Method(
                        f"{tag} curve {plan_to_text(curve)}",
                        f"ours, {info['structure']['shortlist']} over {plan.shortlist_dim} dims",
                        lambda q, c=curve: index.search(q, K, c)[1],
                        methods[0].bytes,
                        build_s,
                    )
                )
    tiers = {"mmap": ("memory-mapped", "ours (tuned, mapped)"), "disk": ("disk tier", "ours (tuned, disk)")}
    for tier, (label, family) in tiers.items():
        opened = MatryoshkaIndex.load(folder, full_vectors=tier)
        if tier == "mmap":
            note = f"+{opened.arrays().codes.nbytes / len(corpus.vectors):.0f} B/vector in a mapped file (page cache)"
        else:
            note = (
                "full-dim rows read per query with direct I/O" if opened.arrays().codes.direct else "no direct I/O here"
            )
        methods.append(
            Method(
                f"{tag} {label} {info['plan']}",
                family,
                lambda q, o=opened: o.search(q, K, plan)[1],
                rss.measure(f"ours-{tier}", folder),
                build_s,
                note=note,
                file_bytes=size,
                target=target,
            )
        )
    small, small_info = tuned_index(corpus, target, "memory")
    name = f"ours-memory@{target} {small_info['plan']} {small_info['structure']['encoding']}"
    methods.append(_saved(small, small_info, out / f"index-{target}-memory", name, "ours (tuned for memory)"))
    if hnsw_bytes:
        half, half_info = tuned_index(corpus, target, "latency", budget=0.5 * hnsw_bytes)
        name = f"ours-half@{target} {half_info['plan']} {_codes(half_info['structure'])}"
        family = "ours (tuned within half of HNSW's RAM)"
        methods.append(_saved(half, half_info, out / f"index-{target}-half", name, family))
        small_info["half"] = half_info
        lean, lean_info = tuned_index(corpus, target, "latency", budget=hnsw_bytes / 8, disk=out / "tier")
        name = f"ours-disk-lean@{target} {lean_info['plan']} {_codes(lean_info['structure'])}"
        family = "ours (disk tier, tuned within 1/8 of HNSW's RAM)"
        methods.append(_saved(lean, lean_info, out / f"index-{target}-disk-lean", name, family, tier="disk"))
        small_info["disk_lean"] = lean_info
    return methods, {**info, "memory": small_info}


def _saved(
    index: MatryoshkaIndex, info: dict[str, Any], folder: Path, name: str, family: str, tier: str = "ram"
) -> Method:
    """A tuned index saved to ``folder`` and opened on ``tier`` as a method, its RAM measured by a fresh process
    opening it there."""
    plan = parse_plan(info["plan"])
    index.save(folder)
    opened = index if tier == "ram" else MatryoshkaIndex.load(folder, full_vectors=tier)
    search = lambda q: opened.search(q, K, plan)[1]  # noqa: E731
    ram = rss.measure("ours" if tier == "ram" else f"ours-{tier}", folder)
    size = rss.file_bytes(folder)
    return Method(name, family, search, ram, info["build_s"], file_bytes=size, target=info["target"])


def _codes(structure: dict) -> str:
    rotated = " rotated" if structure.get("basis") == "svd" else ""
    graph = f" M{structure['hnsw_m']} ef{structure['hnsw_ef_search']}" if structure.get("shortlist") == "hnsw" else ""
    return f"{structure['encoding']}/{structure.get('shortlist_codes', 'float32')}{rotated}{graph}"


def measure(methods: list[Method], corpus: Corpus, truth: np.ndarray, single: int, rounds: int) -> None:
    """Recall on the evaluation queries (``truth``: their exact top-k), then interleaved timing rounds: every
    method searches the same single queries and one batch per round, so slow spells of a shared machine fall on
    all of them. Then one round of single queries beside a busy process, for the tuned methods."""
    for m in methods:
        m.recall = recall_against(m.search(corpus.queries), truth)
    order = np.random.default_rng(0).permutation(len(corpus.queries))

    def singles(m: Method, r: int, into: list[float]) -> None:
        count = max(3, single // 20) if "exact" in m.name else single  # an exact scan is slow
        for i in order[(r * count) % len(order) :][:count]:
            t0 = time.perf_counter()
            m.search(corpus.queries[i : i + 1])
            into.append(time.perf_counter() - t0)

    for r in range(rounds):
        print(f"timing round {r + 1}/{rounds}", flush=True)
        for m in methods:
            singles(m, r, m.singles)
            t0 = time.perf_counter()
            m.search(corpus.queries)
            m.batched.append(time.perf_counter() - t0)
    print("timing beside a busy process", flush=True)
    with busy_process():
        for m in methods:
            if m.target is not None:
                singles(m, rounds, m.busy)


def run(
    *,
    corpus: str = "images",
    model: Path = Path("runs/demo/models/mrl"),
    text_model: Path = Path("runs/wordnet_minilm_quick"),
    size: int = 240_000,
    queries: int = 1000,
    targets: str = "0.95,0.99",
    single: int = 200,
    rounds: int = 3,
    peers: str = ",".join(PEERS),
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
    peer_names = [p.strip() for p in peers.split(",") if p.strip()]
    unknown = sorted(set(peer_names) - set(PEERS))
    if unknown:
        raise InputError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    corpus = load_corpus(corpus, model, text_model, size, queries, synthetic_dim)
    n, d = corpus.vectors.shape
    out.mkdir(parents=True, exist_ok=True)
    x, q = normalize(corpus.vectors), normalize(corpus.queries)  # once: each is a copy of the corpus
    exact = faiss.knn(q, x, K + 1, metric=faiss.METRIC_INNER_PRODUCT)
    ceiling = prefix_ceiling(x, q, exact)
    rotated = rotated_ceiling(x, q, exact)
    fidelity_goal(rotated, d)
    print(
        f"corpus: {corpus.name}, {n:,} x {d}; {queries} calibration + {queries} evaluation queries; "
        f"faiss threads {faiss.omp_get_max_threads()}",
        flush=True,
    )
    cal_truth = faiss.knn(normalize(corpus.calibration), x, K, metric=faiss.METRIC_INNER_PRODUCT)[1]
    methods, builds = peer_methods(peer_names, x, corpus, cal_truth, wanted, out)
    tuned = []
    hnsw = next((m for m in methods if m.family == "faiss HNSWFlat"), None)
    for target in wanted:
        mine, info = ours(corpus, target, out, hnsw.bytes / n if hnsw else None)
        methods += mine
        tuned.append(info)
    del x, q  # the indexes hold their own copies
    measure(methods, corpus, exact[1][:, :K], single, rounds)
    rows = [m.row(n, queries) for m in methods]
    print_rows(rows)
    for info in tuned:
        print(f"ours@{info['target']}: {overhead_line(info['overhead'], info['plan'])}")
    comparisons = compare(rows, wanted, goals())
    plot(rows, out / "retrieval.png", f"{corpus.name} ({d} dims)")
    results = {
        "ceiling": ceiling,
        "rotated_ceiling": rotated,
        "corpus": corpus.name,
        "n": n,
        "dim": d,
        "builds": builds,
        "tuned": tuned,
        "rows": rows,
        "comparisons": comparisons,
        "goals": goals(),
    }
    atomic_write_json(out / "results.json", results)
    print(f"\nwrote {out / 'results.json'} and {out / 'retrieval.png'}")
    return results
