import pytest
import torch

from matryoshka.evaluate.metrics import accuracy, class_retrieval_metrics, knn_search, ranking_metrics


def test_ranking_metrics_hand_computed():
    # Query 1: relevant at ranks 1 and 3, R = 2  -> AP = (1/1 + 2/3) / 2 = 0.8333
    # Query 2: relevant at rank 2 only, R = 5    -> AP = (1/2) / min(3, 5) = 0.1667
    # Query 3: nothing relevant, R = 0           -> AP = 0, recall = 0
    rel = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    out = ranking_metrics(rel, torch.tensor([2, 5, 0]))
    assert out["map@3"] == pytest.approx((5 / 6 + 1 / 6 + 0) / 3)
    assert out["p@3"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert out["r@3"] == pytest.approx((1 + 1 / 5 + 0) / 3)
    assert out["top1"] == pytest.approx(1 / 3)


def test_map_divides_by_min_k_r_not_k():
    # One relevant item in the whole database, found at rank 1: AP must be 1, not 1/k.
    out = ranking_metrics(torch.tensor([[1, 0, 0, 0, 0]]), torch.tensor([1]))
    assert out["map@5"] == 1.0 and out["r@5"] == 1.0 and out["p@5"] == pytest.approx(0.2)


def test_perfect_ranking_scores_one():
    out = ranking_metrics(torch.ones(4, 10, dtype=torch.bool), torch.tensor([10, 20, 30, 10]))
    assert out["map@10"] == 1.0 and out["p@10"] == 1.0
    assert out["r@10"] == pytest.approx((1 + 0.5 + 1 / 3 + 1) / 4)


def test_knn_search_and_class_metrics():
    db = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    db = torch.nn.functional.normalize(db, dim=1)
    y = torch.tensor([0, 0, 1, 1])
    assert knn_search(db[:1], db, 2).tolist() == [[0, 1]]
    assert knn_search(db[:1], db, 1, exclude_self=True).tolist() == [[1]]
    out = class_retrieval_metrics(db, y, db, y, k=1, exclude_self=True)
    assert out["top1"] == 1.0 and out["map@1"] == 1.0 and out["r@1"] == 1.0
    with pytest.raises(ValueError, match="k=5"):
        knn_search(db, db, 5)
    with pytest.raises(ValueError, match="must be"):
        knn_search(db, db[:, :1], 1)


def test_accuracy():
    assert accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 0.5
    with pytest.raises(ValueError, match="empty"):
        accuracy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
