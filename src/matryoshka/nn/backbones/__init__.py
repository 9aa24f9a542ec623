"""Backbones: the built-in encoders, a registry for your own (``@register_backbone``), and external ones
(``hf:FOLDER``, ``timm:MODEL``, ``package.module:factory``) through :func:`create_backbone`."""

from matryoshka.nn.backbones.builtin import MLP, BasicBlock, ResNetSmall, SmallCNN, SmallViT
from matryoshka.nn.backbones.external import (
    BACKBONE_DIR,
    ProjectedBackbone,
    measure_feature_dim,
    pool_features,
    save_backbone_files,
)
from matryoshka.nn.backbones.factory import build_backbone, create_backbone
from matryoshka.nn.backbones.registry import (
    BackboneError,
    BackboneSpec,
    parse_backbone_spec,
    register_backbone,
    registered_backbones,
)
from matryoshka.nn.backbones.weights import feature_modules, load_init_weights, read_state_dict

__all__ = [
    "BACKBONE_DIR",
    "MLP",
    "BackboneError",
    "BackboneSpec",
    "BasicBlock",
    "ProjectedBackbone",
    "ResNetSmall",
    "SmallCNN",
    "SmallViT",
    "build_backbone",
    "create_backbone",
    "feature_modules",
    "load_init_weights",
    "measure_feature_dim",
    "parse_backbone_spec",
    "pool_features",
    "read_state_dict",
    "register_backbone",
    "registered_backbones",
    "save_backbone_files",
]
