"""Adaptive classification: a cascade over the nested heads of one MRL model.

Kusupati et al. 2022, Sec. 4.2.1: thresholds on the maximum softmax probability, learned on held-out data,
decide per example whether to stop at the current dim or go on to the next (8 -> 16 -> 32 -> ...). Easy
examples stop at tiny dims, hard ones use more; the paper reaches the accuracy of a 512-d model with
about 37 dims on average.

Example::

    from matryoshka.adaptive import Cascade
    cascade = Cascade(nesting).fit(val_logits, val_labels, policy="target_accuracy", target=0.92)
    result = cascade.predict(test_logits)          # or cascade.predict_model(model, x): only needed heads run
    result.predictions, result.dims_used, result.expected_dim, result.head_cost
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from matryoshka.errors import InputError
from matryoshka.nesting import validate_nesting

Policy = Literal["pairwise", "target_accuracy", "target_dim", "fixed"]


@dataclass
class CascadeResult:
    predictions: torch.Tensor  # (N,) class per example
    dims_used: torch.Tensor  # (N,) the dim at which each example stopped
    head_cost: torch.Tensor  # (N,) sum of the dims of every head evaluated for the example

    @property
    def expected_dim(self) -> float:
        return self.dims_used.float().mean().item()

    @property
    def mean_head_cost(self) -> float:
        return self.head_cost.float().mean().item()

    def accuracy(self, labels: torch.Tensor) -> float:
        return (self.predictions == labels.to(self.predictions.device)).float().mean().item()


def _check_logits(logits: Sequence[torch.Tensor], nesting: list[int], labels: torch.Tensor | None = None) -> None:
    if len(logits) != len(nesting):
        raise InputError(f"got logits for {len(logits)} dims, but the cascade has {len(nesting)}: {nesting}")
    shape = logits[0].shape
    if len(shape) != 2 or shape[0] == 0:
        raise InputError(f"logits must be non-empty (N, num_classes) tensors, got {tuple(shape)}")
    for m, lg in zip(nesting, logits, strict=True):
        if lg.shape != shape:
            raise InputError(f"logits at dim {m} have shape {tuple(lg.shape)}, expected {tuple(shape)} like the first")
    if labels is not None:
        if labels.shape != (shape[0],):
            raise InputError(f"labels must have shape ({shape[0]},), got {tuple(labels.shape)}")
        if labels.min() < 0 or labels.max() >= shape[1]:
            raise InputError(f"labels must be in [0, {shape[1]}) to match the logits' classes, got max {labels.max()}")


def confidences(logits: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Max softmax probability and argmax per dim, each (n_dims, N)."""
    stacked = torch.stack([lg.float() for lg in logits])
    probs = stacked.softmax(-1)
    conf, pred = probs.max(-1)
    return conf, pred


def run_thresholds(
    conf: torch.Tensor, pred: torch.Tensor, thresholds: torch.Tensor, nesting: list[int]
) -> CascadeResult:
    """Simulate the cascade: stop at the first dim whose confidence reaches its threshold (always at the last)."""
    n = conf.shape[1]
    stop = conf >= thresholds[:, None]
    stop[-1] = True
    first = stop.float().argmax(0)  # index of the first True
    dims = torch.tensor(nesting, device=conf.device)
    cum = dims.cumsum(0)
    return CascadeResult(pred[first, torch.arange(n, device=conf.device)], dims[first], cum[first])


class Cascade:
    """Thresholds on max softmax probability per dim; ``thresholds_[i]`` is used at ``nesting[i]``.

    Args:
        nesting: the dims of the heads, increasing.
        max_dim: the largest dim the cascade may reach (a prefix of the nesting list); default all.

    Example::

        import torch
        from matryoshka import Cascade

        # Per-dim logits of 100 validation examples at dims 8, 16, 32 (from MRLHead), and their labels.
        logits, labels = [torch.randn(100, 10) * s for s in (1, 2, 4)], torch.randint(0, 10, (100,))
        cascade = Cascade([8, 16, 32]).fit(logits, labels)      # thresholds learned on held-out data
        result = cascade.predict(logits)
        print(result.expected_dim)
    """

    def __init__(self, nesting: Sequence[int], max_dim: int | None = None) -> None:
        self.nesting = validate_nesting(nesting)
        if max_dim is not None:
            if max_dim not in self.nesting:
                raise InputError(f"max_dim={max_dim} must be one of the nesting dims {self.nesting}")
            self.nesting = [m for m in self.nesting if m <= max_dim]
        self.thresholds_: torch.Tensor | None = None

    def _prefix(self, logits: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return list(logits)[: len(self.nesting)]

    # -- fitting --------------------------------------------------------------------------------------------
    def fit(
        self,
        val_logits: Sequence[torch.Tensor],
        val_labels: torch.Tensor,
        policy: Policy = "pairwise",
        target: float | None = None,
        tolerance: float = 0.0,
        grid: int = 101,
    ) -> Cascade:
        """Learn thresholds on held-out logits (one (N, C) tensor per dim; extra larger dims are ignored).

        Policies:
            pairwise: for each consecutive pair of dims (i, i+1), the lowest threshold at dim i (most early
                exits) for which stopping at i or going on to i+1 loses at most ``tolerance`` accuracy
                against always using i+1 (the paper's grid search per pair).
            target_accuracy: one threshold for all dims; the cheapest (lowest expected dim) whose held-out
                accuracy reaches ``target``.
            target_dim: one threshold for all dims; the most accurate whose expected dim is <= ``target``.
        """
        logits = self._prefix(val_logits)
        _check_logits(logits, self.nesting, val_labels)
        conf, pred = confidences(logits)
        labels = val_labels.to(conf.device)
        correct = pred == labels
        grid_values = torch.linspace(0, 1, grid, device=conf.device)
        n_dims = len(self.nesting)
        if policy == "pairwise":
            thresholds = torch.ones(n_dims, device=conf.device)
            for i in range(n_dims - 1):
                reference = correct[i + 1].float().mean()
                for t in grid_values:  # lowest first: the first that keeps accuracy is the cheapest
                    pair = torch.where(conf[i] >= t, correct[i], correct[i + 1]).float().mean()
                    if pair >= reference - tolerance:
                        thresholds[i] = t
                        break
        elif policy in ("target_accuracy", "target_dim"):
            if target is None:
                raise InputError(f"policy {policy!r} needs a target")
            curve = self.tradeoff(logits, val_labels, grid)
            if policy == "target_accuracy":
                ok = [p for p in curve if p["accuracy"] >= target]
                best = min(ok, key=lambda p: p["expected_dim"]) if ok else max(curve, key=lambda p: p["accuracy"])
            else:
                ok = [p for p in curve if p["expected_dim"] <= target]
                best = max(ok, key=lambda p: p["accuracy"]) if ok else min(curve, key=lambda p: p["expected_dim"])
            thresholds = torch.full((n_dims,), best["threshold"], device=conf.device)
        else:
            raise InputError(f"unknown policy {policy!r}; choose pairwise, target_accuracy or target_dim")
        thresholds[-1] = 0.0
        self.thresholds_ = thresholds.cpu()
        self.policy_ = policy
        return self

    def tradeoff(self, logits: Sequence[torch.Tensor], labels: torch.Tensor, grid: int = 101) -> list[dict]:
        """Accuracy and cost of a cascade with one shared threshold, for each threshold on a grid."""
        logits = self._prefix(logits)
        _check_logits(logits, self.nesting, labels)
        conf, pred = confidences(logits)
        labels = labels.to(conf.device)
        points = []
        for t in torch.linspace(0, 1, grid).tolist():
            res = run_thresholds(conf, pred, torch.full((len(self.nesting),), t, device=conf.device), self.nesting)
            points.append(
                {
                    "threshold": t,
                    "accuracy": res.accuracy(labels),
                    "expected_dim": res.expected_dim,
                    "head_cost": res.mean_head_cost,
                }
            )
        return points

    # -- inference ------------------------------------------------------------------------------------------
    def _require_fit(self) -> torch.Tensor:
        if self.thresholds_ is None:
            raise RuntimeError("the cascade has no thresholds yet: call fit() (or load()) first")
        return self.thresholds_

    def predict(self, logits: Sequence[torch.Tensor]) -> CascadeResult:
        """Cascade decisions from precomputed per-dim logits."""
        thresholds = self._require_fit()
        logits = self._prefix(logits)
        _check_logits(logits, self.nesting)
        conf, pred = confidences(logits)
        return run_thresholds(conf, pred, thresholds.to(conf.device), self.nesting)

    @torch.no_grad()
    def predict_model(self, model: torch.nn.Module, x: torch.Tensor) -> CascadeResult:
        """Run a trained MRL model, evaluating head m only for the examples that reach dim m."""
        thresholds = self._require_fit()
        head = model.head
        if list(head.nesting[: len(self.nesting)]) != self.nesting:
            raise InputError(f"the model's heads {head.nesting} do not start with the cascade's dims {self.nesting}")
        was_training = model.training
        model.eval()
        try:
            z = model.encode(x)
            n = z.shape[0]
            preds = torch.empty(n, dtype=torch.long, device=z.device)
            dims = torch.empty(n, dtype=torch.long, device=z.device)
            cost = torch.zeros(n, dtype=torch.long, device=z.device)
            active = torch.arange(n, device=z.device)
            for i, m in enumerate(self.nesting):
                logits = head.logits_at(z[active], i)
                conf, pred = logits.float().softmax(-1).max(-1)
                cost[active] += m
                stop = conf >= thresholds[i] if i < len(self.nesting) - 1 else torch.ones_like(conf, dtype=torch.bool)
                done = active[stop]
                preds[done], dims[done] = pred[stop], m
                active = active[~stop]
                if active.numel() == 0:
                    break
        finally:
            model.train(was_training)
        return CascadeResult(preds, dims, cost)

    # -- persistence ----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        thresholds = self._require_fit()
        Path(path).write_text(
            json.dumps(
                {"nesting": self.nesting, "thresholds": thresholds.tolist(), "policy": getattr(self, "policy_", None)},
                indent=2,
            )
        )

    @classmethod
    def load(cls, path: str | Path) -> Cascade:
        raw = json.loads(Path(path).read_text())
        cascade = cls(raw["nesting"])
        if len(raw["thresholds"]) != len(cascade.nesting):
            raise InputError(f"{path}: {len(raw['thresholds'])} thresholds for {len(cascade.nesting)} dims")
        cascade.thresholds_ = torch.tensor(raw["thresholds"], dtype=torch.float32)
        cascade.policy_ = raw.get("policy")
        return cascade


def oracle(logits: Sequence[torch.Tensor], labels: torch.Tensor, nesting: Sequence[int]) -> dict[str, float]:
    """Upper bound: each example stops at the smallest dim that classifies it correctly (or the smallest dim
    when none does, since it is wrong anyway)."""
    nesting = list(nesting)
    logits = list(logits)[: len(nesting)]
    _check_logits(logits, nesting, labels)
    _, pred = confidences(logits)
    correct = pred == labels.to(pred.device)
    any_correct = correct.any(0)
    first = torch.where(any_correct, correct.float().argmax(0), torch.zeros_like(any_correct, dtype=torch.long))
    dims = torch.tensor(nesting, device=pred.device)
    return {
        "accuracy": any_correct.float().mean().item(),
        "expected_dim": dims[first].float().mean().item(),
        "head_cost": dims.cumsum(0)[first].float().mean().item(),
    }
