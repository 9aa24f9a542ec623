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

BackboneFactory = Callable[[int, tuple[int, ...], int | None], nn.Module]
SpecKind = Literal["name", "hf", "timm", "module"]

SPEC_FORMS = "hf:FOLDER (a transformers save_pretrained folder), timm:MODEL or package.module:factory"

_FACTORIES: dict[str, BackboneFactory] = {}
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_MODULE_SPEC = re.compile(rf"{_DOTTED}:{_DOTTED}")
_NAME = re.compile(r"[A-Za-z0-9_][\w.-]*")


class BackboneError(MatryoshkaError, ValueError):
    """A backbone spec that names nothing known, cannot be built, or does not fit the data or the weights given."""


def register_backbone(name: str, *, overwrite: bool = False) -> Callable[[BackboneFactory], BackboneFactory]:
    """Register ``factory(embed_dim, input_shape, width) -> nn.Module`` under ``name``, the value of
    ``model.backbone`` that selects it. ``width`` is None when the config leaves it out.

    Example::

        @register_backbone("wide_mlp")
        def wide_mlp(embed_dim, input_shape, width=None):
            return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width or 1024), nn.ReLU(),
                                 nn.Linear(width or 1024, embed_dim))

    A name already taken raises :class:`BackboneError` unless ``overwrite=True`` (re-running the same definition,
    e.g. a reloaded module, is allowed).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BackboneError(f"backbone name {name!r} must be letters, digits, '_', '.' or '-' (no ':')")

    def decorate(factory: BackboneFactory) -> BackboneFactory:
        old = _FACTORIES.get(name)
        same = old is not None and (old.__module__, old.__qualname__) == (factory.__module__, factory.__qualname__)
        if old is not None and not (overwrite or same):
            raise BackboneError(f"a backbone named {name!r} is registered already; pass overwrite=True to replace it")
        _FACTORIES[name] = factory
        return factory

    return decorate


def registered_backbones() -> list[str]:
    """The registered backbone names, sorted."""
    return sorted(_FACTORIES)


def backbone_factory(name: str) -> BackboneFactory:
    """The factory registered under ``name``."""
    if name not in _FACTORIES:
        raise BackboneError(
            f"unknown backbone {name!r}; registered backbones: {', '.join(registered_backbones())} (or {SPEC_FORMS})"
        )
    return _FACTORIES[name]


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
