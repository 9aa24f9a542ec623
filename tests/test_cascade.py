import pytest
import torch

from matryoshka import MRLHead
from matryoshka.adaptive import Cascade, evaluate_cascades, oracle
from matryoshka.adaptive.cascade import run_thresholds
from matryoshka.nn.model import MatryoshkaClassifier

NESTING = [8, 16, 32]


def _logits_from_probs(probs):
    return torch.log(torch.tensor(probs, dtype=torch.float32))


def _toy():
    # 4 examples, 2 classes, label 0 for all.
    # dim 8 : confident+right, confident+wrong, unsure+wrong, unsure+right
    # dim 16: right, right, right, wrong;   dim 32: right everywhere
    d8 = _logits_from_probs([[0.95, 0.05], [0.1, 0.9], [0.4, 0.6], [0.55, 0.45]])
    d16 = _logits_from_probs([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.3, 0.7]])
    d32 = _logits_from_probs([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1]])
    return [d8, d16, d32], torch.zeros(4, dtype=torch.long)


def test_run_thresholds_hand_computed():
    logits, _ = _toy()
    conf, pred = torch.stack([lg.softmax(-1) for lg in logits]).max(-1)
    res = run_thresholds(conf, pred, torch.tensor([0.92, 0.75, 0.0]), NESTING)
    # ex0 stops at 8 (0.95); ex1 at 16 (0.9 at 8 < 0.92, 0.8 at 16); ex2 at 32; ex3 at 32.
    assert res.dims_used.tolist() == [8, 16, 32, 32]
    assert res.head_cost.tolist() == [8, 24, 56, 56]
    assert res.predictions.tolist() == [0, 0, 0, 0]
    assert res.expected_dim == pytest.approx(22.0) and res.mean_head_cost == pytest.approx(36.0)


def test_pairwise_fit_keeps_accuracy_of_next_dim():
    logits, labels = _toy()
    cascade = Cascade(NESTING).fit(logits, labels, policy="pairwise")
    res = cascade.predict(logits)
    assert res.accuracy(labels) == 1.0
    assert cascade.thresholds_[-1] == 0.0
    assert res.expected_dim < 32


def test_target_policies():
    logits, labels = _toy()
    cheap = Cascade(NESTING).fit(logits, labels, policy="target_dim", target=8)
    assert cheap.predict(logits).expected_dim == 8
    accurate = Cascade(NESTING).fit(logits, labels, policy="target_accuracy", target=1.0)
    res = accurate.predict(logits)
    assert res.accuracy(labels) == 1.0
    with pytest.raises(ValueError, match="needs a target"):
        Cascade(NESTING).fit(logits, labels, policy="target_dim")


def test_oracle_upper_bound():
    logits, labels = _toy()
    out = oracle(logits, labels, NESTING)
    # smallest correct dim: 8, 16, 16, 8
    assert out["accuracy"] == 1.0 and out["expected_dim"] == pytest.approx(12.0)


def test_predict_model_runs_only_needed_heads():
    torch.manual_seed(0)
    head = MRLHead(32, 5, NESTING)
    model = MatryoshkaClassifier(torch.nn.Linear(10, 32), head).eval()
    x = torch.randn(200, 10)
    with torch.no_grad():
        full = model(x)
    cascade = Cascade(NESTING)
    cascade.thresholds_ = torch.tensor([0.5, 0.4, 0.0])
    calls = []
    original = head.logits_at
    head.logits_at = lambda z, i: calls.append((i, z.shape[0])) or original(z, i)
    res = cascade.predict_model(model, x)
    ref = cascade.predict(full)
    assert torch.equal(res.predictions, ref.predictions) and torch.equal(res.dims_used, ref.dims_used)
    assert calls[0] == (0, 200)
    reached = [(ref.dims_used >= m).sum().item() for m in NESTING]
    assert [c[1] for c in calls] == reached[: len(calls)]
    assert torch.equal(res.head_cost, ref.head_cost)


def test_tied_head_logits_at_matches_forward():
    head = MRLHead(32, 5, NESTING, tied=True)
    z = torch.randn(4, 32)
    for i, out in enumerate(head(z)):
        torch.testing.assert_close(head.logits_at(z, i), out)


def test_bad_inputs():
    logits, labels = _toy()
    with pytest.raises(ValueError, match="logits for 2 dims"):
        Cascade(NESTING).fit(logits[:2], labels)
    with pytest.raises(ValueError, match="expected"):
        Cascade(NESTING).fit([logits[0], logits[1][:, :1], logits[2]], labels)
    with pytest.raises(ValueError, match="labels must be in"):
        Cascade(NESTING).fit(logits, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="labels must have shape"):
        Cascade(NESTING).fit(logits, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="non-empty"):
        Cascade(NESTING).fit([lg[:0] for lg in logits], labels[:0])
    with pytest.raises(RuntimeError, match="call fit"):
        Cascade(NESTING).predict(logits)
    with pytest.raises(ValueError, match="max_dim"):
        Cascade(NESTING, max_dim=20)
    with pytest.raises(ValueError, match="unknown policy"):
        Cascade(NESTING).fit(logits, labels, policy="magic")


def test_max_dim_and_save_load(tmp_path):
    logits, labels = _toy()
    cascade = Cascade(NESTING, max_dim=16).fit(logits, labels)
    assert cascade.nesting == [8, 16]
    assert cascade.predict(logits).dims_used.max() <= 16
    cascade.save(tmp_path / "c.json")
    loaded = Cascade.load(tmp_path / "c.json")
    assert torch.equal(loaded.thresholds_, cascade.thresholds_)


def test_evaluate_cascades_over_splits():
    torch.manual_seed(0)
    n, c = 400, 4
    labels = torch.randint(0, c, (n,))
    # Larger dims are sharper around the true class: accuracy grows with dim.
    logits = [torch.randn(n, c) + s * torch.nn.functional.one_hot(labels, c) for s in (1.0, 2.0, 4.0)]
    ff = {32: torch.randn(n, c) + 4.0 * torch.nn.functional.one_hot(labels, c)}
    out = evaluate_cascades(logits, labels, NESTING, ff, splits=3)
    assert out["splits"] == 3 and out["best_fixed"]["dim"] == 32
    matched = out["policies"]["matched"]
    assert 8 <= matched["expected_dim"]["mean"] <= 32
    assert matched["accuracy"]["mean"] >= out["best_fixed"]["accuracy"]["mean"] - 0.05
    assert out["oracle"]["accuracy"]["mean"] >= matched["accuracy"]["mean"]
    assert len(out["curve"]) == 51
    with pytest.raises(ValueError, match="fit_fraction"):
        evaluate_cascades(logits, labels, NESTING, fit_fraction=1.0)


def _toy_model(seed=0):
    """An MRL model on 10-dim inputs with labels it classifies well at 32 dims and worse at 8."""
    from matryoshka.data import Split

    torch.manual_seed(seed)
    model = MatryoshkaClassifier(torch.nn.Linear(10, 32), MRLHead(32, 3, NESTING)).eval()
    x = torch.randn(120, 10)
    with torch.no_grad():
        y = model(x)[-1].argmax(1)
    return model, Split(x[:60], y[:60]), Split(x[60:], y[60:])


def test_fit_model_cascade_and_report():
    from matryoshka.adaptive.evaluation import cascade_report, fit_model_cascade

    model, val, test = _toy_model()
    cascade = fit_model_cascade(model, val, policy="target_dim", target=8)
    report = cascade_report(cascade, model, test)
    assert report["exits"] == {8: 60, 16: 0, 32: 0} and report["cascade"]["expected_dim"] == 8.0
    assert report["fixed"][32] == 1.0 and report["fixed"][8] == pytest.approx(report["cascade"]["accuracy"])
    assert report["oracle"]["accuracy"] == 1.0 and set(report["thresholds"]) == {8, 16, 32}
    short = cascade_report(fit_model_cascade(model, val, max_dim=16), model, test)
    assert set(short["fixed"]) == set(short["exits"]) == {8, 16}


def test_fit_model_cascade_rejects_ff_models_empty_splits_and_missing_targets():
    from matryoshka.adaptive.evaluation import fit_model_cascade
    from matryoshka.data import Split
    from matryoshka.errors import InputError
    from matryoshka.nn.heads import FixedFeatureHead

    model, val, _ = _toy_model()
    ff = MatryoshkaClassifier(torch.nn.Linear(10, 32), FixedFeatureHead(32, 3, 8))
    with pytest.raises(InputError, match="FF model"):
        fit_model_cascade(ff, val)
    with pytest.raises(InputError, match="validation split is empty"):
        fit_model_cascade(model, Split(val.x[:0], val.y[:0]))
    with pytest.raises(InputError, match="needs a target"):
        fit_model_cascade(model, val, policy="target_dim")
