"""Post-hoc Matryoshka: make the frozen embeddings of any model nested, without retraining the model."""

from matryoshka.posthoc.adaptor import MatryoshkaAdaptor
from matryoshka.posthoc.evaluation import AdaptorComparison, fit_and_compare

__all__ = ["AdaptorComparison", "MatryoshkaAdaptor", "fit_and_compare"]
