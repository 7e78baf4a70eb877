"""What the shared training loop needs from a task.

A task owns its data, its model head around a core, its loss and its metrics, and its
presets. It knows nothing of the command line or of checkpoint files: whatever mutable
state it has (a curriculum, a vocabulary, memory carried between windows) it hands over
through `state_dict` / `load_state_dict`, and the loop stores that in the checkpoint.

One training step of the loop is `train_step`: by default one loss (`training_loss`) and
one optimiser step (`optimizer_step`). A task whose step is several optimiser steps (Mini
Pac-Man's PPO: one rollout, then several epochs of minibatch updates) overrides
`train_step`, and may build its own optimiser (`build_optimizer`, default Adam).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor, nn

from ..cores import CoreConfig
from ..config import TrainConfig


@dataclass
class Preset:
    """One named scale of a task: the task's config, the core's and the loop's."""

    task: Any
    core: CoreConfig
    train: TrainConfig
    description: str = ""


class Task:
    """Base class of the paper's experiments; subclasses fill in the class attributes and methods."""

    name: ClassVar[str]
    config_type: ClassVar[type]
    main_metric: ClassVar[str]  # the metric a report shows, e.g. "accuracy" or "perplexity"
    higher_is_better: ClassVar[bool] = True
    paper_results: ClassVar[str] = ""  # the paper's numbers as markdown, shown beside ours in reports
    supports_distributed: ClassVar[bool] = False  # True: training_loss shards its batch by rank under torchrun
    # Config fields that say where the task's data lies, not what it is (lm: data_dir). A resume may
    # change them; the task's load_state_dict then checks that the data there is the same.
    location_fields: ClassVar[tuple[str, ...]] = ()
    # The options `evaluate` takes (from `rrnn eval DIR --name VALUE`), as "--name VALUE" -> what it does,
    # listed by `rrnn eval --help`. None: `evaluate` always scores the fixed evaluation set of the config.
    eval_options: ClassVar[dict[str, str]] = {}
    # Whether every training step calls the model with tensors of the same few shapes, all positional,
    # so that `--cuda-graphs` can capture its forward and backward once per shape and replay them
    # (`train.cuda_graphs`); `dynamic_shapes_reason` says why not where it is False.
    static_shapes: ClassVar[bool] = False
    dynamic_shapes_reason: ClassVar[str] = "its training steps call the model with inputs of changing shapes"

    def __init__(self, config: Any, core: CoreConfig, seed: int, device: torch.device) -> None:
        self.config = config
        self.core_config = core
        self.seed = seed
        self.device = device

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        raise NotImplementedError

    @classmethod
    def results_group(cls, config: Any) -> str:
        """Runs with the same group (and preset) are compared in one row of a report, e.g. the LTE program."""
        return ""

    @classmethod
    def reference_levels(cls, config: Any) -> dict[str, float]:
        """Named levels of `main_metric` that a report draws beside the curves (chance, a known plateau)."""
        return {}

    @classmethod
    def why_not_graphable(cls, config: Any) -> Optional[str]:
        """None when the training steps of a run of `config` can be captured as CUDA graphs
        (`static_shapes`), else why not, as a phrase for a message. A task whose answer depends
        on its config (lm: the adaptive softmax) overrides this."""
        return None if cls.static_shapes else cls.dynamic_shapes_reason

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def build_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """The optimiser of `model`'s parameters at learning rate `lr` (the loop's schedule scales it):
        Adam with torch's defaults, unless a task needs other settings."""
        return torch.optim.Adam(model.parameters(), lr=lr)

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                   clip_norm: Optional[float]) -> tuple[Tensor, dict[str, float]]:
        """Training step `step` (0-based): update `model`'s weights; return the loss to log and any numbers worth logging.

        By default one optimiser step on `training_loss(model, step)`. A task whose training step is
        several optimiser steps overrides this (each through `optimizer_step`); the loop then logs the
        returned loss (a detached tensor is fine) and steps the schedule once per training step.
        """
        loss, info = self.training_loss(model, step)
        optimizer_step(model, optimizer, loss, clip_norm)
        return loss, info

    def training_loss(self, model: nn.Module, step: int) -> tuple[Tensor, dict[str, float]]:
        """The loss of training step `step` (0-based), and any numbers worth logging (what the default
        `train_step` takes one optimiser step on).

        The loop averages each logged number over the steps between evaluations and writes it
        as `train_<name>` in the evaluation record.

        The batch must be a function of (seed, step, task state) so a resumed run sees the
        same data as an uninterrupted one.
        """
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module, **options: Any) -> dict[str, float]:
        """Metrics on the task's fixed evaluation data; must include "loss" and `main_metric`."""
        raise NotImplementedError

    def inspection_run(self, model: nn.Module, samples: int) -> tuple[list[str], Any]:
        """Run the model on the first `samples` evaluation samples (for `rrnn inspect`, which records
        the core meanwhile); return a title per sample (its inputs and the model's answer) and any
        data `inspection_plots` needs."""
        raise NotImplementedError(f"task {self.name} does not support inspect yet")

    def inspection_plots(self, trace: Any, data: Any, out_dir: Any) -> list:
        """Task-specific pictures from a recorded trace (see `inspection_run`); the files written."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """Mutable task state for the checkpoint; under torchrun every rank calls it (it may gather)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: Tensor, clip_norm: Optional[float]) -> None:
    """One optimiser step on `loss`: gradients from scratch, clipped to the global L2 norm `clip_norm` (None: not clipped)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
