"""Starting weights (``model.init_from``) and the frozen part of a backbone (``model.freeze_backbone``)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from matryoshka.nn.backbones.external import ProjectedBackbone
from matryoshka.nn.backbones.registry import BackboneError

INIT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a safetensors file or a torch file (``.pt``/``.pth``/``.bin``, read with
    ``weights_only=True``); a checkpoint that nests it under ``state_dict`` or ``model`` is unwrapped."""
    path = Path(path).expanduser()
    if path.suffix not in INIT_SUFFIXES:
        raise BackboneError(f"init_from {path}: expected a {', '.join(INIT_SUFFIXES)} file")
    if not path.is_file():
        raise BackboneError(f"init_from {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BackboneError(f"init_from {path} cannot be read: {type(e).__name__}: {e}") from e
    if isinstance(state, dict) and not all(isinstance(v, Tensor) for v in state.values()):
        nested = [state[k] for k in ("state_dict", "model") if isinstance(state.get(k), dict)]
        state = nested[0] if nested else state
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise BackboneError(f"init_from {path} holds no state dict (a mapping of parameter names to tensors)")
    return state


def _few(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_init_weights(model: nn.Module, path: str | Path) -> str:
    """Load the weights in ``path`` into the part of ``model`` whose parameter names they carry: the whole model
    (``backbone.*``, ``head.*``), its backbone, or an external backbone's feature extractor (e.g. the weights of a
    timm or transformers model). Returns which part; a file that fits none raises :class:`BackboneError` naming a
    few missing and unexpected keys."""
    state = read_state_dict(path)
    parts: list[tuple[str, nn.Module]] = [("model", model)]
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module):
        parts.append(("backbone", backbone))
        if isinstance(backbone, ProjectedBackbone):
            parts.append(("feature extractor", backbone.features))
    keys = set(state)
    name, part = max(parts, key=lambda p: len(keys & set(p[1].state_dict())))
    expected = part.state_dict()
    missing, unexpected = sorted(set(expected) - keys), sorted(keys - set(expected))
    if missing or unexpected:
        raise BackboneError(
            f"init_from {path} does not fit the model: the closest part, the {name}, has "
            f"{len(set(expected) & keys)} of its {len(expected)} keys there; missing: {_few(missing) or 'none'}; "
            f"unexpected: {_few(unexpected) or 'none'}"
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if v.shape != state[k].shape
    ]
    if wrong:
        raise BackboneError(f"init_from {path}: shapes differ from the {name}'s (file vs model): {_few(wrong, 3)}")
    part.load_state_dict(state)
    return name


def feature_modules(backbone: nn.Module) -> list[nn.Module]:
    """The backbone itself and its modules outside its ``project`` layer: the feature extractor that
    ``freeze_backbone`` freezes. A backbone without a ``project`` layer (the built-in ``mlp``) is all features."""
    project = getattr(backbone, "project", None)
    inside = {id(m) for m in project.modules()} if isinstance(project, nn.Module) else set()
    return [m for m in backbone.modules() if id(m) not in inside]
