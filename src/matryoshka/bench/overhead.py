"""The Python around one search: batch-1 ``index.search`` against the compiled call it makes, on the same queries.

    from matryoshka.bench.overhead import search_overhead
    print(search_overhead(index, queries[:200], k=10, plan="adaptive:96:50:384"))

For a plan that runs as one FAISS call chain (:mod:`matryoshka.index.compiled`), each query is searched three
times to warm the caches, then timed twice through ``index.search`` and twice through the chain's own ``search_c`` with
its buffers and parameters prepared in advance (in the order A-B-B-A); the overhead is the difference of the two
medians. A plan that runs stage by
stage has no single call to subtract: its overhead is reported as unknown (None), never guessed.
"""

from __future__ import annotations

import time
from typing import Any

import faiss
import numpy as np

from matryoshka.index import MatryoshkaIndex
from matryoshka.index.plans import Plan
from matryoshka.index.threads import search_threads

OVERHEAD_GOAL_US = 5.0  # issue goal: the Python around a batch-1 search


def search_overhead(index: MatryoshkaIndex, queries: np.ndarray, k: int, plan: Plan | str | None) -> dict[str, Any]:
    """{"path": "compiled" | "staged", "search_us", "call_us", "overhead_us"}: medians over ``queries``, batch 1,
    one thread (``call_us`` / ``overhead_us`` are None on the staged path)."""
    prepared = index.prepared(plan, k)  # the chain and parameters index.search uses for one query
    chain, k = prepared.chain, prepared.k
    searches, calls = [], []
    with search_threads(1):
        for row in np.asarray(queries, dtype=np.float32):
            query = np.ascontiguousarray(row[None])
            index.search(query, k, plan)  # warm: the timings below read the same cached rows
            index.search(query, k, plan)  # (a second run is still measurably colder than a third)
            if chain is None:
                searches.append(_timed(index.search, query, k, plan))
                continue
            scores, positions = np.empty((1, k), np.float32), np.empty((1, k), np.int64)
            args = (1, faiss.swig_ptr(query), k, faiss.swig_ptr(scores), faiss.swig_ptr(positions), prepared.params)
            chain.chain.search_c(*args)
            # A-B-B-A: each of the two is once the first and once the last of its pair, so caches favour neither.
            searches.append(_timed(index.search, query, k, plan))
            calls += [_timed(chain.chain.search_c, *args), _timed(chain.chain.search_c, *args)]
            searches.append(_timed(index.search, query, k, plan))
    search_us = float(np.median(searches) * 1e6)
    if chain is None:
        return {"path": "staged", "search_us": search_us, "call_us": None, "overhead_us": None}
    call_us = float(np.median(calls) * 1e6)
    return {"path": "compiled", "search_us": search_us, "call_us": call_us, "overhead_us": search_us - call_us}


def _timed(call, *args) -> float:
    t0 = time.perf_counter()
    call(*args)
    return time.perf_counter() - t0


def overhead_line(overhead: dict[str, Any], plan: str) -> str:
    """One line for the benchmark's output, with the goal verdict where the overhead is known."""
    if overhead["overhead_us"] is None:
        return (
            f"python around a batch-1 search ({plan}): runs stage by stage, {overhead['search_us']:.1f} us in all; "
            "no single compiled call to subtract"
        )
    ok = overhead["overhead_us"] <= OVERHEAD_GOAL_US
    return (
        f"python around a batch-1 search ({plan}): {overhead['overhead_us']:.1f} us of {overhead['search_us']:.1f} "
        f"us (the compiled chain: {overhead['call_us']:.1f} us; goal <= {OVERHEAD_GOAL_US:.0f} us: "
        f"{'met' if ok else 'NOT met'})"
    )
