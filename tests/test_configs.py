"""Every shipped config parses (the own-data examples too), so a typo in one fails here, not in a user's hands."""

from pathlib import Path

import pytest

from matryoshka.train import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses(path):
    cfg = load_config(path)
    assert cfg.train.out_dir.startswith("runs/")
