import numpy as np
from typer.testing import CliRunner

from matryoshka.cli import app

runner = CliRunner()


def test_train_then_encode(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data: {name: digits}\nmodel: {embed_dim: 32, width: 8}\ntrain: {epochs: 1, batch_size: 64}\n")
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "-c", str(config), "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "validation accuracy per dim: 8:" in result.output
    emb, labels = tmp_path / "z.npy", tmp_path / "y.npy"
    result = runner.invoke(
        app, ["encode", "--checkpoint", str(run), "--out", str(emb), "--dim", "16", "--labels", str(labels)]
    )
    assert result.exit_code == 0, result.output
    z = np.load(emb)
    assert z.shape == (360, 16) and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    assert np.load(labels).shape == (360,)
    result = runner.invoke(app, ["encode", "--checkpoint", str(run), "--out", str(emb), "--dim", "64"])
    assert result.exit_code == 2 and "cannot truncate a 32-dim embedding" in result.output


def test_train_reports_bad_config_clearly(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: {embed_dims: 32}\n")
    result = runner.invoke(app, ["train", "-c", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "model.embed_dims: unknown key" in result.output


def test_encode_missing_checkpoint(tmp_path):
    result = runner.invoke(app, ["encode", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "z.npy")])
    assert result.exit_code == 2 and "config.json is missing" in result.output
