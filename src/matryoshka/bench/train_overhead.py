"""Cost of Matryoshka training: train-step time of MRL and MRL-E relative to one full-dim head.

The three models share the backbone (same init) and differ only in the head, built as training builds it by
default (``model.head_bias``, ``model.logit_scale``); steps are timed in interleaved rounds and the medians
compared, so machine noise hits all three alike.

    mrl bench train-overhead [--backbone cnn] [--embed-dim 512] [--batch-size 256] [--device auto]
    mrl bench train-overhead --backbone hf-vit-tiny --image-size 32 --channels 3 --batch-size 64

``--backbone`` takes any backbone spec (a registered name, ``hf:DIR``, ``timm:NAME``, ``module:factory``);
``hf-vit-tiny`` is a randomly initialised transformers ViT of DeiT-Tiny's shape (192 wide, 12 layers, 3 heads),
written once to ``runs/bench_vit_tiny`` (nothing is downloaded).

Targets: MRL <= 1.05x and MRL-E <= 1.02x the single-head step.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from matryoshka import MatryoshkaLoss, nesting_list
from matryoshka.inference import resolve_device
from matryoshka.nn.model import build_classifier
from matryoshka.train.config import ModelConfig

TARGETS = {"MRL": 1.05, "MRL-E": 1.02}
BASELINE = "single full-dim head"


def make_step(model: nn.Module, device: torch.device, batch_size: int, num_classes: int, shape):
    loss_fn = MatryoshkaLoss(nn.CrossEntropyLoss(), model.nesting).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch_size, *shape, device=device)
    y = torch.randint(0, num_classes, (batch_size,), device=device)

    def step() -> None:
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def tiny_vit_folder(image_size: int, channels: int, folder: Path = Path("runs/bench_vit_tiny")) -> Path:
    """A random-init transformers ViT of DeiT-Tiny's shape, saved with ``save_pretrained`` (for an ``hf:`` spec)."""
    from transformers import ViTConfig, ViTModel

    target = folder / f"{image_size}px-{channels}ch"
    if not (target / "config.json").exists():
        torch.manual_seed(0)
        config = ViTConfig(
            image_size=image_size,
            patch_size=4 if image_size <= 64 else 16,
            num_channels=channels,
            hidden_size=192,
            num_hidden_layers=12,
            num_attention_heads=3,
            intermediate_size=768,
        )
        ViTModel(config).save_pretrained(target)
    return target


def run(
    *,
    backbone: str = "cnn",
    image_size: int = 28,
    channels: int = 1,
    width: int | None = None,
    embed_dim: int = 512,
    num_classes: int = 10,
    batch_size: int = 256,
    steps: int = 10,
    rounds: int = 7,
    device: str = "auto",
) -> dict[str, Any]:
    """Time ``rounds`` x ``steps`` train steps of each head, print the table; returns ms/step and ratios per head."""
    dev = resolve_device(device)
    shape = (channels, image_size, image_size)
    if backbone == "hf-vit-tiny":
        backbone = f"hf:{tiny_vit_folder(image_size, channels)}"
    d = embed_dim
    heads = {BASELINE: ("ff", [d]), "MRL": ("mrl", nesting_list(d)), "MRL-E": ("mrl_e", nesting_list(d))}
    defaults = ModelConfig()
    step_fns = {}
    for name, (head, nesting) in heads.items():
        torch.manual_seed(0)
        model = build_classifier(
            backbone,
            d,
            head,
            nesting,
            shape,
            num_classes,
            width,
            bias=defaults.head_bias,
            logit_scale=defaults.logit_scale,
        ).to(dev)
        step_fns[name] = make_step(model, dev, batch_size, num_classes, shape)
        for _ in range(3):  # warm-up
            step_fns[name]()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    times: dict[str, list[float]] = {name: [] for name in step_fns}
    for _ in range(rounds):
        for name, step in step_fns.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            times[name].append((time.perf_counter() - t0) / steps)

    medians = {name: statistics.median(ts) for name, ts in times.items()}
    print(
        f"device={dev} backbone={backbone} d={d} nesting={nesting_list(d)} batch={batch_size} "
        f"threads={torch.get_num_threads()} rounds={rounds}x{steps} steps"
    )
    print(f"{'head':<22}{'median ms/step':>16}{'ratio':>8}{'target':>8}")
    for name, med in medians.items():
        target = f"<={TARGETS[name]:.2f}" if name in TARGETS else ""
        print(f"{name:<22}{med * 1000:>16.2f}{med / medians[BASELINE]:>8.3f}{target:>8}")
    return {
        "device": str(dev),
        "backbone": backbone,
        "embed_dim": d,
        "batch_size": batch_size,
        "ms_per_step": {name: 1000 * med for name, med in medians.items()},
        "ratio": {name: med / medians[BASELINE] for name, med in medians.items()},
        "targets": TARGETS,
    }
