"""Per-dim evaluation: metrics, linear probes, the paper's post-hoc baselines."""

from matryoshka.evaluate.baselines import SVDProjection, random_features
from matryoshka.evaluate.metrics import accuracy, class_retrieval_metrics, knn_search, ranking_metrics, reciprocal_ranks
from matryoshka.evaluate.per_dim import evaluate_views, prefix_view
from matryoshka.evaluate.probe import LinearProbe

__all__ = [
    "LinearProbe",
    "SVDProjection",
    "accuracy",
    "class_retrieval_metrics",
    "evaluate_views",
    "knn_search",
    "prefix_view",
    "random_features",
    "ranking_metrics",
    "reciprocal_ranks",
]
