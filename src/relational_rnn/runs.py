"""Run directories, by task name: build a run's config, train it, load it back, evaluate it.

The layer between the tasks and training below and the command line, reports and inspection
above: the one place that looks a run's task up in the registry (`tasks.get_task`), so that
the training loop takes the task type it is given and never imports the tasks. What a run
directory holds and how it is written and checked on resume is the loop's (`train.loop`);
what is checked here, once for every task: that a `config.json` is a run config of a known
task with valid values (`load_config`), and that a checkpoint fits its directory's config
(`load_trained`, with the loop's `check_task_name` and `load_weights`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from .tasks import get_task
from .train.checkpoint import load_checkpoint
from .config import ConfigError, RunConfig
from .train.loop import CHECKPOINT_FILE, check_task_name, load_part, load_weights, read_config, resolve_device, train


def build_run_config(task_name: str, preset: str, overrides: Sequence[tuple[str, Any]]) -> RunConfig:
    """The preset's config with `overrides` applied in order."""
    task_type = get_task(task_name)
    presets = task_type.presets()
    if preset not in presets:
        raise ConfigError(f"unknown preset {preset!r} for {task_name}; expected one of {', '.join(presets)}")
    chosen = presets[preset]
    run = RunConfig(
        task_name=task_name,
        preset=preset,
        task=dataclasses.replace(chosen.task),
        core=dataclasses.replace(chosen.core),
        train=dataclasses.replace(chosen.train),
    )
    for name, value in overrides:
        run.override(name, value)
    return run


def train_run(run: RunConfig, out_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train `run` into `out_dir` (`train.loop.train` with the run's task type); return the last evaluation record."""
    return train(run, Path(out_dir), resume=resume, task_type=get_task(run.task_name))


def load_config(run_dir: Path) -> RunConfig:
    """The RunConfig saved in a run directory, every value checked (`RunConfig.from_dict`) against its task's config type."""
    return read_config(Path(run_dir), lambda task_name: get_task(task_name).config_type)


def load_trained(run_dir: Path, device: Optional[str] = None):
    """Rebuild a run's task and model from its directory, with the checkpoint's weights and task state.

    A checkpoint that does not fit the directory's config.json (another task's or size's,
    copied in) is a one-line CheckpointError, not torch's list of every tensor.
    """
    run = load_config(run_dir)
    device_ = resolve_device(device or run.train.device)
    path = Path(run_dir) / CHECKPOINT_FILE
    state = load_checkpoint(path, map_location="cpu")
    check_task_name(state, path, run)
    task = get_task(run.task_name)(run.task, run.core, seed=run.train.seed, device=device_)
    load_part("task state", lambda: task.load_state_dict(state["task_state"]), path, run)
    model = task.build_model().to(device_)
    load_weights(model, state["model"], path)
    model.eval()
    return run, task, model, state


def evaluate_run(run_dir: Path, device: Optional[str] = None, **options: Any) -> dict[str, Any]:
    """Reload a run's checkpoint and evaluate it on the task's fixed evaluation data (`options`: the task's `eval_options`)."""
    run, task, model, state = load_trained(run_dir, device)
    with torch.no_grad():
        results = task.evaluate(model, **options)
    return {"step": state["step"], **results}
