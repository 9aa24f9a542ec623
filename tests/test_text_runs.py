"""Text run folders: the fast path's model folder carries its adaptor, older layouts keep loading, and reading a run
needs no training code."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from matryoshka.nn.text_encoder import encode_texts, load_sentence_transformer, save_sentence_transformer
from matryoshka.posthoc import MatryoshkaAdaptor
from matryoshka.runs import TrainedRun
from matryoshka.runs.text_model import ADAPTOR_FILE, loading_hint

TEXTS = ["a dog", "money in a bank", "the act of destroying", "a large body of water", "to run fast"]
DIMS = [12, 48, 384]


@pytest.fixture(scope="module")
def base():
    return load_sentence_transformer()


@pytest.fixture(scope="module")
def adaptor(base):
    z = encode_texts(base, [f"{t} {i}" for i in range(40) for t in TEXTS])
    # Enough steps for the residual MLP to move off its zero start, so the whole transform is checked.
    return MatryoshkaAdaptor(nesting=DIMS, steps=30, lr=1e-2, eval_every=10).fit(z, pairs=(z[::2], z[1::2]))


def _adapted(base, adaptor, dim):
    """The fast path's embeddings as the run's own scoring computes them: base, then the adaptor, then a prefix."""
    z = adaptor.transform(encode_texts(base, TEXTS), normalize=False)
    return torch.nn.functional.normalize(torch.from_numpy(z[:, :dim]), dim=1).numpy()


def test_the_fast_path_model_folder_alone_gives_the_adapted_embeddings(tmp_path, base, adaptor):
    from sentence_transformers import SentenceTransformer

    from matryoshka.train.frozen_base import save_adapted

    run = tmp_path / "run"
    run.mkdir()
    adaptor.save(run / ADAPTOR_FILE)  # a stale adaptor of the older layout: it must not be applied on top
    modules = len(base)
    save_adapted(base, adaptor, run / "model")
    assert len(base) == modules and not (run / ADAPTOR_FILE).exists()  # the base is left as it was
    loaded = TrainedRun.load(run)
    assert loaded.dim == 384
    for dim in DIMS:
        expected = _adapted(base, adaptor, dim)
        plain = SentenceTransformer(str(run / "model"), device="cpu", truncate_dim=dim)
        np.testing.assert_allclose(plain.encode(TEXTS, normalize_embeddings=True), expected, atol=1e-5)
        np.testing.assert_allclose(loaded.encode_texts(TEXTS, dim=dim), expected, atol=1e-5)
    full = SentenceTransformer(str(run / "model"), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1, atol=1e-5)  # unit vectors, as the base gave
    assert loading_hint(run) == f"load it with SentenceTransformer({str(run / 'model')!r}, truncate_dim=m)"


def test_a_run_of_the_older_layout_loads_base_and_adaptor(tmp_path, base, adaptor):
    run = tmp_path / "old"
    save_sentence_transformer(base, run / "model")
    adaptor.save(run / ADAPTOR_FILE)
    loaded = TrainedRun.load(run)
    for dim in DIMS:
        np.testing.assert_allclose(loaded.encode_texts(TEXTS, dim=dim), _adapted(base, adaptor, dim), atol=1e-5)
    # The model folder alone would give the base's vectors: the hint names the way that works.
    assert "TrainedRun.load(" in loading_hint(run) and "SentenceTransformer" not in loading_hint(run)


def test_loading_and_encoding_a_run_imports_no_training_code(tmp_path, base, digits_config):
    from matryoshka import Trainer

    text, image = tmp_path / "text", tmp_path / "run"
    save_sentence_transformer(base, text / "model")
    Trainer(digits_config(epochs=1), progress=False).fit()
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from matryoshka.runs import TrainedRun\n"
        f"TrainedRun.load({str(text)!r}).encode_texts(['a dog'], dim=48)\n"
        f"TrainedRun.load({str(image)!r}).encode_raw(np.zeros((2, 64)), dim=8)\n"
        "import matryoshka.service.app\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('matryoshka.train'))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert loaded.stdout.strip() == "", f"reading a run imported {loaded.stdout.strip()}"


def test_mrl_encode_takes_a_text_model_name_for_the_base_models_embeddings(tmp_path, base):
    from typer.testing import CliRunner

    from matryoshka.cli import app

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "z.npy"
    args = ["encode", "--inputs", str(texts), "--out", str(out), "--dim", "48"]
    encoded = CliRunner().invoke(app, [*args, "--checkpoint", "all-MiniLM-L6-v2"])
    assert encoded.exit_code == 0, encoded.output
    expected = torch.nn.functional.normalize(encode_texts(base, TEXTS)[:, :48], dim=1).numpy()
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    bad = CliRunner().invoke(app, [*args, "--checkpoint", "all-MiniLM-L6-v3"])
    assert bad.exit_code == 2 and "no such run folder: all-MiniLM-L6-v3 (nor a text model" in bad.output
    assert len(bad.output.strip().splitlines()) == 1


def test_a_transformers_folder_is_a_text_model_and_an_image_run_is_not(tmp_path):
    from matryoshka.runs.text_model import is_text_model_name

    (tmp_path / "bert").mkdir()
    (tmp_path / "bert/config.json").write_text('{"model_type": "bert", "hidden_size": 384}')
    (tmp_path / "image").mkdir()
    (tmp_path / "image/config.json").write_text('{"config": {}, "nesting": [8, 16]}')
    assert is_text_model_name(tmp_path / "bert") and not is_text_model_name(tmp_path / "image")
    assert is_text_model_name(Path("minilm")) and not is_text_model_name(tmp_path / "nothing")


def test_mrl_eval_scores_a_text_model_name_on_given_pairs(tmp_path):
    from typer.testing import CliRunner

    from matryoshka.cli import app

    queries, documents = tmp_path / "q.txt", tmp_path / "d.txt"
    queries.write_text("a dog\nmoney in a bank\na large body of water\n")
    documents.write_text("a domestic animal that barks\na financial institution\nthe sea\n")
    args = ["eval", "--checkpoint", "all-MiniLM-L6-v2", "--dims", "48,384"]
    scored = CliRunner().invoke(app, [*args, "--queries", str(queries), "--documents", str(documents)])
    assert scored.exit_code == 0, scored.output
    assert "48" in scored.output and "384" in scored.output
    alone = CliRunner().invoke(app, args)  # a model has no test split of its own
    assert alone.exit_code == 2 and "give mrl eval --queries and --documents" in alone.output
