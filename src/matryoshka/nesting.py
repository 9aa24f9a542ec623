"""Nesting lists: the prefix sizes m at which a Matryoshka embedding is trained and read.

Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022 (arXiv 2205.13147), Sec. 3:
the set M = {8, 16, ..., d} of nested dimensions, each with a relative importance c_m (1 by default).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from matryoshka.errors import MatryoshkaError


class NestingError(MatryoshkaError, ValueError):
    """A nesting list that cannot be used (empty, unsorted, out of range, ...).

    Example::

        from matryoshka import NestingError, nesting_weights

        try:
            nesting_weights([8, 16], [1.0])
        except NestingError as e:
            print(e)                          # got 1 weights for 2 nesting dims [8, 16]
    """


def nesting_list(d: int, min_dim: int = 8) -> list[int]:
    """Powers of two from ``min_dim`` up to ``d``, always ending with ``d``.

    >>> nesting_list(2048)
    [8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    >>> nesting_list(384)
    [8, 16, 32, 64, 128, 256, 384]
    """
    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise NestingError(f"embedding size d must be a positive int, got {d!r}")
    if not isinstance(min_dim, int) or isinstance(min_dim, bool) or min_dim < 1:
        raise NestingError(f"min_dim must be a positive int, got {min_dim!r}")
    if min_dim > d:
        raise NestingError(f"min_dim={min_dim} is larger than the embedding size d={d}")
    m = 2 ** math.ceil(math.log2(min_dim))
    dims = []
    while m < d:
        dims.append(m)
        m *= 2
    dims.append(d)
    return dims


def halving_nesting(d: int, min_dim: int = 8) -> list[int]:
    """d, d//2, d//4, ... down to no less than ``min_dim``, in increasing order (the usual list for text models).

    >>> halving_nesting(384, 12)
    [12, 24, 48, 96, 192, 384]
    """
    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise NestingError(f"embedding size d must be a positive int, got {d!r}")
    if not isinstance(min_dim, int) or isinstance(min_dim, bool) or not 1 <= min_dim <= d:
        raise NestingError(f"min_dim must be an int in [1, d={d}], got {min_dim!r}")
    dims = [d]
    while dims[-1] // 2 >= min_dim:
        dims.append(dims[-1] // 2)
    return dims[::-1]


def validate_nesting(nesting: Sequence[int], d: int | None = None) -> list[int]:
    """Check a user-given nesting list and return it as a list of ints.

    Rejects empty, non-integer, non-positive, unsorted or repeated dims, and dims larger than ``d``.
    Dims are never sorted silently: an out-of-order list usually means a bug upstream.
    Warns when ``d`` is given and missing from the list (the full embedding would go untrained).

    Example::

        from matryoshka import NestingError, validate_nesting

        assert validate_nesting([8, 16, 32], 32) == [8, 16, 32]
        try:
            validate_nesting([16, 8])
        except NestingError as e:
            print(e)                          # the dims must increase
    """
    dims = list(nesting)
    if not dims:
        raise NestingError("nesting list is empty; give at least one dim, e.g. nesting_list(d)")
    for m in dims:
        if not isinstance(m, int) or isinstance(m, bool):
            raise NestingError(f"nesting dims must be ints, got {m!r} in {dims}")
        if m < 1:
            raise NestingError(f"nesting dims must be positive, got {m} in {dims}")
    for a, b in itertools.pairwise(dims):
        if b <= a:
            kind = "repeated" if a == b else "unsorted"
            raise NestingError(f"nesting list must be strictly increasing ({kind}: {a} then {b}): {dims}")
    if d is not None:
        if dims[-1] > d:
            raise NestingError(f"nesting dim {dims[-1]} is larger than the embedding size d={d}: {dims}")
        if dims[-1] != d:
            warnings.warn(
                f"nesting list {dims} does not include the full dim d={d}; "
                f"the last {d - dims[-1]} features will get no training signal",
                stacklevel=2,
            )
    return dims


SMALL_DIM_PIVOT = 16


def small_dim_weights(nesting: Sequence[int], pivot: int = SMALL_DIM_PIVOT) -> list[float]:
    """c_m = max(1, pivot / m): dims below ``pivot`` weigh more, e.g. 2..64 -> [8, 4, 2, 1, 1, 1].

    The trainers' default. With the paper's equal weights the smallest prefixes get a small share of the gradient
    and trail a model trained for their dim alone (FF-k); ``mrl bench defaults`` measures both.

    Example::

        from matryoshka import small_dim_weights

        assert small_dim_weights([2, 4, 8, 16, 32, 64]) == [8.0, 4.0, 2.0, 1.0, 1.0, 1.0]
    """
    return [max(1.0, pivot / m) for m in validate_nesting(nesting)]


def ramped_weights(weights: Sequence[float], progress: float, power: float = 1.0) -> list[float]:
    """The c_m at a fraction ``progress`` (0..1) of training: 1 + (c_m - 1) * progress**power.

    The trainers' default schedule for the loss weights (linear, ``power=1``; ``quadratic`` is ``power=2``). Every
    prefix weighs 1 at the start, so the representation is learned for all dims alike, and the small prefixes
    gain their extra weight as training goes on. Extra weight from the first step (a constant c_m) buys the small
    dims at the cost of the large dims' 1-NN accuracy (1.5-2.7 points on a feature table); coming later still (t^2)
    it leaves a 2-dim prefix whose classes a head tells apart by length, which cosine search cannot
    (``docs/benchmarks.md``).

    Example::

        from matryoshka import ramped_weights

        assert ramped_weights([8, 4, 1], 0.0) == [1.0, 1.0, 1.0]
        assert ramped_weights([8, 4, 1], 0.5) == [4.5, 2.5, 1.0]
        assert ramped_weights([8, 4, 1], 1.0) == [8.0, 4.0, 1.0]
        assert ramped_weights([8, 4, 1], 0.5, power=2) == [2.75, 1.75, 1.0]   # the quadratic ramp
    """
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be within [0, 1], got {progress}")
    return [1.0 + (float(c) - 1.0) * progress**power for c in weights]


def nesting_weights(nesting: Sequence[int], weights: Sequence[float] | None = None) -> list[float]:
    """Relative importance c_m per dim; all ones by default (as in the paper).

    Example::

        from matryoshka import nesting_weights

        assert nesting_weights([8, 16, 32]) == [1.0, 1.0, 1.0]
        assert nesting_weights([8, 16, 32], [2, 1, 1]) == [2.0, 1.0, 1.0]
    """
    if weights is None:
        return [1.0] * len(nesting)
    w = [float(x) for x in weights]
    if len(w) != len(nesting):
        raise NestingError(f"got {len(w)} weights for {len(nesting)} nesting dims {list(nesting)}")
    if any(not math.isfinite(x) or x < 0 for x in w):
        raise NestingError(f"weights must be finite and non-negative, got {w}")
    if sum(w) == 0:
        raise NestingError("at least one weight must be positive")
    return w


# -- the nesting of saved embeddings ------------------------------------------------------------------------------
# `mrl encode` writes z.nesting.json beside z.npy (the run and its nesting), so that `mrl index build` shortlists
# with the prefixes the model was trained at instead of sizes it never saw.


def nesting_sidecar(embeddings: str | os.PathLike) -> Path:
    """Where the nesting of an embeddings file is recorded: ``z.npy`` -> ``z.nesting.json``."""
    return Path(embeddings).with_suffix(".nesting.json")


def write_embeddings_nesting(embeddings: str | os.PathLike, run: str | os.PathLike, nesting: Sequence[int], dim: int):
    """Record beside ``embeddings`` the run that made them and its nesting dims (those up to ``dim``, the saved
    width); returns the file written."""
    from matryoshka.io import atomic_write_json

    kept = [int(m) for m in nesting if m <= dim]
    record = {"run": str(Path(run).resolve()), "dim": int(dim), "nesting": kept if dim in kept else [*kept, dim]}
    path = nesting_sidecar(embeddings)
    atomic_write_json(path, record)
    return path


def read_embeddings_nesting(embeddings: str | os.PathLike, dim: int) -> list[int] | None:
    """The nesting recorded beside ``embeddings`` by :func:`write_embeddings_nesting`, or None where there is none,
    it cannot be read, or it was written for another width than ``dim`` (a file replaced since)."""
    try:
        record = json.loads(nesting_sidecar(embeddings).read_text())
        nesting = [int(m) for m in record["nesting"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record.get("dim") != dim or not nesting or nesting != sorted(set(nesting)) or nesting[0] < 1:
        return None
    return nesting if nesting[-1] == dim else None


def shortlist_dims_for(dim: int, nesting: Sequence[int] | None = None) -> list[int]:
    """Prefix sizes worth a first-stage (shortlist) structure for ``dim``-d embeddings: the nesting dims from d/32
    to d/8 (the model's own ``nesting`` where known, else :func:`halving_nesting`, the rule text models follow and
    powers of two for d = 2^n), else the smallest nesting dim below d.

    >>> shortlist_dims_for(384)
    [12, 24, 48]
    >>> shortlist_dims_for(512, [8, 16, 32, 64, 128, 256, 512])
    [16, 32, 64]
    """
    below = [int(m) for m in (nesting or halving_nesting(dim, min(8, dim))) if m < dim]
    chosen = [m for m in below if dim / 32 <= m <= dim / 8]
    return chosen or below[:1] or [dim]
