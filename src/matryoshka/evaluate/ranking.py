"""Ranking metrics in numpy alone, so that the index and the service can score results without loading torch.

Definitions (for a query with R relevant items and a ranked list of k results, rel_i = 1 when the i-th result is
relevant, P@i = relevant among the first i / i):

* mAP@k = mean over queries of (1 / min(k, R)) * sum_{i<=k} P@i * rel_i   (queries with R = 0 count as 0)
* P@k   = mean of (relevant among the first k) / k
* R@k   = mean of (relevant among the first k) / R                        (queries with R = 0 count as 0)
* top-1 = mean of rel_1
"""

from __future__ import annotations

from typing import Any

import numpy as np


def ranking_metrics(relevance: Any, num_relevant: Any) -> dict[str, float]:
    """mAP@k, P@k, R@k and top-1 from a (Q, k) 0/1 matrix of ranked results and each query's relevant count R
    (numpy arrays, or anything ``np.asarray`` takes, CPU tensors included)."""
    rel, r = np.asarray(relevance, dtype=np.float64), np.asarray(num_relevant, dtype=np.float64)
    if rel.ndim != 2 or r.shape != (rel.shape[0],):
        raise ValueError(f"expected relevance (Q, k) and num_relevant (Q,), got {rel.shape}, {r.shape}")
    if rel.shape[0] == 0 or rel.shape[1] == 0:
        raise ValueError("ranking metrics need at least one query and k >= 1")
    k = rel.shape[1]
    hits_at_i = rel.cumsum(1)
    precision_at_i = hits_at_i / np.arange(1, k + 1, dtype=np.float64)
    denom = np.minimum(r, k)
    ap = np.where(denom > 0, (precision_at_i * rel).sum(1) / np.maximum(denom, 1), 0.0)
    hits = hits_at_i[:, -1]
    recall = np.where(r > 0, hits / np.maximum(r, 1), 0.0)
    return {
        f"map@{k}": float(ap.mean()),
        f"p@{k}": float((hits / k).mean()),
        f"r@{k}": float(recall.mean()),
        "top1": float(rel[:, 0].mean()),
    }


def recall_against(ids: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` (exact results) found in the same row of ``ids``."""
    return float(np.mean([len(np.intersect1d(a, b)) / truth.shape[1] for a, b in zip(ids, truth, strict=True)]))


def class_ranking_metrics(ids: np.ndarray, index_labels: np.ndarray, query_labels: np.ndarray) -> dict[str, float]:
    """mAP@k / P@k / R@k / top-1 of result ids (positions into ``index_labels``) under same-class relevance."""
    counts = np.bincount(index_labels, minlength=int(max(index_labels.max(), query_labels.max())) + 1)
    return ranking_metrics(index_labels[ids] == query_labels[:, None], counts[query_labels])
