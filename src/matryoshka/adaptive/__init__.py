"""Adaptive deployment of Matryoshka representations: classification cascades over dims."""

from matryoshka.adaptive.cascade import Cascade, CascadeResult, oracle
from matryoshka.adaptive.evaluation import evaluate_cascades

__all__ = ["Cascade", "CascadeResult", "evaluate_cascades", "oracle"]
