"""How autotune times its candidates: single queries (batch 1, the latency a user waits for), the best plan of each
structure again side by side, and the memory budget a structure must fit."""

from __future__ import annotations

import time

import numpy as np
from rich.console import Console

from matryoshka.index.plans import Plan

TIMED_QUERIES = 100  # single queries timed per candidate plan
FINAL_ROUNDS = 3  # interleaved rounds timing the best plan of each structure against each other


def median_batch1_ms(search, queries: np.ndarray, n: int = TIMED_QUERIES) -> float:
    """Median milliseconds of ``search(one_query)`` over the first ``n`` queries, one at a time."""
    times = []
    for i in range(min(n, len(queries))):
        t0 = time.perf_counter()
        search(queries[i : i + 1])
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def batch1_ms(index, queries: np.ndarray, k: int, plan: Plan, n: int = TIMED_QUERIES) -> float:
    """Median milliseconds of the index's single-query searches with ``plan``."""
    return median_batch1_ms(lambda q: index.search(q, k, plan), queries, n)


def final_round(table: list[dict], index, siblings: dict, queries: np.ndarray, k: int, timed=None) -> list[dict]:
    """The fastest timed plan of each structure, timed again side by side in interleaved rounds: the structures
    were first timed minutes apart, and a slow spell of a shared machine must not decide between them. ``timed``
    maps an index to the one to time (the same rows on the tier it will be read from)."""
    timed = timed or (lambda index: index)
    finalists: dict[int, dict] = {}
    for cand in table:
        key = id(cand["structure"])
        if "latency_ms" in cand and (key not in finalists or cand["latency_ms"] < finalists[key]["latency_ms"]):
            finalists[key] = cand
    if len(finalists) > 1:
        samples: dict[int, list[float]] = {key: [] for key in finalists}
        for _ in range(FINAL_ROUNDS):
            for key, cand in finalists.items():
                samples[key].append(batch1_ms(timed(siblings.get(key, index)), queries, k, cand["plan"]))
        for key, cand in finalists.items():
            cand["latency_ms"] = float(np.median(samples[key]))
    return list(finalists.values())


def within_budget(table: list[dict], budget: float | None, console: Console) -> list[dict]:
    """The candidates whose structure holds at most ``budget`` bytes per vector in RAM (the smallest when none
    does)."""
    if budget is None:
        return table
    timed = [c for c in table if "latency_ms" in c]
    fits = [c for c in timed if c["structure"]["ram_bytes_per_vector"] <= budget]
    if fits:
        return fits
    smallest = min(c["structure"]["ram_bytes_per_vector"] for c in timed)
    console.print(
        f"no structure reaching the target holds <= {budget:.0f} B/vector in RAM; the smallest holds {smallest}"
    )
    return [c for c in timed if c["structure"]["ram_bytes_per_vector"] == smallest]
