"""Batched, gradient-free passes of a trained model over a whole tensor of inputs; a trained run with its data."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from matryoshka.errors import InputError
from matryoshka.nn.model import MatryoshkaClassifier
from matryoshka.truncate import truncate

if TYPE_CHECKING:
    from matryoshka.data import ImageData

SPLITS = ("train", "val", "test")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.no_grad()
def encode(model: MatryoshkaClassifier, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Full-dim embeddings z (float32, on the CPU) of every input, computed in eval mode.

    Example::

        import torch
        from matryoshka import MatryoshkaClassifier, MRLHead, create_backbone, encode

        model = MatryoshkaClassifier(create_backbone("mlp", 16, (20,)), MRLHead(16, 3, [4, 8, 16]))
        z = encode(model, torch.randn(1000, 20), batch_size=256)   # (1000, 16), batched, in eval mode
    """
    z, _ = encode_and_classify(model, x, batch_size, with_logits=False)
    return z


@torch.no_grad()
def encode_and_classify(
    model: MatryoshkaClassifier, x: torch.Tensor, batch_size: int = 256, with_logits: bool = True
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Embeddings and per-dim logits of every input (both on the CPU), in one pass.

    Moderate batches are fastest on a CPU (they stay in cache); 256 is about 2x faster than 1024 there.

    Example::

        import torch
        from matryoshka import MatryoshkaClassifier, MRLHead, create_backbone, encode_and_classify

        model = MatryoshkaClassifier(create_backbone("mlp", 16, (20,)), MRLHead(16, 3, [4, 8, 16]))
        z, logits = encode_and_classify(model, torch.randn(100, 20))   # logits: one (100, 3) tensor per dim
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    zs, logits = [], []
    try:
        for start in range(0, len(x), batch_size):
            z = model.encode(x[start : start + batch_size].to(device))
            zs.append(z.float().cpu())
            if with_logits:
                logits.append([out.float().cpu() for out in model.head(z)])
    finally:
        model.train(was_training)
    per_dim = [torch.cat(parts) for parts in zip(*logits, strict=True)] if logits else []
    return torch.cat(zs) if zs else torch.empty(0), per_dim


def embed_split(
    model: MatryoshkaClassifier, data: ImageData, split: str = "test", dim: int | None = None, normalize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (N, dim) float32, labels (N,)) of one split; ``dim`` keeps a prefix (default: all features)."""
    if split not in SPLITS:
        raise InputError(f"split must be train, val or test, got {split!r}")
    part = getattr(data, split)
    z = encode(model, part.x)
    return truncate(z, dim or z.shape[1], normalize=normalize).numpy().astype(np.float32), part.y.numpy()
