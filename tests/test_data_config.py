import gzip
import shutil

import pytest
import torch

from matryoshka.data import CorruptDataError, DataNotFoundError, load_dataset
from matryoshka.data.fashion_mnist import DEFAULT_ROOT, load_fashion_mnist, read_idx
from matryoshka.train import ConfigError, load_config, parse_config


def test_fashion_mnist_loads_full_splits():
    data = load_dataset("fashion_mnist")
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert abs(data.train.x.mean().item()) < 1e-2 and abs(data.train.x.std().item() - 1) < 1e-2
    assert sorted(torch.bincount(data.test.y).tolist()) == [1000] * 10
    again = load_dataset("fashion_mnist")
    assert torch.equal(data.val.y, again.val.y)  # the split is seeded


def test_missing_fashion_mnist_names_the_package(tmp_path):
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


def test_corrupt_idx_files_are_rejected(tmp_path):
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]:
        shutil.copy(f"{DEFAULT_ROOT}/{name}", tmp_path / name)
    with gzip.open(f"{DEFAULT_ROOT}/t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-100])  # truncated
    with pytest.raises(CorruptDataError, match="needs"):
        load_fashion_mnist(tmp_path)
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(CorruptDataError, match="magic"):
        read_idx(tmp_path / "bad.idx")
    (tmp_path / "notgzip.gz").write_bytes(b"plain")
    with pytest.raises(CorruptDataError, match="cannot read"):
        read_idx(tmp_path / "notgzip.gz")


def test_digits_split_is_disjoint_and_seeded():
    data = load_dataset("digits")
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    assert data.input_shape == (1, 8, 8)
    assert not torch.equal(load_dataset("digits", seed=1).val.x, data.val.x)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("imagenet")


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  embed_dim: 64\n  hed: mrl\ntrain:\n  epochs: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "model.hed: unknown key" in str(err.value)
    assert "train.epochs" in str(err.value)


def test_config_overrides_and_nesting_validation(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  embed_dim: 64\n")
    cfg = load_config(path, ["train.epochs=3", "model.nesting=[8, 16, 64]"])
    assert cfg.train.epochs == 3 and cfg.model.resolved_nesting() == [8, 16, 64]
    assert load_config(path).model.resolved_nesting() == [8, 16, 32, 64]
    with pytest.raises(ConfigError, match="unsorted"):
        load_config(path, ["model.nesting=[16, 8, 64]"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(path, ["epochs"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_ff_config_resolves_to_one_dim():
    cfg = parse_config({"model": {"embed_dim": 64, "head": "ff", "ff_dim": 16}})
    assert cfg.model.resolved_nesting() == [16]
    with pytest.raises(ConfigError, match="larger than embed_dim"):
        parse_config({"model": {"embed_dim": 64, "head": "ff", "ff_dim": 128}})
