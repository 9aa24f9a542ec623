import json

import pytest

from matryoshka.demo import DemoSettings, check_targets, run_demo


def _tiny(**kw):
    options = {"min_dim": 8, "embed_dim": 32, "width": 8, "epochs": 3, "train_subset": 1500, "knn_queries": 300}
    return DemoSettings(**{**options, "plan_queries": 300, "probe_iters": 20, "adaptor_steps": 50, **kw})


def test_demo_writes_results_report_and_plots(tmp_path):
    results = run_demo(tmp_path, _tiny())
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["dims"] == [8, 16, 32] == results["dims"]
    model = json.loads((tmp_path / "models" / "mrl" / "config.json").read_text())["config"]["model"]
    assert saved["settings"]["paper_heads"] and model["head_bias"] and not model["logit_scale"]  # the paper's heads
    for section in ("classification", "knn1"):
        for method in ("mrl", "mrl_e", "ff", "svd", "random"):
            values = saved[section][method]
            assert set(values) == {"8", "16", "32"}
            assert all(0 <= v <= 1 for v in values.values())
    assert saved["classification"]["mrl"]["32"] > 0.5
    assert set(saved["retrieval"]["per_dim"]["mrl"]["8"]) == {"map@10", "p@10", "r@10"}
    plans = {row["plan"]: row for row in saved["retrieval"]["plans"]}
    assert set(plans) == {"full", "adaptive:8:200:32", "adaptive:16:200:32", "funnel:16x200,32x10"}
    assert plans["full"]["recall_vs_exact"] == 1.0
    # Same queries, same database: exact full-dim search equals the per-dim metric at the full dim.
    assert plans["full"]["map@10"] == pytest.approx(saved["retrieval"]["per_dim"]["mrl"]["32"]["map@10"], abs=1e-6)
    assert len(saved["targets"]) == 8 and saved["not_run"] == {"ff": []}
    stages = saved["timings"]["stages"]
    assert "train 5 models" in stages and "evaluate every method at every dim" in stages and "report" in stages
    assert sum(stages.values()) <= saved["timings"]["total_s"] + 0.5
    adaptive = saved["adaptive_classification"]
    assert adaptive["splits"] == 5 and set(adaptive["policies"]) == {"pairwise", "matched"}
    assert 8 <= adaptive["policies"]["matched"]["expected_dim"]["mean"] <= 32
    assert set(adaptive["fixed"]["ff"]) == {"8", "16", "32"}
    pngs = (
        "accuracy_vs_dims.png",
        "knn1_vs_dims.png",
        "map10_vs_dims.png",
        "cost_vs_accuracy.png",
        "cascade_vs_dims.png",
        "adaptor_vs_dims.png",
        "answer.png",
    )
    for png in pngs:
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "Targets" in html and html.count("<img") == 7
    assert html.index("The answer") < html.index("Targets") < html.index("Classification accuracy")
    assert "MRL-E within 1pt of MRL from 16 dims: <span" in html and "<th>stage</th>" in html
    assert oct((tmp_path / "results.json").stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "report.html").stat().st_mode & 0o777) == "0o644"
    assert "Adaptive classification" in html and "Adaptive retrieval" in html and "post-hoc adaptor" in html
    adaptor = saved["adaptor"]["recall@10"]
    assert set(adaptor) == {"raw", "PCA", "SVD", "adaptor"} and adaptor["raw"]["32"] == 1.0
    assert adaptor["adaptor"]["8"] >= adaptor["raw"]["8"]
    # A rerun reuses the trained models (nothing retrained) and gives the same numbers.
    again = run_demo(tmp_path, _tiny())
    assert again["classification"]["mrl"] == saved["classification"]["mrl"]
    assert sum(again["training_seconds"].values()) == pytest.approx(sum(saved["training_seconds"].values()))


def test_quick_mode_trains_ff_at_some_dims_and_marks_the_rest(tmp_path):
    results = run_demo(tmp_path, _tiny(ff_dims=(8,), adaptor_steps=0, epochs=1))
    assert results["not_run"] == {"ff": [16]}
    assert set(results["classification"]["ff"]) == {"8", "32"} == set(results["knn1"]["ff"])
    assert "adaptor" not in results and sorted(results["training_seconds"]) == ["ff-32", "ff-8", "mrl", "mrl_e"]
    html = (tmp_path / "report.html").read_text()
    assert "not trained at 16 dims" in html


def test_check_targets_reports_measured_gaps():
    dims = [2, 4, 8, 16, 32]

    def acc(v, **at):
        return {str(m): at.get(f"d{m}", v) for m in dims}

    table = {
        "mrl": acc(0.9),
        "ff": {"2": 0.95, "32": 0.9},  # FF-k trained at 2 and 32 only
        "svd": acc(0.5, d4=0.85),
        "random": acc(0.7),
        "mrl_e": acc(0.895, d2=0.5),
    }
    checks = {c["target"]: c for c in check_targets({"dims": dims, "classification": table, "knn1": table})}
    assert len(checks) == 8
    ff = checks["heads: MRL >= FF-k - 1pt at every dim with an FF model"]
    assert not ff["met"] and ff["measured"] == "worst gap -5.00pt at dim 2"
    svd = checks["1-NN: MRL >= SVD of FF-full + 10pt at 2 and 4 dims"]
    assert not svd["met"] and svd["measured"] == "smallest margin +5.00pt at dim 4"
    assert checks["heads: MRL >= Rand. FS of FF-full + 10pt at 2 and 4 dims"]["met"]
    assert checks["heads: MRL-E within 1pt of MRL from 16 dims"]["met"]  # the 2-dim gap does not count
