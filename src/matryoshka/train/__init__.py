"""Training: configs, the one training loop, the image and text trainers, crash-safe checkpoints."""

from matryoshka.train.checkpoint import CheckpointError, load_model
from matryoshka.train.config import ConfigError, ExperimentConfig, load_config, parse_config
from matryoshka.train.loop import DistributedSetupError, TrainingDivergedError, TrainingLoop
from matryoshka.train.trainer import Trainer, TrainResult

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DistributedSetupError",
    "ExperimentConfig",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "TrainingLoop",
    "load_config",
    "load_model",
    "parse_config",
]
