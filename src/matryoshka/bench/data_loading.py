"""Cost of reading your own images: training-step time from a PNG folder (decoded in DataLoader workers) against
the same images as in-memory tensors, and from the folder's decoded cache (``data.cache``, on by default).

Fashion-MNIST training images are written once as PNG files (``DIR/<class>/<n>.png``), then the same model trains
on each source in interleaved rounds of one epoch each; the median step times are compared, so machine noise hits
all alike. Goal: the folder's step within 1.2x of the in-memory step.

    mrl bench data-loading [--images 8192] [--workers 2] [--batch-size 256]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from matryoshka.data import load_data, load_dataset
from matryoshka.data.fashion_mnist import _FILES, CLASS_NAMES, _find_root, read_idx
from matryoshka.train import Trainer, parse_config

GOAL = 1.2


def export_png_folder(out: Path, images: int, root: str | None = None) -> Path:
    """The first ``images`` Fashion-MNIST training images as ``out/<class>/<n>.png`` (kept between runs)."""
    from PIL import Image

    marker = out / f".complete-{images}"
    if marker.exists():
        return out
    folder = _find_root(root)
    x = read_idx(folder / _FILES["train"][0])[:images]
    y = read_idx(folder / _FILES["train"][1])[:images]
    for name in CLASS_NAMES:
        (out / name.replace("/", "-")).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        Image.fromarray(img).save(out / CLASS_NAMES[label].replace("/", "-") / f"{i:06d}.png")
    marker.touch()
    return out


def _trainer(data_section: dict[str, Any], batch_size: int, data=None) -> Trainer:
    cfg = parse_config(
        {
            "data": data_section,
            "model": {"backbone": "cnn", "embed_dim": 64, "width": 16},
            "train": {"epochs": 1, "batch_size": batch_size, "out_dir": "/tmp/unused", "device": "cpu"},
        }
    )
    trainer = Trainer(cfg, data=data, progress=False, resume=False)
    trainer.build()
    trainer.model.train()
    return trainer


def _epoch_seconds_per_step(trainer: Trainer, epoch: int) -> float:
    t0 = time.perf_counter()
    steps = 0
    for batch in trainer.batches(epoch, 0):
        trainer.train_step(batch).item()
        steps += 1
    return (time.perf_counter() - t0) / max(1, steps)


def run(
    *,
    images: int = 8192,
    workers: int = 2,
    batch_size: int = 256,
    rounds: int = 3,
    folder: Path = Path("runs/bench_data/fashion_png"),
) -> dict[str, Any]:
    """Median ms per training step: in memory, from the PNG folder decoded every epoch by workers, and from the
    folder's decoded cache (its one-time decoding timed apart); prints the table and the ratios."""
    t0 = time.perf_counter()
    export_png_folder(folder, images)
    export_seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="mrl-bench-cache-") as cache:
        section = {
            "name": "imagefolder",
            "path": str(folder),
            "channels": 1,
            "image_size": 28,
            "workers": workers,
            "val_fraction": 0.0,
            "test_fraction": 0.0,
        }
        uncached = load_data(parse_config({"data": {**section, "cache": False}}).data)
        cached = load_data(parse_config({"data": {**section, "cache_dir": cache}}).data)
        fashion = load_dataset("fashion_mnist")
        in_memory = type(fashion)(
            "fashion_mnist_subset",
            fashion.train.subset(len(uncached.train)),
            fashion.val,
            fashion.test,
            fashion.class_names,
            fashion.preprocess,
        )
        names = ("in-memory tensors", f"PNG folder, {workers} workers", "PNG folder, decoded cache")
        trainers = {
            name: _trainer({"name": "digits"}, batch_size, data)
            for name, data in zip(names, (in_memory, uncached, cached), strict=True)
        }
        t0 = time.perf_counter()
        cached.train.cached_pixels()  # the one-time decode into the cache, timed on its own
        decode_seconds = time.perf_counter() - t0
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for r in range(rounds):
            for name, trainer in trainers.items():
                times[name].append(_epoch_seconds_per_step(trainer, r + 1))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    base = medians[names[0]]
    print(
        f"{len(uncached.train)} images, batch {batch_size}, cnn w16 d=64, threads={torch.get_num_threads()}, "
        f"{rounds} interleaved epochs (PNG export {export_seconds:.1f} s, one-time decode into the cache "
        f"{decode_seconds:.1f} s with {workers} workers)"
    )
    print(f"{'source':<28}{'median ms/step':>16}{'ratio':>8}")
    for name, med in medians.items():
        print(f"{name:<28}{1000 * med:>16.1f}{med / base:>8.2f}")
    ratios = {name: med / base for name, med in medians.items()}
    for name in names[1:]:
        verdict = "met" if ratios[name] <= GOAL else "NOT met"
        print(f"goal: {name} within {GOAL}x of in-memory -> {verdict} ({ratios[name]:.2f}x)")
    return {
        "images": len(uncached.train),
        "batch_size": batch_size,
        "workers": workers,
        "ms_per_step": {name: 1000 * med for name, med in medians.items()},
        "ratio": ratios,
        "decode_seconds": decode_seconds,
        "goal": GOAL,
        "per_round_ms": {name: [1000 * t for t in ts] for name, ts in times.items()},
    }
