"""Run a plan on an engine collection: the same plans, the same (scores, ids) as a local search."""

from __future__ import annotations

import numpy as np

from matryoshka.engines.base import Engine, check_prefixes
from matryoshka.engines.connect import connect
from matryoshka.engines.uri import EngineURI
from matryoshka.errors import InputError
from matryoshka.index.plans import FullPlan, Plan, check_k, parse_plan, plan_or_default, validate_stages
from matryoshka.index.storage import checked_rows


def search(
    engine: str | EngineURI | Engine,
    collection: str,
    queries: np.ndarray,
    k: int = 10,
    plan: Plan | str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, ids), each (Q, k), for full-dim ``queries`` under ``plan`` (default: the plan recorded
    by the export, else exact full-dim search). Scores are cosines; ids are the index's own.

    Example::

        import numpy as np
        from matryoshka import MatryoshkaIndex
        from matryoshka.engines import connect, export_index, search

        x = np.random.default_rng(0).standard_normal((1000, 64)).astype("float32")
        index = MatryoshkaIndex(64, shortlist_dims=[16])
        index.add(x)
        with connect("qdrant::memory:") as engine:
            export_index(index, engine, "docs", plan="adaptive:16:100:64", progress=False)
            scores, ids = search(engine, "docs", x[:3], k=10)   # runs the recorded plan
            assert (ids[:, 0] == [0, 1, 2]).all()
    """
    if isinstance(engine, Engine):
        with engine.refusals():
            return _search(engine, collection, queries, k, plan)
    with connect(engine) as opened, opened.refusals():
        return _search(opened, collection, queries, k, plan)


def _search(engine: Engine, collection: str, queries, k: int, plan: Plan | str | None):
    info = engine.collection(collection)
    where = f"collection {collection!r} on {engine.uri}"
    if info is None:
        raise InputError(f"there is no {where}")
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    if q.ndim != 2 or q.shape[1] != info.dim:
        raise InputError(f"queries have shape {q.shape}; {where} holds {info.dim}-d vectors")
    q = checked_rows(q, info.dim, "queries")
    check_k(k)
    plan = plan_or_default(plan, info.plan, info.plan_k, k)  # the recorded plan, like the local index's
    plan = parse_plan(plan) if isinstance(plan, str) else plan or FullPlan()
    stages = plan.stages(info.dim, k)
    validate_stages(stages, info.dim, k)
    export = f"mrl index export --index INDEX_DIR --to {engine.uri} --collection {collection}"
    check_prefixes(info, stages, where, export)
    scores, ids = engine.run_stages(collection, info, q, stages)  # no count first: it costs more than a search
    if ids.shape[1] == 0:
        raise InputError(f"{where} is empty")
    return scores, ids
