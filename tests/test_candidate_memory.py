"""The cross-batch candidate memory: first in first out, a query's own rows left out, its settings checked (its use
in the text trainer: tests/test_text.py)."""

import pytest
import torch

from matryoshka.nn.losses import InfoNCELoss, MatryoshkaLoss
from matryoshka.nn.memory import CandidateMemory
from matryoshka.train import ConfigError, parse_config


def test_the_memory_keeps_the_newest_rows_oldest_first():
    memory = CandidateMemory(size=5, dim=2)
    assert len(memory) == 0 and memory.rows().shape == (0, 2)
    memory.add(torch.arange(6.0).view(3, 2), torch.tensor([0, 1, 2]))
    memory.add(torch.arange(6.0, 14.0).view(4, 2), torch.tensor([3, 4, 5, 6]))
    assert len(memory) == 5
    assert memory.rows()[:, 0].tolist() == [4.0, 6.0, 8.0, 10.0, 12.0]  # rows 2..6, the two oldest dropped
    assert memory.mask_for(torch.tensor([4, 9])).tolist() == [[False, False, True, False, False], [False] * 5]
    memory.add(torch.zeros(7, 2), torch.arange(10, 17))  # more than it holds: the last 5
    assert memory.keys.flatten().sort().values.tolist() == [12, 13, 14, 15, 16]
    pairs = CandidateMemory(size=4, dim=2, key_columns=2)  # (query, document) keys: either one shared is enough
    pairs.add(torch.zeros(3, 2), torch.tensor([[0, 10], [1, 11], [2, 12]]))
    assert pairs.mask_for(torch.tensor([[1, 99], [7, 12], [7, 99]])).tolist() == [
        [False, True, False],
        [False, False, True],
        [False, False, False],
    ]
    with pytest.raises(ValueError, match="expected"):
        memory.add(torch.zeros(2, 3), torch.tensor([0, 1]))


def test_the_memory_state_round_trips():
    memory = CandidateMemory(size=4, dim=3)
    memory.add(torch.randn(6, 3), torch.arange(6))
    copy = CandidateMemory(size=4, dim=3)
    copy.load_state_dict(memory.state_dict())
    assert torch.equal(copy.rows(), memory.rows()) and torch.equal(
        copy.mask_for(torch.arange(6)), memory.mask_for(torch.arange(6))
    )
    with pytest.raises(ValueError, match="saved memory"):
        CandidateMemory(size=8, dim=3).load_state_dict(memory.state_dict())


def test_an_excluded_candidate_counts_as_if_it_were_absent():
    torch.manual_seed(0)
    unit = torch.nn.functional.normalize
    queries, documents, extra = unit(torch.randn(4, 8)), unit(torch.randn(4, 8)), unit(torch.randn(3, 8))
    exclude = torch.zeros(4, 3, dtype=torch.bool)
    exclude[1, 2] = True  # extra row 2 is query 1's own document
    loss = InfoNCELoss(scale=20.0, symmetric=True)
    with_mask = loss(queries, torch.cat([documents, extra]), exclude=exclude)
    one_way = InfoNCELoss(scale=20.0)
    per_query = [
        one_way(queries[i : i + 1], torch.cat([documents[i : i + 1], documents[:i], documents[i + 1 :], extra[keep]]))
        for i in range(4)
        for keep in [~exclude[i]]
    ]
    backward = one_way(documents, queries)  # the reverse direction ranks the batch's queries only
    assert torch.allclose(with_mask, (torch.stack(per_query).mean() + backward) / 2, atol=1e-6)
    # through MatryoshkaLoss, at every dim, and refused with the wrong shape
    MatryoshkaLoss(loss, [4, 8])(queries, torch.cat([documents, extra]), exclude=exclude)
    with pytest.raises(ValueError, match="exclude must be"):
        loss(queries, torch.cat([documents, extra]), exclude=exclude[:, :2])


def test_memory_settings_are_checked():
    with pytest.raises(ConfigError, match="needs model.distill"):
        parse_config({"data": {"name": "wordnet"}, "model": {"memory": 64, "memory_use": "distillation"}})
    with pytest.raises(ConfigError, match="did you mean"):
        parse_config({"data": {"name": "wordnet"}, "model": {"memory": 64, "memory_use": "negative"}})
    with pytest.raises(ConfigError, match="goes with full fine-tuning"):
        parse_config({"data": {"name": "wordnet"}, "model": {"memory": 64, "frozen_base": True}})
