"""Persisted retrieval over Matryoshka embeddings: adaptive and funnel search plans."""

from matryoshka.index.index import CorruptIndexError, IndexInputError, MatryoshkaIndex
from matryoshka.index.plans import AdaptivePlan, FullPlan, FunnelPlan, parse_plan

__all__ = [
    "AdaptivePlan",
    "CorruptIndexError",
    "FullPlan",
    "FunnelPlan",
    "IndexInputError",
    "MatryoshkaIndex",
    "parse_plan",
]
