"""Neural-network parts: backbones, Matryoshka heads and losses, the classifier that joins them."""

from matryoshka.nn.backbones import MLP, ResNetSmall, SmallCNN, build_backbone, create_backbone, register_backbone
from matryoshka.nn.heads import FixedFeatureHead, MRLHead
from matryoshka.nn.losses import InfoNCELoss, MatryoshkaLoss
from matryoshka.nn.model import MatryoshkaClassifier, build_model

__all__ = [
    "MLP",
    "FixedFeatureHead",
    "InfoNCELoss",
    "MRLHead",
    "MatryoshkaClassifier",
    "MatryoshkaLoss",
    "ResNetSmall",
    "SmallCNN",
    "build_backbone",
    "build_model",
    "create_backbone",
    "register_backbone",
]
