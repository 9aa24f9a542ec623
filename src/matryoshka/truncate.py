"""Reading a Matryoshka embedding at a smaller size: keep the first m dims, then re-normalise."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from matryoshka.errors import InputError

if TYPE_CHECKING:
    import torch

# torch is imported only when a tensor comes in, so that numpy users (the index, the service) do not load it.
Array = TypeVar("Array", "torch.Tensor", np.ndarray)


def truncate(z: Array, m: int, normalize: bool = True, eps: float = 1e-12) -> Array:
    """Return ``z[..., :m]``, L2-normalised per row unless ``normalize=False``.

    Works on torch tensors (differentiable) and numpy arrays. Re-normalising matters: a prefix of a
    unit vector is not a unit vector, so cosine scores computed on raw prefixes are wrong.

    >>> import torch
    >>> truncate(torch.tensor([[3.0, 4.0, 12.0]]), 2)
    tensor([[0.6000, 0.8000]])
    """
    if z.ndim < 1:
        raise InputError("truncate needs at least a 1-D embedding")
    d = z.shape[-1]
    if not isinstance(m, int | np.integer) or isinstance(m, bool) or not 1 <= m <= d:
        raise InputError(f"cannot truncate a {d}-dim embedding to m={m!r}; m must be an int in [1, {d}]")
    prefix = z[..., :m]
    if not normalize:
        return prefix
    if not isinstance(prefix, np.ndarray):
        import torch

        return torch.nn.functional.normalize(prefix, dim=-1, eps=eps)
    norms = np.linalg.norm(prefix, axis=-1, keepdims=True)
    return prefix / np.maximum(norms, eps)
