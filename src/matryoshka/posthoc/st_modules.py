"""A fitted :class:`~matryoshka.MatryoshkaAdaptor` as stock sentence-transformers modules.

The adaptor computes f(e) = h + W2 GELU(W1 h + b1) + b2 with h = P e. A sentence-transformers ``Dense`` module is one
linear map and one activation, so the residual path rides through the same GELU by the identity
GELU(x) - GELU(-x) = x (GELU(x) = x Phi(x) and Phi(-x) = 1 - Phi(x)):

* ``Dense(d -> 2d + hidden, GELU)`` with the weight [P; -P; W1 P] and the bias [0; 0; b1] gives
  [GELU(h), GELU(-h), GELU(W1 h + b1)];
* ``Dense(2d + hidden -> d, identity)`` with the weight [I, -I, W2] and the bias b2 adds them up to f(e).

A folder saved with these modules loads with sentence-transformers alone (no ``matryoshka`` installed, no
``trust_remote_code``), and ``SentenceTransformer(folder, truncate_dim=m)`` gives the adaptor's prefixes.

Example::

    from matryoshka.posthoc.st_modules import adaptor_modules
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(modules=[*base, *adaptor_modules(adaptor)])    # base: the SentenceTransformer
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from matryoshka.posthoc.adaptor import MatryoshkaAdaptor


def _module_class(name: str) -> type:
    """A stock module class: sentence-transformers >= 6 moved them (the old path warns there), older ones have them
    in ``sentence_transformers.models``."""
    try:
        from sentence_transformers.sentence_transformer import modules
    except ImportError:
        from sentence_transformers import models as modules
    return getattr(modules, name)


def normalize_module() -> nn.Module:
    """A stock ``Normalize`` module (unit-length output)."""
    return _module_class("Normalize")()


def rotation_module(basis: np.ndarray) -> nn.Module:
    """A stock bias-free ``Dense`` module computing ``x @ basis`` ((d, d) orthonormal columns: a rotation)."""
    weight = torch.as_tensor(np.ascontiguousarray(basis.T), dtype=torch.float32)
    d = weight.shape[0]
    return _module_class("Dense")(d, d, bias=False, activation_function=nn.Identity(), init_weight=weight)


@torch.no_grad()
def adaptor_modules(adaptor: MatryoshkaAdaptor) -> list[nn.Module]:
    """Two ``Dense`` modules computing the fitted adaptor's transform (without normalisation), on the CPU."""
    f = adaptor.transform_
    if f is None:
        raise RuntimeError("the adaptor is not fitted: call fit() or load()")
    p = f.rotate.weight.detach().float().cpu()
    first, second = f.residual[0], f.residual[-1]
    w1, b1 = first.weight.detach().float().cpu(), first.bias.detach().float().cpu()
    w2, b2 = second.weight.detach().float().cpu(), second.bias.detach().float().cpu()
    d, hidden = p.shape[0], w1.shape[0]
    dense = _module_class("Dense")
    spread = dense(
        d,
        2 * d + hidden,
        activation_function=nn.GELU(),
        init_weight=torch.cat([p, -p, w1 @ p]),
        init_bias=torch.cat([torch.zeros(2 * d), b1]),
    )
    gather = dense(
        2 * d + hidden,
        d,
        activation_function=nn.Identity(),
        init_weight=torch.cat([torch.eye(d), -torch.eye(d), w2], dim=1),
        init_bias=b2.clone(),
    )
    return [spread, gather]
