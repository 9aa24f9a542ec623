"""Persisted retrieval over Matryoshka embeddings: adaptive and funnel search plans."""

from matryoshka.index.index import CorruptIndexError, IndexError_, MatryoshkaIndex
from matryoshka.index.plans import AdaptivePlan, FullPlan, FunnelPlan, parse_plan

__all__ = [
    "AdaptivePlan",
    "CorruptIndexError",
    "FullPlan",
    "FunnelPlan",
    "IndexError_",
    "MatryoshkaIndex",
    "parse_plan",
]
