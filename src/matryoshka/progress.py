"""What a user sees while a model trains or an adaptor fits: a live bar on a terminal, plain lines anywhere (log
files, CI).

* the bar moves every step, with the step rate and the time left;
* after the first few steps, one line estimates the time per step, per epoch and for the whole run;
* every ``log_every`` steps, one line with the step, the mean loss, the rate and the time left.

The lines go through the bar's console, so they print above a live bar and as plain text in a log. Below the
trainer (``matryoshka.train.progress`` re-exports it), so that the post-hoc adaptor reports the same way.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

ESTIMATE_AFTER = 3  # steps timed (after the first, which warms up) before the first estimate


def duration(seconds: float) -> str:
    """``42 s``, ``5 min 12 s``, ``2 h 05 min``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def rate(seconds_per_step: float) -> str:
    return f"{seconds_per_step:.2f} s/step" if seconds_per_step >= 0.1 else f"{1 / seconds_per_step:.1f} steps/s"


class _RateColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        return Text(rate(1 / task.speed) if task.speed else "", style="progress.data.speed")


class StepProgress:
    """Progress of a run of ``total`` steps in epochs of ``per_epoch`` steps, resumed at ``start``.

    ``log_every``: steps between plain lines (0: none); ``show_bar``: a live bar (a terminal); ``enabled``: False
    prints nothing (non-main processes, ``progress=False``); ``name``: a run of one phase (an adaptor fit) named
    in its bar and lines instead of epochs.
    """

    def __init__(
        self,
        start: int,
        total: int,
        per_epoch: int,
        log_every: int = 0,
        show_bar: bool | None = None,
        enabled: bool = True,
        name: str | None = None,
    ) -> None:
        self.start, self.total, self.per_epoch, self.log_every = start, total, per_epoch, log_every
        self.enabled, self.name = enabled, name
        bar = enabled and (sys.stdout.isatty() if show_bar is None else show_bar)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn())
        self.progress = Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), disable=not bar)
        self.task: Any = None
        self.loss: float | None = None
        self._t_first: float | None = None  # when the first step of this process ended (warm-up excluded)
        self._estimated = False

    def __enter__(self) -> StepProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    @property
    def console(self) -> Any:
        return self.progress.console

    def print(self, line: str) -> None:
        if self.enabled:
            self.console.print(line, soft_wrap=True, highlight=False)

    def start_epoch(self, epoch: int, epochs: int, done_in_epoch: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.epoch, self.epochs = epoch, epochs
        self.task = self.progress.add_task(self._label(), total=self.per_epoch, completed=done_in_epoch)

    def _label(self) -> str:
        return self.name or f"epoch {self.epoch}/{self.epochs}"

    def seconds_per_step(self, step: int) -> float | None:
        timed = step - self.start - 1
        if self._t_first is None or timed < 1:
            return None
        return (time.perf_counter() - self._t_first) / timed

    def step(self, step: int, loss: float | None = None) -> None:
        """Step ``step`` (1-based, over the whole run) finished; ``loss``: the running mean, when it was read."""
        if loss is not None:
            self.loss = loss
        if step == self.start + 1:
            self._t_first = time.perf_counter()
        desc = self._label() + (f" loss {self.loss:.3f}" if self.loss is not None else "")
        self.progress.update(self.task, completed=step - (self.epoch - 1) * self.per_epoch, description=desc)
        per_step = self.seconds_per_step(step)
        if per_step is None:
            return
        left = duration(per_step * (self.total - step))
        if not self._estimated and step - self.start - 1 >= ESTIMATE_AFTER:
            self._estimated = True
            self.print(self._estimate(per_step, step, left))
        if self.log_every and step % self.log_every == 0 and step < self.total:
            loss_part = f" loss {self.loss:.4f}" if self.loss is not None else ""
            where = (
                f"{self.name}: step {step}/{self.total}" if self.name else f"step {step}/{self.total} ({self._label()})"
            )
            self.print(f"{where}{loss_part}  {rate(per_step)}  ~{left} left")

    def _estimate(self, per_step: float, step: int, left: str) -> str:
        if self.name:
            return f"{self.name}: about {rate(per_step)}, the rest ({self.total - step} steps) ~{left}"
        epoch_time = duration(per_step * self.per_epoch)
        return (
            f"about {rate(per_step)}: an epoch ({self.per_epoch} steps) takes ~{epoch_time}, "
            f"the rest of the run ({self.total - step} steps) ~{left}"
        )
