"""Retrieval and classification metrics, defined exactly.

For a query with R relevant items in the database and a ranked list of k results, with rel_i = 1 when the
i-th result is relevant and P@i = (relevant among the first i) / i:

* mAP@k = mean over queries of (1 / min(k, R)) * sum_{i<=k} P@i * rel_i   (queries with R = 0 count as 0)
* P@k   = mean of (relevant among the first k) / k
* R@k   = mean of (relevant among the first k) / R                        (queries with R = 0 count as 0)
* top-1 = mean of rel_1 (1-NN accuracy under same-class relevance)
* MRR   = mean of 1 / (rank of the first relevant item in the whole database)  (no cut-off; ties rank pessimistically)

The official notebooks divide AP by k and hard-code the recall denominator; these do not.
"""

from __future__ import annotations

import torch

from matryoshka.errors import InputError
from matryoshka.evaluate.ranking import class_ranking_metrics, ranking_metrics, recall_against

__all__ = [
    "accuracy",
    "class_ranking_metrics",
    "class_retrieval_metrics",
    "knn_search",
    "ranking_metrics",
    "recall_against",
    "reciprocal_ranks",
]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of (N, C) logits against (N,) labels."""
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"expected logits (N, C) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if len(labels) == 0:
        raise ValueError("cannot compute accuracy on an empty set")
    return (logits.argmax(1) == labels).float().mean().item()


@torch.no_grad()
def knn_search(
    queries: torch.Tensor, database: torch.Tensor, k: int, batch_size: int = 1024, exclude_self: bool = False
) -> torch.Tensor:
    """Indices (Q, k) of the k largest inner products, exact, computed in query batches.

    ``exclude_self`` drops database item i from query i's list (queries and database are the same set).
    """
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise ValueError(f"queries {tuple(queries.shape)} and database {tuple(database.shape)} must be (n, d) alike")
    if not 1 <= k <= database.shape[0] - int(exclude_self):
        raise InputError(f"k={k} must be in [1, {database.shape[0] - int(exclude_self)}]")
    out = []
    for start in range(0, len(queries), batch_size):
        scores = queries[start : start + batch_size] @ database.T
        if exclude_self:
            rows = torch.arange(scores.shape[0])
            scores[rows, rows + start] = float("-inf")
        out.append(scores.topk(k, dim=1).indices)
    return torch.cat(out)


def class_retrieval_metrics(
    query_z: torch.Tensor,
    query_y: torch.Tensor,
    db_z: torch.Tensor,
    db_y: torch.Tensor,
    k: int = 10,
    exclude_self: bool = False,
) -> dict[str, float]:
    """Same-class retrieval metrics of (already normalised) query embeddings against a labelled database."""
    idx = knn_search(query_z, db_z, k, exclude_self=exclude_self)
    relevance = db_y[idx] == query_y[:, None]
    counts = torch.bincount(db_y, minlength=int(max(db_y.max(), query_y.max())) + 1)
    num_relevant = counts[query_y] - int(exclude_self)
    return ranking_metrics(relevance, num_relevant)


@torch.no_grad()
def reciprocal_ranks(
    queries: torch.Tensor, database: torch.Tensor, relevant: list[list[int]], batch_size: int = 1024
) -> torch.Tensor:
    """1 / rank of each query's best-ranked relevant item among all database items (inner product scores).

    The rank counts every item scoring at least as high as the best relevant one, so ties never flatter a query.
    Returns a (Q,) float64 tensor; its mean is the MRR.
    """
    if len(relevant) != len(queries):
        raise ValueError(f"got {len(relevant)} relevance lists for {len(queries)} queries")
    if any(not r for r in relevant):
        raise ValueError("every query needs at least one relevant item for MRR")
    out = []
    for start in range(0, len(queries), batch_size):
        scores = queries[start : start + batch_size] @ database.T
        best = torch.stack(
            [scores[i, relevant[start + i]].max() for i in range(scores.shape[0])]
        )  # best relevant score per query
        ranks = (scores >= best[:, None]).sum(1)
        out.append(1.0 / ranks.double())
    return torch.cat(out)
