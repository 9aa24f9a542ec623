"""An encoder plus a Matryoshka head: ``forward`` gives per-dim logits, ``encode`` the embedding z."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from matryoshka.nn.backbones import create_backbone


class MatryoshkaClassifier(nn.Module):
    """``backbone`` maps inputs to z in R^d; ``head`` (MRLHead or FixedFeatureHead) maps z to per-dim logits."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def nesting(self) -> list[int]:
        return list(self.head.nesting)

    def encode(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.head(self.backbone(x))


def build_classifier(
    backbone: str,
    embed_dim: int,
    head: str,
    nesting: list[int],
    input_shape: tuple[int, ...],
    num_classes: int,
    width: int | None = None,
    run_dir: str | Path | None = None,
) -> MatryoshkaClassifier:
    """Build a model by names: ``backbone`` is any spec :func:`create_backbone` takes; ``head`` is "mrl", "mrl_e"
    (tied) or "ff" (one head on z[:nesting[0]]). ``run_dir``: rebuild the backbone of that trained run."""
    from matryoshka.nn.heads import FixedFeatureHead, MRLHead

    encoder = create_backbone(backbone, embed_dim, tuple(input_shape), width, run_dir=run_dir)
    if head == "ff":
        if len(nesting) != 1:
            raise ValueError(f"an FF head reads one dim, got nesting {nesting}")
        return MatryoshkaClassifier(encoder, FixedFeatureHead(embed_dim, num_classes, nesting[0]))
    if head not in ("mrl", "mrl_e"):
        raise ValueError(f"unknown head {head!r}; choose mrl, mrl_e or ff")
    return MatryoshkaClassifier(encoder, MRLHead(embed_dim, num_classes, nesting, tied=head == "mrl_e"))
