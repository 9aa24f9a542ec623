"""A multinomial logistic-regression probe on frozen features, fitted full-batch with L-BFGS in torch.

scikit-learn's ``LogisticRegression`` fits the same model; this one runs on the GPU when the features are
there and fits 55k x 512 features in seconds on a CPU, which matters when a probe is fitted per dim and
per method. Features are standardised with the training set's statistics.
"""

from __future__ import annotations

import torch
from torch import nn


class LinearProbe:
    """``fit(x, y)``, ``predict(x)``, ``score(x, y)`` like a scikit-learn classifier.

    Args:
        l2: L2 penalty on the weights (mean loss + l2 * ||W||^2 / 2).
        max_iter: L-BFGS iterations.
    """

    def __init__(self, l2: float = 1e-4, max_iter: int = 100) -> None:
        self.l2 = l2
        self.max_iter = max_iter

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> LinearProbe:
        if x.ndim != 2 or y.shape != (x.shape[0],) or len(y) == 0:
            raise ValueError(
                f"expected features (N, d) and labels (N,) with N > 0, got {tuple(x.shape)}, {tuple(y.shape)}"
            )
        x = x.float()
        self.mean_ = x.mean(0)
        self.std_ = x.std(0).clamp(min=1e-6)
        xs = (x - self.mean_) / self.std_
        num_classes = int(y.max()) + 1
        self.linear_ = nn.Linear(x.shape[1], num_classes).to(x.device)
        nn.init.zeros_(self.linear_.weight)
        nn.init.zeros_(self.linear_.bias)
        opt = torch.optim.LBFGS(
            self.linear_.parameters(),
            lr=1,
            max_iter=self.max_iter,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-6,
            history_size=20,
        )
        y = y.to(x.device)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(self.linear_(xs), y)
            loss = loss + 0.5 * self.l2 * self.linear_.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return self

    @torch.no_grad()
    def decision_function(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_((x.float() - self.mean_) / self.std_)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.decision_function(x).argmax(1)

    def score(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return (self.predict(x).cpu() == y.cpu()).float().mean().item()
