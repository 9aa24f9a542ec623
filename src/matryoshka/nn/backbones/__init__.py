"""Backbones: the built-in encoders and a registry for your own (``@register_backbone``), built by name with
:func:`create_backbone`."""

from matryoshka.nn.backbones.builtin import MLP, BasicBlock, ResNetSmall, SmallCNN, SmallViT
from matryoshka.nn.backbones.factory import build_backbone, create_backbone
from matryoshka.nn.backbones.registry import (
    BackboneError,
    BackboneSpec,
    parse_backbone_spec,
    register_backbone,
    registered_backbones,
)

__all__ = [
    "MLP",
    "BackboneError",
    "BackboneSpec",
    "BasicBlock",
    "ResNetSmall",
    "SmallCNN",
    "SmallViT",
    "build_backbone",
    "create_backbone",
    "parse_backbone_spec",
    "register_backbone",
    "registered_backbones",
]
