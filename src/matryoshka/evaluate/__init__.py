"""Per-dim evaluation: metrics, linear probes, the paper's post-hoc baselines.

The names load on first use: ``matryoshka.evaluate.ranking`` (numpy only) is importable without torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "LinearProbe": "matryoshka.evaluate.probe",
    "SVDProjection": "matryoshka.evaluate.baselines",
    "random_features": "matryoshka.evaluate.baselines",
    "accuracy": "matryoshka.evaluate.metrics",
    "class_retrieval_metrics": "matryoshka.evaluate.metrics",
    "knn_search": "matryoshka.evaluate.metrics",
    "reciprocal_ranks": "matryoshka.evaluate.metrics",
    "ranking_metrics": "matryoshka.evaluate.ranking",
    "recall_against": "matryoshka.evaluate.ranking",
    "class_ranking_metrics": "matryoshka.evaluate.ranking",
    "evaluate_views": "matryoshka.evaluate.per_dim",
    "evaluate_embeddings": "matryoshka.evaluate.per_dim",
    "evaluate_model": "matryoshka.evaluate.per_dim",
    "prefix_view": "matryoshka.evaluate.per_dim",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'matryoshka.evaluate' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
