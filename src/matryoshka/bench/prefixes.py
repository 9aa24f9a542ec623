"""Prefix fidelity: the shortlist K an exact D-dim prefix scan needs so that a full-dim re-rank keeps recall@10
0.95 / 0.99 of exact search (what an adaptive search pays for), shared by ``mrl bench retrieval`` and ``mrl bench
fidelity``."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from matryoshka.bench.retrieval_report import verdict
from matryoshka.evaluate.ranking import recall_against
from matryoshka.index.basis import fit_basis
from matryoshka.index.storage import normalize

K = 10


FIDELITY_GOAL = 30  # the K an exact d/4-dim shortlist may need for recall@10 0.95 after the full-dim re-rank


def fidelity_goal(ceiling: dict[str, Any], d: int) -> None:
    need = ceiling["k_needed"].get(str(d // 4), {}).get("0.95")
    shown = need if need is not None else "more than any K swept"
    ok = need is not None and need <= FIDELITY_GOAL
    print(f"K for 0.95 at d/4 = {d // 4} dims, rotated: {shown} (goal <= {FIDELITY_GOAL}: {verdict(ok)})")


def prefix_ceiling(
    x: np.ndarray,
    q: np.ndarray,
    exact: tuple[np.ndarray, np.ndarray],
    shortlists=(10, 20, 50, 100, 200, 400, 800, 1600),
    targets=(0.95, 0.99),
) -> dict[str, Any]:
    """How faithful the prefixes are (what decides the cost of a prefix shortlist): recall@10 of an exact D-dim
    shortlist of K re-ranked exactly at the full dim (no index involved), the smallest K that reaches each target,
    and the median cosine gap between each query's 10th and 11th neighbour. ``x`` and ``q`` are unit vectors;
    ``exact`` is their exact top-11 (scores, positions)."""
    full_scores, truth = exact
    d_full = x.shape[1]
    dims = sorted({d_full // f for f in (32, 16, 8, 4, 2) if d_full // f >= 8})
    table: dict[str, dict[str, float]] = {}
    needed: dict[str, dict[str, int | None]] = {}
    for d in dims:
        _, cand = faiss.knn(
            normalize(q[:, :d]), normalize(x[:, :d]), max(shortlists), metric=faiss.METRIC_INNER_PRODUCT
        )
        table[str(d)] = {}
        for shortlist in shortlists:
            c = cand[:, :shortlist]
            scores = np.concatenate(
                [np.einsum("qkd,qd->qk", x[c[i : i + 50]], q[i : i + 50]) for i in range(0, len(q), 50)]
            )
            top = np.take_along_axis(c, np.argsort(-scores, axis=1)[:, :K], 1)
            table[str(d)][str(shortlist)] = recall_against(top, truth[:, :K])
        row = table[str(d)]
        needed[str(d)] = {str(t): next((int(k) for k, r in row.items() if r >= t), None) for t in targets}
    gap = float(np.median(full_scores[:, K - 1] - full_scores[:, K]))
    print(
        f"\nprefix fidelity: exact D-dim shortlist of K, re-ranked at {d_full} dims: recall@10 "
        f"(median gap 10th-11th: {gap:.1e})"
    )
    head = "".join(f"{'K=' + str(k):>8}" for k in shortlists)
    print(f"{'D':>6}{head}" + "".join(f"{'K for ' + str(t):>11}" for t in targets))
    for d, row in table.items():
        ks = "".join(f"{needed[d][str(t)] or '>' + str(max(shortlists)):>11}" for t in targets)
        print(f"{d:>6}" + "".join(f"{v:>8.4f}" for v in row.values()) + ks)
    return {"recall": table, "k_needed": needed, "median_gap_10_11": gap}


def rotated_ceiling(x: np.ndarray, q: np.ndarray, exact: tuple[np.ndarray, np.ndarray], **options) -> dict[str, Any]:
    """:func:`prefix_ceiling` of the same vectors in their corpus's basis (fitted on ``x`` alone: the queries are
    held out), what an index with rotated prefixes shortlists by; full-dim scores, and so ``exact``, are unchanged."""
    basis = fit_basis(x)
    print("\nthe same, rotated prefixes (the first coordinates in the corpus's basis)")
    return prefix_ceiling(x @ basis, q @ basis, exact, **options)
