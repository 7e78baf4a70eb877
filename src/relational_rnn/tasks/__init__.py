"""The paper's experiments, each a `Task` the shared training loop can run."""

from __future__ import annotations

from ..train.config import ConfigError
from .base import Preset, Task
from .lte.task import LTETask
from .lm.task import LMTask
from .nth_farthest import NthFarthestTask
from .pacman import PacmanTask

TASKS: dict[str, type[Task]] = {task.name: task for task in (NthFarthestTask, LTETask, PacmanTask, LMTask)}


class UnknownTaskError(ConfigError):
    """No task is registered under that name."""


def get_task(name: str) -> type[Task]:
    """The task class registered under `name` (e.g. "nth-farthest")."""
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; expected one of {', '.join(sorted(TASKS))}") from None


__all__ = ["Preset", "TASKS", "Task", "UnknownTaskError", "get_task"]
