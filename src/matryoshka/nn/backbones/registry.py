"""The backbone registry (``@register_backbone("name")`` on a factory, as timm's ``register_model``) and the one parser
of backbone specs, shared by :func:`create_backbone` and the config check of ``model.backbone``.

A spec is one of:

* a registered name: ``cnn``, ``resnet``, ``mlp``, ``vit`` or one of your own;
* ``hf:FOLDER``: a Hugging Face transformers vision model written by ``save_pretrained`` (loaded offline);
* ``timm:MODEL``: a timm model, built without pretrained weights;
* ``package.module:factory``: your own ``nn.Module`` factory in an importable file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from matryoshka.errors import MatryoshkaError
from matryoshka.registry import Registry

BackboneFactory = Callable[[int, tuple[int, ...], int | None], nn.Module]
SpecKind = Literal["name", "hf", "timm", "module"]

SPEC_FORMS = "hf:FOLDER (a transformers save_pretrained folder), timm:MODEL or package.module:factory"

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_MODULE_SPEC = re.compile(rf"{_DOTTED}:{_DOTTED}")


class BackboneError(MatryoshkaError, ValueError):
    """A backbone spec that names nothing known, cannot be built, or does not fit the data or the weights given."""


BACKBONES: Registry[BackboneFactory] = Registry("backbone", BackboneError)


def register_backbone(name: str, *, overwrite: bool = False) -> Callable[[BackboneFactory], BackboneFactory]:
    """Register ``factory(embed_dim, input_shape, width) -> nn.Module`` under ``name``, the value of
    ``model.backbone`` that selects it. ``width`` is None when the config leaves it out.

    Example::

        import math
        from torch import nn
        from matryoshka import register_backbone

        @register_backbone("wide_mlp")
        def wide_mlp(embed_dim, input_shape, width=None):
            return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width or 1024), nn.ReLU(),
                                 nn.Linear(width or 1024, embed_dim))

    A name already taken raises :class:`BackboneError` unless ``overwrite=True`` (re-running the same definition,
    e.g. a reloaded module, is allowed). The rules are those of :class:`matryoshka.registry.Registry`.
    """
    return BACKBONES.register(name, overwrite=overwrite)


def registered_backbones() -> list[str]:
    """The registered backbone names, sorted."""
    return BACKBONES.names()


def backbone_factory(name: str) -> BackboneFactory:
    """The factory registered under ``name``."""
    if name not in BACKBONES:
        raise BackboneError(f"{BACKBONES.unknown(name)} (or {SPEC_FORMS})")
    return BACKBONES.get(name)


@dataclass(frozen=True)
class BackboneSpec:
    """A parsed backbone spec: ``kind`` and ``target`` (the name, the folder, the timm model or module:factory)."""

    kind: SpecKind
    target: str

    @property
    def module(self) -> str:
        """``package.module`` of a ``module:factory`` spec."""
        return self.target.partition(":")[0]

    @property
    def attribute(self) -> str:
        """``factory`` (possibly dotted, ``Class.create``) of a ``module:factory`` spec."""
        return self.target.partition(":")[2]

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" if self.kind in ("hf", "timm") else self.target


def parse_backbone_spec(spec: str | BackboneSpec) -> BackboneSpec:
    """Check a spec's syntax (a plain name must be registered; folders and modules are not opened here)."""
    if isinstance(spec, BackboneSpec):
        return spec
    if not isinstance(spec, str) or not spec:
        raise BackboneError(f"a backbone spec must be a non-empty string, got {spec!r}")
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in ("hf", "timm"):
        if not rest.strip():
            raise BackboneError(f"backbone spec {spec!r} names nothing after {prefix}:")
        return BackboneSpec(prefix, rest)
    if sep:
        if not _MODULE_SPEC.fullmatch(spec):
            raise BackboneError(f"backbone spec {spec!r} is not a registered name, {SPEC_FORMS}")
        return BackboneSpec("module", spec)
    backbone_factory(spec)
    return BackboneSpec("name", spec)
