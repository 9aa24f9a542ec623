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

import numpy as np
import torch

from matryoshka.errors import InputError


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of (N, C) logits against (N,) labels."""
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"expected logits (N, C) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if len(labels) == 0:
        raise ValueError("cannot compute accuracy on an empty set")
    return (logits.argmax(1) == labels).float().mean().item()


def ranking_metrics(relevance: torch.Tensor, num_relevant: torch.Tensor) -> dict[str, float]:
    """mAP@k, P@k, R@k and top-1 from a (Q, k) 0/1 matrix of ranked results and each query's relevant count R."""
    if relevance.ndim != 2 or num_relevant.shape != (relevance.shape[0],):
        raise ValueError(
            f"expected relevance (Q, k) and num_relevant (Q,), got {relevance.shape}, {num_relevant.shape}"
        )
    if relevance.shape[0] == 0 or relevance.shape[1] == 0:
        raise ValueError("ranking metrics need at least one query and k >= 1")
    rel = relevance.double()
    k = rel.shape[1]
    r = num_relevant.double()
    hits_at_i = rel.cumsum(1)
    precision_at_i = hits_at_i / torch.arange(1, k + 1, dtype=torch.float64)
    denom = torch.clamp(r, max=k)
    ap = torch.where(denom > 0, (precision_at_i * rel).sum(1) / denom.clamp(min=1), torch.zeros_like(r))
    hits = hits_at_i[:, -1]
    recall = torch.where(r > 0, hits / r.clamp(min=1), torch.zeros_like(r))
    return {
        f"map@{k}": ap.mean().item(),
        f"p@{k}": (hits / k).mean().item(),
        f"r@{k}": recall.mean().item(),
        "top1": rel[:, 0].mean().item(),
    }


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


def recall_against(ids: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` (exact results) found in the same row of ``ids``."""
    return float(np.mean([len(np.intersect1d(a, b)) / truth.shape[1] for a, b in zip(ids, truth, strict=True)]))


def class_ranking_metrics(ids: np.ndarray, index_labels: np.ndarray, query_labels: np.ndarray) -> dict[str, float]:
    """mAP@k / P@k / R@k / top-1 of result ids (positions into ``index_labels``) under same-class relevance."""
    counts = np.bincount(index_labels, minlength=int(max(index_labels.max(), query_labels.max())) + 1)
    relevance = torch.from_numpy(index_labels[ids] == query_labels[:, None])
    return ranking_metrics(relevance, torch.from_numpy(counts[query_labels]))
