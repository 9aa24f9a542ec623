"""An encoder plus a Matryoshka head: ``forward`` gives per-dim logits, ``encode`` the embedding z."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor, nn

from matryoshka.errors import InputError
from matryoshka.nn.backbones import create_backbone, feature_modules, load_init_weights

if TYPE_CHECKING:
    from matryoshka.train.config import ModelConfig


class MatryoshkaClassifier(nn.Module):
    """``backbone`` maps inputs to z in R^d; ``head`` (MRLHead or FixedFeatureHead) maps z to per-dim logits.

    Example::

        import torch
        from matryoshka import MatryoshkaClassifier, MRLHead, create_backbone

        model = MatryoshkaClassifier(create_backbone("cnn", 32, (1, 28, 28), width=8), MRLHead(32, 10, [8, 16, 32]))
        z = model.encode(torch.randn(2, 1, 28, 28))    # (2, 32) embeddings
        logits = model(torch.randn(2, 1, 28, 28))      # one logits tensor per nesting dim
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.backbone_frozen = False

    @property
    def nesting(self) -> list[int]:
        return list(self.head.nesting)

    def encode(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.head(self.backbone(x))

    def freeze_backbone(self) -> None:
        """Train only the backbone's ``project`` layer and the head: the feature extractor's parameters stop
        requiring grad, and its layers stay in eval mode through ``train()`` (BatchNorm statistics do not move)."""
        for module in feature_modules(self.backbone):
            for p in module.parameters(recurse=False):
                p.requires_grad_(False)
        self.backbone_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True) -> MatryoshkaClassifier:
        super().train(mode)
        if self.backbone_frozen:
            for module in feature_modules(self.backbone):
                module.training = False
        return self


def build_classifier(
    backbone: str,
    embed_dim: int,
    head: str,
    nesting: list[int],
    input_shape: tuple[int, ...],
    num_classes: int,
    width: int | None = None,
    run_dir: str | Path | None = None,
    bias: bool = True,
    logit_scale: bool = False,
) -> MatryoshkaClassifier:
    """Build a model by names: ``backbone`` is any spec :func:`create_backbone` takes; ``head`` is "mrl", "mrl_e"
    (tied) or "ff" (one head on z[:nesting[0]]). ``run_dir``: rebuild the backbone of that trained run. ``bias``:
    whether the classifiers have a bias (without one, a head decides by the prefix's direction alone).
    ``logit_scale``: each head's logits times a learned temperature (see :mod:`matryoshka.nn.heads`)."""
    from matryoshka.nn.heads import FixedFeatureHead, MRLHead

    encoder = create_backbone(backbone, embed_dim, tuple(input_shape), width, run_dir=run_dir)
    if head == "ff":
        if len(nesting) != 1:
            raise InputError(f"an FF head reads one dim, got nesting {nesting}")
        return MatryoshkaClassifier(encoder, FixedFeatureHead(embed_dim, num_classes, nesting[0], bias, logit_scale))
    if head not in ("mrl", "mrl_e"):
        raise InputError(f"unknown head {head!r}; choose mrl, mrl_e or ff")
    heads = MRLHead(embed_dim, num_classes, nesting, tied=head == "mrl_e", bias=bias, logit_scale=logit_scale)
    return MatryoshkaClassifier(encoder, heads)


def build_model(
    config: ModelConfig, nesting: list[int], input_shape: tuple[int, ...], num_classes: int
) -> MatryoshkaClassifier:
    """The model a ``ModelConfig`` describes, ready to train: built, started from ``config.init_from`` when given,
    and with its feature extractor frozen when ``config.freeze_backbone`` is set."""
    model = build_classifier(
        config.backbone,
        config.embed_dim,
        config.head,
        nesting,
        input_shape,
        num_classes,
        config.width,
        bias=config.head_bias,
        logit_scale=config.logit_scale,
    )
    if config.init_from is not None:
        load_init_weights(model, config.init_from)
    if config.freeze_backbone:
        model.freeze_backbone()
    return model
