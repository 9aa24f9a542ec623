import pytest
import torch
from sklearn.linear_model import LogisticRegression

from matryoshka.evaluate.baselines import SVDProjection, random_features
from matryoshka.evaluate.probe import LinearProbe


def test_probe_matches_sklearn_logistic_regression(digits):
    x_train, y_train = digits.train.x.flatten(1), digits.train.y
    x_test, y_test = digits.test.x.flatten(1), digits.test.y
    ours = LinearProbe(l2=1e-2, max_iter=200).fit(x_train, y_train).score(x_test, y_test)
    mean, std = x_train.mean(0), x_train.std(0).clamp(min=1e-6)
    # sklearn's C is the inverse of the summed penalty: C = 1 / (l2 * N).
    ref = LogisticRegression(C=1 / (1e-2 * len(y_train)), max_iter=2000)
    ref.fit(((x_train - mean) / std).numpy(), y_train.numpy())
    ref_acc = ref.score(((x_test - mean) / std).numpy(), y_test.numpy())
    assert ours == pytest.approx(ref_acc, abs=0.015)
    assert ours > 0.9


def test_probe_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected features"):
        LinearProbe().fit(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))


def test_svd_projection_recovers_principal_directions():
    torch.manual_seed(0)
    # Variance 100 along e0, 1 along e1, 0.01 along the rest.
    x = torch.randn(2000, 5) * torch.tensor([10.0, 1.0, 0.1, 0.1, 0.1])
    svd = SVDProjection().fit(x)
    assert abs(svd.components_[0, 0].item()) > 0.99 and abs(svd.components_[1, 1].item()) > 0.99
    z = svd.transform(x, 2)
    assert z.shape == (2000, 2)
    assert z[:, 0].var() > 50 * z[:, 1].var()
    with pytest.raises(ValueError, match="k=6"):
        svd.transform(x, 6)


def test_random_features():
    x = torch.arange(12.0).view(3, 4)
    assert torch.equal(random_features(x, 2), x[:, :2])
    with pytest.raises(ValueError):
        random_features(x, 0)
