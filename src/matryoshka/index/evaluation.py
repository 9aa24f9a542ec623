"""Score search plans on labelled embeddings: mAP@k / P@k / R@k (same-class relevance), recall against exact
full-dim search, and wall time."""

from __future__ import annotations

import time

import numpy as np

from matryoshka.evaluate.ranking import class_ranking_metrics, recall_against
from matryoshka.index.index import MatryoshkaIndex
from matryoshka.index.plans import FullPlan, Plan, plan_to_text


def evaluate_plans(
    index: MatryoshkaIndex,
    queries: np.ndarray,
    query_labels: np.ndarray,
    index_labels: np.ndarray,
    plans: list[Plan],
    k: int = 10,
) -> list[dict]:
    """One row per plan; ``index_labels[i]`` is the label of the i-th vector added (ids 0..N-1)."""
    truth = index.search(queries, k, FullPlan())[1]
    rows = []
    for plan in plans:
        t0 = time.perf_counter()
        _, ids = index.search(queries, k, plan)
        seconds = time.perf_counter() - t0
        metrics = class_ranking_metrics(ids, index_labels, query_labels)
        rows.append(
            {"plan": plan_to_text(plan), **metrics, "recall_vs_exact": recall_against(ids, truth), "seconds": seconds}
        )
    return rows
