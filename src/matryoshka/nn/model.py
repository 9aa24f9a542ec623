"""An encoder plus a Matryoshka head: ``forward`` gives per-dim logits, ``encode`` the embedding z."""

from __future__ import annotations

from torch import Tensor, nn

from matryoshka.errors import InputError


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
) -> MatryoshkaClassifier:
    """Build a model by names: ``head`` is "mrl", "mrl_e" (tied) or "ff" (one head on z[:nesting[0]])."""
    from matryoshka.nn.backbones import build_backbone
    from matryoshka.nn.heads import FixedFeatureHead, MRLHead

    encoder = build_backbone(backbone, embed_dim, tuple(input_shape), width)
    if head == "ff":
        if len(nesting) != 1:
            raise InputError(f"an FF head reads one dim, got nesting {nesting}")
        return MatryoshkaClassifier(encoder, FixedFeatureHead(embed_dim, num_classes, nesting[0]))
    if head not in ("mrl", "mrl_e"):
        raise InputError(f"unknown head {head!r}; choose mrl, mrl_e or ff")
    return MatryoshkaClassifier(encoder, MRLHead(embed_dim, num_classes, nesting, tied=head == "mrl_e"))
