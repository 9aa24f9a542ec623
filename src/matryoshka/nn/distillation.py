"""PrefixDistillationLoss: every smaller prefix learns the full-dim ranking of the batch, not only its positive.

An addition to the Matryoshka in-batch-negatives loss (Kusupati et al., NeurIPS 2022, arXiv 2205.13147) for text
retrieval: at the full dim d the model scores each query against every candidate document of the batch; that score
distribution, softmax(scale * q[:d] . D[:d]), is a teacher (no gradient flows into it) for each smaller prefix m,
which is pulled towards it by KL divergence (knowledge distillation, Hinton et al. 2015, here from the model's own
full dim). The one-hot InfoNCE target says only which document is right; the teacher also says how the wrong ones
rank, which is the part a small prefix loses first.

Example::

    import torch
    from matryoshka.nn.distillation import PrefixDistillationLoss

    queries, documents = torch.randn(16, 64), torch.randn(16, 64)
    loss = PrefixDistillationLoss(nesting=[8, 16, 32, 64])(queries, documents)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from matryoshka.nesting import validate_nesting
from matryoshka.truncate import truncate


class PrefixDistillationLoss(nn.Module):
    """Sum over nesting dims m < d of KL(full-dim in-batch softmax || prefix-m in-batch softmax).

    Args:
        nesting: increasing dims; the last one is the teacher.
        scale: inverse temperature of both softmaxes (the InfoNCE scale).
    """

    def __init__(self, nesting: Sequence[int], scale: float = 20.0) -> None:
        super().__init__()
        self.nesting = validate_nesting(nesting)
        self.scale = scale

    def _log_softmax(self, queries: torch.Tensor, documents: torch.Tensor, m: int) -> torch.Tensor:
        return (self.scale * truncate(queries, m) @ truncate(documents, m).T).log_softmax(1)

    def forward(self, queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
        if queries.ndim != 2 or documents.ndim != 2 or queries.shape[1] != documents.shape[1]:
            raise ValueError(
                f"expected (batch, d) queries and (candidates, d) documents, got {queries.shape}, {documents.shape}"
            )
        if self.nesting[-1] > queries.shape[1]:
            raise ValueError(f"nesting dim {self.nesting[-1]} is larger than the embedding size {queries.shape[1]}")
        with torch.no_grad():
            teacher = self._log_softmax(queries, documents, self.nesting[-1])
        losses = [
            nn.functional.kl_div(
                self._log_softmax(queries, documents, m), teacher, log_target=True, reduction="batchmean"
            )
            for m in self.nesting[:-1]
        ]
        return torch.stack(losses).sum() if losses else queries.new_zeros(())
