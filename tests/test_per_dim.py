"""Per-dim evaluation of any labelled embeddings or of a trained model (what `mrl eval` runs)."""

import numpy as np
import pytest
import torch

from matryoshka.errors import InputError
from matryoshka.evaluate.per_dim import evaluate_embeddings, evaluate_model, labelled_embeddings, select_dims
from matryoshka.nesting import NestingError
from matryoshka.nn.model import build_classifier


def _clusters(n, d=16, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return (np.eye(3, d)[y] * 4 + rng.standard_normal((n, d))).astype(np.float64), y.astype(np.int32)


def test_select_dims():
    assert select_dims(None, [8, 16], 16) == [8, 16]
    assert select_dims([4, 12], [8, 16], 16) == [4, 12]
    with pytest.raises(NestingError, match="unsorted"):
        select_dims([12, 4], [8, 16], 16)
    with pytest.raises(NestingError, match="larger than the embeddings' 16"):
        select_dims([8, 32], [8, 16], 16)


def test_labelled_embeddings_checks_and_converts():
    z, y = _clusters(20)
    train_z, train_y, test_z, test_y = labelled_embeddings(z, y, z[:5], y[:5])
    assert train_z.dtype == test_z.dtype == torch.float32 and train_y.dtype == test_y.dtype == torch.int64
    with pytest.raises(InputError, match="equal widths"):
        labelled_embeddings(z, y, z[:5, :10], y[:5])
    with pytest.raises(InputError, match="one label per row"):
        labelled_embeddings(z, y[:-1], z, y)
    bad = z.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        labelled_embeddings(bad, y, z, y)


def test_evaluate_embeddings_defaults_to_the_nesting_list_of_the_width():
    z, y = _clusters(300)
    res = evaluate_embeddings(z[:200], y[:200], z[200:], y[200:], k=5)
    assert res["dims"] == [8, 16] and set(res) == {"dims", "probe", "knn1", "retrieval"}
    assert res["knn1"]["16"] > 0.9 and 0 < res["retrieval"]["8"]["map@5"] <= 1
    assert evaluate_embeddings(z[:200], y[:200], z[200:], y[200:], dims=[3])["dims"] == [3]


def test_evaluate_model_adds_its_head_accuracies(digits):
    torch.manual_seed(0)
    model = build_classifier("mlp", 32, "mrl", [8, 16, 32], digits.input_shape, digits.num_classes, 16)
    res = evaluate_model(model, digits, dims=[16, 32], max_queries=50)
    assert res["dims"] == [16, 32] and set(res["head"]) == set(res["probe"]) == {"16", "32"}
    assert all(0 <= a <= 1 for a in res["head"].values())
    assert evaluate_model(model, digits, max_queries=20)["dims"] == [8, 16, 32]
