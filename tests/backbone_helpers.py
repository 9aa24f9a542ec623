"""Backbone factories and a data source for the tests, named in configs as ``backbone_helpers:NAME`` (tests/ on
the path)."""

from torch import nn


def tiny_convnet(input_shape):
    """Takes ``input_shape``: one conv block with BatchNorm, pooled to 8 features."""
    channels = input_shape[0]
    return nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))


def flat_linear():
    """Takes no arguments: 8x8 grey images to 12 features."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 12))


def not_a_module():
    return "not a module"


def digits_as_own_source(cfg):
    """A data source in the user's own module, named in a config as ``backbone_helpers:digits_as_own_source``."""
    from matryoshka.data import load_dataset

    return load_dataset("digits", seed=cfg.seed)


def not_data(cfg):
    return "not data"
