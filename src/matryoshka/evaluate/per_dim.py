"""Evaluate a representation at every nesting dim: linear probe, 1-NN, and same-class retrieval metrics.

A *view* maps a dim m to (train features, test features) of that size: the prefix z[:, :m] of a Matryoshka
embedding, an SVD projection, the first m features of an FF model, and so on. Every method is then measured
by the same code.

Example::

    from matryoshka.evaluate import evaluate_views, prefix_view
    results = evaluate_views(prefix_view(train_z, test_z), [8, 16, 32], train_y, test_y)
    results["knn1"]["8"], results["retrieval"]["8"]["map@10"], results["probe"]["8"]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from matryoshka.errors import InputError
from matryoshka.evaluate.metrics import class_retrieval_metrics
from matryoshka.evaluate.probe import LinearProbe
from matryoshka.truncate import truncate

View = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def prefix_view(train_z: torch.Tensor, test_z: torch.Tensor) -> View:
    """The first m features of each embedding."""
    if train_z.ndim != 2 or test_z.ndim != 2 or train_z.shape[1] != test_z.shape[1]:
        raise InputError(f"train {tuple(train_z.shape)} and test {tuple(test_z.shape)} embeddings must be (n, d) alike")
    return lambda m: (train_z[:, :m], test_z[:, :m])


def evaluate_views(
    view: View,
    dims: Sequence[int],
    train_y: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 10,
    probe: bool = True,
    probe_iters: int = 100,
    knn: bool = True,
    max_queries: int | None = None,
    seed: int = 0,
    on_dim: Callable[[int], None] | None = None,
) -> dict[str, dict[str, object]]:
    """Probe accuracy, 1-NN accuracy and retrieval metrics (mAP@k, P@k, R@k) per dim.

    1-NN and retrieval search the training set with cosine similarity on re-normalised features; queries
    are the test set, or a seeded subset of ``max_queries`` of it.
    """
    if len(test_y) == 0 or len(train_y) == 0:
        raise InputError("evaluation needs non-empty train and test sets")
    queries = torch.arange(len(test_y))
    if max_queries is not None and max_queries < len(test_y):
        queries = torch.randperm(len(test_y), generator=torch.Generator().manual_seed(seed))[:max_queries]
    results: dict[str, dict[str, object]] = {"probe": {}, "knn1": {}, "retrieval": {}}
    for m in dims:
        train_f, test_f = view(m)
        if train_f.shape != (len(train_y), m) or test_f.shape != (len(test_y), m):
            raise ValueError(f"view at dim {m} gave {tuple(train_f.shape)} / {tuple(test_f.shape)}")
        if knn:
            metrics = class_retrieval_metrics(
                truncate(test_f[queries].float(), m), test_y[queries], truncate(train_f.float(), m), train_y, k=k
            )
            results["knn1"][str(m)] = metrics.pop("top1")
            results["retrieval"][str(m)] = metrics
        if probe:
            results["probe"][str(m)] = LinearProbe(max_iter=probe_iters).fit(train_f, train_y).score(test_f, test_y)
        if on_dim is not None:
            on_dim(m)
    return results
