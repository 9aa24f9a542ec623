"""Post-hoc baselines of the paper (Sec. 4.1): low-dimensional views of a full-dim (FF) model's features.

* SVD: project onto the top-k right singular vectors of the training features.
* Random feature selection (Rand. FS): keep k of the d features; the features of an FF model have no
  order, so its first k are as random a choice as any.
"""

from __future__ import annotations

import torch


class SVDProjection:
    """``fit(train_features)``, then ``transform(x, k)`` onto the top-k singular directions."""

    def fit(self, x: torch.Tensor) -> SVDProjection:
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"SVD needs a (N, d) matrix with N >= 2, got {tuple(x.shape)}")
        self.mean_ = x.mean(0)
        # Right singular vectors of the centred features = principal directions, largest first.
        _, self.singular_values_, vh = torch.linalg.svd(x.double() - self.mean_.double(), full_matrices=False)
        self.components_ = vh.float()
        return self

    def transform(self, x: torch.Tensor, k: int) -> torch.Tensor:
        if not 1 <= k <= self.components_.shape[0]:
            raise ValueError(f"k={k} must be in [1, {self.components_.shape[0]}]")
        return (x - self.mean_) @ self.components_[:k].T


def random_features(x: torch.Tensor, k: int) -> torch.Tensor:
    """Rand. FS: the first k features of an unordered (FF) representation."""
    if not 1 <= k <= x.shape[1]:
        raise ValueError(f"k={k} must be in [1, {x.shape[1]}]")
    return x[:, :k]
