"""Score a post-hoc adaptor the honest way: fit it on part of the embeddings, then measure on held-out rows how many of
their exact full-dim neighbours each prefix finds, beside raw truncation, PCA and SVD (``mrl adapt fit``,
``mrl bench adaptor``).

Example::

    from matryoshka.posthoc.evaluation import fit_and_compare, recall_table
    comparison = fit_and_compare(embeddings, queries=2000, steps=500)
    print("\\n".join(recall_table(comparison.recall, comparison.adaptor.nesting_)))
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from matryoshka.errors import InputError
from matryoshka.evaluate.neighbours import adaptor_comparison_methods, prefix_neighbour_recall
from matryoshka.posthoc.adaptor import MatryoshkaAdaptor

MIN_ROWS = 50


@dataclass
class AdaptorComparison:
    adaptor: MatryoshkaAdaptor
    recall: dict[str, dict[int, float]]  # method -> dim -> recall@k of the held-out rows' full-dim neighbours
    corpus: int  # rows the adaptor was fitted on (and the held-out rows searched)
    queries: int  # held-out rows
    fit_seconds: float


def holdout_split(x: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(``n`` seeded random rows of ``x``, the other rows)."""
    perm = np.random.default_rng(seed).permutation(len(x))
    return x[perm[:n]], x[perm[n:]]


def fit_and_compare(
    embeddings: np.ndarray,
    queries: int = 2000,
    corpus: int | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    nesting: Sequence[int] | None = None,
    steps: int = 2000,
    batch_size: int = 1024,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    k: int = 10,
) -> AdaptorComparison:
    """Hold out ``queries`` random rows (at most a fifth), fit a :class:`MatryoshkaAdaptor` on the others (their
    first ``corpus`` rows when given; plus optional (query, document) ``pairs``), and score raw truncation, PCA, SVD
    and the adaptor at each of the adaptor's nesting dims."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) < MIN_ROWS:
        raise InputError(f"embeddings must be a 2-D (N, d) array with at least {MIN_ROWS} rows, got shape {x.shape}")
    held, rest = holdout_split(x, min(queries, len(x) // 5), seed)
    rest = rest[:corpus] if corpus else rest
    t0 = time.perf_counter()
    adaptor = MatryoshkaAdaptor(
        nesting, steps=steps, batch_size=batch_size, seed=seed, device=device, progress=progress
    ).fit(rest, pairs)
    fit_seconds = time.perf_counter() - t0
    methods = adaptor_comparison_methods(rest, adaptor)
    recall = prefix_neighbour_recall(rest, held, methods, adaptor.nesting_, k)
    return AdaptorComparison(adaptor, recall, len(rest), len(held), fit_seconds)


def recall_table(recall: dict[str, dict[int, float]], dims: Sequence[int]) -> list[str]:
    """A header and one line per dim: the recall of each method, in columns."""
    lines = [f"{'dim':>6}" + "".join(f"{name:>16}" for name in recall)]
    lines += [f"{m:>6}" + "".join(f"{r[m]:>16.3f}" for r in recall.values()) for m in dims]
    return lines
