"""Rotated prefixes: an orthogonal basis fitted on the corpus, whose first D coordinates serve as the D-dim
shortlist prefix of an index.

An orthogonal rotation R leaves every full-dim inner product unchanged (<qR, xR> = <q, x>), so full-dim scores
and re-ranking stay exact. What changes is what a short prefix holds: in the basis of the corpus's right singular
vectors (uncentred, largest first), the first D coordinates carry as much of every vector's energy as any D
linear coordinates can, and keep the full-dim neighbours far better than the first D dims as trained when the
model did not put that information first (or was never Matryoshka-trained). A query pays one (d x D) product per
rotated prefix it uses.

Example::

    import numpy as np
    from matryoshka.index.basis import fit_basis

    x = np.random.default_rng(0).standard_normal((2000, 64)).astype("float32")
    basis = fit_basis(x)                     # (64, 64), orthonormal columns, most energy first
    y = x @ basis
    assert np.allclose((x * x).sum(1), (y * y).sum(1), rtol=1e-4)
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from matryoshka.index.errors import IndexInputError
from matryoshka.normalize import normalize

ROTATIONS = ("auto", "raw", "svd")  # try both and keep the faster; the first dims as stored; rotated
FIT_ROWS = 50_000  # rows sampled to fit the basis: the Gram matrix of a larger sample barely moves
ORTHOGONAL_TOLERANCE = 1e-3


def check_rotation(rotate: str) -> str:
    """``rotate`` must be one of :data:`ROTATIONS`."""
    if rotate not in ROTATIONS:
        raise IndexInputError(f"unknown rotation {rotate!r}; choose one of {', '.join(ROTATIONS)}")
    return rotate


def fit_index_basis(index, seed: int = 0) -> np.ndarray:
    """:func:`fit_basis` on a sample of an index's live rows (read in bulk: only the sample is decoded)."""
    alive = index.alive_positions()
    if len(alive) > FIT_ROWS:
        alive = np.sort(np.random.default_rng(seed).choice(alive, FIT_ROWS, replace=False))
    return fit_basis(index.vectors(alive, bulk=True))


def fit_basis(vectors: np.ndarray, sample: int = FIT_ROWS, seed: int = 0) -> np.ndarray:
    """The (d, d) float32 orthogonal basis of the right singular vectors of (a sample of) the unit ``vectors``,
    uncentred, largest singular value first: ``vectors @ basis`` puts the most energy in the first columns.

    Example::

        import numpy as np
        from matryoshka import MatryoshkaIndex, fit_basis

        mixing, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((64, 64)))
        x = ((np.random.default_rng(0).standard_normal((3000, 64)) * np.geomspace(3, 0.1, 64)) @ mixing).astype("f4")
        index = MatryoshkaIndex(64, shortlist_dims=[8]).with_basis(fit_basis(x))  # shortlists over rotated prefixes
        index.add(x)
        scores, ids = index.search(x[:3], 10, "adaptive:8:50:64")
        assert (ids[:, 0] == [0, 1, 2]).all()
    """
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise IndexInputError(f"a basis is fitted on vectors (N, d) with N >= 1, got shape {x.shape}")
    if len(x) > sample:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), sample, replace=False))]
    x = normalize(x).astype(np.float64)
    # The eigenvectors of X^T X are X's right singular vectors; the Gram matrix gives a full basis even when the
    # sample has fewer rows than dims.
    _, eigenvectors = np.linalg.eigh(x.T @ x)  # eigenvalues ascending
    return np.ascontiguousarray(eigenvectors[:, ::-1], dtype=np.float32)


def check_basis(basis: np.ndarray, dim: int) -> np.ndarray:
    """``basis`` as a contiguous float32 (dim, dim) orthogonal matrix; anything else is an IndexInputError."""
    basis = np.asarray(basis)
    if basis.shape != (dim, dim):
        raise IndexInputError(f"the basis has shape {basis.shape}; an index of {dim}-d vectors needs ({dim}, {dim})")
    basis = np.ascontiguousarray(basis, dtype=np.float32)
    if not np.isfinite(basis).all():
        raise IndexInputError("the basis holds NaN or infinite values")
    # On one BLAS thread: each thread of the pool keeps a heap arena of its own resident afterwards (2.3 MB, a
    # tenth of a disk-tier index of 67k vectors), for a product that takes a millisecond.
    with threadpool_limits(1, user_api="blas"):
        error = np.abs(basis.T.astype(np.float64) @ basis - np.eye(dim)).max()
    if error > ORTHOGONAL_TOLERANCE:
        raise IndexInputError(f"the basis is not orthogonal (|B^T B - I| reaches {error:.2g})")
    return basis
