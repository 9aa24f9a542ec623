"""A trained run with its data (TrainedRun.training_data), one split's embeddings (embed_split), checked .npy reads."""

import numpy as np
import pytest

from matryoshka.errors import InputError
from matryoshka.inference import embed_split
from matryoshka.io import read_npy
from matryoshka.runs import TrainedRun
from matryoshka.train import CheckpointError, Trainer


def test_a_run_its_training_data_and_embed_split(tmp_path, digits, digits_config):
    result = Trainer(digits_config(epochs=1), data=digits, progress=False).fit()
    run = TrainedRun.load(result.run_dir, "cpu")
    model, info, data = run.model, run.info, run.training_data()
    assert info["nesting"] == model.nesting == [8, 16, 32] and len(data.test) == len(digits.test)
    z, y = embed_split(model, data, "val", dim=16)
    assert z.shape == (len(data.val), 16) and z.dtype == np.float32 and y.shape == (len(data.val),)
    assert np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    raw, _ = embed_split(model, data, normalize=False)
    assert raw.shape == (len(data.test), 32)
    with pytest.raises(InputError, match="split must be"):
        embed_split(model, data, "dev")
    with pytest.raises(InputError, match="cannot truncate a 32-dim embedding"):
        embed_split(model, data, dim=64)
    with pytest.raises(CheckpointError, match="no such run folder"):
        TrainedRun.load(tmp_path / "nothing")


def test_read_npy(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(3))
    assert read_npy(tmp_path / "a.npy").tolist() == [0, 1, 2]
    with pytest.raises(InputError, match="queries file .* does not exist"):
        read_npy(tmp_path / "missing.npy", "queries")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a readable .npy array"):
        read_npy(tmp_path / "junk.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="not a readable"):
        read_npy(tmp_path / "obj.npy")
