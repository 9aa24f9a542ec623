"""The one L2 normalisation of numpy rows (FAISS's compiled routine), shared by the index, the evaluation, the
service and the benchmarks. Torch code uses ``torch.nn.functional.normalize``; :func:`matryoshka.truncate` cuts a
prefix and re-normalises it for either."""

from __future__ import annotations

import faiss
import numpy as np


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a new C-contiguous float32 array; all-zero rows stay zero)."""
    y = np.array(x, dtype=np.float32, order="C")
    if y.ndim == 2 and y.size:
        faiss.fvec_renorm_L2(y.shape[1], len(y), faiss.swig_ptr(y))  # in place, compiled
    elif y.size:
        y /= np.maximum(np.sqrt(np.einsum("...d,...d->...", y, y))[..., None], 1e-12)
    return y
