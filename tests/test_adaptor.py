import numpy as np
import pytest

from matryoshka.posthoc import MatryoshkaAdaptor


def _embeddings(n=1500, d=16, seed=0):
    rng = np.random.default_rng(seed)
    # Information spread over all dims in a random (fixed) basis: raw prefixes are poor, a rotation helps.
    basis = np.linalg.qr(np.random.default_rng(42).standard_normal((d, d)))[0]
    scales = np.concatenate([[6.0, 5.0, 4.0, 3.0], np.full(d - 4, 0.3)])  # four dominant directions
    return (rng.standard_normal((n, d)) * scales) @ basis


def _recall(a, b, k=10):
    def knn(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        s = x @ x.T
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1)[:, :k]

    return np.mean([len(set(r) & set(t)) / k for r, t in zip(knn(a), knn(b), strict=True)])


def test_adaptor_prefixes_beat_raw_truncation(tmp_path):
    x = _embeddings()
    adaptor = MatryoshkaAdaptor(nesting=[2, 4, 8, 16], steps=60, batch_size=256, eval_every=20, validation=300)
    adaptor.fit(x)
    test = _embeddings(400, seed=1)
    small = adaptor.transform(test, dim=4)
    assert small.shape == (400, 4) and np.allclose(np.linalg.norm(small, axis=1), 1, atol=1e-5)
    assert _recall(small, test) > _recall(test[:, :4], test) + 0.1
    adaptor.save(tmp_path / "a.safetensors")
    loaded = MatryoshkaAdaptor.load(tmp_path / "a.safetensors")
    np.testing.assert_allclose(loaded.transform(test, 4), small, atol=1e-6)


def test_adaptor_bad_input():
    adaptor = MatryoshkaAdaptor(steps=2, validation=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        adaptor.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="non-empty"):
        adaptor.fit(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="NaN"):
        adaptor.fit(np.full((10, 4), np.nan))
    adaptor.fit(_embeddings(100, d=8))
    with pytest.raises(ValueError, match="fitted on 8-dim"):
        adaptor.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dim must be in"):
        adaptor.transform(_embeddings(5, d=8), dim=9)
    with pytest.raises(ValueError, match="does not exist"):
        MatryoshkaAdaptor.load("no/such/adaptor.safetensors")


def _quiet_pairs():
    """(documents, queries): twelve loud directions carry no pairing signal; four quiet ones identify each document."""
    rng = np.random.default_rng(0)
    ident = rng.standard_normal((1500, 4))
    docs = np.concatenate([rng.standard_normal((1500, 12)) * 3, ident], 1)
    queries = np.concatenate([rng.standard_normal((1500, 12)) * 3, ident + 0.05 * rng.standard_normal((1500, 4))], 1)
    return docs, queries


def test_known_pairs_pull_the_matching_directions_to_the_front():
    # Unsupervised, the adaptor keeps the loud directions first; with (query, document) pairs its 4-dim prefix
    # finds the right document.
    docs, queries = _quiet_pairs()

    def top1(adaptor):
        q, d = adaptor.transform(queries[1000:], 4), adaptor.transform(docs[1000:], 4)
        return np.mean((q @ d.T).argmax(1) == np.arange(500))

    settings = {"nesting": [4, 8, 16], "steps": 100, "batch_size": 256, "eval_every": 50, "validation": 300, "lr": 1e-2}
    plain = MatryoshkaAdaptor(**settings).fit(docs[:1000])
    paired = MatryoshkaAdaptor(**settings).fit(docs[:1000], pairs=(queries[:1000], docs[:1000]))
    assert top1(plain) < 0.05 and top1(paired) > 0.5
    with pytest.raises(ValueError, match="as many queries as documents"):
        MatryoshkaAdaptor(steps=1).fit(docs, pairs=(queries[:10], docs[:11]))


def test_dim_weights_decide_which_prefixes_the_pairs_shape():
    # With the 4-dim prefix's terms weighted 0 it keeps the loud directions (and finds few documents); weighted, it
    # finds them. Wrong lengths are refused.
    docs, queries = _quiet_pairs()

    def top1(dim_weights):
        settings = {"nesting": [4, 8, 16], "steps": 100, "batch_size": 256, "eval_every": 50, "validation": 300}
        adaptor = MatryoshkaAdaptor(**settings, lr=1e-2, dim_weights=dim_weights)
        adaptor.fit(docs[:1000], pairs=(queries[:1000], docs[:1000]))
        q, d = adaptor.transform(queries[1000:], 4), adaptor.transform(docs[1000:], 4)
        return np.mean((q @ d.T).argmax(1) == np.arange(500))

    assert top1([0, 0, 1]) < 0.2 and top1([4, 1, 1]) > 0.5
    with pytest.raises(ValueError, match="2 weights for 3 nesting dims"):
        MatryoshkaAdaptor(nesting=[4, 8, 16], dim_weights=[1, 1], steps=1).fit(docs[:100])


def test_holdout_split_is_seeded_and_disjoint():
    from matryoshka.posthoc.evaluation import holdout_split

    x = np.arange(100)[:, None]
    held, rest = holdout_split(x, 20, seed=3)
    assert len(held) == 20 and len(rest) == 80 and set(held[:, 0]).isdisjoint(rest[:, 0])
    assert np.array_equal(held, holdout_split(x, 20, seed=3)[0]) and not np.array_equal(held, holdout_split(x, 20)[0])


def test_fit_and_compare_scores_every_method_on_held_out_rows():
    from matryoshka.errors import InputError
    from matryoshka.posthoc.evaluation import fit_and_compare, recall_table

    out = fit_and_compare(_embeddings(1000), queries=500, corpus=600, nesting=[4, 16], steps=30, batch_size=256)
    assert (out.queries, out.corpus) == (200, 600)  # at most a fifth held out; the corpus cut to 600 rows
    assert list(out.recall) == ["raw", "PCA", "SVD", "adaptor"] and out.adaptor.nesting_ == [4, 16]
    assert out.recall["raw"][16] == 1.0 and out.recall["adaptor"][4] > out.recall["raw"][4] and out.fit_seconds > 0
    assert out.recall_json()["raw"]["16"] == 1.0
    lines = recall_table(out.recall, [4, 16])
    assert lines[0].split() == ["dim", "raw", "PCA", "SVD", "adaptor"] and lines[2].split()[:2] == ["16", "1.000"]
    with pytest.raises(InputError, match="at least 50 rows"):
        fit_and_compare(_embeddings(40))


def test_fit_and_score_takes_its_own_queries():
    from matryoshka.posthoc.evaluation import fit_and_score

    corpus, queries = _embeddings(600), _embeddings(30, seed=1)
    out = fit_and_score(corpus, queries, [4, 16], steps=20, batch_size=256)
    assert (out.corpus, out.queries) == (600, 30) and set(out.recall["adaptor"]) == {4, 16}


def test_mrl_adapt_fit_and_transform_cli(tmp_path):
    from typer.testing import CliRunner

    from matryoshka.cli import app

    np.save(tmp_path / "e.npy", _embeddings(1200).astype(np.float32))
    runner = CliRunner()
    args = ["adapt", "fit", "--embeddings", str(tmp_path / "e.npy"), "--out", str(tmp_path / "a.safetensors")]
    options = [
        "--nesting",
        "2,4,8,16",
        "--steps",
        "40",
        "--holdout",
        "200",
        "--loss",
        "listwise",
        "--target-dims",
        "2,4",
    ]
    result = runner.invoke(app, [*args, *options, "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip().split(" ")[0].isdigit()]
    assert [int(r[0]) for r in rows] == [2, 4, 8, 16]
    assert all(float(r[4]) > float(r[1]) for r in rows[:2])  # adaptor beats raw truncation at 2 and 4 dims
    assert "recommended, the cheapest option within 1 point" in result.output
    out = tmp_path / "small.npy"
    transform = ["adapt", "transform", "--adaptor", str(tmp_path / "a.safetensors")]
    result = runner.invoke(app, [*transform, "--embeddings", str(tmp_path / "e.npy"), "--out", str(out), "--dim", "4"])
    assert result.exit_code == 0, result.output
    assert np.load(out).shape == (1200, 4)
    bad = runner.invoke(app, [*transform, "--embeddings", str(tmp_path / "e.npy"), "--out", str(out), "--dim", "99"])
    assert bad.exit_code == 2 and "dim must be in" in bad.output
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    bad = runner.invoke(
        app,
        [
            "adapt",
            "transform",
            "--adaptor",
            str(tmp_path / "junk.safetensors"),
            "--embeddings",
            str(tmp_path / "e.npy"),
            "--out",
            str(out),
        ],
    )
    assert bad.exit_code == 2 and "not a readable adaptor" in bad.output
    half = runner.invoke(app, [*args, "--queries", str(tmp_path / "e.npy")])
    assert half.exit_code == 2 and "both --queries and --documents" in half.output


def test_the_recommendation_compares_with_the_best_baseline_and_picks_the_cheapest_close_option():
    from matryoshka.posthoc.evaluation import recommendation

    # Held-out recall@10 of MiniLM embeddings: the adaptor's gain over PCA at 192 dims is its SVD starting point.
    minilm = {
        "raw": {12: 0.051, 192: 0.727, 384: 1.0},
        "PCA": {12: 0.313, 192: 0.868, 384: 0.915},
        "SVD": {12: 0.299, 192: 0.942, 384: 1.0},
        "adaptor": {12: 0.295, 192: 0.941, 384: 1.0},
    }
    said = recommendation(minilm, [12, 192, 384])
    assert "PCA at 12 dims" in said and "SVD at 192 dims" in said and "the adaptor is not needed" in said
    assert "the adaptor at" not in said
    # The FF-512 image features: there the adaptor is far above every baseline at 8 to 32 dims.
    ff512 = {
        "raw": {8: 0.304, 32: 0.622, 64: 0.726, 128: 0.811, 512: 1.0},
        "PCA": {8: 0.517, 32: 0.885, 64: 0.944, 128: 0.979, 512: 0.987},
        "SVD": {8: 0.514, 32: 0.882, 64: 0.944, 128: 0.984, 512: 1.0},
        "adaptor": {8: 0.616, 32: 0.914, 64: 0.944, 128: 0.960, 512: 0.963},
    }
    said = recommendation(ff512, [8, 32, 64, 128, 512])
    assert "the adaptor at 8, 32 dims" in said and "PCA at 64 dims" in said and "SVD at 128 dims" in said
    assert "not needed" not in said
    near = {"raw": {8: 0.695, 16: 1.0}, "PCA": {8: 0.70, 16: 1.0}, "adaptor": {8: 0.705, 16: 1.0}}
    assert "plain truncation at 8 dims" in recommendation(near, [8, 16])  # free, and within a point


def test_listwise_loss_lists_exact_neighbours_and_starts_at_zero_at_the_full_dim():
    import torch

    x = torch.as_tensor(_embeddings(600), dtype=torch.float32)
    adaptor = MatryoshkaAdaptor([16], loss="listwise", neighbours=5, negatives=20, batch_size=128, weights=(1, 1, 0))
    adaptor._check_fit(x, None)  # nesting_ = [16] and its weights, as fit() sets them
    g = torch.Generator().manual_seed(0)
    anchors, near = adaptor._neighbour_lists(x, g)
    unit = torch.nn.functional.normalize(x, dim=1)
    cos = unit[anchors] @ unit.T
    cos[torch.arange(len(anchors)), anchors] = -2  # not its own neighbour
    assert torch.equal(near, cos.topk(5, dim=1).indices)
    # At the start the transform is a rotation (the MLP outputs zero): every full-dim cosine, hence the teacher's
    # softmax, is kept exactly, so the loss is zero; a map that bends the cosines is not.
    from matryoshka.posthoc.adaptor import _Transform

    f = _Transform(16, 8)
    with torch.no_grad():
        f.rotate.weight.copy_(torch.linalg.qr(torch.randn(16, 16, generator=g))[0])
    assert adaptor._listwise_loss(f, x, anchors, near, g).item() < 1e-6
    with torch.no_grad():
        f.rotate.weight[:8] *= 3
    assert adaptor._listwise_loss(f, x, anchors, near, g).item() > 1e-3
    with pytest.raises(ValueError, match="loss must be"):
        MatryoshkaAdaptor(loss="mse")


def test_listwise_adaptor_fits_and_round_trips(tmp_path):
    x = _embeddings(1200)
    adaptor = MatryoshkaAdaptor(nesting=[4, 8, 16], loss="listwise", steps=20, eval_every=10, validation=200)
    adaptor.fit(x)
    assert [h["step"] for h in adaptor.history_] == [0, 10, 20] and np.isfinite(adaptor.history_[-1]["loss"])
    adaptor.save(tmp_path / "a.safetensors")
    np.testing.assert_allclose(
        MatryoshkaAdaptor.load(tmp_path / "a.safetensors").transform(x, 4), adaptor.transform(x, 4)
    )


def test_target_dims_choose_the_kept_state_and_are_checked():
    x = _embeddings(800)
    every = MatryoshkaAdaptor([4, 8, 16], steps=20, eval_every=10, validation=200, loss="listwise").fit(x)
    small = MatryoshkaAdaptor([4, 8, 16], steps=20, eval_every=10, validation=200, loss="listwise", target_dims=[4])
    small.fit(x)
    # same seed, same training: only the score that picks the kept state differs (recall at 4 dims vs the mean)
    assert [h["loss"] for h in every.history_[1:]] == [h["loss"] for h in small.history_[1:]]
    assert [h["val_recall"] for h in every.history_] != [h["val_recall"] for h in small.history_]
    with pytest.raises(ValueError, match="target dim 32 is larger"):
        MatryoshkaAdaptor([4, 8], steps=1, target_dims=[32]).fit(x)
    with pytest.raises(ValueError, match="nesting dim 32 is larger"):
        MatryoshkaAdaptor([4, 32], steps=1).fit(x)


def test_fitting_reports_step_lines_with_rate_and_time_left_while_it_runs(monkeypatch):
    """In a log (not a terminal) the fit prints a line every log_every steps as it goes, not one line at the end."""
    import contextlib
    import io

    import torch

    steps_done = {"n": 0}
    adam_step = torch.optim.Adam.step

    def counted_step(self, *args, **kwargs):
        steps_done["n"] += 1
        return adam_step(self, *args, **kwargs)

    written: list[tuple[int, str]] = []

    class Log(io.StringIO):  # not a TTY; remembers how many optimizer steps had run when each line came
        def write(self, text):
            written.append((steps_done["n"], text))
            return super().write(text)

    monkeypatch.setattr(torch.optim.Adam, "step", counted_step)
    log = Log()
    with contextlib.redirect_stdout(log):
        MatryoshkaAdaptor(
            nesting=[4, 16], steps=40, batch_size=64, eval_every=20, validation=100, progress=True, log_every=10
        ).fit(_embeddings(400))
    lines = [(n, line) for n, text in written for line in text.splitlines() if line.strip()]
    step_lines = {
        line.split()[3]: n for n, line in lines if line.startswith("fitting adaptor: step ") and "left" in line
    }
    assert step_lines == {"10/40": 10, "20/40": 20, "30/40": 30}, lines  # each printed when its step had just run
    assert all(("s/step" in line or "steps/s" in line) and "loss" in line for _, line in lines if "left" in line)
    assert any("fitting adaptor: about" in line for _, line in lines)  # the early estimate
    assert any("held-out recall@10" in line for n, line in lines if n == 20)
    assert "\x1b[" not in log.getvalue()  # no live bar, no terminal codes in a log
