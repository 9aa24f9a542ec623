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


# The options of the table, cheapest first: no transform; one matrix (PCA also subtracts a mean); a matrix and an MLP.
COST_TIERS = (("raw",), ("PCA", "SVD"), ("adaptor",))
OPTION_NAMES = {"raw": "plain truncation", "PCA": "PCA", "SVD": "SVD", "adaptor": "the adaptor"}


def recommended_at(recall: dict[str, dict[int, float]], m: int, margin: float = 0.01) -> str:
    """The cheapest option (:data:`COST_TIERS`; within a tier the higher recall) whose recall at ``m`` dims is within
    ``margin`` of the best option's there. Methods the tiers do not name count as the dearest."""
    scored = {name: r[m] for name, r in recall.items() if m in r}
    best = max(scored.values())
    named = {name for tier in COST_TIERS for name in tier}
    for tier in (*COST_TIERS, tuple(sorted(set(scored) - named))):
        close = [name for name in tier if name in scored and scored[name] >= best - margin]
        if close:
            return max(close, key=scored.get)
    raise AssertionError("the best option is within any margin of itself")


def recommendation(recall: dict[str, dict[int, float]], dims: Sequence[int], margin: float = 0.01) -> str:
    """What to use at each prefix below the full dim: the cheapest option within ``margin`` (one point) of the
    best recall there, compared with the best baseline rather than PCA alone (the adaptor starts from SVD, so
    much of its gain over PCA is SVD's). One line per choice, naming its dims."""
    small = [m for m in dims if m < max(dims) and len([r for r in recall.values() if m in r]) > 1]
    if not small:
        return "no prefix below the full dim to compare the options at"
    chosen: dict[str, list[int]] = {}
    for m in small:
        chosen.setdefault(recommended_at(recall, m, margin), []).append(m)
    lines = [
        f"recommended, the cheapest option within {100 * margin:.0f} point of the best recall@10 at each dim "
        "(plain truncation, then PCA or SVD: one matrix, then the adaptor):"
    ]
    for name, at in chosen.items():
        lines.append(f"  {OPTION_NAMES.get(name, name)} at {', '.join(map(str, at))} dims")
    if "adaptor" in recall and "adaptor" not in chosen:
        lines.append("  the adaptor is not needed here: it is never more than a point above the best baseline")
    return "\n".join(lines)
