"""Pick the cheapest search plan that keeps a target recall@k relative to exact full-dim search.

Recall of every candidate plan is measured on calibration queries against the exact full-dim results; the
candidates that reach the target are ranked by their cost model (multiply-adds per query), and the few
cheapest are timed: the fastest measured one wins.

Example::

    from matryoshka.index.autotune import autotune
    best = autotune(index, calibration_queries, k=10, target_recall=0.99)
    print(best.plan, best.recall, best.latency_ms)
    scores, ids = index.search(queries, 10, best.plan)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from matryoshka.errors import InputError
from matryoshka.evaluate.metrics import recall_against
from matryoshka.index.index import MatryoshkaIndex
from matryoshka.index.plans import AdaptivePlan, FullPlan, FunnelPlan, Plan


@dataclass
class TunedPlan:
    plan: Plan
    recall: float
    flops_per_query: float
    latency_ms: float
    candidates: list[dict] = field(default_factory=list)

    @property
    def flops_saving(self) -> float:
        """How many times fewer multiply-adds per query the plan needs than exact full-dim search."""
        full = next(c["flops"] for c in self.candidates if isinstance(c["plan"], FullPlan))
        return full / self.flops_per_query


def plan_flops(plan: Plan, index: MatryoshkaIndex, k: int) -> float:
    """Multiply-adds per query: the first stage scans the corpus, later stages score their candidates."""
    stages = plan.stages(index.dim, k)
    d0, previous_k = stages[0]
    flops = index.ntotal * d0
    for d, kk in stages[1:]:
        flops += previous_k * d
        previous_k = kk
    return float(flops)


def candidate_plans(index: MatryoshkaIndex, k: int) -> list[Plan]:
    dims = [2**i for i in range(3, 16) if 2**i < index.dim] + [index.dim]
    plans: list[Plan] = []
    for ds in index.shortlist_dims:
        for shortlist_k in (k, 2 * k, 5 * k, 10 * k, 20 * k, 40 * k, 80 * k):
            for dr in dims:
                if dr > ds:
                    plans.append(AdaptivePlan(ds, shortlist_k, dr))
        for start_k in (10 * k, 20 * k, 40 * k):
            steps, kk = [(ds, start_k)], start_k
            for d in dims:
                if d > ds:
                    kk = max(k, kk // 2)
                    steps.append((d, kk))
            steps[-1] = (index.dim, k)
            plans.append(FunnelPlan(steps))
    return plans


def _latency_ms(index: MatryoshkaIndex, queries: np.ndarray, k: int, plan: Plan, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        index.search(queries, k, plan)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times)) / len(queries)


def autotune(
    index: MatryoshkaIndex,
    queries: np.ndarray,
    k: int = 10,
    target_recall: float = 0.99,
    plans: list[Plan] | None = None,
    time_top: int = 3,
) -> TunedPlan:
    """The plan with the lowest measured latency among the cheapest that reach ``target_recall``."""
    if not 0 < target_recall <= 1:
        raise InputError(f"target_recall must be in (0, 1], got {target_recall}")
    queries = np.asarray(queries, dtype=np.float32)
    _, truth = index.search(queries, k, FullPlan())
    table = []
    for plan in plans or candidate_plans(index, k):
        _, ids = index.search(queries, k, plan)
        table.append({"plan": plan, "recall": recall_against(ids, truth), "flops": plan_flops(plan, index, k)})
    table.append({"plan": FullPlan(), "recall": 1.0, "flops": plan_flops(FullPlan(), index, k)})
    ok = sorted((c for c in table if c["recall"] >= target_recall), key=lambda c: c["flops"])
    full = table[-1]  # always timed too: on a small corpus the exhaustive search can be the fastest
    timed = []
    for cand in [*ok[:time_top], *([full] if full not in ok[:time_top] else [])]:
        cand["latency_ms"] = _latency_ms(index, queries, k, cand["plan"])
        timed.append(cand)
    best = min(timed, key=lambda c: c["latency_ms"])
    return TunedPlan(best["plan"], best["recall"], best["flops"], best["latency_ms"], table)
