"""A new user's path with their own data, through the `mrl` command only: train from a YAML file on an image folder
and on text pairs, then encode, evaluate and look up with nothing but the run folder."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
from test_own_data import make_image_folder
from test_own_pairs import _write_pairs


def mrl(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "matryoshka.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def test_image_folder_from_yaml_to_encode_eval_and_cascade(tmp_path):
    folder = make_image_folder(tmp_path / "pics", per_class=12)
    config = tmp_path / "pics.yaml"
    config.write_text(
        f"data: {{name: imagefolder, path: {folder}, image_size: 12, channels: 3}}\n"
        "model: {backbone: cnn, embed_dim: 16, width: 8, min_dim: 2}\n"
        "optim: {lr: 0.01}\n"
        "train: {epochs: 3, batch_size: 8}\n"
    )
    run = tmp_path / "run"
    trained = mrl("train", "-c", config, "--out", run)
    assert trained.returncode == 0, trained.stderr
    assert "validation accuracy per dim: 2:" in trained.stdout
    out = tmp_path / "z.npy"
    encoded = mrl("encode", "--checkpoint", run, "--inputs", folder, "--out", out, "--dim", "4")
    assert encoded.returncode == 0, encoded.stderr
    names = (tmp_path / "z.names.txt").read_text().split()
    assert np.load(out).shape == (36, 4) and names == sorted(str(p) for p in folder.rglob("*.*"))
    evaluated = mrl("eval", "--checkpoint", run)
    assert evaluated.returncode == 0, evaluated.stderr
    cascade = mrl("cascade", "--checkpoint", run)
    assert cascade.returncode == 0, cascade.stderr
    bad = mrl("encode", "--checkpoint", run, "--inputs", tmp_path / "nothing", "--out", out)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:") and "does not exist" in bad.stderr
    # A stray file in the folder: refused as training refuses it, or left out and listed with --skip-bad.
    (folder / "left" / "notes.txt").write_text("not a picture")
    stray = mrl("encode", "--checkpoint", run, "--inputs", folder, "--out", out)
    assert stray.returncode == 2 and "notes.txt: not an image" in stray.stderr and "--skip-bad" in stray.stderr
    skipped = mrl("encode", "--checkpoint", run, "--inputs", folder, "--out", out, "--skip-bad")
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped" in skipped.stderr and "notes.txt" in skipped.stderr and np.load(out).shape[0] == 36


def test_eval_takes_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 8)).astype(np.float32)
    y = np.array(["cat", "dog", "eel"])[rng.integers(0, 3, 60)]
    z[:, 0] += 4 * (y == "cat")
    for name, arr in {"tz": z[:40], "ty": y[:40], "qz": z[40:], "qy": y[40:]}.items():
        np.save(tmp_path / f"{name}.npy", arr)
    result = mrl(
        "eval",
        "--train-embeddings",
        tmp_path / "tz.npy",
        "--train-labels",
        tmp_path / "ty.npy",
        "--test-embeddings",
        tmp_path / "qz.npy",
        "--test-labels",
        tmp_path / "qy.npy",
    )
    assert result.returncode == 0, result.stderr


def test_text_pairs_from_yaml_then_encode_texts(tmp_path):
    pairs = _write_pairs(tmp_path / "faq.csv", n=80)
    config = tmp_path / "pairs.yaml"
    config.write_text(
        f"data: {{name: pairs, path: {pairs}, query_column: question, document_column: answer}}\n"
        "model: {nesting: [48, 384], max_seq_length: 32}\n"
        "train: {epochs: 1, batch_size: 8, evaluate_base: false, log_every: 2}\n"
    )
    run = tmp_path / "run"
    trained = mrl("train", "-c", config, "--out", run, "--set", "data.train_size=48", timeout=600)
    assert trained.returncode == 0, trained.stderr
    # Not a terminal: no bar, but an early time estimate and a line every log_every steps.
    assert "s/step: an epoch (6 steps) takes ~" in trained.stdout, trained.stdout
    assert "step 2/6 (epoch 1/1) loss" in trained.stdout and "left" in trained.stdout
    saved = json.loads((run / "results.json").read_text())
    assert saved["train_pairs"] == 48 and "query_style" not in saved["config"]["data"]
    evaluated = mrl("eval", "--checkpoint", run, "--out", tmp_path / "eval.json")
    assert evaluated.returncode == 0, evaluated.stderr
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert scores["per_dim"]["384"] == saved["test"]["384"] and scores["queries"] == saved["test_queries"] == 8
    unfinished = tmp_path / "half"
    (unfinished / "checkpoints").mkdir(parents=True)
    for folder, message in ((unfinished, "unfinished run"), (tmp_path / "nope", "no such run folder")):
        failed = mrl("eval", "--checkpoint", folder)
        assert failed.returncode == 2 and message in failed.stderr
    texts = tmp_path / "q.txt"
    texts.write_text("dog\ncat\n\nbank\n")
    out = tmp_path / "t.npy"
    encoded = mrl("encode", "--checkpoint", run, "--inputs", texts, "--out", out, "--dim", "48")
    assert encoded.returncode == 0, encoded.stderr
    z = np.load(out)
    assert z.shape == (3, 48) and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    assert pd.read_csv(pairs).shape[0] == 80
