import numpy as np
import pytest
import torch

from matryoshka import NestingError, nesting_list, nesting_weights, ramped_weights, truncate, validate_nesting


def test_nesting_list_powers_of_two():
    assert nesting_list(2048) == [8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    assert nesting_list(512, min_dim=64) == [64, 128, 256, 512]


def test_nesting_list_non_power_of_two_ends_with_d():
    assert nesting_list(384) == [8, 16, 32, 64, 128, 256, 384]
    assert nesting_list(12, min_dim=8) == [8, 12]
    assert nesting_list(8) == [8]


def test_nesting_list_rounds_min_dim_up_to_power_of_two():
    assert nesting_list(64, min_dim=12) == [16, 32, 64]


@pytest.mark.parametrize("d,min_dim", [(0, 8), (-4, 8), (4, 8), (64, 0), (64.0, 8)])
def test_nesting_list_rejects_bad_arguments(d, min_dim):
    with pytest.raises(NestingError):
        nesting_list(d, min_dim)


@pytest.mark.parametrize(
    "dims,match",
    [
        ([], "empty"),
        ([16, 8, 32], "unsorted"),
        ([8, 8, 16], "repeated"),
        ([0, 8], "positive"),
        ([8, 16.0], "ints"),
        ([8, 128], "larger than the embedding size"),
    ],
)
def test_validate_nesting_rejects(dims, match):
    with pytest.raises(NestingError, match=match):
        validate_nesting(dims, d=64)


def test_validate_nesting_warns_when_full_dim_missing():
    with pytest.warns(UserWarning, match="does not include the full dim"):
        assert validate_nesting([8, 16], d=64) == [8, 16]


def test_nesting_weights():
    assert nesting_weights([8, 16]) == [1.0, 1.0]
    assert nesting_weights([8, 16], [2, 0.5]) == [2.0, 0.5]
    with pytest.raises(NestingError, match="2 weights for 3"):
        nesting_weights([8, 16, 32], [1, 1])
    with pytest.raises(NestingError, match="non-negative"):
        nesting_weights([8], [-1])
    with pytest.raises(NestingError, match="positive"):
        nesting_weights([8, 16], [0, 0])


def test_truncate_renormalises_torch_and_numpy():
    z = torch.tensor([[3.0, 4.0, 12.0], [1.0, 0.0, 0.0]])
    out = truncate(z, 2)
    assert torch.allclose(out, torch.tensor([[0.6, 0.8], [1.0, 0.0]]))
    assert torch.equal(truncate(z, 2, normalize=False), z[:, :2])
    np_out = truncate(z.numpy(), 2)
    assert isinstance(np_out, np.ndarray)
    np.testing.assert_allclose(np_out, out.numpy(), rtol=1e-6)


def test_truncate_zero_vector_stays_finite():
    assert torch.isfinite(truncate(torch.zeros(2, 4), 2)).all()


@pytest.mark.parametrize("m", [0, 5, -1, 2.0])
def test_truncate_rejects_out_of_range(m):
    with pytest.raises(ValueError, match="cannot truncate"):
        truncate(torch.zeros(2, 4), m)


def test_ramped_weights_start_equal_and_end_at_the_weights():
    assert ramped_weights([8, 2, 1], 0.0) == [1.0, 1.0, 1.0]
    assert ramped_weights([8, 2, 1], 1.0) == [8.0, 2.0, 1.0]
    assert ramped_weights([8, 2, 1], 0.5) == pytest.approx([4.5, 1.5, 1.0])  # linear by default
    assert ramped_weights([8, 2, 1], 0.5, power=2) == pytest.approx([2.75, 1.25, 1.0])
    assert ramped_weights([0.5], 1.0) == [0.5]  # a weight below 1 ramps down
    with pytest.raises(ValueError, match="within"):
        ramped_weights([2.0], 1.5)
