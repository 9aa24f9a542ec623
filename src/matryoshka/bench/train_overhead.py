"""Cost of Matryoshka training: train-step time of MRL and MRL-E relative to one full-dim head.

The three models share the backbone (same init) and differ only in the head; steps are timed in
interleaved rounds and the medians compared, so machine noise hits all three alike.

    mrl bench train-overhead [--backbone cnn] [--embed-dim 512] [--batch-size 256] [--device auto]

Targets: MRL <= 1.05x and MRL-E <= 1.02x the single-head step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from matryoshka import MatryoshkaLoss, nesting_list
from matryoshka.inference import resolve_device
from matryoshka.nn.model import build_classifier


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="cnn", choices=["cnn", "resnet", "mlp"])
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--embed-dim", type=int, default=512)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--device", default="auto")
    args = p.parse_args()

    device = resolve_device(args.device)
    shape = (1, 28, 28)
    d = args.embed_dim
    heads = {"single full-dim head": ("ff", [d]), "MRL": ("mrl", nesting_list(d)), "MRL-E": ("mrl_e", nesting_list(d))}
    steps = {}
    for name, (head, nesting) in heads.items():
        torch.manual_seed(0)
        model = build_classifier(args.backbone, d, head, nesting, shape, args.num_classes, args.width).to(device)
        steps[name] = make_step(model, device, args.batch_size, args.num_classes, shape)
        for _ in range(3):  # warm-up
            steps[name]()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync()
            times[name].append((time.perf_counter() - t0) / args.steps)

    base = statistics.median(times["single full-dim head"])
    print(
        f"device={device} backbone={args.backbone} d={d} nesting={nesting_list(d)} batch={args.batch_size} "
        f"threads={torch.get_num_threads()} rounds={args.rounds}x{args.steps} steps"
    )
    print(f"{'head':<22}{'median ms/step':>16}{'ratio':>8}{'target':>8}")
    targets = {"MRL": 1.05, "MRL-E": 1.02}
    for name, ts in times.items():
        med = statistics.median(ts)
        target = f"<={targets[name]:.2f}" if name in targets else ""
        print(f"{name:<22}{med * 1000:>16.2f}{med / base:>8.3f}{target:>8}")


if __name__ == "__main__":
    main()
