"""Post-hoc Matryoshka: make the frozen embeddings of any model nested, without retraining the model."""

from matryoshka.posthoc.adaptor import MatryoshkaAdaptor

__all__ = ["MatryoshkaAdaptor"]
