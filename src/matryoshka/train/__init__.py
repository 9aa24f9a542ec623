from matryoshka.train.checkpoint import CheckpointError, load_model
from matryoshka.train.config import ConfigError, ExperimentConfig, load_config, parse_config
from matryoshka.train.trainer import DistributedSetupError, Trainer, TrainingDivergedError, TrainResult

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DistributedSetupError",
    "ExperimentConfig",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "load_config",
    "load_model",
    "parse_config",
]
