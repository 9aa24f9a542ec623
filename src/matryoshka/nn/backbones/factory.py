"""``create_backbone(spec, embed_dim, input_shape, width)``: any backbone spec to an encoder of ``embed_dim``."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from matryoshka.nn.backbones import builtin  # noqa: F401  (registers cnn, resnet, mlp, vit)
from matryoshka.nn.backbones.external import external_backbone
from matryoshka.nn.backbones.registry import BackboneError, BackboneSpec, backbone_factory, parse_backbone_spec


def create_backbone(
    spec: str | BackboneSpec,
    embed_dim: int,
    input_shape: tuple[int, ...],
    width: int | None = None,
    run_dir: str | Path | None = None,
) -> nn.Module:
    """Build the encoder ``spec`` names for inputs of shape ``input_shape`` (one example, e.g. (channels, height,
    width)); it maps a batch to embeddings of size ``embed_dim``.

    ``spec`` is a registered name (``cnn``, ``resnet``, ``mlp``, ``vit`` or one of :func:`register_backbone`),
    ``hf:FOLDER``, ``timm:MODEL`` or ``package.module:factory``; the last three are wrapped as a
    :class:`ProjectedBackbone`. ``width`` goes to registered factories only. ``run_dir``: rebuild an ``hf:`` model
    from the config a trained run keeps (its weights are loaded afterwards), not from its original folder.

    Example::

        import torch
        from matryoshka import create_backbone

        encoder = create_backbone("resnet", embed_dim=64, input_shape=(3, 32, 32), width=16)
        assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    """
    parsed = parse_backbone_spec(spec)
    shape = tuple(int(s) for s in input_shape)
    if parsed.kind == "name":
        return backbone_factory(parsed.target)(embed_dim, shape, width)
    if width is not None:
        raise BackboneError(f"width applies to registered backbones, not to {parsed}")
    return external_backbone(parsed, embed_dim, shape, run_dir)


build_backbone = create_backbone  # the name used before the registry
