"""One training loop for every task: Adam, schedule, clipping, evaluation, logs, checkpoints, resume.

A run directory holds `config.json` (the resolved config), `metrics.jsonl` (one record per
evaluation) and `checkpoint.pt` (model, optimiser, scheduler, step, task state and every
RNG state). A run killed at any moment continues from its last checkpoint with `resume=True`
and produces the same later metrics as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from tqdm import tqdm

from ..cores import count_parameters
from . import distributed
from .checkpoint import CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .config import ConfigError, RunConfig, TrainConfig
from .metrics import MetricsLog, read_metrics

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"


FIXED_ON_RESUME = ("seed", "lr", "lr_final", "lr_decay_rate", "lr_decay_steps")  # train fields a resume may not change


class RunDirectoryError(RuntimeError):
    """A run directory that cannot be used as asked (exists without --resume, or missing files)."""


class ExponentialDecayToFloor:
    """The reference schedule: lr(step) = max(lr_final, lr * rate ** (step / decay_steps)), as a factor of lr."""

    def __init__(self, lr: float, lr_final: Optional[float], rate: float, decay_steps: int) -> None:
        self.lr, self.lr_final, self.rate, self.decay_steps = lr, lr_final, rate, decay_steps

    def __call__(self, step: int) -> float:
        if self.lr_final is None:
            return 1.0
        return max(self.lr_final, self.lr * self.rate ** (step / self.decay_steps)) / self.lr


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(name)


def machine_description(device: torch.device) -> dict[str, Any]:
    """What a reader needs to judge a time: processor, cores, threads, torch, accelerator."""
    description = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        description["gpu"] = torch.cuda.get_device_name(device)
    return description


@contextmanager
def _stop_requests() -> Iterator[dict[str, bool]]:
    """Turn SIGINT/SIGTERM into a flag, so the loop can checkpoint before it exits."""
    flag = {"stop": False}

    def handler(signum, frame):
        flag["stop"] = True

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not in the main thread
            pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def train(run: RunConfig, out_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train `run` into `out_dir` until its budget ends; return the last evaluation record.

    Launched by `torchrun` with WORLD_SIZE > 1, every process runs this: the model is wrapped in
    DistributedDataParallel, the task gives each rank its share of the batch, and only rank 0
    writes config, metrics and checkpoints (every rank reads the checkpoint to resume).
    """
    from ..tasks import get_task

    run.train.validate()
    task_type = get_task(run.task_name)
    if distributed.requested_world_size() > 1 and not task_type.supports_distributed:
        raise ConfigError(f"task {run.task_name} does not support multi-process training; run it as one process (not under torchrun)")
    with distributed.process_group(resolve_device(run.train.device)):
        return _train(run, out_dir, resume)


def _train(run: RunConfig, out_dir: Path, resume: bool) -> dict[str, Any]:
    from ..tasks import get_task

    out_dir = Path(out_dir)
    settings: TrainConfig = run.train
    settings.validate()
    checkpoint_path = out_dir / CHECKPOINT_FILE
    if resume:
        if not checkpoint_path.exists():
            raise RunDirectoryError(f"cannot resume: {checkpoint_path} does not exist")
        saved = load_config(out_dir)
        if saved.to_dict()["task"] != run.to_dict()["task"] or saved.core != run.core:
            raise RunDirectoryError(f"cannot resume {out_dir}: its task or core config differs from the one given")
        changed = [name for name in FIXED_ON_RESUME if getattr(saved.train, name) != getattr(run.train, name)]
        if changed:  # the restored optimiser, schedule and data stream would silently ignore them
            raise RunDirectoryError(f"cannot resume {out_dir} with a different {', '.join(changed)}; only the budget and logging options may change")
    elif checkpoint_path.exists() or (out_dir / METRICS_FILE).exists():
        raise RunDirectoryError(f"{out_dir} already holds a run; pass --resume to continue it, or choose another --out")
    distributed.barrier()  # every rank has checked the directory before rank 0 writes into it
    main = distributed.is_main()

    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = distributed.local_device(resolve_device(settings.device))
    task_type = get_task(run.task_name)
    torch.manual_seed(settings.seed)
    task = task_type(run.task, run.core, seed=settings.seed, device=device)
    model = task.build_model().to(device)
    trained = distributed.wrap(model, device)  # what training steps call: DDP under torchrun, else the model
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, ExponentialDecayToFloor(settings.lr, settings.lr_final, settings.lr_decay_rate, settings.lr_decay_steps)
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    if main:
        for leftover in out_dir.glob(CHECKPOINT_FILE + ".*.tmp"):  # half-written by a killed run
            leftover.unlink()
    metrics = MetricsLog(out_dir / METRICS_FILE) if main else None
    step, elapsed = 0, 0.0
    resumed_losses: list[float] = []
    resumed_info: dict[str, list[float]] = {}
    if resume:
        # On the CPU: load_state_dict copies weights and optimizer state to the parameters'
        # device, tasks move what they keep on the device, and RNG states must stay on the CPU.
        state = load_checkpoint(checkpoint_path, map_location="cpu")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        task.load_state_dict(state["task_state"])
        restore_rng_state(state["rng"])
        step, elapsed = state["step"], state["elapsed_seconds"]
        resumed_losses = state.get("train_losses", [])
        resumed_info = state.get("train_info", {})
        if main:
            metrics.truncate_after(step)
    config_record = run.to_dict() | {
        "parameters": {"model": count_parameters(model), "core": count_parameters(getattr(model, "core", model))},
        "machine": machine_description(device),
    }
    if main:
        _write_json_atomically(out_dir / CONFIG_FILE, config_record)

    def checkpoint() -> None:
        task_state = task.state_dict()  # on every rank: a task may gather its ranks' state here
        if not main:
            return
        save_checkpoint(
            checkpoint_path,
            {
                "step": step,
                "elapsed_seconds": elapsed,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "task_state": task_state,
                "rng": capture_rng_state(),
                "train_losses": list(train_losses),  # since the last evaluation, for its train_loss
                "train_info": {name: list(values) for name, values in train_info.items()},
            },
        )

    def evaluate() -> dict[str, Any]:
        model.eval()
        with torch.no_grad():
            results = task.evaluate(model)
        model.train()
        record = {"step": step, "seconds": round(elapsed, 3), **results, "train_loss": _mean(train_losses)}
        record |= {f"train_{name}": _mean(values) for name, values in train_info.items()}
        record["lr"] = scheduler.get_last_lr()[0]
        train_losses.clear()
        train_info.clear()
        if main:  # every rank evaluates the same model on the same data; rank 0 logs
            metrics.append(record)
            tqdm.write(" | ".join(f"{k} {_short(v)}" for k, v in record.items()), file=sys.stdout)
        return record

    def budget_spent() -> bool:
        return (settings.steps is not None and step >= settings.steps) or (
            settings.minutes is not None and elapsed >= settings.minutes * 60
        )

    train_losses: list[float] = list(resumed_losses)
    train_info: dict[str, list[float]] = {name: list(values) for name, values in resumed_info.items()}
    last_record = read_metrics(out_dir / METRICS_FILE)[-1:] or [None]
    last_record = last_record[0]
    model.train()
    bar = tqdm(total=settings.steps, initial=step, disable=not (main and settings.progress and sys.stderr.isatty()), dynamic_ncols=True)
    with _stop_requests() as stop:
        while not budget_spent():
            started = time.perf_counter()
            loss, info = task.training_loss(trained, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            elapsed += time.perf_counter() - started
            loss_value, stop_requested, elapsed = distributed.sync_step(loss.detach(), stop["stop"], elapsed)
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"training loss became {loss_value} at step {step}; lower the learning rate or clip gradients")
            train_losses.append(loss_value)
            for name, value in info.items():
                train_info.setdefault(name, []).append(float(value))
            postfix = {"loss": f"{loss_value:.4f}"}
            if last_record is not None:
                postfix[task.main_metric] = _short(last_record[task.main_metric])
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            if step % settings.eval_every == 0 or budget_spent():
                last_record = evaluate()
                checkpoint()
            elif settings.checkpoint_every and step % settings.checkpoint_every == 0:
                checkpoint()
            if stop_requested:
                checkpoint()
                bar.close()
                if main:
                    metrics.close()
                raise KeyboardInterrupt(f"stopped at step {step}; checkpoint saved, continue with --resume")
    if last_record is None or last_record["step"] != step:  # resumed with its budget already spent
        last_record = evaluate()
        checkpoint()
    bar.close()
    if main:
        metrics.close()
    distributed.barrier()  # rank 0 has written the last checkpoint and record
    return last_record


def load_config(run_dir: Path) -> RunConfig:
    """The RunConfig saved in a run directory."""
    from ..tasks import get_task

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunDirectoryError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunDirectoryError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise RunDirectoryError(f"{path} does not hold a run config (expected a JSON object)")
    task_type = get_task(data.get("task_name", "?"))
    return RunConfig.from_dict(data, task_type.config_type)


def load_trained(run_dir: Path, device: Optional[str] = None):
    """Rebuild a run's task and model from its directory, with the checkpoint's weights and task state."""
    from ..tasks import get_task

    run = load_config(run_dir)
    device_ = resolve_device(device or run.train.device)
    state = load_checkpoint(Path(run_dir) / CHECKPOINT_FILE, map_location="cpu")
    task = get_task(run.task_name)(run.task, run.core, seed=run.train.seed, device=device_)
    task.load_state_dict(state["task_state"])
    model = task.build_model().to(device_)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint in {run_dir} does not fit its config.json: {error}") from None
    model.eval()
    return run, task, model, state


def evaluate_run(run_dir: Path, device: Optional[str] = None, **options: Any) -> dict[str, Any]:
    """Reload a run's checkpoint and evaluate it on the task's fixed evaluation data."""
    run, task, model, state = load_trained(run_dir, device)
    with torch.no_grad():
        results = task.evaluate(model, **options)
    return {"step": state["step"], **results}


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)


def _mean(values: list[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
