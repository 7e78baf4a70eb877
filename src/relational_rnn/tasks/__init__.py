"""The paper's experiments, each a `Task` the shared training loop can run."""

from __future__ import annotations

from ..extras import missing_extra
from ..config import ConfigError
from .base import Preset, Task
from .lte.task import LTETask
from .lm.task import LMTask
from .nth_farthest import NthFarthestTask

TASKS: dict[str, type[Task]] = {task.name: task for task in (NthFarthestTask, LTETask, LMTask)}
MISSING: dict[str, ImportError] = {}  # tasks whose optional dependencies are not installed (relational_rnn.extras)
try:
    from .pacman import PacmanTask

    TASKS[PacmanTask.name] = PacmanTask
except ModuleNotFoundError as error:  # gymnasium: the [rl] extra
    if missing_extra(error) is None:
        raise  # not an optional dependency: a bug
    MISSING["pacman"] = missing_extra(error, "the pacman task")


class UnknownTaskError(ConfigError):
    """No task is registered under that name."""


def get_task(name: str) -> type[Task]:
    """The task class registered under `name` (e.g. "nth-farthest")."""
    if name in MISSING:
        raise MISSING[name]
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; expected one of {', '.join(sorted([*TASKS, *MISSING]))}") from None


__all__ = ["Preset", "TASKS", "Task", "UnknownTaskError", "get_task"]
