"""Classification heads over a Matryoshka embedding.

``MRLHead`` is the paper's head (Kusupati et al. 2022, Sec. 3): one linear classifier W^(m) per nesting
dim m, reading z[:m]. With ``tied=True`` it is MRL-E: one weight W shared by all dims and sliced,
W^(m) = W[:, :m], so the head has the parameters of a single full-dim classifier.

``FixedFeatureHead`` is the FF-k baseline's head: a single classifier that reads only the first k
features, so the remaining features receive no gradient and the model is effectively k-dimensional.

With ``logit_scale=True`` each classifier's logits are multiplied by a learned temperature exp(s), s starting at 0
(as CLIP's logit scale, Radford et al. 2021). Why it matters for MRL: a 2-dim head needs large logits to be
confident; without its own scale it gets them by inflating z[:2], and the first dims, read by every head, then
dominate the cosine of every larger prefix (on a 26-class feature table they grew several times larger than the
last dims, and 1-NN at 64 dims was barely above 16 dims'). With the scale the heads grow confident and the first
dims grow less.
With ``bias=False`` a head decides by its prefix's direction alone, as cosine search does. Both heads default to
the paper's (a bias, no scale); the training config (``model.logit_scale``, ``model.head_bias``) defaults to a
scale and no bias, as measured in docs/benchmarks.md ("The heads").

Example::

    import torch
    from matryoshka import MRLHead, MatryoshkaLoss

    head = MRLHead(in_dim=64, num_classes=10, nesting=[8, 16, 32, 64])
    z = torch.randn(32, 64)
    logits = head(z)                       # list of 4 tensors, each (32, 10)
    scaled = MRLHead(64, 10, [8, 16, 32, 64], bias=False, logit_scale=True)  # the training config's default
    loss = MatryoshkaLoss(torch.nn.CrossEntropyLoss(), head.nesting)(logits, torch.randint(0, 10, (32,)))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from matryoshka.nesting import nesting_list, validate_nesting


def _check_input(z: torch.Tensor, in_dim: int, name: str) -> None:
    if z.ndim != 2 or z.shape[1] != in_dim:
        raise ValueError(f"{name} expects embeddings of shape (batch, {in_dim}), got {tuple(z.shape)}")


class MRLHead(nn.Module):
    """One linear classifier per nesting dim (MRL), or one weight-tied classifier sliced per dim (MRL-E).

    Args:
        in_dim: embedding size d.
        num_classes: number of classes.
        nesting: increasing list of dims <= d; defaults to ``nesting_list(in_dim)``.
        tied: MRL-E (shared weight, sliced) instead of a separate Linear per dim.
        bias: whether each classifier has a bias.
        logit_scale: a learned temperature exp(s_m) per nesting dim multiplies that dim's logits.

    ``forward(z)`` returns a list of logits, one ``(batch, num_classes)`` tensor per nesting dim.

    Example::

        import torch
        from matryoshka import MRLHead

        head = MRLHead(in_dim=64, num_classes=10, nesting=[8, 16, 32, 64])
        logits = head(torch.randn(32, 64))                 # a list: one (32, 10) tensor per nesting dim
        tied = MRLHead(64, 10, [8, 16, 32, 64], tied=True)  # MRL-E: one weight, sliced per dim
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        nesting: Sequence[int] | None = None,
        tied: bool = False,
        bias: bool = True,
        logit_scale: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.nesting = validate_nesting(nesting_list(in_dim) if nesting is None else nesting, in_dim)
        self.tied = tied
        if tied:
            self.classifier = nn.Linear(self.nesting[-1], num_classes, bias=bias)
        else:
            self.classifiers = nn.ModuleList(nn.Linear(m, num_classes, bias=bias) for m in self.nesting)
        self.log_scales = nn.Parameter(torch.zeros(len(self.nesting))) if logit_scale else None

    def _scaled(self, logits: torch.Tensor, index: int) -> torch.Tensor:
        return logits if self.log_scales is None else logits * self.log_scales[index].exp()

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        _check_input(z, self.in_dim, type(self).__name__)
        if not self.tied:
            return [
                self._scaled(clf(z[:, :m]), i)
                for i, (m, clf) in enumerate(zip(self.nesting, self.classifiers, strict=True))
            ]
        # MRL-E: logits at dim m are those at the previous dim plus the next block of features, so all
        # dims together cost one full-dim matmul.
        weight, bias = self.classifier.weight, self.classifier.bias
        outputs, start = [], 0
        running = bias.expand(z.shape[0], -1) if bias is not None else None
        for i, m in enumerate(self.nesting):
            block = z[:, start:m] @ weight[:, start:m].T
            running = block if running is None else running + block
            outputs.append(self._scaled(running, i))
            start = m
        return outputs

    def logits_at(self, z: torch.Tensor, index: int) -> torch.Tensor:
        """Logits of the single head at ``nesting[index]``: only that head's matmul runs (for cascades)."""
        _check_input(z, self.in_dim, type(self).__name__)
        m = self.nesting[index]
        if not self.tied:
            return self._scaled(self.classifiers[index](z[:, :m]), index)
        return self._scaled(nn.functional.linear(z[:, :m], self.classifier.weight[:, :m], self.classifier.bias), index)

    def extra_repr(self) -> str:
        scale = ", logit_scale=True" if self.log_scales is not None else ""
        return f"in_dim={self.in_dim}, num_classes={self.num_classes}, nesting={self.nesting}, tied={self.tied}{scale}"


class FixedFeatureHead(nn.Module):
    """FF-k baseline head: one classifier on the first ``k`` features only.

    ``forward(z)`` returns a one-element list so that it is interchangeable with :class:`MRLHead`.

    Example::

        import torch
        from matryoshka import FixedFeatureHead

        head = FixedFeatureHead(in_dim=64, num_classes=10, k=8)  # FF-8: only z[:, :8] is read
        (logits,) = head(torch.randn(4, 64))
    """

    def __init__(
        self, in_dim: int, num_classes: int, k: int | None = None, bias: bool = True, logit_scale: bool = False
    ) -> None:
        super().__init__()
        k = in_dim if k is None else k
        if not 1 <= k <= in_dim:
            raise ValueError(f"FixedFeatureHead k must be in [1, {in_dim}], got {k}")
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.k = k
        self.nesting = [k]
        self.classifier = nn.Linear(k, num_classes, bias=bias)
        self.log_scale = nn.Parameter(torch.zeros(())) if logit_scale else None

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        _check_input(z, self.in_dim, type(self).__name__)
        logits = self.classifier(z[:, : self.k])
        return [logits if self.log_scale is None else logits * self.log_scale.exp()]

    def extra_repr(self) -> str:
        scale = ", logit_scale=True" if self.log_scale is not None else ""
        return f"in_dim={self.in_dim}, num_classes={self.num_classes}, k={self.k}{scale}"
