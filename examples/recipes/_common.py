"""Plumbing shared by the recipes: command-line flags, Fashion-MNIST, a minibatch loop, results on disk."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from rich.progress import Progress

from matryoshka.data import ImageData, load_dataset


def recipe_args(doc: str, name: str, **defaults) -> argparse.Namespace:
    """``--quick`` (a tiny run for tests), ``--out``, ``--epochs``, ``--seed`` and recipe-specific defaults."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a tiny run (seconds) to check the recipe works")
    p.add_argument("--out", type=Path, default=Path("runs/recipes") / name)
    p.add_argument("--epochs", type=int, default=defaults.pop("epochs", 3))
    p.add_argument("--seed", type=int, default=0)
    for key, value in defaults.items():
        p.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    return args


def fashion_mnist(quick: bool, seed: int = 0) -> ImageData:
    """Fashion-MNIST; with ``quick`` a 2,000-image train set and a 1,000-image test set."""
    data = load_dataset("fashion_mnist", seed=seed)
    if quick:
        data.train, data.test = data.train.subset(2000, seed), data.test.subset(1000, seed)
    return data


def train_loop(
    modules: Iterable[torch.nn.Module],
    loss_of_batch: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    epochs: int,
    batch_size: int = 128,
    lr: float = 3e-3,
    label: str = "training",
) -> float:
    """AdamW + cosine over ``epochs`` passes of shuffled index batches; ``loss_of_batch(idx)`` returns the loss.
    Returns the seconds spent."""
    modules = list(modules)
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=5e-4)
    steps = epochs * max(1, n // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    t0 = time.perf_counter()
    with Progress(transient=True) as progress:
        task = progress.add_task(label, total=steps)
        for _ in range(epochs):
            for m in modules:
                m.train()
            for idx in torch.randperm(n).split(batch_size):
                if len(idx) < 2:
                    continue
                loss = loss_of_batch(idx)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                progress.advance(task)
    for m in modules:
        m.eval()
    return time.perf_counter() - t0


def save_results(out: Path, results: dict) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out / 'results.json'}")
