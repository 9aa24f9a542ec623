"""Text models in a log: no progress-bar updates from sentence-transformers or transformers off a terminal."""

import subprocess
import sys

import numpy as np
import torch

from matryoshka.nn import text_encoder
from matryoshka.nn.text_encoder import encode_texts, load_sentence_transformer, resolve_text_model

BAR_TEXTS = ("Batches", "Loading weights", "it/s]")


def test_mrl_encode_of_texts_prints_no_bars_into_a_log(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("a dog\nthe act of destroying\nmoney in a bank\n")
    out = tmp_path / "z.npy"
    model = resolve_text_model("all-MiniLM-L6-v2")
    args = ["encode", "--checkpoint", model, "--inputs", str(texts), "--out", str(out), "--dim", "48"]
    done = subprocess.run(
        [sys.executable, "-m", "matryoshka.cli", *args], capture_output=True, text=True, timeout=300
    )  # stdout and stderr are pipes, as in a log file
    assert done.returncode == 0, done.stderr
    assert np.load(out).shape == (3, 48)
    log = done.stdout + done.stderr
    assert not [bar for bar in BAR_TEXTS if bar in log], log


def test_encoding_with_progress_draws_no_batches_bar_off_a_terminal(capfd):
    model = load_sentence_transformer()
    capfd.readouterr()
    z = encode_texts(model, ["a dog", "a cat"], progress=True)
    captured = capfd.readouterr()
    assert z.shape == (2, 384) and "Batches" not in captured.err + captured.out


def test_on_a_terminal_progress_keeps_its_one_bar(monkeypatch):
    asked = {}

    class Model:
        def encode(self, texts, show_progress_bar, **_):
            asked["bar"] = show_progress_bar
            return torch.zeros(len(texts), 4)

    monkeypatch.setattr(text_encoder, "bars_on_terminal", lambda: True)
    encode_texts(Model(), ["a"], progress=True)
    assert asked["bar"] is True
    encode_texts(Model(), ["a"], progress=False)
    assert asked["bar"] is False


def test_a_long_encoding_writes_a_few_progress_lines_into_a_log(monkeypatch, capsys):
    class Model:
        def encode(self, texts, show_progress_bar, **_):
            assert show_progress_bar is False
            return torch.arange(len(texts), dtype=torch.float32)[:, None].repeat(1, 4)

    monkeypatch.setattr(text_encoder, "bars_on_terminal", lambda: False)
    texts = [f"text {i}" for i in range(5000)]
    z = encode_texts(Model(), texts, batch_size=256, progress=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("encoded ")]
    assert 5 <= len(lines) <= 10 and lines[-1].startswith("encoded 5,000/5,000 texts (")
    assert "s left)" in lines[0] and z.shape == (5000, 4)  # the chunks are encoded in order, none twice
    assert torch.equal(z[:, 0], torch.cat([torch.arange(n) for n in [500] * 10]).float())
    encode_texts(Model(), texts, progress=False)
    assert "encoded" not in capsys.readouterr().out
