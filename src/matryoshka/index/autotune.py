"""Pick the shortlist structure and search plan that answer fastest while keeping a target recall@k relative to
exact full-dim search.

Recall of every candidate plan is measured on calibration queries against the exact full-dim results; the
candidates that reach the target are ranked by their cost model, and the few cheapest are timed one query at a
time (batch 1, the latency a user waits for); the best plan of each structure is then timed again, interleaved
with the others, and the fastest wins. On a large :class:`MatryoshkaIndex`
(``structures="auto"``) the search also covers HNSW graphs over short prefixes (d/16, d/8, d/4 dims; AdANNS,
Rege et al. 2023, builds its structures on low-dim prefixes the same way): each is built, tuned and timed, and
the index keeps the winning structure. Each structure is also tried with rotated prefixes (``rotate="auto"``,
:mod:`matryoshka.index.basis`): the first D coordinates in a basis fitted on the corpus, which often keep the
full-dim neighbours with a far shorter shortlist; whichever is faster wins, and the structure says which
(``basis``: ``raw`` or ``svd``).

Example::

    from matryoshka.index.autotune import autotune
    best = autotune(index, calibration_queries, k=10, target_recall=0.99)
    print(best.plan, best.recall, best.latency_ms, best.structure)
    scores, ids = index.search(queries, 10, best.plan)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console

from matryoshka.errors import InputError
from matryoshka.evaluate.ranking import recall_against
from matryoshka.index import storage
from matryoshka.index.basis import check_rotation, fit_index_basis
from matryoshka.index.disk import DiskRows, DiskTier, read_cost_flops
from matryoshka.index.index import MatryoshkaIndex
from matryoshka.index.plans import AdaptivePlan, FullPlan, FunnelPlan, Plan, plan_to_text
from matryoshka.index.shortlists import PQ_DIMS, structure_bytes
from matryoshka.index.texts import check_texts
from matryoshka.index.timing import batch1_ms, final_round, within_budget

STRUCTURE_MIN_ROWS = 20_000  # below this an exact scan of a short prefix is about as fast as any graph
SHORTLIST_FACTORS = (1, 1.5, 2, 3, 4, 5, 7, 10, 15, 20, 40, 80)  # shortlist K as multiples of k
COMPACT_ENCODINGS = ("float16", "int8")  # full-dim codes that compact tuning tries
COMPACT_PREFIX_CODES = ("float16", "int8", "int4")  # HNSW prefix codes that compact tuning tries
COMPACT_PQ_CODES = ("pq4", "pq2")  # and product-quantised ones, of longer prefixes
COMPACT_PQ_M = (16, 8)  # with M=8 a pq2 graph's links drop from 128 to 64 bytes a vector, over half its size
# HNSW search breadths tried on the disk tier, where one row read (about 15 us on a cloud disk) costs more than
# widening the graph search: a wider search finds the same neighbours in a shorter shortlist, so fewer reads (16: the
# breadth is the shortlist's K).
DISK_EF_SEARCH = (16, 32, 64, 128)


@dataclass
class TunedPlan:
    """The chosen plan, its recall against exact full-dim search, its cost model, its measured batch-1 latency
    (median, ms) and the shortlist structure it runs on (``shortlist``, ``shortlist_dims``, ``hnsw_m``)."""

    plan: Plan
    recall: float
    flops_per_query: float
    latency_ms: float
    candidates: list[dict] = field(default_factory=list)
    structure: dict = field(default_factory=dict)

    @property
    def flops_saving(self) -> float:
        """How many times fewer multiply-adds per query the plan needs than exact full-dim search."""
        full = next(c["flops"] for c in self.candidates if isinstance(c["plan"], FullPlan))
        return full / self.flops_per_query


def structure_of(index) -> dict:
    """What autotune may change about an index: its shortlist structure and the encoding of its full-dim codes,
    with the bytes per vector they cost."""
    return {
        "shortlist": index.shortlist,
        "shortlist_dims": list(index.shortlist_dims),
        "hnsw_m": index.hnsw_m,
        "hnsw_ef_search": index.hnsw_ef_search,
        "shortlist_codes": getattr(index, "shortlist_codes", "float32"),
        "encoding": index.encoding,
        "basis": "svd" if getattr(index, "rotated", False) else "raw",
        **_sizes(index),
    }


def _sizes(index) -> dict:
    """Bytes per vector: everything stored, and what stays in RAM (the full-dim rows of an index built for the
    mmap or disk tier live in a file)."""
    total = index.bytes_per_vector()
    in_file = getattr(index, "full_vectors", "ram") != "ram"
    rows = storage.bytes_per_vector(index.dim, index.encoding) if in_file else 0
    return {"bytes_per_vector": total, "ram_bytes_per_vector": total - rows + _basis_share(index)}


def _basis_share(index) -> int:
    """A rotated index's basis (d x d float32, held once) per vector: 9 bytes at 67k vectors of 384 dims, enough
    to matter to a budget of a few hundred."""
    basis = getattr(index, "basis", None)
    return 0 if basis is None else int(np.ceil(basis.nbytes / max(index.ntotal, 1)))


def plan_flops(plan: Plan, index, k: int) -> float:
    """Multiply-adds per query. A flat first stage scans the corpus; an HNSW one computes about efSearch x 2M
    distances (a model, not a count); later stages score their candidates."""
    stages = plan.stages(index.dim, k)
    d0, previous_k = stages[0]
    if index.shortlist == "hnsw" and d0 in index.shortlist_dims:
        flops = max(index.hnsw_ef_search, previous_k) * 2 * index.hnsw_m * d0
    else:
        flops = index.ntotal * d0
    if getattr(index, "rotated", False):  # the query's projection onto each rotated prefix it uses
        flops += index.dim * sum(d for d in {d for d, _ in stages} if d < index.dim)
    for d, kk in stages[1:]:
        flops += previous_k * d
        previous_k = kk
    return float(flops)


def plan_reads(plan: Plan, index, k: int) -> int:
    """Rows a query reads for its re-ranking stages (each stage gathers the previous stage's K candidates): on the
    disk tier each is a direct read, which the cost model prices with :func:`~matryoshka.index.disk.read_cost_flops`."""
    stages = plan.stages(index.dim, k)
    return sum(kk for _, kk in stages[:-1])  # stage i + 1 gathers stage i's survivors


def disk_read_flops(index) -> float:
    """The cost model's price of one row read (multiply-adds): 0 where the full-dim rows are in RAM or mapped."""
    codes = getattr(index, "index", index).arrays().codes  # an IndexStore's rows are its main index's
    return read_cost_flops(codes) if isinstance(codes, DiskRows) else 0.0


def _identity(index):
    return index


def candidate_plans(index, k: int) -> list[Plan]:
    if getattr(index, "rotated", False):  # rotated prefixes live in the shortlist structures only
        dims = [*index.shortlist_dims, index.dim]
    else:
        dims = [2**i for i in range(3, 16) if 2**i < index.dim] + [index.dim]
    plans: list[Plan] = []
    for ds in index.shortlist_dims:
        for factor in SHORTLIST_FACTORS:
            for dr in dims:
                if dr > ds and (dr == index.dim or not getattr(index, "rotated", False)):
                    plans.append(AdaptivePlan(ds, int(factor * k), dr))
        for start_k in (10 * k, 20 * k, 40 * k):
            steps, kk = [(ds, start_k)], start_k
            for d in dims:
                if d > ds:
                    kk = max(k, kk // 2)
                    steps.append((d, kk))
            steps[-1] = (index.dim, k)
            if len(steps) > 2:  # two steps are an adaptive plan
                plans.append(FunnelPlan(steps))
    return plans


def candidate_structures(index: MatryoshkaIndex, compact: bool = False) -> list[dict]:
    """HNSW graphs (M=16) over one short prefix each: d/16, d/8 and d/4 dims (at least 16, below d), their prefixes
    as float32 codes; ``compact`` adds float16, int8 and int4 codes of them, and product-quantised codes
    (:data:`COMPACT_PQ_CODES`) of the d/4 and d/2 prefixes, at M=16 and M=8: as many bytes as int4 or int8 codes of a
    shorter prefix, and closer to the full dim's neighbours (text, 67k x 384, rotated: 192 dims as pq2 codes in 48
    bytes reach recall 0.957 at K=30 where 48 int8 dims reach 0.747)."""
    dims = dict.fromkeys(d for d in (index.dim // 16, index.dim // 8, index.dim // 4) if 16 <= d < index.dim)
    codes = ("float32", *COMPACT_PREFIX_CODES) if compact else ("float32",)
    graphs = [(d, c, 16) for d in dims for c in codes]
    if compact:
        wider = dict.fromkeys(d for d in (index.dim // 4, index.dim // 2) if 16 <= d < index.dim)
        graphs += [(d, c, m) for d in wider for c in COMPACT_PQ_CODES for m in COMPACT_PQ_M if d % PQ_DIMS[c] == 0]
    return [{"shortlist": "hnsw", "shortlist_dims": [d], "hnsw_m": m, "shortlist_codes": c} for d, c, m in graphs]


def _families(plans: list[Plan]) -> list[list[Plan]]:
    """Adaptive plans grouped by (D_s, D_r), shortlist K ascending; every other plan alone."""
    groups: dict[object, list[Plan]] = {}
    for plan in plans:
        key = (plan.shortlist_dim, plan.rerank_dim) if isinstance(plan, AdaptivePlan) else id(plan)
        groups.setdefault(key, []).append(plan)
    return [sorted(g, key=lambda p: getattr(p, "shortlist_k", 0)) for g in groups.values()]


def _tune(
    index, queries, truth, k, target_recall, plans, time_top, structure, read_flops=0.0, timed=_identity
) -> list[dict]:
    """Recall of the candidate plans; within a family of adaptive plans only the largest K and a bisection
    for the smallest K that reaches the target are searched (recall grows with K). The cheapest few that
    reach the target (multiply-adds, plus ``read_flops`` per row read on the disk tier) are timed on
    ``timed(index)`` (the index on the tier it will be read from)."""
    table = []
    searched = DiskTier.searched(index)  # the same results; a disk tier read through the page cache

    def reaches(plan: Plan) -> bool:
        _, ids = searched.search(queries, k, plan)
        recall = recall_against(ids, truth)
        flops = plan_flops(plan, index, k)
        cost = flops + read_flops * plan_reads(plan, index, k)
        table.append({"plan": plan, "recall": recall, "flops": flops, "cost": cost, "structure": structure})
        return recall >= target_recall

    for family in _families(plans or candidate_plans(index, k)):
        if not reaches(family[-1]):
            continue
        lo, hi = 0, len(family) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if reaches(family[mid]) else (mid + 1, hi)
    ok = sorted((c for c in table if c["recall"] >= target_recall), key=lambda c: c["cost"])
    for cand in ok[:time_top]:
        cand["latency_ms"] = batch1_ms(timed(index), queries, k, cand["plan"])
    return table


def _basis_variants(index, rotate: str, plans) -> list[object]:
    """The indexes to tune, each with its own prefixes: ``index`` itself and, for a large :class:`MatryoshkaIndex`
    with ``rotate="auto"``, the same rows with the other kind of prefix (rotated, or raw for a rotated index);
    ``"svd"`` / ``"raw"``: only that kind."""
    if not isinstance(index, MatryoshkaIndex):
        return [index]
    if rotate == "auto":
        if index.ntotal < STRUCTURE_MIN_ROWS or plans:  # small corpora: exact short-prefix scans are about as fast
            return [index]
        return [index, index.with_basis(None if index.rotated else fit_index_basis(index))]
    if (rotate == "svd") == index.rotated:
        return [index]
    return [index.with_basis(fit_index_basis(index) if rotate == "svd" else None)]


def _ram_bytes(index, structure: dict, encoding: str) -> int:
    """Bytes per vector in RAM that ``index``'s rows would hold under ``structure`` with full-dim codes
    ``encoding`` (the model of :meth:`MatryoshkaIndex.bytes_per_vector`), without building anything."""
    keys = ("shortlist", "shortlist_dims", "hnsw_m", "shortlist_codes")
    structures = structure_bytes(*(structure[key] for key in keys))
    in_ram = getattr(index, "full_vectors", "ram") == "ram"
    rows = storage.bytes_per_vector(index.dim, encoding) if in_ram else 0
    return rows + structures + 8 + _basis_share(index)


def _pairs_to_try(index, current: dict, structures: str, compact: bool, plans, budget: float | None = None):
    """(structure, full-dim encoding) pairs to tune for ``index``, its own first: HNSW graphs over short prefixes
    (large :class:`MatryoshkaIndex` only) and, when tuning for memory (``compact``), each structure with compact
    full-dim codes (rows held in RAM only) and each graph with compact prefix codes. With a ``budget`` of bytes per
    vector in RAM, pairs that would hold more are left out (the smallest is kept when none would fit)."""
    pairs = [(current, index.encoding)]
    if not isinstance(index, MatryoshkaIndex):
        return pairs
    graphs = []
    if structures == "auto" and index.ntotal >= STRUCTURE_MIN_ROWS and not plans:
        same = ("shortlist", "shortlist_dims", "hnsw_m", "shortlist_codes")
        graphs = [s for s in candidate_structures(index, compact) if any(s[key] != current[key] for key in same)]
    # Rows kept in a file (mmap, disk tier) hold no RAM, so compact codes of them could only lose recall.
    recode = compact and getattr(index, "full_vectors", "ram") == "ram"
    encodings = [index.encoding, *(e for e in COMPACT_ENCODINGS if e != index.encoding and recode)]
    pairs = [(s, e) for s in [current, *graphs] for e in encodings]
    smallest = min(pairs, key=lambda pair: _ram_bytes(index, *pair))
    return [p for p in pairs if p is pairs[0] or budget is None or _ram_bytes(index, *p) <= budget or p == smallest]


class _Siblings:
    """Builds the index a (structure, encoding) pair describes, each graph once (its recodings share it)."""

    def __init__(self) -> None:
        self.graphs: dict[tuple, tuple[dict, object]] = {}

    def get(self, index, current: dict, structure: dict, encoding: str) -> tuple[dict, object]:
        if structure is current:
            base, built = index, current
        else:
            key = (id(index), structure["shortlist"], tuple(structure["shortlist_dims"]), structure["hnsw_m"],
                   structure["shortlist_codes"])  # fmt: skip
            if key not in self.graphs:
                t0 = time.perf_counter()
                dims, m, codes = structure["shortlist_dims"], structure["hnsw_m"], structure["shortlist_codes"]
                sibling = index.with_shortlists(dims, "hnsw", m, codes=codes)
                self.graphs[key] = {**structure_of(sibling), "build_s": time.perf_counter() - t0}, sibling
            built, base = self.graphs[key]
        if encoding == index.encoding:
            return built, base
        sibling = base.with_encoding(encoding)
        return {**built, "encoding": encoding, **_sizes(sibling)}, sibling


def _breadths(structure: dict, index, read_flops: float) -> list[tuple[dict, object]]:
    """``index`` with each HNSW search breadth worth tuning: on the disk tier (rows priced at ``read_flops``) those
    of :data:`DISK_EF_SEARCH`, elsewhere its own (a re-ranked candidate in RAM costs less than the graph search that
    would have found it)."""
    if not (read_flops > 0 and index.shortlist == "hnsw" and isinstance(index, MatryoshkaIndex)):
        return [(structure, index)]
    return [({**structure, "hnsw_ef_search": ef}, index.with_ef_search(ef)) for ef in DISK_EF_SEARCH]


def autotune(
    index,
    queries: np.ndarray,
    k: int = 10,
    target_recall: float = 0.99,
    plans: list[Plan] | None = None,
    time_top: int = 3,
    structures: str = "auto",
    verbose: bool = False,
    objective: str = "latency",
    rotate: str = "auto",
    max_bytes_per_vector: float | None = None,
    disk_tier: DiskTier | None = None,
) -> TunedPlan:
    """The fastest measured plan (batch 1) among the cheapest that reach ``target_recall``.

    ``structures="auto"`` (a :class:`MatryoshkaIndex` of at least 20,000 vectors, no ``plans`` given) also
    builds and tries :func:`candidate_structures`; the index then keeps the structure of the winner.
    ``structures="keep"`` tunes the plan only. An :class:`~matryoshka.index.IndexStore` keeps its structure. A
    tuned :class:`MatryoshkaIndex` also takes the plan as its ``default_plan`` (saved with it).

    ``objective="memory"`` also tries every structure with float16 and int8 full-dim codes (of rows held in RAM)
    and keeps the smallest index (bytes per vector in RAM) whose plan reaches the target, the fastest among equals:
    compact codes are chosen only where the recall holds.

    ``max_bytes_per_vector`` (latency objective): the fastest structure that holds at most that many bytes per
    vector in RAM (the full-dim rows of an index built for the mmap or disk tier count nothing), compact codes
    tried as for the memory objective (the smallest structure when none fits).

    ``rotate="auto"`` (a :class:`MatryoshkaIndex` of at least 20,000 vectors, no ``plans`` given) tunes every
    structure both over the raw prefixes and over rotated ones (:meth:`MatryoshkaIndex.with_basis`, a basis fitted
    on the index's rows); ``"svd"`` tunes rotated prefixes only, ``"raw"`` the first dims as stored.

    Plans are timed on the tier the index's rows are read from: ``disk_tier`` (a
    :class:`~matryoshka.index.disk.DiskTier`) times an index held in RAM as it will run once saved for
    ``full_vectors="disk"``; an index opened on the disk tier is timed there anyway. There each row a re-ranking
    reads is priced in the cost model (:func:`~matryoshka.index.disk.read_cost_flops`); recall is measured
    through the page cache.

    Example::

        import numpy as np
        from matryoshka import MatryoshkaIndex, autotune

        rng = np.random.default_rng(0)
        corpus = (rng.standard_normal((4000, 64)) * np.linspace(2, 0.2, 64)).astype("float32")  # coarse dims first
        index = MatryoshkaIndex(64, shortlist_dims=[16])
        index.add(corpus)
        result = autotune(index, corpus[:200], k=10, target_recall=0.95, structures="keep")
        print(result.plan, result.recall)      # the plan is also the index's default now
    """
    queries = _check_tuning(queries, target_recall, structures, objective)
    check_rotation(rotate)
    console = Console(stderr=True, quiet=not verbose)
    _, truth = index.search(queries, k, FullPlan())
    disk_tier = disk_tier or DiskTier.of(index)
    timed = disk_tier.timed if disk_tier is not None else _identity
    read_flops = disk_read_flops(timed(index))
    compact = objective == "memory" or max_bytes_per_vector is not None
    table: list[dict] = []
    siblings: dict = {}
    work = []  # (RAM modelled, variant, its own structure, structure, encoding)
    for variant in _basis_variants(index, rotate, plans):
        current = structure_of(variant)
        if not table:  # on a small corpus the exact scan can win; it reads no prefix, so any variant serves it
            flops = plan_flops(FullPlan(), index, k)
            full = {"plan": FullPlan(), "recall": 1.0, "flops": flops, "cost": flops, "structure": current}
            full["latency_ms"] = batch1_ms(timed(variant), queries, k, FullPlan())
            table.append(full)
        if variant is not index:
            siblings[id(current)] = variant
        pairs = _pairs_to_try(variant, current, structures, compact, plans, max_bytes_per_vector)
        work += [(_ram_bytes(variant, s, e), variant, current, s, e) for s, e in pairs]
    if objective == "memory":  # the smallest first: once a size reaches the target, larger ones cannot win
        work.sort(key=lambda w: w[0])
    reached_at = None
    builder = _Siblings()
    for position, (ram, variant, current, wanted, encoding) in enumerate(work):
        if reached_at is not None and ram > reached_at:
            console.print(f"{len(work) - position} larger structures not tried: {reached_at} B/vector in RAM "
                          f"reach {target_recall}")  # fmt: skip
            break
        rows = []
        for structure, sibling in _breadths(*builder.get(variant, current, wanted, encoding), read_flops):
            rows += _tune(sibling, queries, truth, k, target_recall, plans, time_top, structure, read_flops, timed)
            if sibling is not index:
                siblings[id(structure)] = sibling
        table.extend(rows)
        if objective == "memory" and reached_at is None and any(c["recall"] >= target_recall for c in rows):
            reached_at = ram  # the work is sorted: the first size that reaches is the smallest
        fastest = min((c for c in rows if "latency_ms" in c), key=lambda c: c["latency_ms"], default=None)
        best_here = fastest["latency_ms"] if fastest else float("nan")
        graph = structure["shortlist"] == "hnsw"
        breadth = f", efSearch {fastest['structure']['hnsw_ef_search']}" if fastest and graph and read_flops > 0 else ""
        links = f" M={structure['hnsw_m']}" if graph else ""
        console.print(
            f"{structure['shortlist']}{links} over {structure['shortlist_dims']} dims ({structure['basis']} prefixes), "
            f"{structure['shortlist_codes']} prefix codes, {structure['encoding']} codes: fastest plan reaching "
            f"{target_recall} recall: {best_here:.3f} ms{breadth} ({structure['ram_bytes_per_vector']} B/vector in RAM)"
        )
    finalists = final_round(within_budget(table, max_bytes_per_vector, console), index, siblings, queries, k, timed)
    if objective == "memory":
        best = min(finalists, key=lambda c: (c["structure"]["ram_bytes_per_vector"], c["latency_ms"]))
    else:
        best = min(finalists, key=lambda c: c["latency_ms"])
    _adopt(index, best, siblings, k)
    console.print(f"chosen: {plan_to_text(best['plan'])} on {best['structure']}")
    return TunedPlan(best["plan"], best["recall"], best["flops"], best["latency_ms"], table, best["structure"])


def _check_tuning(queries: np.ndarray, target_recall: float, structures: str, objective: str) -> np.ndarray:
    if not 0 < target_recall <= 1:
        raise InputError(f"target_recall must be in (0, 1], got {target_recall}")
    if structures not in ("auto", "keep"):
        raise InputError(f"structures must be auto or keep, got {structures!r}")
    if objective not in ("latency", "memory"):
        raise InputError(f"objective must be latency or memory, got {objective!r}")
    queries = np.asarray(queries, dtype=np.float32)
    if queries.ndim != 2 or len(queries) == 0:
        raise InputError(f"autotune needs calibration queries (Q, d) with Q >= 1, got shape {queries.shape}")
    return queries


def _adopt(index, best: dict, siblings: dict, k: int) -> None:
    """The index takes the winner's structure and, when it is a MatryoshkaIndex, its plan as the default."""
    if id(best["structure"]) in siblings:
        index.adopt_shortlists(siblings[id(best["structure"])])
    if isinstance(index, MatryoshkaIndex):
        index.forget_prefix_norms()  # of the plans tried; searches compute the ones they need again
        # Searches that name no plan follow it (saved with the index).
        index.default_plan, index.default_plan_k = plan_to_text(best["plan"]), k


def build_tuned(
    vectors: np.ndarray,
    ids=None,
    k: int = 10,
    target_recall: float = 0.95,
    queries: np.ndarray | None = None,
    holdout: int = 1000,
    seed: int = 0,
    verbose: bool = False,
    objective: str = "latency",
    rotate: str = "auto",
    max_bytes_per_vector: float | None = None,
    tier_folder: str | os.PathLike | None = None,
    texts=None,
    **options,
) -> tuple[MatryoshkaIndex, TunedPlan | None]:
    """A :class:`MatryoshkaIndex` over ``vectors`` with the structure and plan :func:`autotune` picks for
    ``target_recall`` (its ``default_plan``): what ``mrl index build`` does by default.

    Without calibration ``queries``, up to ``holdout`` rows (a tenth of a small corpus) are held out of the index
    while it is tuned, so that the calibration queries are vectors it has not seen (a query that is in the index
    finds itself, which makes every plan look better), and added afterwards. Corpora under 100 vectors are not
    tuned (exact search). ``texts`` (one per row, or None) are kept beside the ids. ``objective``, ``rotate`` and
    ``max_bytes_per_vector`` as for :func:`autotune`; ``options`` as for :class:`MatryoshkaIndex`. Of several
    ``shortlist_dims`` (candidates), the index keeps the one its plan starts from.

    With ``full_vectors="disk"`` the plans are timed on the disk tier: the rows are written to a file in
    ``tier_folder`` (default: the working directory; give the folder the index will be saved in, so that the reads
    go to the same device) and read with direct I/O, as the saved index reads them.
    """
    check_rotation(rotate)
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise InputError(f"embeddings must be 2-D (N, d), got shape {vectors.shape}")
    n = len(vectors)
    texts = check_texts(texts, n)
    if queries is None and n < 100:
        return MatryoshkaIndex.build(vectors, ids, texts, **options), None
    held = np.zeros(n, dtype=bool)
    if queries is None:
        held[np.random.default_rng(seed).choice(n, min(holdout, n // 10), replace=False)] = True
        queries = vectors[held]
    all_ids = np.asarray(list(ids) if ids is not None else np.arange(n, dtype=np.int64))
    held_texts, kept_texts = (None, None) if texts is None else (texts[held], texts[~held])
    index = MatryoshkaIndex.build(
        vectors[~held], all_ids[~held] if ids is not None or held.any() else None, kept_texts, **options
    )
    disk_tier = DiskTier(tier_folder or ".") if index.full_vectors == "disk" else None
    tuned = autotune(
        index,
        queries,
        k,
        target_recall,
        verbose=verbose,
        objective=objective,
        rotate=rotate,
        max_bytes_per_vector=max_bytes_per_vector,
        disk_tier=disk_tier,
    )
    _keep_used_shortlists(index, tuned.plan, k)
    if held.any():
        index.add(vectors[held], all_ids[held], held_texts)
    return index, tuned


def _keep_used_shortlists(index: MatryoshkaIndex, plan: Plan, k: int) -> None:
    """Drop the flat shortlist structures the tuned plan does not read (each costs 4 bytes a dim a vector; a rotated
    index's later stages read theirs too); a plan that reads none (the exact scan) keeps the smallest, for plans
    named later."""
    used = [d for d, _ in plan.stages(index.dim, k) if d in index.shortlist_dims]
    keep = sorted(set(used)) or index.shortlist_dims[:1]
    if index.shortlist == "flat" and keep != index.shortlist_dims:
        index.adopt_shortlists(index.with_shortlists(keep, "flat", index.hnsw_m, index.hnsw_ef_search))
