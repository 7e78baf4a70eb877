"""The shared training loop, its config, checkpoints and metrics log.

`load_config`, `load_trained` and `evaluate_run` live in `relational_rnn.runs` (they look a run's
task up in the registry, which sits above this package); they are still found here, on first use,
for code written before they moved.
"""

from __future__ import annotations

import importlib
from typing import Any

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..config import ConfigError, RunConfig, TrainConfig
from .loop import RunDirectoryError, train
from .metrics import MetricsError, MetricsLog, read_metrics

_MOVED_TO_RUNS = ("evaluate_run", "load_config", "load_trained")


def __getattr__(name: str) -> Any:
    if name not in _MOVED_TO_RUNS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("..runs", __name__), name)


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
