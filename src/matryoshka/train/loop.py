"""The one training loop behind every trainer (images, text): a subclass says what a step is, the loop does the rest.

* seeded: the same config gives bit-identical weights on the CPU, resumed or not;
* crash-safe: checkpoints at each epoch's end, every ``checkpoint_every`` steps and every ``checkpoint_minutes``
  (atomic, with checksums, see
  ``checkpoint.py``), resumed automatically, refused when the config changed;
* stops on a non-finite loss without touching the last good checkpoint;
* progress (``progress.py``): a bar on a terminal; an early time estimate, a line every ``log_every`` steps and one
  per epoch everywhere (logs, CI);
* runs under ``torchrun --nproc_per_node=N`` (DistributedDataParallel; gloo on CPU, nccl on CUDA) where the subclass
  allows it.

A subclass implements :meth:`TrainingLoop.build` (model, loss, optimizer, scheduler, ``steps_per_epoch``),
:meth:`TrainingLoop.batches`, :meth:`TrainingLoop.train_step`, :meth:`TrainingLoop.validate` and
:meth:`TrainingLoop.finish`; see ``trainer.py`` (images) and ``text_trainer.py`` (text pairs).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from matryoshka.errors import MatryoshkaError
from matryoshka.inference import resolve_device
from matryoshka.progress import StepProgress
from matryoshka.train.checkpoint import restore_training, save_training

CHECK_EVERY = 25  # steps between loss checks; each check waits for the device


class DistributedSetupError(MatryoshkaError, RuntimeError):
    """torchrun asked for a layout this machine cannot run (e.g. more processes than GPUs)."""


class TrainingDivergedError(MatryoshkaError, FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def distributed_context(device: torch.device) -> tuple[int, int, torch.device]:
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


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer parameter groups: weight decay on matrices and kernels, none on biases and norm layers."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lambda_schedule(optimizer: torch.optim.Optimizer, factor: Callable[[int], float]) -> Any:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class TrainingLoop:
    """Step-counted training with checkpoints, resume, divergence checks, progress and DDP.

    Subclasses set in :meth:`build`: ``model``, ``optimizer``, ``scheduler``, ``steps_per_epoch``; they may override
    the class attributes below.
    """

    checkpoint_unit = "step"  # checkpoint folders are named step-NNNNNNNN (or epoch-NNNN)
    validation_key = "val"  # history key of validate()'s result
    allow_distributed = True

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    steps_per_epoch: int

    def __init__(self, train_config: Any, progress: bool = True, resume: bool = True) -> None:
        self.train_config = train_config
        device = resolve_device(train_config.device)
        self.rank, self.world, self.device = distributed_context(device)
        if self.world > 1 and not self.allow_distributed:
            raise DistributedSetupError(f"{type(self).__name__} runs in one process; start it without torchrun")
        self.is_main = self.rank == 0
        precision = train_config.precision
        self.bf16 = precision == "bf16" or (precision == "auto" and self.device.type == "cuda")
        self.progress = progress and self.is_main
        self.resume = resume
        self.run_dir = Path(train_config.out_dir)
        self.history: list[dict[str, Any]] = []

    # -- what a subclass provides ---------------------------------------------------------------------------
    def build(self) -> None:
        raise NotImplementedError

    def batches(self, epoch: int, start: int) -> Iterable[Any]:
        """This process's batches of ``epoch`` (1-based), from the ``start``-th on (resuming mid-epoch)."""
        raise NotImplementedError

    def train_step(self, batch: Any) -> torch.Tensor:
        """One optimizer step; returns the detached loss (left on the device: the loop reads it only now and then)."""
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        raise NotImplementedError

    def comparable_config(self) -> dict[str, Any]:
        """The config a checkpoint must have been written under to be resumed (no paths, devices, cadences)."""
        raise NotImplementedError

    def finish(self, train_seconds: float) -> Any:
        """Save the final model and results (on the main process); returns what ``fit()`` returns."""
        raise NotImplementedError

    def should_validate(self, epoch: int) -> bool:
        return True

    def extra_state(self) -> dict[str, Any]:
        """Training state beyond model, optimizer, scheduler and RNGs that a checkpoint must hold to resume exactly
        (e.g. a candidate memory); restored by :meth:`restore_extra_state`."""
        return {}

    def restore_extra_state(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`extra_state` saved (``state`` is the whole trainer state of the checkpoint)."""

    # -- the loop -------------------------------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        return self.train_config.epochs

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def optimizer_step(self, loss: torch.Tensor, grad_clip: float | None) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), grad_clip)
        self.optimizer.step()
        self.scheduler.step()

    def wrap_distributed(self, model: nn.Module) -> nn.Module:
        if self.world == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def fit(self) -> Any:
        self.build()
        self.history = []
        self.running = [0.0, 0]  # loss sum and step count of the current epoch
        step = self._try_resume()
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)  # the run's folder exists from the first second
            if step:
                print(
                    f"resuming {self.run_dir} after {self.checkpoint_unit} "
                    f"{self._number(step)}/{self._number(self.total_steps)}"
                )
        t_start = time.perf_counter()
        self.model.train()
        log_every = getattr(self.train_config, "log_every", 0) or 0
        with StepProgress(step, self.total_steps, self.steps_per_epoch, log_every, enabled=self.progress) as report:
            self._last_save = time.monotonic()
            while step < self.total_steps:
                step = self._run_epoch(step, report)
        train_seconds = time.perf_counter() - t_start
        result = self.finish(train_seconds)
        if self.world > 1:
            dist.barrier()
        return result

    def _run_epoch(self, step: int, report: StepProgress) -> int:
        """Train from ``step`` to the end of its epoch; returns the step reached."""
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        epoch += 1
        t_epoch = time.perf_counter()
        report.start_epoch(epoch, self.epochs, in_epoch)
        every = getattr(self.train_config, "checkpoint_every", None)
        minutes = getattr(self.train_config, "checkpoint_minutes", None)
        pending, pending_steps = torch.zeros((), device=self.device), 0
        for batch in self.batches(epoch, in_epoch):
            pending += self.train_step(batch)
            pending_steps += 1
            step += 1
            end_of_epoch = step % self.steps_per_epoch == 0
            # Time-based checkpoints: a slow run (text on a CPU) has one early, whatever its step cadence.
            due = minutes is not None and time.monotonic() - self._last_save >= minutes * 60
            checkpoint_now = (every is not None and step % every == 0) or due
            loss = None
            logging_now = report.log_every and step % report.log_every == 0
            if step % CHECK_EVERY == 0 or end_of_epoch or checkpoint_now or logging_now or step <= 3:
                self.running[0] += pending.item()  # waits for the device, hence only every few steps
                self.running[1] += pending_steps
                pending, pending_steps = torch.zeros((), device=self.device), 0
                self._check_finite(epoch, step)
                loss = self.running[0] / self.running[1]
            report.step(step, loss)
            if end_of_epoch:
                self._end_epoch(epoch, step, t_epoch, report)
                break
            if checkpoint_now and self.is_main:
                self._save(step)
        return step

    def _number(self, step: int) -> int:
        return step // self.steps_per_epoch if self.checkpoint_unit == "epoch" else step

    def _check_finite(self, epoch: int, step: int) -> None:
        mean = self.running[0] / max(1, self.running[1])
        if not math.isfinite(mean):
            in_epoch = step - (epoch - 1) * self.steps_per_epoch
            raise TrainingDivergedError(
                f"loss became {mean} at epoch {epoch}, step {in_epoch}; try a lower optim.lr or optim.grad_clip. "
                f"The last good checkpoint in {self.run_dir / 'checkpoints'} is kept."
            )

    def _end_epoch(self, epoch: int, step: int, started: float, report: StepProgress) -> None:
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "train_loss": self.running[0] / max(1, self.running[1]),
            "lr": self.scheduler.get_last_lr()[0],
        }
        if self.should_validate(epoch):
            record[self.validation_key] = self.validate()
            self.model.train()
        record["seconds"] = time.perf_counter() - started
        self.history.append(record)
        self.running = [0.0, 0]
        if self.is_main:
            self._save(step)
            if self.progress:
                line = f"epoch {epoch}/{self.epochs}: loss {record['train_loss']:.4f}"
                if self.validation_key in record:
                    values = " ".join(f"{m}:{v:.3f}" for m, v in record[self.validation_key].items())
                    line += f"  {self.validation_key} {values}"
                report.print(line)  # one line, however wide (log files)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _save(self, step: int) -> None:
        self._last_save = time.monotonic()
        args = (self.model, self.optimizer, self.scheduler, self.device, self.comparable_config(), self.history)
        keep = self.train_config.keep_checkpoints
        extra = {"running": self.running} if self.checkpoint_unit == "step" else {}
        extra |= self.extra_state()
        save_training(self.run_dir, self._number(step), *args, keep=keep, unit=self.checkpoint_unit, **extra)

    def _try_resume(self) -> int:
        if not self.resume:
            return 0
        args = (self.model, self.optimizer, self.scheduler, self.device)
        state = restore_training(self.run_dir, self.comparable_config(), *args)
        if state is None:
            return 0
        self.history = state["history"]
        self.running = list(state.get("running", [0.0, 0]))
        self.restore_extra_state(state)
        number = int(state[self.checkpoint_unit])
        return number * self.steps_per_epoch if self.checkpoint_unit == "epoch" else number
