"""`mrl bench text --peer sentence-transformers`: their trainer on our pairs and steps, beside our runs and goals."""

import importlib
import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from matryoshka.bench.text import text_target
from matryoshka.bench.text_peer import (
    PEERS,
    PeerUnavailable,
    SharedRun,
    _finished_run,
    train_with_sentence_transformers,
    training_columns,
)
from matryoshka.cli import app
from matryoshka.data.config import TextDataConfig
from matryoshka.data.pairs import TextPair
from matryoshka.data.text_sources import load_text_data

TINY = [
    "data.train_size=64",
    "data.val_size=20",
    "data.test_size=40",
    "train.batch_size=16",  # 4 steps
    "train.log_every=2",
    "model.min_dim=48",  # nesting 48, 96, 192, 384
    "model.max_seq_length=32",
]
NESTING = ["48", "96", "192", "384"]


def bench_text(out, *args):
    sets = [x for s in TINY for x in ("--set", s)]
    cmd = ["bench", "text", "--config", "configs/wordnet_minilm_quick.yaml", "--out", str(out), *sets, *args]
    return CliRunner().invoke(app, cmd)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_text") / "out"
    result = bench_text(out, "--peer", "sentence-transformers")  # with progress: lines, as in a log
    assert result.exit_code == 0, result.output
    return SimpleNamespace(out=out, output=result.output, report=json.loads((out / "text_results.json").read_text()))


def test_peer_trains_our_steps_and_stands_beside_our_runs(bench):
    from sentence_transformers import SentenceTransformer

    lines = bench.output.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("dim "))
    assert header.split()[:5] == ["dim", "base", "plain", "mrl", "peer"]
    rows = [line for line in lines if line.split() and line.split()[0] in NESTING]
    assert [r.split()[0] for r in rows] == NESTING and all(r.count("/") == 2 * 4 for r in rows)
    for goal in ("goal: Matryoshka run >= peer at every dim", "goal: >= +3 points mAP@10 at d/8 over the peer"):
        line = next(line for line in lines if line.startswith(goal))
        assert line.endswith((": met", ": NOT met"))
    assert any(line.startswith("peer: step 2/4 loss ") for line in lines)  # our progress lines, its loss
    assert "Computing widget examples" not in bench.output and "it/s" not in bench.output  # no tqdm in a log

    report = bench.report
    assert list(report["results"]) == ["base", "plain", "mrl", "peer"]
    assert set(report["results"]["peer"]) == set(NESTING)
    assert all(0 <= v["map@10"] <= 1 and 0 < v["mrr"] <= 1 for v in report["results"]["peer"].values())
    peer = report["runs"]["peer"]
    assert peer["steps"] == 4 and peer["train_seconds"] > 0 and not peer["reused"]
    assert peer["settings"]["per_device_train_batch_size"] == 16 and peer["settings"]["matryoshka_dims"] == [
        48,
        96,
        192,
        384,
    ]
    assert set(report["target"]["peer"]["every_dim"]["margins"]) == set(NESTING)
    assert report["target"]["peer"]["d8"]["dim"] == 48 and report["peer_skipped"] is None
    assert sorted(p.name for p in (bench.out / "peer").iterdir()) == ["model", "results.json"]  # no checkpoints
    model = SentenceTransformer(str(bench.out / "peer" / "model"), device="cpu", truncate_dim=48)
    assert model.encode(["a dog", "the act of destroying"]).shape == (2, 48)


def test_an_identical_run_reuses_the_peer_and_another_does_not(bench):
    saved = json.loads((bench.out / "peer" / "results.json").read_text())
    key = saved["key"]
    shared = SharedRun(**{k: v for k, v in key.items() if k != "versions"}, device="cpu")
    weights = bench.out / "peer" / "model" / "model.safetensors"
    written = weights.stat().st_mtime_ns
    again = train_with_sentence_transformers(shared, load_text_data(TextDataConfig(**key["data"])), bench.out / "peer")
    assert again.reused and again.test == bench.report["results"]["peer"] and again.steps == 4
    assert weights.stat().st_mtime_ns == written  # not trained again
    for change in ({"max_steps": 5}, {"batch_size": 32}, {"seed": 1}, {"data": {**key["data"], "seed": 1}}):
        assert _finished_run(bench.out / "peer", {**key, **change}) is None


def fail_to_import(monkeypatch, missing):
    """``importlib.import_module(missing)`` raises ImportError, as where the package is not installed."""
    real = importlib.import_module

    def import_module(name, package=None):
        if name == missing:
            raise ModuleNotFoundError(f"No module named {missing!r}")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", import_module)


def test_a_missing_trainer_skips_the_peer_in_one_line(bench, monkeypatch):
    fail_to_import(monkeypatch, "accelerate")
    result = bench_text(bench.out, "--peer", "sentence-transformers", "--no-progress")  # our runs resume, finished
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.output.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and skipped[0].startswith("peer sentence-transformers skipped: accelerate does not import")
    assert "== peer" not in result.output and "over the peer" not in result.output
    assert "goal at 384 dims: Matryoshka" in result.output  # the rest of the bench ran
    report = json.loads((bench.out / "text_results.json").read_text())
    assert "peer" not in report["results"] and "peer" not in report["target"]
    assert report["peer_skipped"] == skipped[0]


@pytest.mark.parametrize("missing", ["datasets", "accelerate", "trainer"])
def test_the_peer_names_what_does_not_import(monkeypatch, missing):
    import sentence_transformers

    if missing == "trainer":  # a sentence-transformers without the v3 trainer
        monkeypatch.delattr(sentence_transformers, "SentenceTransformerTrainer")
    else:
        fail_to_import(monkeypatch, missing)
    what = "sentence_transformers.SentenceTransformerTrainer" if missing == "trainer" else missing
    with pytest.raises(PeerUnavailable, match=f"^{what} does not import"):
        PEERS.get("sentence-transformers")()


def test_a_misspelt_peer_is_refused_before_training(tmp_path):
    result = bench_text(tmp_path / "out", "--peer", "sentence-transformer")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: unknown text peer 'sentence-transformer' (did you mean sentence-transformers?); "
        "registered: sentence-transformers"
    ]
    assert not (tmp_path / "out").exists()


def test_the_peer_trains_on_our_pairs_in_order_with_their_hard_negatives():
    pairs = [TextPair("dog", "a canine"), TextPair("cat", "a feline")]
    assert training_columns(pairs) == {"anchor": ["dog", "cat"], "positive": ["a canine", "a feline"]}
    hard = [TextPair("dog", "a canine", "a wolf"), TextPair("cat", "a feline", "a lynx")]
    columns = training_columns(hard)
    assert list(columns) == ["anchor", "positive", "negative"] and columns["negative"] == ["a wolf", "a lynx"]


def test_peer_goals_read_the_margins():
    def scores(values):
        return {str(m): {"map@10": v} for m, v in zip([24, 48, 96, 192, 384], values, strict=True)}

    results = {
        "plain": scores([0.3, 0.4, 0.5, 0.55, 0.6]),
        "mrl": scores([0.52, 0.63, 0.64, 0.65, 0.66]),
        "peer": scores([0.5, 0.60, 0.62, 0.65, 0.64]),
    }
    target = text_target(results, [24, 48, 96, 192, 384], "map@10")["peer"]
    assert target["every_dim"]["margins"]["192"] == 0 and target["every_dim"]["met"]  # a tie is >=
    assert target["d8"]["dim"] == 48 and target["d8"]["margin"] == pytest.approx(0.03)
    assert target["d8"]["met"] and target["met"]  # exactly 3 points, though 0.63 - 0.60 < 0.03 in floats
    results["peer"]["384"]["map@10"] = 0.67  # the peer ahead at one dim: the every-dim goal and the whole fail
    target = text_target(results, [24, 48, 96, 192, 384], "map@10")
    assert not target["peer"]["every_dim"]["met"] and target["peer"]["d8"]["met"] and not target["met"]
    results["peer"]["48"]["map@10"] = 0.61  # 2 points at d/8
    assert not text_target(results, [24, 48, 96, 192, 384], "map@10")["peer"]["d8"]["met"]
    assert "peer" not in text_target({k: results[k] for k in ("plain", "mrl")}, [24, 48, 96, 192, 384], "map@10")
