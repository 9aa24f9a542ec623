"""matryoshka: Matryoshka Representation Learning (Kusupati et al., NeurIPS 2022) as a library."""

from importlib.metadata import version as _version

from matryoshka.errors import MatryoshkaError
from matryoshka.nesting import NestingError, nesting_list, nesting_weights, validate_nesting
from matryoshka.nn.heads import FixedFeatureHead, MRLHead
from matryoshka.nn.losses import InfoNCELoss, MatryoshkaLoss
from matryoshka.nn.model import MatryoshkaClassifier
from matryoshka.truncate import truncate

__version__ = _version("matryoshka-mrl")

__all__ = [
    "FixedFeatureHead",
    "InfoNCELoss",
    "MRLHead",
    "MatryoshkaClassifier",
    "MatryoshkaError",
    "MatryoshkaLoss",
    "NestingError",
    "nesting_list",
    "nesting_weights",
    "truncate",
    "validate_nesting",
]
