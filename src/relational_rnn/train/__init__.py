"""The shared training loop, its config, checkpoints and metrics log."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, RunConfig, TrainConfig
from .loop import RunDirectoryError, evaluate_run, load_config, load_trained, train
from .metrics import MetricsError, MetricsLog, read_metrics

__all__ = [
    "CheckpointError",
    "ConfigError",
    "MetricsError",
    "MetricsLog",
    "RunConfig",
    "RunDirectoryError",
    "TrainConfig",
    "evaluate_run",
    "load_checkpoint",
    "load_config",
    "load_trained",
    "read_metrics",
    "save_checkpoint",
    "train",
]
