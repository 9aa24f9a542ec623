"""matryoshka: Matryoshka Representation Learning (Kusupati et al., NeurIPS 2022) as a library."""

from matryoshka.nesting import NestingError, nesting_list, nesting_weights, validate_nesting
from matryoshka.nn.heads import FixedFeatureHead, MRLHead
from matryoshka.nn.losses import InfoNCELoss, MatryoshkaLoss
from matryoshka.nn.model import MatryoshkaClassifier
from matryoshka.truncate import truncate

__version__ = "0.1.0"

__all__ = [
    "FixedFeatureHead",
    "InfoNCELoss",
    "MRLHead",
    "MatryoshkaClassifier",
    "MatryoshkaLoss",
    "NestingError",
    "nesting_list",
    "nesting_weights",
    "truncate",
    "validate_nesting",
]
