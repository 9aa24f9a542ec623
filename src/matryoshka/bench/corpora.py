"""Corpora for the retrieval benchmark: real MRL embeddings of shifted images, of distinct real texts, or a
synthetic stand-in.

The real corpus encodes the train and validation images of a trained image run (default: the demo's Fashion-MNIST
MRL model, 60k images) under small pixel shifts, as many shifts as the requested size needs (4 for 240k, 17 for
1M); queries are the test images. Shifted copies of an image land close to each other, so a query's ten nearest
neighbours lie within a few thousandths of cosine of each other: a corpus on which every approximation shows.
The text corpus (:func:`text_embeddings`) embeds distinct texts found on the machine
(:mod:`matryoshka.bench.texts`) with a Matryoshka text model trained by ``mrl train`` (default
``configs/wordnet_minilm_quick.yaml``); queries are texts held out of the corpus. Encodings are cached in
``$MATRYOSHKA_CACHE/bench`` (default ``~/.cache/matryoshka/bench``), keyed by the run's files and the size.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matryoshka.errors import InputError
from matryoshka.io import atomic_write_with

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
    from matryoshka.inference import encode
    from matryoshka.runs import TrainedRun
    from matryoshka.train import CheckpointError
    from matryoshka.train.config import DataConfig

    try:
        trained = TrainedRun.load(run, "cpu")
        model, info = trained.model, trained.info
    except CheckpointError as e:
        raise InputError(f"{e}; train one with `mrl demo --quick` (or pass --synthetic)") from None
    cache = CACHE / f"{run.name}-{_model_key(run)}-{size}-{n_queries}.npz"
    if cache.exists():
        return _load_corpus(cache, f"{run} x shifts, {size:,}")
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
    corpus = Corpus(x, y, q[:n_queries], q[n_queries:], qy[n_queries:], f"{run} x shifts, {size:,}")
    _save_corpus(cache, corpus)
    return corpus


# Corpus field -> key in the cached .npz (the keys caches already on disk use).
_CACHED = {"vectors": "x", "labels": "y", "calibration": "cal", "queries": "q", "query_labels": "qy"}


def _write_npy(tmp: str, array: np.ndarray) -> None:
    with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a name
        np.save(f, array)


def _save_corpus(path: Path, corpus: Corpus) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
            np.savez(f, **{key: getattr(corpus, field) for field, key in _CACHED.items()})

    atomic_write_with(path, write)


def _load_corpus(path: Path, name: str) -> Corpus:
    saved = np.load(path)
    return Corpus(*(saved[key] for key in _CACHED.values()), name)


TEXT_CHUNK = 20_000  # texts encoded per cached chunk (a killed encoding resumes from the last whole chunk)
TEXT_MAX_TOKENS = 128  # tokens kept per text when encoding the corpus (bounds the CPU time of long paragraphs)


def text_embeddings(run: Path, size: int, n_queries: int) -> Corpus:
    """``size`` distinct real texts embedded by the text run ``run``, and ``2 * n_queries`` other texts as
    queries (the first ``n_queries`` for calibration). Texts are shuffled (seed 0) before the split."""
    import time

    from matryoshka.bench.texts import collect_texts
    from matryoshka.runs import TrainedRun

    if not (run / "model" / "modules.json").exists() and not (run / "modules.json").exists():
        raise InputError(
            f"{run} is not a finished text run; train one with `mrl train --config configs/wordnet_minilm_quick.yaml`"
        )
    folder = CACHE / f"text-{run.name}-{_model_key(run / 'model' if (run / 'model').is_dir() else run)}-{size}"
    final, name = folder / f"corpus-{n_queries}.npz", f"{size:,} real texts, {run.name}"
    if final.exists():
        return _load_corpus(final, name)
    texts, counts = collect_texts(limit=size + 2 * n_queries)
    if len(texts) < size + 2 * n_queries:
        raise InputError(
            f"only {len(texts):,} distinct texts found ({counts}); ask for --size {len(texts) - 2 * n_queries:,} "
            "or fewer (`apt-get update -o Acquire::Languages=en` adds the Debian package descriptions)"
        )
    print(f"texts: {counts}", flush=True)
    order = np.random.default_rng(0).permutation(len(texts))
    texts = [texts[i] for i in order]
    model = TrainedRun.load(run).model
    model.max_seq_length = min(model.max_seq_length or TEXT_MAX_TOKENS, TEXT_MAX_TOKENS)
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    started, encoded = time.perf_counter(), 0
    for start in range(0, len(texts), TEXT_CHUNK):
        chunk = folder / f"chunk-{start:08d}.npy"
        if not chunk.exists():
            z = model.encode(texts[start : start + TEXT_CHUNK], batch_size=128, convert_to_numpy=True)
            atomic_write_with(chunk, lambda tmp, z=z: _write_npy(tmp, z.astype(np.float32)))
            encoded += len(z)  # this run's texts only: chunks cached by an earlier run cost nothing
            rate = encoded / (time.perf_counter() - started)
            done = min(start + TEXT_CHUNK, len(texts))
            print(
                f"encoded {done:,}/{len(texts):,} texts ({rate:.0f}/s, ~{(len(texts) - done) / rate / 60:.0f} min left)"
            )
        parts.append(np.load(chunk))
    z = np.concatenate(parts)
    q, x = z[: 2 * n_queries], z[2 * n_queries :]
    zeros = np.zeros(len(x), dtype=np.int64)
    corpus = Corpus(x, zeros, q[:n_queries], q[n_queries:], zeros[:n_queries], name)
    _save_corpus(final, corpus)
    return corpus


def load(corpus: str, model: Path, text_model: Path, size: int, n_queries: int, synthetic_dim: int = 0) -> Corpus:
    """The corpus a benchmark's ``--corpus`` / ``--model`` / ``--text-model`` / ``--synthetic`` options name."""
    if corpus not in ("images", "text"):
        raise InputError(f"--corpus must be images or text, got {corpus!r}")
    if synthetic_dim:
        return synthetic(size, n_queries, synthetic_dim, clusters=max(10, size // 200))
    if corpus == "text":
        return text_embeddings(text_model, size, n_queries)
    return shifted_embeddings(model, size, n_queries)
