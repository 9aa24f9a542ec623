import numpy as np
import pytest

from matryoshka.adaptor import MatryoshkaAdaptor


def _embeddings(n=1500, d=16, seed=0):
    rng = np.random.default_rng(seed)
    # Information spread over all dims in a random (fixed) basis: raw prefixes are poor, a rotation helps.
    basis = np.linalg.qr(np.random.default_rng(42).standard_normal((d, d)))[0]
    scales = np.concatenate([[6.0, 5.0, 4.0, 3.0], np.full(d - 4, 0.3)])  # four dominant directions
    return (rng.standard_normal((n, d)) * scales) @ basis


def _recall(a, b, k=10):
    def knn(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        s = x @ x.T
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1)[:, :k]

    return np.mean([len(set(r) & set(t)) / k for r, t in zip(knn(a), knn(b), strict=True)])


def test_adaptor_prefixes_beat_raw_truncation(tmp_path):
    x = _embeddings()
    adaptor = MatryoshkaAdaptor(nesting=[2, 4, 8, 16], steps=60, batch_size=256, eval_every=20, validation=300)
    adaptor.fit(x)
    test = _embeddings(400, seed=1)
    small = adaptor.transform(test, dim=4)
    assert small.shape == (400, 4) and np.allclose(np.linalg.norm(small, axis=1), 1, atol=1e-5)
    assert _recall(small, test) > _recall(test[:, :4], test) + 0.1
    adaptor.save(tmp_path / "a.safetensors")
    loaded = MatryoshkaAdaptor.load(tmp_path / "a.safetensors")
    np.testing.assert_allclose(loaded.transform(test, 4), small, atol=1e-6)


def test_adaptor_bad_input():
    adaptor = MatryoshkaAdaptor(steps=2, validation=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        adaptor.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="non-empty"):
        adaptor.fit(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="NaN"):
        adaptor.fit(np.full((10, 4), np.nan))
    adaptor.fit(_embeddings(100, d=8))
    with pytest.raises(ValueError, match="fitted on 8-dim"):
        adaptor.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dim must be in"):
        adaptor.transform(_embeddings(5, d=8), dim=9)
