"""Export an index and its search plans to Qdrant, for corpora that outgrow one machine.

Qdrant's Query API runs prefetch-then-rescore natively: each named vector holds one prefix size (``dim16``,
``dim512``, ...) and a plan becomes nested ``Prefetch`` stages, the innermost over the smallest prefix.
The same code works against Qdrant's local (embedded) mode, a single server, or a cluster; see
docs/qdrant.md for running it on a cluster.

Example::

    from qdrant_client import QdrantClient
    from matryoshka.index.qdrant import export_index, search

    client = QdrantClient(":memory:")                    # or QdrantClient(url="http://qdrant:6333")
    export_index(index, client, "docs", dims=[16, 512])
    scores, ids = search(client, "docs", queries, k=10, plan=AdaptivePlan(16, 200, 512))
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np

from matryoshka.index.index import MatryoshkaIndex
from matryoshka.index.plans import FullPlan, Plan, validate_stages


def vector_name(dim: int) -> str:
    return f"dim{dim}"


def _models():
    try:
        from qdrant_client import models
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("Qdrant export needs qdrant-client: pip install 'matryoshka-mrl[qdrant]'") from e
    return models


def export_index(
    index: MatryoshkaIndex, client, collection: str, dims: Sequence[int] | None = None, batch_size: int = 1024
) -> None:
    """Create ``collection`` with one named cosine vector per prefix size in ``dims`` and upload every vector."""
    models = _models()
    dims = sorted(set(dims or [*index.shortlist_dims, index.dim]))
    for d in dims:
        if not 1 <= d <= index.dim:
            raise ValueError(f"prefix size {d} must be in [1, {index.dim}]")
    client.create_collection(
        collection,
        vectors_config={vector_name(d): models.VectorParams(size=d, distance=models.Distance.COSINE) for d in dims},
    )
    alive = index.alive_positions()
    ids = index.arrays().ids.tolist()  # Python ints and strings, as JSON takes them
    for start in range(0, len(alive), batch_size):
        pos = alive[start : start + batch_size]
        rows = index.vectors(pos)
        points = [
            models.PointStruct(
                id=point_id(ids[p]), vector={vector_name(d): rows[i, :d].tolist() for d in dims}, payload={"id": ids[p]}
            )
            for i, p in enumerate(pos.tolist())
        ]
        client.upsert(collection, points=points, wait=True)


def point_id(id_: int | str) -> int | str:
    """Qdrant takes unsigned integers or UUIDs as point ids: a string id becomes a UUID derived from it (and the
    original id travels in the point's payload)."""
    if isinstance(id_, str):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, id_))
    return int(id_)


def plan_query(plan: Plan, query: np.ndarray, k: int, dim: int) -> dict:
    """Keyword arguments of ``client.query_points`` that run ``plan`` for one query vector."""
    models = _models()
    stages = plan.stages(dim, k)
    validate_stages(stages, dim, k)
    prefetch = None
    for d, limit in stages[:-1]:
        prefetch = models.Prefetch(query=query[:d].tolist(), using=vector_name(d), limit=limit, prefetch=prefetch)
    d, limit = stages[-1]
    return {"query": query[:d].tolist(), "using": vector_name(d), "limit": limit, "prefetch": prefetch}


def search(
    client, collection: str, queries: np.ndarray, k: int = 10, plan: Plan | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (Q, k), from Qdrant; the plan's dims must have been exported."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    plan = plan or FullPlan()
    scores, ids = [], []
    for q in queries:
        res = client.query_points(collection, **plan_query(plan, q, k, queries.shape[1]), with_payload=["id"])
        ids.append([(p.payload or {}).get("id", p.id) for p in res.points])
        scores.append([p.score for p in res.points])
    kind = object if any(isinstance(i, str) for row in ids for i in row) else np.int64
    return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=kind)
