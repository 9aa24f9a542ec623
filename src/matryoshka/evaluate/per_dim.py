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
from typing import TYPE_CHECKING

import numpy as np
import torch

from matryoshka.errors import InputError
from matryoshka.evaluate.metrics import accuracy, class_retrieval_metrics
from matryoshka.evaluate.probe import LinearProbe
from matryoshka.nesting import NestingError, nesting_list, validate_nesting
from matryoshka.truncate import truncate

if TYPE_CHECKING:
    from matryoshka.data import ImageData
    from matryoshka.nn.model import MatryoshkaClassifier

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


def select_dims(requested: Sequence[int] | None, default: Sequence[int], width: int) -> list[int]:
    """The dims to evaluate: ``requested`` (strictly increasing, at most ``width``) or else ``default``."""
    if not requested:
        return list(default)
    dims = validate_nesting(requested)
    if dims[-1] > width:
        raise NestingError(f"dim {dims[-1]} is larger than the embeddings' {width}")
    return dims


def _label_ids(train_y: np.ndarray, test_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if train_y.dtype.kind in "iub" and test_y.dtype.kind in "iub":
        return train_y, test_y
    if train_y.dtype.kind == "O" or test_y.dtype.kind == "O":
        raise InputError("labels must be numbers or strings saved as a plain .npy array, not Python objects")
    both = np.concatenate([train_y.astype(str), test_y.astype(str)]) if train_y.dtype != test_y.dtype else None
    joined = both if both is not None else np.concatenate([train_y, test_y])
    _, ids = np.unique(joined, return_inverse=True)
    return ids[: len(train_y)], ids[len(train_y) :]


def labelled_embeddings(
    train_z: np.ndarray | torch.Tensor,
    train_y: np.ndarray | torch.Tensor,
    test_z: np.ndarray | torch.Tensor,
    test_y: np.ndarray | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checked (float32 embeddings, int64 labels) tensors for train and test: 2-D embeddings of equal widths, one
    label per row, finite values; anything else is an :class:`InputError`. Labels that are not integers (strings,
    say) are mapped to ids, the same for both sets."""
    train_y, test_y = _label_ids(np.asarray(train_y), np.asarray(test_y))
    train_z, train_y, test_z, test_y = (
        torch.as_tensor(np.ascontiguousarray(a)) for a in (train_z, train_y, test_z, test_y)
    )
    if train_z.ndim != 2 or test_z.ndim != 2 or train_z.shape[1] != test_z.shape[1]:
        raise InputError(
            f"embeddings must be 2-D with equal widths, got {tuple(train_z.shape)} and {tuple(test_z.shape)}"
        )
    if train_y.shape != (len(train_z),) or test_y.shape != (len(test_z),):
        raise InputError("each embeddings file needs exactly one label per row")
    if not (torch.isfinite(train_z).all() and torch.isfinite(test_z).all()):
        raise InputError("embeddings contain NaN or inf")
    return train_z.float(), train_y.long(), test_z.float(), test_y.long()


def evaluate_embeddings(
    train_z: np.ndarray | torch.Tensor,
    train_y: np.ndarray | torch.Tensor,
    test_z: np.ndarray | torch.Tensor,
    test_y: np.ndarray | torch.Tensor,
    dims: Sequence[int] | None = None,
    k: int = 10,
    max_queries: int | None = None,
) -> dict[str, object]:
    """:func:`evaluate_views` of the prefixes of any labelled embeddings; ``dims`` default to ``nesting_list(d)``.
    Returns ``{"dims": [...], "probe": ..., "knn1": ..., "retrieval": ...}``.

    Example::

        import numpy as np
        from matryoshka import evaluate_embeddings

        rng = np.random.default_rng(0)
        train_z, test_z = rng.standard_normal((500, 32)), rng.standard_normal((100, 32))
        train_y, test_y = rng.integers(0, 5, 500), rng.integers(0, 5, 100)
        results = evaluate_embeddings(train_z, train_y, test_z, test_y, dims=[8, 32])
        print(results["knn1"]["8"], results["retrieval"]["32"]["map@10"])
    """
    train_z, train_y, test_z, test_y = labelled_embeddings(train_z, train_y, test_z, test_y)
    width = train_z.shape[1]
    chosen = select_dims(dims, nesting_list(width), width)
    results = evaluate_views(prefix_view(train_z, test_z), chosen, train_y, test_y, k=k, max_queries=max_queries)
    return {"dims": chosen, **results}


def evaluate_model(
    model: MatryoshkaClassifier,
    data: ImageData,
    dims: Sequence[int] | None = None,
    k: int = 10,
    max_queries: int | None = None,
) -> dict[str, object]:
    """Like :func:`evaluate_embeddings` on a trained model's train (database) and test (query) embeddings, plus the
    test accuracy of its own head at each dim (``"head"``); ``dims`` default to the model's nesting list."""
    from matryoshka.inference import encode_and_classify

    train_z, _ = encode_and_classify(model, data.train.x, with_logits=False)
    test_z, logits = encode_and_classify(model, data.test.x)
    chosen = select_dims(dims, model.nesting, train_z.shape[1])
    results = evaluate_views(
        prefix_view(train_z, test_z), chosen, data.train.y, data.test.y, k=k, max_queries=max_queries
    )
    heads = {m: accuracy(lg, data.test.y) for m, lg in zip(model.nesting, logits, strict=True) if m in chosen}
    return {"dims": chosen, **results, "head": {str(m): a for m, a in heads.items()}}
