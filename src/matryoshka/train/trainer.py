"""A plain PyTorch training loop for Matryoshka classifiers.

* seeded: the same config gives bit-identical weights on the CPU, resumed or not;
* crash-safe: a checkpoint after every epoch (see ``checkpoint.py``), resumed automatically;
* stops on a non-finite loss without touching the last good checkpoint;
* runs unchanged under ``torchrun --nproc_per_node=N`` (DistributedDataParallel; gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from matryoshka.data import ImageData, load_dataset
from matryoshka.errors import MatryoshkaError
from matryoshka.inference import encode_and_classify, resolve_device
from matryoshka.nn.losses import MatryoshkaLoss
from matryoshka.nn.model import MatryoshkaClassifier, build_classifier
from matryoshka.train.checkpoint import (
    restore_training,
    save_model,
    save_training,
)
from matryoshka.train.config import ExperimentConfig

CHECK_EVERY = 25  # steps between loss checks; each check waits for the device


class DistributedSetupError(MatryoshkaError, RuntimeError):
    """torchrun asked for a layout this machine cannot run (e.g. more processes than GPUs)."""


class TrainingDivergedError(MatryoshkaError, FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    model: MatryoshkaClassifier
    run_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def val_accuracy(self) -> dict[int, float]:
        return {int(k): v for k, v in self.history[-1]["val_acc"].items()} if self.history else {}


def _distributed_context(device: torch.device) -> tuple[int, int, torch.device]:
    """Rank, world size and this process's device; under torchrun, one process group (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DistributedSetupError(
                f"torchrun started more processes per node than the {torch.cuda.device_count()} GPU(s) here; "
                "use --nproc_per_node equal to the GPU count, or train.device=cpu"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def accuracy_per_dim(logits: list[torch.Tensor], y: torch.Tensor, nesting: list[int]) -> dict[str, float]:
    return {str(m): (out.argmax(1) == y).float().mean().item() for m, out in zip(nesting, logits, strict=True)}


class Trainer:
    """Train the model an :class:`ExperimentConfig` describes; ``fit()`` returns a :class:`TrainResult`.

    Example::

        from matryoshka.train import Trainer, load_config
        result = Trainer(load_config("configs/fashion_mnist_mrl.yaml")).fit()
        print(result.val_accuracy)            # {8: 0.89, 16: 0.90, ...}
    """

    def __init__(
        self,
        config: ExperimentConfig,
        data: ImageData | None = None,
        progress: bool = True,
        resume: bool = True,
    ) -> None:
        self.config = config
        self.rank, self.world, device = _distributed_context(resolve_device(config.train.device))
        self.device = device
        self.is_main = self.rank == 0
        precision = config.train.precision
        self.bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
        self.progress = progress and self.is_main
        self.resume = resume
        self.run_dir = Path(config.train.out_dir)
        d = config.data
        self.data = data or load_dataset(d.name, d.root, d.val_size, d.seed)
        self.train_split = self.data.train.subset(d.train_subset, d.seed)
        self.nesting = config.model.resolved_nesting()
        if config.train.batch_size < self.world:
            raise ValueError(f"batch_size {config.train.batch_size} is smaller than the {self.world} processes")

    # -- set-up ---------------------------------------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.train.seed)
        m = cfg.model
        self.model = build_classifier(
            m.backbone, m.embed_dim, m.head, self.nesting, self.data.input_shape, self.data.num_classes, m.width
        ).to(self.device)
        self.criterion = MatryoshkaLoss(
            nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing),
            self.nesting,
            m.loss_weights if m.head != "ff" else None,
        ).to(self.device)
        o = cfg.optim
        # No weight decay on biases and norm layers.
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if o.optimizer == "adamw":
            self.optimizer: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=o.lr)
        else:
            self.optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=True)
        self.local_batch = cfg.train.batch_size // self.world
        per_rank = len(self.train_split) // self.world
        self.steps_per_epoch = max(1, per_rank // self.local_batch)
        total = self.steps_per_epoch * cfg.train.epochs

        def lr_factor(step: int) -> float:
            if step < o.warmup_steps:
                return (step + 1) / o.warmup_steps
            if o.schedule == "constant":
                return 1.0
            progress = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        self.ddp_model: nn.Module = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _comparable_config(self) -> dict[str, Any]:
        cfg = self.config.model_dump()
        cfg["train"].pop("device")
        cfg["train"].pop("out_dir")
        return cfg

    def _try_resume(self) -> int:
        if not self.resume:
            return 0
        args = (self.model, self.optimizer, self.scheduler, self.device)
        state = restore_training(self.run_dir, self._comparable_config(), *args)
        if state is None:
            return 0
        self.history = state["history"]
        return int(state["epoch"])

    # -- loop -----------------------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> torch.Tensor:
        """This process's example indices for ``epoch``: a seeded shuffle, sharded across processes."""
        n = len(self.train_split)
        g = torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)[self.rank :: self.world]
        return perm[: self.steps_per_epoch * self.local_batch].view(self.steps_per_epoch, self.local_batch)

    def _train_epoch(self, epoch: int, progress: Progress | None) -> float:
        self.ddp_model.train()
        x_all, y_all = self.train_split.x, self.train_split.y
        task = (
            progress.add_task(f"epoch {epoch}/{self.config.train.epochs}", total=self.steps_per_epoch)
            if progress
            else None
        )
        running = torch.zeros((), device=self.device)
        count = 0
        clip = self.config.optim.grad_clip
        for step, idx in enumerate(self._epoch_batches(epoch), start=1):
            x = x_all[idx].to(self.device, non_blocking=True)
            y = y_all[idx].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                loss = self.criterion(self.ddp_model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.optimizer.step()
            self.scheduler.step()
            running += loss.detach()
            count += 1
            if step % CHECK_EVERY == 0 or step == self.steps_per_epoch:
                mean = running.item() / count
                if not math.isfinite(mean):
                    raise TrainingDivergedError(
                        f"loss became {mean} at epoch {epoch}, step {step}; try a lower optim.lr or optim.grad_clip. "
                        f"The last good checkpoint in {self.run_dir / 'checkpoints'} is kept."
                    )
                if progress is not None:
                    progress.update(
                        task, completed=step, description=f"epoch {epoch}/{self.config.train.epochs} loss {mean:.3f}"
                    )
        if progress is not None:
            progress.update(task, completed=self.steps_per_epoch)
        return running.item() / max(count, 1)

    def validate(self) -> dict[str, float]:
        _, logits = encode_and_classify(self.model, self.data.val.x)
        return accuracy_per_dim(logits, self.data.val.y, self.nesting) if len(self.data.val) else {}

    def fit(self) -> TrainResult:
        self._build()
        self.history: list[dict[str, Any]] = []
        start_epoch = self._try_resume()
        epochs = self.config.train.epochs
        if start_epoch and self.is_main:
            print(f"resuming {self.run_dir} after epoch {start_epoch}/{epochs}")
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, disable=not self.progress) as progress:
            for epoch in range(start_epoch + 1, epochs + 1):
                t0 = time.perf_counter()
                train_loss = self._train_epoch(epoch, progress if self.progress else None)
                record: dict[str, Any] = {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "lr": self.scheduler.get_last_lr()[0],
                }
                if epoch % self.config.train.eval_every == 0 or epoch == epochs:
                    record["val_acc"] = self.validate()
                record["seconds"] = time.perf_counter() - t0
                self.history.append(record)
                if self.is_main:
                    self._save_epoch(epoch)
                    if self.progress and "val_acc" in record:
                        accs = " ".join(f"{m}:{a:.3f}" for m, a in record["val_acc"].items())
                        progress.console.print(f"epoch {epoch}: loss {train_loss:.4f}  val acc {accs}")
        if self.is_main:
            self._save_final()
        if self.world > 1:
            dist.barrier()
        return TrainResult(self.model, self.run_dir, self.history)

    def _save_epoch(self, epoch: int) -> None:
        args = (self.model, self.optimizer, self.scheduler, self.device, self._comparable_config(), self.history)
        save_training(self.run_dir, epoch, *args, keep=self.config.train.keep_checkpoints)

    def _save_final(self) -> None:
        info = {
            "config": self.config.model_dump(),
            "nesting": self.nesting,
            "input_shape": list(self.data.input_shape),
            "num_classes": self.data.num_classes,
            "class_names": self.data.class_names,
            "dataset": self.data.name,
            "world_size": self.world,
            "val_acc": self.history[-1].get("val_acc", {}) if self.history else {},
        }
        save_model(self.run_dir, self.model, info)
