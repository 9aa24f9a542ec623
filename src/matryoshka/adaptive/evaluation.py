"""Measure cascades honestly: thresholds fitted on one random half of held-out data, scored on the other,
over several random splits (mean and spread); or fitted on a trained model's validation split and scored on its
test split beside the oracle and every fixed dim (``mrl cascade``)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from matryoshka.adaptive.cascade import Cascade, Policy, oracle
from matryoshka.errors import InputError
from matryoshka.inference import encode_and_classify

if TYPE_CHECKING:
    from matryoshka.data import Split
    from matryoshka.nn.model import MatryoshkaClassifier


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0}


def _accuracies(logits: Sequence[torch.Tensor], labels: torch.Tensor) -> list[float]:
    return [(lg.argmax(1) == labels).float().mean().item() for lg in logits]


def evaluate_cascades(
    logits: Sequence[torch.Tensor],
    labels: torch.Tensor,
    nesting: Sequence[int],
    baseline_logits: dict[int, torch.Tensor] | None = None,
    splits: int = 5,
    fit_fraction: float = 0.5,
    match_within: float = 0.005,
    seed: int = 0,
) -> dict:
    """Cascade results over ``splits`` random fit/test splits of (logits, labels).

    ``baseline_logits`` maps a dim k to the logits of a separately trained model (FF-k); the best fixed-dim
    model is the most accurate of the MRL heads and these (the smallest dim on ties). The *matched* cascade
    uses the cheapest shared threshold whose fit-half accuracy is within ``match_within`` of that model's
    fit-half accuracy; its test-half accuracy and expected dim are reported with the ratio of dims.
    """
    nesting = list(nesting)
    if not 0 < fit_fraction < 1:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}")
    n = labels.shape[0]
    if n < 4:
        raise ValueError(f"need at least 4 held-out examples to split, got {n}")
    baseline_logits = baseline_logits or {}
    per_split: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        per_split.setdefault(key, []).append(value)

    best_dims = [
        _one_split(logits, labels, nesting, baseline_logits, fit_fraction, match_within, seed + s, add)
        for s in range(splits)
    ]
    stats = {key: _stats(values) for key, values in per_split.items()}
    # A sweep of one shared threshold fits nothing, so the whole set can be used for the trade-off curve.
    curve = Cascade(nesting).tradeoff(logits, labels, grid=51)
    best_method, best_dim = max(set(best_dims), key=best_dims.count)
    return {
        "splits": splits,
        "fit_fraction": fit_fraction,
        "match_within": match_within,
        "best_fixed": {"method": best_method, "dim": best_dim, "accuracy": stats["best_fixed_accuracy"]},
        "fixed": {
            "mrl": {str(m): stats[f"mrl@{m}"]["mean"] for m in nesting},
            "ff": {str(k): stats[f"ff@{k}"]["mean"] for k in sorted(baseline_logits)},
        },
        "policies": {
            name: {metric: stats[f"{name}.{metric}"] for metric in ("accuracy", "expected_dim", "head_cost")}
            for name in ("pairwise", "matched")
        },
        "matched_dim_ratio": stats["matched.dim_ratio"],
        "oracle": {metric: stats[f"oracle.{metric}"] for metric in ("accuracy", "expected_dim", "head_cost")},
        "curve": curve,
    }


def _one_split(
    logits: Sequence[torch.Tensor],
    labels: torch.Tensor,
    nesting: list[int],
    baseline_logits: dict[int, torch.Tensor],
    fit_fraction: float,
    match_within: float,
    seed: int,
    add: Callable[[str, float], None],
) -> tuple[str, int]:
    """One seeded fit/test split: record every figure with ``add``; returns the best fixed model (method, dim)."""
    n = labels.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_fit = int(n * fit_fraction)
    fit, test = perm[:n_fit], perm[n_fit:]
    fit_logits, test_logits = [lg[fit] for lg in logits], [lg[test] for lg in logits]
    # Best fixed-dim model, chosen on the fit half, scored on the test half.
    candidates = [("mrl", m, lg) for m, lg in zip(nesting, logits, strict=True)]
    candidates += [("ff", k, lg) for k, lg in sorted(baseline_logits.items())]
    fit_acc = [(lg[fit].argmax(1) == labels[fit]).float().mean().item() for _, _, lg in candidates]
    best = max(range(len(candidates)), key=lambda i: (fit_acc[i], -candidates[i][1]))
    method, best_dim, best_logits = candidates[best]
    add("best_fixed_accuracy", (best_logits[test].argmax(1) == labels[test]).float().mean().item())
    for m, acc in zip(nesting, _accuracies(test_logits, labels[test]), strict=True):
        add(f"mrl@{m}", acc)
    for k, lg in baseline_logits.items():
        add(f"ff@{k}", (lg[test].argmax(1) == labels[test]).float().mean().item())
    pairwise = Cascade(nesting).fit(fit_logits, labels[fit], policy="pairwise").predict(test_logits)
    target = fit_acc[best] - match_within
    matched = Cascade(nesting).fit(fit_logits, labels[fit], policy="target_accuracy", target=target)
    matched = matched.predict(test_logits)
    for name, res in (("pairwise", pairwise), ("matched", matched)):
        add(f"{name}.accuracy", res.accuracy(labels[test]))
        add(f"{name}.expected_dim", res.expected_dim)
        add(f"{name}.head_cost", res.mean_head_cost)
    add("matched.dim_ratio", best_dim / matched.expected_dim)
    for key, value in oracle(test_logits, labels[test], nesting).items():
        add(f"oracle.{key}", value)
    return method, best_dim


def fit_model_cascade(
    model: MatryoshkaClassifier,
    val: Split,
    policy: Policy = "pairwise",
    target: float | None = None,
    tolerance: float = 0.0,
    max_dim: int | None = None,
) -> Cascade:
    """Cascade thresholds fitted on a trained model's logits over ``val`` (its validation split)."""
    from matryoshka.nn.heads import FixedFeatureHead

    if isinstance(model.head, FixedFeatureHead):
        raise InputError("a cascade needs a model with nested heads (mrl or mrl_e), this one is an FF model")
    if len(val) == 0:
        raise InputError("the model's validation split is empty; retrain with data.val_size > 0 to fit thresholds")
    _, val_logits = encode_and_classify(model, val.x)
    return Cascade(model.nesting, max_dim).fit(val_logits, val.y, policy=policy, target=target, tolerance=tolerance)


def cascade_report(cascade: Cascade, model: MatryoshkaClassifier, test: Split) -> dict[str, Any]:
    """A fitted cascade on ``test`` (only the heads it needs run), beside the oracle and each fixed dim.

    Returns ``cascade`` and ``oracle`` (accuracy, expected_dim, head_cost), ``fixed`` (dim -> accuracy),
    ``exits`` (dim -> examples stopping there) and ``thresholds`` (dim -> threshold).
    """
    device = next(model.parameters()).device
    result = cascade.predict_model(model, test.x.to(device))
    _, logits = encode_and_classify(model, test.x)
    dims_used = result.dims_used.cpu()
    return {
        "cascade": {
            "accuracy": result.accuracy(test.y),
            "expected_dim": result.expected_dim,
            "head_cost": result.mean_head_cost,
        },
        "oracle": oracle(logits, test.y, cascade.nesting),
        "fixed": dict(zip(cascade.nesting, _accuracies(logits[: len(cascade.nesting)], test.y), strict=True)),
        "exits": {m: int((dims_used == m).sum()) for m in cascade.nesting},
        "thresholds": dict(zip(cascade.nesting, cascade.thresholds_.tolist(), strict=True)),
    }
