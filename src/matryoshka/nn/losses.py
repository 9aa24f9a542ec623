"""MatryoshkaLoss: the paper's objective, sum over m of c_m * L(output at dim m, target).

Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022 (arXiv 2205.13147), Eq. 1.
It wraps any per-dim loss:

* classification: ``outputs`` is the list of per-dim logits from :class:`~matryoshka.MRLHead`;
* embedding losses (contrastive, distillation): ``outputs`` is the embedding z of shape (batch, d);
  each prefix z[:, :m] is re-normalised and passed to the loss. When the target is itself an
  embedding (the other tower, or a teacher), it is truncated and re-normalised the same way.

Example::

    import torch
    from matryoshka import MatryoshkaLoss
    from matryoshka.nn.losses import InfoNCELoss

    queries, docs = torch.randn(16, 64), torch.randn(16, 64)
    loss = MatryoshkaLoss(InfoNCELoss(), nesting=[8, 16, 32, 64])(queries, docs)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from matryoshka.nesting import nesting_weights, validate_nesting
from matryoshka.truncate import truncate


class MatryoshkaLoss(nn.Module):
    """Weighted sum of a loss over nested prefixes of a representation.

    Args:
        loss_fn: per-dim loss, called as ``loss_fn(output_m, target_m)``.
        nesting: increasing list of dims.
        weights: relative importance c_m per dim (default all ones). Stored as a buffer, so it follows
            ``.to(device)``; it is also moved to the outputs' device in ``forward``.
        normalize: re-normalise each embedding prefix (embedding path only).

    Example::

        import torch
        from matryoshka import MatryoshkaLoss, MRLHead

        head = MRLHead(64, 10, [8, 16, 32, 64])
        logits, labels = head(torch.randn(32, 64)), torch.randint(0, 10, (32,))
        loss = MatryoshkaLoss(torch.nn.CrossEntropyLoss(), head.nesting)(logits, labels)
        loss.backward()
    """

    def __init__(
        self,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        nesting: Sequence[int],
        weights: Sequence[float] | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.loss_fn = loss_fn
        self.nesting = validate_nesting(nesting)
        self.register_buffer("weights", torch.tensor(nesting_weights(self.nesting, weights)), persistent=False)
        self.normalize = normalize

    def per_dim(
        self, outputs: Sequence[torch.Tensor] | torch.Tensor, target: torch.Tensor, **loss_kwargs: Any
    ) -> torch.Tensor:
        """Unweighted loss at each nesting dim, as a tensor of shape (len(nesting),); ``loss_kwargs`` go to every
        call of the per-dim loss (e.g. InfoNCELoss's ``exclude``)."""
        if isinstance(outputs, torch.Tensor):
            return torch.stack(self._embedding_losses(outputs, target, **loss_kwargs))
        outputs = list(outputs)
        if len(outputs) != len(self.nesting):
            raise ValueError(
                f"got {len(outputs)} outputs for {len(self.nesting)} nesting dims {self.nesting}; "
                "pass the list of per-dim logits returned by MRLHead, or the embedding tensor"
            )
        return torch.stack([self.loss_fn(out, target, **loss_kwargs) for out in outputs])

    def forward(
        self, outputs: Sequence[torch.Tensor] | torch.Tensor, target: torch.Tensor, **loss_kwargs: Any
    ) -> torch.Tensor:
        losses = self.per_dim(outputs, target, **loss_kwargs)
        return (self.weights.to(losses.device, losses.dtype) * losses).sum()

    def _embedding_losses(self, z: torch.Tensor, target: torch.Tensor, **loss_kwargs: Any) -> list[torch.Tensor]:
        if z.ndim != 2:
            raise ValueError(f"embedding outputs must have shape (batch, d), got {tuple(z.shape)}")
        if self.nesting[-1] > z.shape[1]:
            raise ValueError(f"nesting dim {self.nesting[-1]} is larger than the embedding size {z.shape[1]}")
        # A target embedding (other tower, teacher) is truncated like the output; labels pass through.
        paired = target.is_floating_point() and target.ndim == 2
        # Contrastive losses may take extra candidate rows (hard negatives) after the positives.
        extra_rows = getattr(self.loss_fn, "accepts_extra_candidates", False) and target.shape[0] >= z.shape[0]
        if paired and (target.shape[1] != z.shape[1] or (target.shape[0] != z.shape[0] and not extra_rows)):
            raise ValueError(
                f"a target embedding must match the outputs' shape {tuple(z.shape)}, got {tuple(target.shape)}; "
                "project a teacher of another size first"
            )
        return [
            self.loss_fn(
                truncate(z, m, self.normalize),
                truncate(target, m, self.normalize) if paired else target,
                **loss_kwargs,
            )
            for m in self.nesting
        ]


class InfoNCELoss(nn.Module):
    """In-batch-negatives contrastive loss (multiple-negatives ranking): row i of ``a`` matches row i of ``b``.

    Inputs are expected to be L2-normalised (``MatryoshkaLoss`` does this per prefix); ``scale`` is the
    inverse temperature. ``symmetric=True`` averages the a->b and b->a directions. ``b`` may hold extra rows after
    the batch's positives (hard negatives, a :class:`~matryoshka.nn.memory.CandidateMemory`): they are candidates
    for every query, and not queries themselves. ``exclude`` (batch, extra rows), True where an extra row must not
    count against that query (one of its own relevant documents), leaves those rows out of its softmax.

    Example::

        import torch
        from matryoshka import InfoNCELoss, MatryoshkaLoss

        queries, documents = torch.randn(16, 64), torch.randn(16, 64)   # row i of one is paired with row i of the other
        loss = MatryoshkaLoss(InfoNCELoss(scale=20.0), nesting=[16, 32, 64])(queries, documents)
    """

    accepts_extra_candidates = True

    def __init__(self, scale: float = 20.0, symmetric: bool = False) -> None:
        super().__init__()
        self.scale = scale
        self.symmetric = symmetric

    def forward(self, a: torch.Tensor, b: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or b.shape[0] < a.shape[0]:
            raise ValueError(
                f"InfoNCELoss expects (batch, dim) queries and (batch + negatives, dim) candidates, got {a.shape}, "
                f"{b.shape}"
            )
        scores = self.scale * a @ b.T
        if exclude is not None:
            if exclude.shape != (a.shape[0], b.shape[0] - a.shape[0]):
                raise ValueError(
                    f"exclude must be (batch, extra candidates) = {(a.shape[0], b.shape[0] - a.shape[0])}, got "
                    f"{tuple(exclude.shape)}"
                )
            scores = torch.cat([scores[:, : a.shape[0]], scores[:, a.shape[0] :].masked_fill(exclude, -torch.inf)], 1)
        labels = torch.arange(a.shape[0], device=a.device)
        loss = nn.functional.cross_entropy(scores, labels)
        if self.symmetric:
            loss = (loss + nn.functional.cross_entropy(scores[:, : a.shape[0]].T, labels)) / 2
        return loss
