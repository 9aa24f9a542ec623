"""Train a Matryoshka classifier (images or feature vectors) with the shared :class:`TrainingLoop`.

Seeded (bit-identical weights on the CPU, resumed or not), checkpointed after every epoch and resumed automatically,
stopped on a non-finite loss, and runnable under ``torchrun --nproc_per_node=N`` (see ``loop.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from matryoshka.data import ImageData, ImageFileSplit, load_data
from matryoshka.data.images import augment_batch
from matryoshka.errors import InputError
from matryoshka.inference import encode_and_classify
from matryoshka.nesting import ramped_weights
from matryoshka.nn.backbones import save_backbone_files
from matryoshka.nn.losses import MatryoshkaLoss
from matryoshka.nn.model import MatryoshkaClassifier, build_model
from matryoshka.train.checkpoint import save_model
from matryoshka.train.config import MIN_EPOCHS, MIN_STEPS, ExperimentConfig
from matryoshka.train.loop import (
    CHECK_EVERY,
    DistributedSetupError,
    TrainingDivergedError,
    TrainingLoop,
    decay_groups,
    lambda_schedule,
)

__all__ = ["CHECK_EVERY", "DistributedSetupError", "TrainResult", "Trainer", "TrainingDivergedError"]


@dataclass
class TrainResult:
    model: MatryoshkaClassifier
    run_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def val_accuracy(self) -> dict[int, float]:
        return {int(k): v for k, v in self.history[-1]["val_acc"].items()} if self.history else {}


def default_epochs(steps_per_epoch: int) -> int:
    """The default schedule's length: at least MIN_EPOCHS epochs and MIN_STEPS steps."""
    return max(MIN_EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch))


def accuracy_per_dim(logits: list[torch.Tensor], y: torch.Tensor, nesting: list[int]) -> dict[str, float]:
    return {str(m): (out.argmax(1) == y).float().mean().item() for m, out in zip(nesting, logits, strict=True)}


class Trainer(TrainingLoop):
    """Train the model an :class:`ExperimentConfig` describes; ``fit()`` returns a :class:`TrainResult`.

    Example::

        import tempfile
        from matryoshka import Trainer, load_config

        config = load_config("configs/digits_quick.yaml", ["train.epochs=2", f"train.out_dir={tempfile.mkdtemp()}"])
        result = Trainer(config, progress=False).fit()
        print(result.val_accuracy)               # validation accuracy per nesting dim
    """

    checkpoint_unit = "epoch"
    validation_key = "val_acc"

    def __init__(
        self,
        config: ExperimentConfig,
        data: ImageData | None = None,
        progress: bool = True,
        resume: bool = True,
    ) -> None:
        super().__init__(config.train, progress, resume)
        self.config = config
        d = config.data
        self.data = data or load_data(d)
        self.train_split = self.data.train.subset(d.train_subset, d.seed)
        self.nesting = config.model.resolved_nesting()
        if config.train.batch_size < self.world:
            raise InputError(f"batch_size {config.train.batch_size} is smaller than the {self.world} processes")

    def build(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.train.seed)
        m = cfg.model
        self.model = build_model(m, self.nesting, self.data.input_shape, self.data.num_classes).to(self.device)
        self.criterion = MatryoshkaLoss(
            nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing),
            self.nesting,
            m.resolved_loss_weights(),
        ).to(self.device)
        self.loss_weights = self.criterion.weights.tolist()  # the c_m; a ramp reaches them at the end
        o = cfg.optim
        groups = decay_groups(self.model, o.weight_decay)
        if o.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(groups, lr=o.lr)
        else:
            self.optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=True)
        self.local_batch = cfg.train.batch_size // self.world
        self.steps_per_epoch = max(1, len(self.train_split) // self.world // self.local_batch)
        total = self.total_steps

        def lr_factor(step: int) -> float:
            if step < o.warmup_steps:
                return (step + 1) / o.warmup_steps
            if o.schedule == "constant":
                return 1.0
            progress = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        self.scheduler = lambda_schedule(self.optimizer, lr_factor)
        self.ddp_model = self.wrap_distributed(self.model)

    @property
    def epochs(self) -> int:
        """As configured, or the default schedule: at least MIN_EPOCHS epochs and MIN_STEPS steps."""
        if self.config.train.epochs is not None:
            return self.config.train.epochs
        return default_epochs(self.steps_per_epoch)

    def comparable_config(self) -> dict[str, Any]:
        cfg = self.config.model_dump()
        cfg["train"].pop("device")
        cfg["train"].pop("out_dir")
        cfg["train"].pop("log_every")
        return cfg

    def batches(self, epoch: int, start: int) -> Any:
        """This process's (x, y) batches for ``epoch``: a seeded shuffle, sharded across processes; files are
        decoded in DataLoader workers, in-memory tensors indexed directly."""
        n = len(self.train_split)
        g = torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)[self.rank :: self.world]
        rows = perm[: self.steps_per_epoch * self.local_batch].view(self.steps_per_epoch, self.local_batch)[start:]
        # Augmentation has its own generator, seeded per epoch: the shuffle is unchanged and a resumed run repeats it.
        self.augment_rng = torch.Generator().manual_seed((self.config.train.seed * 1_000_003 + epoch) * 64 + self.rank)
        if isinstance(self.train_split, ImageFileSplit):
            return self.train_split.batches(rows)
        return ((self.train_split.x[idx], self.train_split.y[idx]) for idx in rows)

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = batch[0].to(self.device, non_blocking=True)
        y = batch[1].to(self.device, non_blocking=True)
        if self.config.data.augment and x.ndim == 4:
            x = augment_batch(x, self.augment_rng)
        schedule = self.config.model.loss_weights_schedule
        if schedule != "constant":
            # The scheduler counts the optimizer steps taken, a resumed run's included.
            progress = min(1.0, self.scheduler.last_epoch / max(1, self.total_steps - 1))
            power = 1.0 if schedule == "linear" else 2.0
            self.criterion.weights.copy_(torch.tensor(ramped_weights(self.loss_weights, progress, power)))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.criterion(self.ddp_model(x), y)
        self.optimizer_step(loss, self.config.optim.grad_clip)
        return loss.detach()

    def should_validate(self, epoch: int) -> bool:
        return epoch % self.config.train.eval_every == 0 or epoch == self.epochs

    def validate(self) -> dict[str, float]:
        _, logits = encode_and_classify(self.model, self.data.val.x)
        return accuracy_per_dim(logits, self.data.val.y, self.nesting) if len(self.data.val) else {}

    def finish(self, train_seconds: float) -> TrainResult:
        info = {
            "config": self.config.model_dump(),
            "nesting": self.nesting,
            "epochs": self.epochs,
            "loss_weights": self.loss_weights,
            "loss_weights_schedule": self.config.model.loss_weights_schedule,
            "input_shape": list(self.data.input_shape),
            "num_classes": self.data.num_classes,
            "class_names": self.data.class_names,
            "dataset": self.data.name,
            "preprocess": self.data.preprocess.to_dict() if self.data.preprocess is not None else None,
            "world_size": self.world,
            "val_acc": self.history[-1].get("val_acc", {}) if self.history else {},
        }
        if self.is_main:
            save_backbone_files(self.model, self.run_dir)
            save_model(self.run_dir, self.model, info)
        return TrainResult(self.model, self.run_dir, self.history)
