import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from matryoshka.cli import app


def test_train_overhead_benchmark_runs_and_prints_ratios():
    cmd = [
        sys.executable,
        "-m",
        "matryoshka.cli",
        "bench",
        "train-overhead",
        "--backbone",
        "mlp",
        "--embed-dim",
        "64",
        "--batch-size",
        "32",
        "--steps",
        "2",
        "--rounds",
        "2",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith(("MRL", "single"))}
    assert set(lines) == {"single", "MRL", "MRL-E"}
    assert float(lines["MRL"].split()[2]) > 0


def test_retrieval_benchmark_small(tmp_path):
    out = tmp_path / "bench"
    args = ["--synthetic", "32", "--size", "3000", "--queries", "40", "--single", "3", "--rounds", "1"]
    result = CliRunner().invoke(app, ["bench", "retrieval", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "faiss HNSW M=32 efSearch=8" in result.output and "at matched recall" in result.output
    assert "beside a busy process, batch-1 p99" in result.output
    saved = json.loads((out / "results.json").read_text())
    assert (out / "retrieval.png").exists() and [t["target"] for t in saved["tuned"]] == [0.95, 0.99]
    families = {row["family"] for row in saved["rows"]}
    expected = {"faiss FlatIP", "faiss HNSWFlat", "faiss IVFFlat", "hnswlib", "usearch f32", "usearch i8", "ScaNN"}
    expected |= {"DiskANN, graph on disk"}
    assert expected | {"ours (tuned)", "ours (tuned, mapped)"} <= families
    for row in saved["rows"]:
        assert 0 <= row["recall@10"] <= 1 and row["p99_ms"] >= row["p50_ms"] > 0 and row["qps"] > 0
        if row["target"] is not None:  # every tuned row is also timed beside a busy process
            assert row["busy_p99_ms"] >= row["busy_p50_ms"] > 0 and row["bytes_per_vector"] > 0
    exact = next(r for r in saved["rows"] if r["family"] == "faiss FlatIP")
    assert exact["recall@10"] == 1.0
    assert len(saved["comparisons"]) == 2
    for c in saved["comparisons"]:
        assert c["memory_ratio"] > 0 and c["busy_p99_ratio"] > 0 and c["fastest_peer"] != c["ours"]
    mapped = next(r for r in saved["rows"] if r["family"] == "ours (tuned, mapped)")
    tuned = next(r for r in saved["rows"] if r["family"] == "ours (tuned)")
    assert mapped["bytes_per_vector"] < tuned["bytes_per_vector"] and mapped["recall@10"] == tuned["recall@10"]


def test_the_cli_runs_every_peer_by_default():
    import inspect

    from matryoshka.bench.peers import PEERS
    from matryoshka.cli.bench import retrieval

    assert inspect.signature(retrieval).parameters["peers"].default == ",".join(PEERS)


def test_retrieval_benchmark_skips_missing_peers(tmp_path, monkeypatch):
    from matryoshka.bench import peers

    monkeypatch.setattr(peers, "missing", lambda package: package in ("scann", "hnswlib"))
    out = tmp_path / "bench"
    args = ["--synthetic", "16", "--size", "2000", "--queries", "20", "--single", "2", "--rounds", "1"]
    args += ["--targets", "0.9", "--peers", "faiss-hnsw,hnswlib,scann"]
    result = CliRunner().invoke(app, ["bench", "retrieval", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "scann: skipped, `scann` is not installed (pip install 'matryoshka-mrl[bench]')" in result.output
    assert "hnswlib: skipped, `hnswlib` is not installed" in result.output
    families = {row["family"] for row in json.loads((out / "results.json").read_text())["rows"]}
    assert "faiss HNSWFlat" in families and not families & {"hnswlib", "ScaNN"}
    result = CliRunner().invoke(app, ["bench", "retrieval", "--synthetic", "8", "--peers", "faiss-hnsw,annoy"])
    assert result.exit_code == 2 and "unknown peer(s) annoy" in result.output


def test_rss_counts_the_index_not_the_page_cache(tmp_path):
    import faiss
    import numpy as np

    from matryoshka.bench import rss
    from matryoshka.index import MatryoshkaIndex

    x = np.random.default_rng(0).standard_normal((50_000, 64)).astype(np.float32)
    flat = faiss.IndexFlatIP(64)
    flat.add(x)
    faiss.write_index(flat, str(tmp_path / "flat"))
    assert 0.8 * x.nbytes < rss.measure("faiss", tmp_path / "flat") < 1.6 * x.nbytes
    MatryoshkaIndex.build(x, shortlist_dims=[8]).save(tmp_path / "ours")
    in_ram, mapped = rss.measure("ours", tmp_path / "ours"), rss.measure("ours-mmap", tmp_path / "ours")
    assert in_ram > 0.8 * x.nbytes and mapped < 0.5 * x.nbytes  # the mapped rows are page cache, not counted


def test_threads_benchmark_small(tmp_path):
    args = ["bench", "threads", "--size", "3000", "--work", "0.002", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert " busy batch  512" in result.output and "suggested cut-over" in result.output
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["rows"]) == 20 and all(r["one"]["p99_ms"] >= r["one"]["p50_ms"] > 0 for r in saved["rows"])


def test_retrieval_benchmark_refuses_bad_input(tmp_path):
    result = CliRunner().invoke(app, ["bench", "retrieval", "--model", str(tmp_path), "--size", "100"])
    assert result.exit_code == 2 and "mrl demo --quick" in result.output
    result = CliRunner().invoke(app, ["bench", "retrieval", "--synthetic", "8", "--targets", "0.9,x"])
    assert result.exit_code == 2 and "--targets" in result.output


def test_adaptor_benchmark_on_npy(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((16, 16)))[0]
    x = ((rng.standard_normal((1500, 16)) * np.linspace(3, 0.2, 16)) @ basis).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    out = tmp_path / "out"
    args = ["bench", "adaptor", "--embeddings", str(tmp_path / "e.npy"), "--queries", "200", "--steps", "30"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip().split(" ")[0].isdigit()]
    assert [int(r[0]) for r in rows] == [4, 8, 16] and all(len(r) == 6 for r in rows)
    assert float(rows[-1][1]) == 1.0  # at the full dim raw truncation is the identity
    report = json.loads((out / "adaptor_results.json").read_text())
    recall = report["recall@10"]
    assert set(recall) == {"raw", "PCA", "SVD", "adaptor-similarity", "adaptor-listwise"}
    assert (out / "adaptor_recall.png").exists()
    # the learned basis is ordered: its 4-dim prefix keeps far more neighbours than 4 raw coordinates
    assert recall["adaptor-similarity"]["4"] > recall["raw"]["4"]
    # goal: the best adaptor vs PCA at the two smallest dims from 8 (8 and 16 here), printed and saved
    goal = report["goal"]["dims"]
    assert set(goal) == {"8", "16"}
    best = max(recall["adaptor-similarity"]["8"], recall["adaptor-listwise"]["8"])
    assert goal["8"]["margin_over_pca"] == pytest.approx(best - recall["PCA"]["8"])
    assert sum("goal at" in line for line in result.output.splitlines()) == 2
    result = CliRunner().invoke(app, [*args, "--loss", "listwise", "--goal-dim", "5", "--out", str(out)])
    assert result.exit_code == 2 and "goal dims [5]" in result.output


def test_bench_functions_return_their_results(tmp_path):
    from matryoshka.bench import train_overhead

    timing = train_overhead.run(backbone="mlp", embed_dim=32, batch_size=16, steps=1, rounds=1, device="cpu")
    assert set(timing["ratio"]) == {"single full-dim head", "MRL", "MRL-E"} and timing["ratio"]["MRL"] > 0


def test_bench_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(app, ["bench", "adaptor", "--embeddings", str(tmp_path / "missing.npy")])
    assert (
        result.exit_code == 2
        and result.output.strip() == f"error: embeddings file {tmp_path / 'missing.npy'} does not exist"
    )
    import numpy as np

    np.save(tmp_path / "flat.npy", np.zeros(10, dtype=np.float32))  # not (N, d): a one-line error, not a crash
    result = CliRunner().invoke(app, ["bench", "adaptor", "--embeddings", str(tmp_path / "flat.npy")])
    assert result.exit_code == 2 and "error: embeddings must be a 2-D (N, d) array" in result.output
    result = CliRunner().invoke(app, ["bench", "retrieval", "--rounds", "many"])
    assert result.exit_code == 2 and "--rounds" in result.output


def test_train_overhead_on_a_transformers_vit(tmp_path, monkeypatch):
    from matryoshka.bench import train_overhead

    monkeypatch.chdir(tmp_path)  # the random ViT is written under runs/
    out = train_overhead.run(
        backbone="hf-vit-tiny", image_size=16, channels=3, embed_dim=32, batch_size=4, steps=1, rounds=1
    )
    assert out["backbone"].startswith("hf:") and set(out["ratio"]) == {"single full-dim head", "MRL", "MRL-E"}
    assert (tmp_path / "runs/bench_vit_tiny/16px-3ch/config.json").exists()


def test_data_loading_benchmark_small(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "data-loading",
            "--images",
            "512",
            "--workers",
            "1",
            "--batch-size",
            "64",
            "--rounds",
            "1",
            "--folder",
            str(tmp_path / "png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "PNG folder, 1 workers" in result.output and "PNG folder, decoded cache within 1.2x" in result.output
    assert len(list((tmp_path / "png").rglob("*.png"))) == 512


def test_store_benchmark_small():
    args = ["bench", "store", "--sizes", "2000x16,8000x16", "--adds", "20", "--rewrites", "2", "--rows", "3000"]
    args += ["--dim", "16", "--shortlist-dim", "8", "--clients", "8", "--requests", "200"]  # default build and plan
    args += ["--repeats", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2000x16" in result.output and "8000x16" in result.output and "within 1.5x" in result.output
    kept = "after kill -9 the folder equals the acknowledged history (missing 0, unexpected 0)"
    assert result.output.count(kept) == 2
    assert "goal: 0 errors and every acknowledged write kept, in every run -> met" in result.output
    assert "median of 2:" in result.output
    assert "tuned by default" in result.output and "no plan named (the index's default: " in result.output


@pytest.mark.slow
def test_retrieval_benchmark_on_real_mrl_embeddings(tmp_path):
    """The full-scale run (240k shifted Fashion-MNIST embeddings; minutes): trains the quick demo model first when
    runs/demo has none."""
    from pathlib import Path

    from matryoshka.bench import retrieval

    model = Path("runs/demo/models/mrl")
    if not (model / "config.json").exists():
        result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path / "demo")])
        assert result.exit_code == 0, result.output
        model = tmp_path / "demo" / "models" / "mrl"
    found = retrieval.run(model=model, size=240_000, rounds=1, single=100, out=tmp_path / "bench")
    assert found["n"] == 240_000 and found["dim"] == 512
    rows = {row["method"]: row for row in found["rows"]}
    for comparison in found["comparisons"]:
        ours = rows[comparison["ours"]]
        assert ours["recall@10"] >= comparison["target"] - 0.02  # tuned on other queries, so a little slack
        assert comparison["build_speedup"] > 1  # prefix graphs build faster than the full-dim one
    mapped = [r for r in found["rows"] if r["family"] == "ours (tuned, mapped)"]
    assert all(r["bytes_per_vector"] < 1024 for r in mapped)  # the 2 KiB full-dim rows stay on disk


def test_text_goals_read_the_kept_fractions():
    from matryoshka.bench.text import text_target

    def scores(values):
        return {str(m): {"map@10": v} for m, v in zip([24, 48, 96, 192, 384], values, strict=True)}

    results = {
        "base": scores([0.2, 0.3, 0.4, 0.45, 0.5]),
        "plain": scores([0.3, 0.4, 0.5, 0.55, 0.6]),
        "mrl": scores([0.52, 0.58, 0.59, 0.6, 0.6]),
    }
    target = text_target(results, [24, 48, 96, 192, 384], "map@10")
    (d8, d16) = target["dims"]
    assert (d8["dim"], d16["dim"]) == (48, 24)
    assert d8["kept_fraction"] == pytest.approx(0.58 / 0.6) and d8["met"]
    assert d16["kept_fraction"] == pytest.approx(0.52 / 0.6) and d16["met"] and target["met"]
    results["mrl"]["384"]["map@10"] = 0.49  # below the base model at the full dim: not met, whatever the ratios
    assert not text_target(results, [24, 48, 96, 192, 384], "map@10")["met"]


def test_defaults_benchmark_quick_on_digits(tmp_path):
    from matryoshka.bench.defaults import goal_checks, run_defaults

    results = run_defaults(tmp_path, ["digits"], quick=True)
    digits = results["digits"]
    assert digits["dims"] == [4, 8, 16] and set(digits["scores"]) == {"mrl", "ff-4", "ff-8", "ff-16"}
    assert set(digits["checks"]) == {f"{m}@{d}" for m in ("head", "knn1") for d in (4, 8, 16)}
    assert (tmp_path / "defaults.json").exists() and isinstance(results["met"], bool)
    # The margins: 1 point at a nesting dim, 0.5 at the full dim.
    scores = {"mrl": {"head": {"4": 0.80, "8": 0.90}}, "ff-4": {"head": {"4": 0.809}}, "ff-8": {"head": {"8": 0.906}}}
    checks = goal_checks(scores, [4, 8])
    assert checks["head@4"]["met"] and not checks["head@8"]["met"]
    with pytest.raises(ValueError, match="unknown data set"):
        run_defaults(tmp_path, ["nope"])


def test_defaults_benchmark_averages_seeds_and_studies_an_override(tmp_path):
    from matryoshka.bench.defaults import run_defaults

    results = run_defaults(tmp_path, ["digits"], quick=True, seeds=2, overrides=["model.loss_weights=uniform"])
    mrl = results["digits"]["scores"]["mrl"]
    assert len(mrl["seeds"]) == 2 and mrl["seeds"][0]["knn1"] != mrl["seeds"][1]["knn1"]  # two trainings
    assert mrl["knn1"]["8"] == pytest.approx((mrl["seeds"][0]["knn1"]["8"] + mrl["seeds"][1]["knn1"]["8"]) / 2)
    saved = json.loads((tmp_path / "defaults.json").read_text())
    assert saved["seeds"] == 2 and saved["overrides"] == ["model.loss_weights=uniform"]
    configs = [json.loads(p.read_text())["config"] for p in tmp_path.glob("digits/mrl-*/config.json")]
    assert sorted(c["train"]["seed"] for c in configs) == [0, 1]
    assert all(c["model"]["loss_weights"] == "uniform" for c in configs)


def test_defaults_schedule_study_trains_only_mrl_again(tmp_path, capsys):
    """FF-k ignores the loss weights' schedule: studying it reuses the FF-k runs and retrains MRL alone."""
    from matryoshka.bench.defaults import run_defaults

    first = run_defaults(tmp_path, ["digits"], quick=True)
    before = {p.name for p in (tmp_path / "digits").iterdir()}
    capsys.readouterr()
    study = run_defaults(tmp_path, ["digits"], quick=True, overrides=["model.loss_weights_schedule=constant"])
    added = {p.name for p in (tmp_path / "digits").iterdir()} - before
    assert len(added) == 1 and added.pop().startswith("mrl-")
    # The finished FF-k runs are scored again, not resumed: the same scores, one line instead of one per run.
    out = capsys.readouterr().out
    assert "3 of 4 trained runs reused" in out and "resuming" not in out
    ff = [f"ff-{k}" for k in (4, 8, 16)]
    assert [study["digits"]["scores"][r]["knn1"] for r in ff] == [first["digits"]["scores"][r]["knn1"] for r in ff]


def test_defaults_timing_on_digits(tmp_path):
    from matryoshka.bench.defaults import run_timings

    timing = run_timings(tmp_path, ["digits"], epochs=2)["digits"]
    assert timing["train_rows"] == 1257 and timing["steps_per_epoch"] == 1257 // 64
    assert timing["default_epochs"] == 106 and timing["ms_per_step"] > 0
    assert (tmp_path / "timings.json").exists()


def test_engines_benchmark_small(tmp_path, pg08_server):
    pytest.importorskip("milvus_lite", reason="milvus-lite does not install here")
    pytest.importorskip("qdrant_client", reason="qdrant-client is not installed")
    pytest.importorskip("pgserver", reason="pgserver is not installed")
    args = ["bench", "engines", "--synthetic", "64", "--size", "3000", "--queries", "20", "--out", str(tmp_path)]
    server = [] if pg08_server.vector_trouble else ["--postgres", pg08_server.uri]  # the rows it adds, where it can
    result = CliRunner().invoke(app, [*args, "--plan", "adaptive:16:100:64", *server])
    assert result.exit_code == 0, result.output
    assert "goal: export to Milvus Lite >= 20,000 vectors/s" in result.output
    assert "goal: export to pgvector (embedded) >= 10,000 vectors/s" in result.output
    saved = json.loads((tmp_path / "results.json").read_text())
    engines = ["local", "milvus", "milvus-fetch", "qdrant", "pgvector"]
    engines += ["pgvector-server", "pgvector-server-half"] if server else []
    assert [r["engine"] for r in saved["rows"]] == engines
    agreement = {r["engine"]: r["agreement_with_local"] for r in saved["rows"]}
    assert saved["dims"] == [16, 64] and all(agreement[e] == 1.0 for e in engines[:4])
    assert agreement["pgvector"] >= 0.99  # HNSW shortlists: approximate
    if server:
        assert agreement["pgvector-server"] >= 0.99
        assert agreement["pgvector-server-half"] >= 0.8  # halfvec rounding moves a few shortlist candidates
    bad = CliRunner().invoke(app, ["bench", "engines", "--synthetic", "8", "--engines", "weaviate"])
    assert bad.exit_code == 2 and "unknown engine 'weaviate'" in bad.output
