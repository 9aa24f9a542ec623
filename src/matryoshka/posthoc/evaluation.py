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
from typing import Any

import numpy as np

from matryoshka.errors import InputError
from matryoshka.evaluate.neighbours import adaptor_comparison_methods, prefix_neighbour_recall
from matryoshka.posthoc.adaptor import MatryoshkaAdaptor

MIN_ROWS = 50


@dataclass
class AdaptorComparison:
    adaptor: MatryoshkaAdaptor
    recall: dict[str, dict[int, float]]  # method -> dim -> recall@k of the queries' full-dim neighbours
    corpus: int  # rows the adaptor was fitted on (and the queries searched)
    queries: int  # query rows (held out from the corpus)
    fit_seconds: float

    def recall_json(self) -> dict[str, dict[str, float]]:
        """``recall`` with string dims, as written to JSON."""
        return {name: {str(m): v for m, v in r.items()} for name, r in self.recall.items()}


def holdout_split(x: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(``n`` seeded random rows of ``x``, the other rows)."""
    perm = np.random.default_rng(seed).permutation(len(x))
    return x[perm[:n]], x[perm[n:]]


def fit_and_score(
    corpus: np.ndarray,
    queries: np.ndarray,
    nesting: Sequence[int] | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    steps: int = 2000,
    batch_size: int = 1024,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    k: int = 10,
    loss: str = "similarity",
    target_dims: Sequence[int] | None = None,
    baselines: bool = True,
) -> AdaptorComparison:
    """Fit a :class:`MatryoshkaAdaptor` (its ``loss``) on ``corpus`` (plus optional (query, document) ``pairs``), then
    score raw truncation, PCA and SVD (unless ``baselines=False``) and the adaptor on ``queries`` at each of the
    adaptor's nesting dims. ``target_dims``: the dims its kept state is chosen on (see :class:`MatryoshkaAdaptor`)."""
    t0 = time.perf_counter()
    adaptor = MatryoshkaAdaptor(
        nesting,
        steps=steps,
        batch_size=batch_size,
        loss=loss,
        target_dims=target_dims,
        seed=seed,
        device=device,
        progress=progress,
    ).fit(corpus, pairs)
    fit_seconds = time.perf_counter() - t0
    methods = adaptor_comparison_methods(corpus, adaptor, baselines)
    recall = prefix_neighbour_recall(corpus, queries, methods, adaptor.nesting_, k)
    return AdaptorComparison(adaptor, recall, len(corpus), len(queries), fit_seconds)


def fit_and_compare(
    embeddings: np.ndarray, queries: int = 2000, corpus: int | None = None, seed: int = 0, **options: Any
) -> AdaptorComparison:
    """:func:`fit_and_score` on one set of embeddings: ``queries`` random rows (at most a fifth) are held out as the
    queries, the others (their first ``corpus`` rows when given) are the corpus; ``options`` as for fit_and_score."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) < MIN_ROWS:
        raise InputError(f"embeddings must be a 2-D (N, d) array with at least {MIN_ROWS} rows, got shape {x.shape}")
    held, rest = holdout_split(x, min(queries, len(x) // 5), seed)
    return fit_and_score(rest[:corpus] if corpus else rest, held, seed=seed, **options)


def recall_table(recall: dict[str, dict[int, float]], dims: Sequence[int]) -> list[str]:
    """A header and one line per dim: the recall of each method, in columns."""
    widths = [max(16, len(name) + 2) for name in recall]
    lines = [f"{'dim':>6}" + "".join(f"{name:>{w}}" for name, w in zip(recall, widths, strict=True))]
    lines += [
        f"{m:>6}" + "".join(f"{r[m]:>{w}.3f}" for r, w in zip(recall.values(), widths, strict=True)) for m in dims
    ]
    return lines


def recommendation(recall: dict[str, dict[int, float]], dims: Sequence[int], margin: float = 0.02) -> str:
    """Whether the adaptor earns its place over PCA on these embeddings: it must beat PCA's recall by ``margin``
    at some prefix below the full dim, else PCA (one rotation, nothing to train) is as good."""
    small = [m for m in dims if m < max(dims) and m in recall.get("PCA", {}) and m in recall.get("adaptor", {})]
    if not small:
        return "no prefix below the full dim to compare the adaptor with PCA"
    gains = {m: recall["adaptor"][m] - recall["PCA"][m] for m in small}
    best = max(gains, key=gains.get)
    if gains[best] >= margin:
        return f"the adaptor beats PCA by {100 * gains[best]:+.1f} points of recall@10 at {best} dims: use the adaptor"
    return (
        f"PCA is as good here: the adaptor gains at most {100 * gains[best]:+.1f} points of recall@10 over it (at "
        f"{best} dims, less than {100 * margin:.0f}); a PCA rotation of these embeddings is simpler, with no training"
    )
