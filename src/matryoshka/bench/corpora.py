"""Corpora for the retrieval benchmark: real MRL embeddings of shifted images, or a synthetic stand-in.

The real corpus encodes the train and validation images of a trained image run (default: the demo's Fashion-MNIST
MRL model, 60k images) under small pixel shifts, as many shifts as the requested size needs (4 for 240k, 17 for
1M); queries are the test images. Shifted copies of an image land close to each other, so a query's ten nearest
neighbours lie within a few thousandths of cosine of each other: a corpus on which every approximation shows.
Encodings are cached in ``$MATRYOSHKA_CACHE/bench`` (default ``~/.cache/matryoshka/bench``), keyed by the run's
files and the size.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matryoshka.errors import InputError

CACHE = Path(os.environ.get("MATRYOSHKA_CACHE", Path.home() / ".cache" / "matryoshka")) / "bench"
# (rows, columns) shifts in the order they are used: identity, one pixel, diagonals, then two pixels.
SHIFTS = [(0, 0), (0, 1), (1, 0), (1, 1), (0, -1), (-1, 0), (-1, -1), (1, -1), (-1, 1)]
SHIFTS += [(0, 2), (2, 0), (0, -2), (-2, 0), (2, 2), (-2, -2), (2, -2), (-2, 2), (1, 2), (2, 1), (-1, 2), (2, -1)]


@dataclass
class Corpus:
    """Vectors to index with their class labels, calibration queries (for tuning) and evaluation queries."""

    vectors: np.ndarray
    labels: np.ndarray
    calibration: np.ndarray
    queries: np.ndarray
    query_labels: np.ndarray
    name: str


def synthetic(n: int, n_queries: int, d: int, clusters: int = 1000, alpha: float = 0.75, seed: int = 0) -> Corpus:
    """Clustered vectors whose per-dim scale decays as j^-alpha, a coarse-to-fine spectrum like a Matryoshka
    embedding's; the clusters are the classes."""
    rng = np.random.default_rng(seed)
    spectrum = (np.arange(1, d + 1) ** -alpha).astype(np.float32)
    centers = rng.standard_normal((clusters, d), dtype=np.float32) * spectrum
    total = n + 2 * n_queries
    labels = rng.integers(0, clusters, total)
    x = np.empty((total, d), dtype=np.float32)
    for start in range(0, total, 100_000):
        part = labels[start : start + 100_000]
        x[start : start + len(part)] = centers[part] + rng.standard_normal((len(part), d), dtype=np.float32) * spectrum
    q = n + n_queries
    return Corpus(x[:n], labels[:n], x[n:q], x[q:], labels[q:], f"synthetic {n:,} x {d}")


def _model_key(run: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(run.glob("*.safetensors")) + sorted(run.glob("*.json")):
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def shifted_embeddings(run: Path, size: int, n_queries: int) -> Corpus:
    """``size`` embeddings of a trained image run's train+val images under pixel shifts; test images as queries
    (the first ``n_queries`` for calibration, the next ``n_queries`` for evaluation)."""
    import torch

    from matryoshka.data import load_data
    from matryoshka.inference import encode, load_run
    from matryoshka.train import CheckpointError
    from matryoshka.train.config import DataConfig

    try:
        model, info, _ = load_run(run, "cpu")
    except CheckpointError as e:
        raise InputError(f"{e}; train one with `mrl demo --quick` (or pass --synthetic)") from None
    cache = CACHE / f"{run.name}-{_model_key(run)}-{size}-{n_queries}.npz"
    if cache.exists():
        saved = np.load(cache)
        return Corpus(*(saved[key] for key in ("x", "y", "cal", "q", "qy")), f"{run} x shifts, {size:,}")
    data = load_data(DataConfig.model_validate({**info["config"]["data"], "train_subset": None}))
    images = torch.cat([data.train.x, data.val.x])
    labels = torch.cat([data.train.y, data.val.y]).numpy()
    if len(data.test.x) < 2 * n_queries:
        raise InputError(f"{run}'s data has {len(data.test.x)} test images; --queries must be at most half of that")
    needed = -(-size // len(images))
    if images.ndim != 4 or needed > len(SHIFTS):
        raise InputError(f"--size {size:,} needs {needed} shifts of {len(images):,} images; at most {len(SHIFTS)}")
    parts = []
    for dy, dx in SHIFTS[:needed]:
        print(f"encoding {len(images):,} images shifted by ({dy}, {dx})", flush=True)
        parts.append(encode(model, torch.roll(images, shifts=(dy, dx), dims=(-2, -1))).numpy())
    x = np.concatenate(parts)[:size]
    y = np.tile(labels, needed)[:size]
    q = encode(model, data.test.x[: 2 * n_queries]).numpy()
    qy = data.test.y[: 2 * n_queries].numpy()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache.with_suffix(".tmp.npz"), x=x, y=y, cal=q[:n_queries], q=q[n_queries:], qy=qy[n_queries:])
    cache.with_suffix(".tmp.npz").replace(cache)
    return Corpus(x, y, q[:n_queries], q[n_queries:], qy[n_queries:], f"{run} x shifts, {size:,}")
