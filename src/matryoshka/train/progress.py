"""The training progress display; it lives in :mod:`matryoshka.progress` (below training, for the adaptor too)."""

from matryoshka.progress import ESTIMATE_AFTER, StepProgress, duration, rate

__all__ = ["ESTIMATE_AFTER", "StepProgress", "duration", "rate"]
