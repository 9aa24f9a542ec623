"""Every recipe under examples/recipes runs end to end in its --quick variant and writes its results."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[1] / "examples" / "recipes"


def run_recipe(name: str, out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, str(RECIPES / f"{name}.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_multi_task(tmp_path):
    r = run_recipe("multi_task", tmp_path)
    models = r["models"]
    assert set(models) == {"multi-task", "fine only", "coarse only"}
    assert "fine" not in models["coarse only"] and "coarse" not in models["fine only"]
    assert models["coarse only"]["coarse"] > 0.4  # 5 super-classes: chance is 0.2 at best
    assert all(0.2 < a <= 1 for a in models["multi-task"]["fine"].values())


def test_transfer(tmp_path):
    r = run_recipe("transfer", tmp_path)
    for method in ("frozen_probe", "fine_tuned", "from_scratch"):
        assert set(r[method]) == {"8", "16", "32", "64"}
    assert r["frozen_probe"]["64"] > 0.5  # 10 digit classes; frozen Fashion-MNIST features still separate them


def test_nested_autoencoder(tmp_path):
    r = run_recipe("nested_autoencoder", tmp_path)
    ae = [r["ae_mse"][str(m)] for m in r["nesting"]]
    pca = [r["pca_mse"][str(m)] for m in r["nesting"]]
    assert r["nesting"] == [2, 4, 8, 16, 32]
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(pca))  # PCA error shrinks with m
    assert ae[-1] < ae[0] and ae[-1] < 1.0  # longer codes reconstruct better; better than the mean image
    for png in ("code_2d.png", "reconstructions.png", "mse_vs_m.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_rl_cartpole(tmp_path):
    r = run_recipe("rl_cartpole", tmp_path)
    assert r["nesting"] == [2, 4, 8, 16, 32] and r["training_episodes"] > 10
    assert all(1 <= v <= 500 for v in r["greedy_return"].values())


def test_depth_width(tmp_path):
    r = run_recipe("depth_width", tmp_path)
    assert set(r["accuracy"]) == {"1", "2", "3"}
    assert all(set(row) == {"8", "16", "32", "64"} for row in r["accuracy"].values())
    macs = r["conv_macs"]
    assert macs["1"] < macs["2"] < macs["3"]


@pytest.mark.parametrize("backbone", ["cnn", "vit"])
def test_vit_vs_cnn(tmp_path, backbone):
    if backbone == "vit":
        r = run_recipe("vit_vs_cnn", tmp_path)
        assert set(r["models"]) == {"cnn", "vit"}
        assert r["models"]["vit"]["parameters"] > 0 and r["models"]["cnn"]["accuracy"]["64"] > 0.3
    else:
        import torch

        from matryoshka.nn import build_backbone

        vit = build_backbone("vit", 32, (1, 28, 28), width=32)
        z = vit(torch.randn(4, 1, 28, 28))
        z.sum().backward()
        assert z.shape == (4, 32) and all(p.grad is not None for p in vit.parameters())
        with pytest.raises(ValueError, match="divisible"):
            build_backbone("vit", 32, (1, 28, 28), width=30)
