"""Backbones from elsewhere, each wrapped as a :class:`ProjectedBackbone` (pooled features -> a learned linear map to
``embed_dim``):

* ``hf:FOLDER``: ``AutoModel.from_pretrained(FOLDER, local_files_only=True)`` (ViT, ConvNeXt, ResNet, ...);
* ``timm:MODEL``: ``timm.create_model(MODEL, pretrained=False, num_classes=0, in_chans=channels)``;
* ``package.module:factory``: ``factory()``, or ``factory(input_shape=...)`` when it takes that argument.

A run folder rebuilds them on another machine (:func:`save_backbone_files`, used by the trainer): for ``hf:`` the
transformers config is kept in ``run/backbone/config.json`` and the model is rebuilt with ``AutoModel.from_config``
before the trained weights are loaded, so the original folder is not needed; ``timm:`` needs timm, and
``module:factory`` needs the module importable there.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from matryoshka.io import atomic_write_text
from matryoshka.nn.backbones.registry import BackboneError, BackboneSpec

BACKBONE_DIR = "backbone"  # in a run folder: what rebuilding the backbone needs besides model.safetensors


def pool_features(out: Any) -> Tensor:
    """The feature tensor of a feature extractor's output: a tensor as it is; of a transformers output its
    ``pooler_output``, else the first ([CLS]) token of a (N, T, C) ``last_hidden_state`` or the spatial mean of a
    (N, C, H, W) one; of a tuple its first tensor."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, Mapping):
        if out.get("pooler_output") is not None:
            return out["pooler_output"]
        hidden = out.get("last_hidden_state")
        if isinstance(hidden, Tensor):
            if hidden.ndim == 3:
                return hidden[:, 0]
            return hidden.mean(dim=tuple(range(2, hidden.ndim))) if hidden.ndim > 3 else hidden
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise BackboneError(
        f"a backbone's feature extractor returned {type(out).__name__}; expected a tensor, a transformers output "
        "(pooler_output or last_hidden_state) or a tuple of tensors"
    )


class ProjectedBackbone(nn.Module):
    """``features`` (any module) -> its pooled output, flattened to ``feature_dim`` -> ``project``, a linear map to
    ``embed_dim``. Freezing a backbone (``model.freeze_backbone``) freezes ``features`` and trains ``project``."""

    def __init__(self, features: nn.Module, feature_dim: int, embed_dim: int, spec: str | None = None) -> None:
        super().__init__()
        self.features = features
        self.project = nn.Linear(feature_dim, embed_dim)
        self.feature_dim = feature_dim
        self.embed_dim = embed_dim
        self.spec = spec

    def forward(self, x: Tensor) -> Tensor:
        return self.project(pool_features(self.features(x)).flatten(1))

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}, feature_dim={self.feature_dim}, embed_dim={self.embed_dim}"


def measure_feature_dim(features: nn.Module, input_shape: tuple[int, ...], what: str = "the backbone") -> int:
    """The flattened size of ``features``' pooled output, from one pass of a zero batch (eval mode, no grad)."""
    was_training = features.training
    features.eval()
    try:
        with torch.no_grad():
            out = pool_features(features(torch.zeros(2, *input_shape)))
    except BackboneError:
        raise
    except Exception as e:
        raise BackboneError(f"{what} fails on inputs of shape {tuple(input_shape)}: {type(e).__name__}: {e}") from e
    finally:
        features.train(was_training)
    if out.ndim < 2 or out.shape[0] != 2:
        raise BackboneError(f"{what} gives features of shape {tuple(out.shape)} for a batch of 2; expected (2, ...)")
    return out[0].numel()


def external_backbone(
    spec: BackboneSpec, embed_dim: int, input_shape: tuple[int, ...], run_dir: str | Path | None = None
) -> ProjectedBackbone:
    """An ``hf:``, ``timm:`` or ``module:factory`` backbone; with ``run_dir``, an ``hf:`` model is rebuilt (without
    weights) from the config :func:`save_backbone_files` kept there, when there is one."""
    if spec.kind == "hf":
        features = _transformers_model(spec, input_shape, run_dir)
    elif spec.kind == "timm":
        features = _timm_model(spec, input_shape)
    elif spec.kind == "module":
        features = _user_model(spec, input_shape)
    else:
        raise BackboneError(f"{spec} is a registered name, not an external backbone")
    dim = measure_feature_dim(features, input_shape, f"backbone {spec}")
    return ProjectedBackbone(features, dim, embed_dim, spec=str(spec))


def _image_channels(spec: BackboneSpec, input_shape: tuple[int, ...]) -> int:
    if len(input_shape) != 3:
        raise BackboneError(f"backbone {spec} needs image inputs (channels, height, width), got {tuple(input_shape)}")
    return input_shape[0]


def _transformers_model(spec: BackboneSpec, input_shape: tuple[int, ...], run_dir: str | Path | None) -> nn.Module:
    channels = _image_channels(spec, input_shape)
    try:
        from transformers import AutoConfig, AutoModel
    except Exception as e:
        raise BackboneError(f"backbone {spec} needs the transformers package, which does not import: {e}") from e
    saved = Path(run_dir) / BACKBONE_DIR if run_dir is not None else None
    try:
        if saved is not None and (saved / "config.json").exists():
            model = AutoModel.from_config(AutoConfig.from_pretrained(saved, local_files_only=True))
        else:
            folder = Path(spec.target).expanduser()
            if not (folder / "config.json").is_file():
                kept = f", and {saved} holds none" if saved is not None else ""
                raise BackboneError(
                    f"backbone {spec}: {folder} holds no config.json{kept}; hf: takes a folder written by "
                    "save_pretrained"
                )
            model = AutoModel.from_pretrained(folder, local_files_only=True)
    except BackboneError:
        raise
    except Exception as e:
        raise BackboneError(f"backbone {spec}: transformers cannot load it: {type(e).__name__}: {e}") from e
    expected = getattr(model.config, "num_channels", None)
    if expected is not None and expected != channels:
        raise BackboneError(
            f"backbone {spec} takes {expected}-channel images (num_channels in its config) but the data has "
            f"{channels} channel(s); choose a model for {channels}-channel inputs or convert the data"
        )
    return model.float()


def _timm_model(spec: BackboneSpec, input_shape: tuple[int, ...]) -> nn.Module:
    channels = _image_channels(spec, input_shape)
    try:
        import timm
    except Exception as e:  # not installed, or torchvision built for another torch (its ops fail to register)
        raise BackboneError(
            f"backbone {spec}: timm is not importable here ({type(e).__name__}: {e}); install timm with a "
            "torchvision that matches this torch, or use an hf:FOLDER or package.module:factory backbone"
        ) from e
    try:
        return timm.create_model(spec.target, pretrained=False, num_classes=0, in_chans=channels)
    except Exception as e:
        raise BackboneError(f"backbone {spec}: timm cannot create it: {type(e).__name__}: {e}") from e


def _takes_input_shape(factory: Any) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "input_shape" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _user_model(spec: BackboneSpec, input_shape: tuple[int, ...]) -> nn.Module:
    try:
        factory: Any = importlib.import_module(spec.module)
    except Exception as e:
        raise BackboneError(
            f"backbone {spec}: cannot import module {spec.module!r} ({type(e).__name__}: {e}); "
            "is the folder that holds it on PYTHONPATH?"
        ) from e
    for part in spec.attribute.split("."):
        if not hasattr(factory, part):
            raise BackboneError(f"backbone {spec}: module {spec.module!r} has no attribute {spec.attribute!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise BackboneError(f"backbone {spec}: {spec.attribute} is a {type(factory).__name__}, not a callable")
    try:
        built = factory(input_shape=tuple(input_shape)) if _takes_input_shape(factory) else factory()
    except Exception as e:
        raise BackboneError(f"backbone {spec}: {spec.attribute}() failed: {type(e).__name__}: {e}") from e
    if not isinstance(built, nn.Module):
        raise BackboneError(f"backbone {spec}: {spec.attribute}() returned a {type(built).__name__}, not an nn.Module")
    return built


def save_backbone_files(model: nn.Module, run_dir: str | Path) -> list[Path]:
    """Write into ``run_dir`` what rebuilding ``model``'s backbone needs besides its weights (for an ``hf:``
    backbone, ``backbone/config.json``); returns the files written (none for other backbones)."""
    backbone = getattr(model, "backbone", model)
    features = backbone.features if isinstance(backbone, ProjectedBackbone) else None
    config = getattr(features, "config", None)
    if not hasattr(config, "to_json_string"):
        return []
    path = Path(run_dir) / BACKBONE_DIR / "config.json"
    atomic_write_text(path, config.to_json_string(use_diff=False))
    return [path]
