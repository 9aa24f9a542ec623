"""How well a prefix keeps the full-dim neighbourhoods: recall@k of the exact full-dim cosine neighbours.

Used to compare ways of making existing embeddings Matryoshka (raw truncation, PCA, SVD, the learned adaptor): each
method maps the corpus and the queries to a ranked basis; at every dim m the first m coordinates are searched exactly
(cosine) and compared with the full-dim top-k of the original vectors.

Example::

    from matryoshka.evaluate.neighbours import prefix_neighbour_recall, svd_basis
    recalls = prefix_neighbour_recall(corpus, queries, {"raw": lambda x: x, **svd_basis(corpus)}, dims=[8, 16, 50])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import faiss
import numpy as np

from matryoshka.errors import InputError
from matryoshka.evaluate.ranking import recall_against
from matryoshka.normalize import normalize

Transform = Callable[[np.ndarray], np.ndarray]


def cosine_neighbours(corpus: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Indices (Q, k) of each query's exact top-k corpus rows by cosine similarity."""
    return faiss.knn(normalize(queries), normalize(corpus), k, metric=faiss.METRIC_INNER_PRODUCT)[1]


def svd_basis(corpus: np.ndarray, sample: int = 100_000) -> dict[str, Transform]:
    """PCA (centred) and SVD (uncentred) projections fitted on (a sample of) the corpus, largest component first."""
    rows = corpus[:sample].astype(np.float64)
    mean = rows.mean(0)
    _, _, pca = np.linalg.svd(rows - mean, full_matrices=False)
    _, _, svd = np.linalg.svd(rows, full_matrices=False)
    pca, svd, mean = pca.astype(np.float32), svd.astype(np.float32), mean.astype(np.float32)
    return {"PCA": lambda x: (x - mean) @ pca.T, "SVD": lambda x: x @ svd.T}


def adaptor_comparison_methods(corpus: np.ndarray, adaptor: Any, baselines: bool = True) -> dict[str, Transform]:
    """The usual line-up for a fitted ``MatryoshkaAdaptor``: raw truncation, PCA and SVD of ``corpus`` (unless
    ``baselines=False``), the adaptor."""
    adapted: dict[str, Transform] = {"adaptor": lambda e: adaptor.transform(e, normalize=False)}
    return {"raw": lambda e: e, **svd_basis(corpus), **adapted} if baselines else adapted


def prefix_neighbour_recall(
    corpus: np.ndarray,
    queries: np.ndarray,
    methods: dict[str, Transform],
    dims: Sequence[int],
    k: int = 10,
) -> dict[str, dict[int, float]]:
    """recall@k of the full-dim neighbours, per method and prefix dim."""
    if corpus.ndim != 2 or queries.ndim != 2 or corpus.shape[1] != queries.shape[1]:
        raise InputError(f"corpus {corpus.shape} and queries {queries.shape} must be (n, d) arrays of the same d")
    truth = cosine_neighbours(corpus, queries, k)
    out: dict[str, dict[int, float]] = {}
    for name, transform in methods.items():
        mapped_corpus, mapped_queries = transform(corpus), transform(queries)
        out[name] = {
            m: recall_against(cosine_neighbours(mapped_corpus[:, :m], mapped_queries[:, :m], k), truth) for m in dims
        }
    return out
