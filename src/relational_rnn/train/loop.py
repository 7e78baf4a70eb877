"""One training loop for every task: the task's optimiser (Adam by default), schedule, clipping, evaluation, logs, checkpoints, resume.

The loop is given the task type of the run (`relational_rnn.runs.train_run` looks it up by name);
it never imports the task registry, which sits above it.

A run directory holds `config.json` (the resolved config), `metrics.jsonl` (one record per
evaluation) and `checkpoint.pt` (model, optimiser, scheduler, step, task state, every RNG
state and a copy of the metrics log). A run killed at any moment continues from its last
checkpoint with `resume=True` and produces the same later metrics as an uninterrupted run;
one killed before its first checkpoint starts again from step 0. The loop never writes into
a directory that holds files of the same names it did not write, and a fresh start that
fails before its first checkpoint (bad input, out of memory, Ctrl-C) removes what it wrote.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from tqdm import tqdm

from ..config import ConfigError, RunConfig, TrainConfig
from ..cores import count_parameters
from . import distributed
from .checkpoint import CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .cuda_graphs import GraphedModel, use_cuda_graphs
from .metrics import MetricsLog, parse_metrics, read_metrics

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
RUN_FORMAT = "relational_rnn.run/1"  # config.json's "format": marks a directory as one the loop wrote


FIXED_ON_RESUME = ("seed", "lr", "lr_final", "lr_decay_rate", "lr_decay_steps", "lr_warmup_steps")  # train fields a resume may not change


class RunDirectoryError(RuntimeError):
    """A run directory that cannot be used as asked (exists without --resume, or missing files)."""


class ExponentialDecayToFloor:
    """The reference schedule: lr(step) = max(lr_final, lr * rate ** (step / decay_steps)), as a factor of lr,
    after an optional linear warmup over the first `warmup_steps` steps (none in the reference)."""

    def __init__(self, lr: float, lr_final: Optional[float], rate: float, decay_steps: int, warmup_steps: int = 0) -> None:
        self.lr, self.lr_final, self.rate, self.decay_steps, self.warmup_steps = lr, lr_final, rate, decay_steps, warmup_steps

    def __call__(self, step: int) -> float:
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.lr_final is None:
            return warmup
        return warmup * max(self.lr_final, self.lr * self.rate ** (step / self.decay_steps)) / self.lr


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


def train(run: RunConfig, out_dir: Path, resume: bool = False, *, task_type: type) -> dict[str, Any]:
    """Train `run`, a run of the task `task_type` (a `tasks.Task` subclass), into `out_dir` until
    its budget ends; return the last evaluation record.

    Launched by `torchrun` with WORLD_SIZE > 1, every process runs this: the model is wrapped in
    DistributedDataParallel, the task gives each rank its share of the batch, and only rank 0
    writes config, metrics and checkpoints (every rank reads the checkpoint to resume).

    With `train.cuda_graphs` "auto" (on CUDA, one process, a task of static shapes) or "on", the
    training steps call the model through `cuda_graphs.GraphedModel`; "on" where that is
    impossible is a ConfigError here, before anything is written.
    """
    run.train.validate()
    if distributed.requested_world_size() > 1 and not task_type.supports_distributed:
        raise ConfigError(f"task {run.task_name} does not support multi-process training; run it as one process (not under torchrun)")
    use_cuda_graphs(run.train.cuda_graphs, resolve_device(run.train.device), task_type, run.task, distributed.requested_world_size() > 1)
    with distributed.process_group(resolve_device(run.train.device)):
        return _train(run, out_dir, resume, task_type)


def _train(run: RunConfig, out_dir: Path, resume: bool, task_type: type) -> dict[str, Any]:
    out_dir = Path(out_dir)
    run.train.validate()
    start = _how_to_start(run, out_dir, resume, task_type)  # decided before anything is written
    created = _first_missing(out_dir)  # the folder mkdir will create, if any (removed again if the start fails)
    distributed.barrier()  # every rank has checked the directory before rank 0 writes into it
    main = distributed.is_main()
    try:
        return _train_from(run, out_dir, start, task_type, main)
    except BaseException as error:
        if main and start == "fresh" and not (out_dir / CHECKPOINT_FILE).exists():
            _remove_unfinished_run(out_dir, created)  # bad input or a failure before the first checkpoint: leave no trace
        if isinstance(error, KeyboardInterrupt) and not str(error):  # Ctrl-C outside the loop's stop handling
            raise KeyboardInterrupt("during start-up, before any training step; nothing was saved") from None
        raise


def _train_from(run: RunConfig, out_dir: Path, start: str, task_type: type, main: bool) -> dict[str, Any]:
    """The loop itself, from step 0 (`start` "fresh" or "restart") or from the checkpoint ("resume")."""
    settings: TrainConfig = run.train
    checkpoint_path = out_dir / CHECKPOINT_FILE
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = distributed.local_device(resolve_device(settings.device))
    torch.manual_seed(settings.seed)
    task = task_type(run.task, run.core, seed=settings.seed, device=device)
    model = task.build_model().to(device)
    trained = distributed.wrap(model, device)  # what training steps call: DDP under torchrun, else the model
    graphed, graphs_note = use_cuda_graphs(settings.cuda_graphs, device, task_type, run.task, distributed.is_distributed())
    if graphed:  # ... or the model with its training calls replayed as CUDA graphs (weights and checkpoints: the model's)
        trained = GraphedModel(model, strict=settings.cuda_graphs == "on")
    elif graphs_note is not None and main:
        print(graphs_note, file=sys.stderr)
    optimizer = task.build_optimizer(model, settings.lr)  # Adam unless the task says otherwise
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, ExponentialDecayToFloor(
            settings.lr, settings.lr_final, settings.lr_decay_rate, settings.lr_decay_steps, settings.lr_warmup_steps
        )
    )

    step, elapsed = 0, 0.0
    resumed_losses: list[float] = []
    resumed_info: dict[str, list[float]] = {}
    log_text: Optional[str] = ""  # the metrics log as of the start (None: only the file knows it)
    if start == "resume":
        # On the CPU: load_state_dict copies weights and optimizer state to the parameters'
        # device, tasks move what they keep on the device, and RNG states must stay on the CPU.
        # The task state first: it says most clearly when the checkpoint is not this run's (lm: its corpus).
        state = load_checkpoint(checkpoint_path, map_location="cpu")
        check_task_name(state, checkpoint_path, run)
        load_part("task state", lambda: task.load_state_dict(state["task_state"]), checkpoint_path, run)
        load_weights(model, state["model"], checkpoint_path)
        load_part("optimiser state", lambda: optimizer.load_state_dict(state["optimizer"]), checkpoint_path, run)
        load_part("schedule state", lambda: scheduler.load_state_dict(state["scheduler"]), checkpoint_path, run)
        load_part("random states", lambda: restore_rng_state(state["rng"]), checkpoint_path, run)
        step, elapsed = state["step"], state["elapsed_seconds"]
        resumed_losses = state.get("train_losses", [])
        resumed_info = state.get("train_info", {})
        log_text = state.get("metrics_log")  # checkpoints before this key: the file, cut at the step
    # Only now, with the checkpoint found usable, does anything change on disk.
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = MetricsLog(out_dir / METRICS_FILE) if main else None
    if main and start != "fresh":
        for leftover in out_dir.glob(CHECKPOINT_FILE + ".*.tmp"):  # half-written by a killed run
            leftover.unlink()
        if start == "restart":
            metrics.replace("")  # the records of the run that never reached its first checkpoint are rewritten
        elif log_text is not None:
            metrics.replace(log_text)  # exactly the log of the checkpoint: lost or cut lines come back
        else:
            metrics.truncate_after(step)
    config_record = {"format": RUN_FORMAT} | run.to_dict() | {
        "parameters": {"model": count_parameters(model), "core": count_parameters(getattr(model, "core", model))},
        "machine": machine_description(device) | {"cuda_graphs": graphed},
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
                "task_name": run.task_name,
                "step": step,
                "elapsed_seconds": elapsed,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "task_state": task_state,
                "rng": capture_rng_state(),
                "train_losses": list(train_losses),  # since the last evaluation, for its train_loss
                "train_info": {name: list(values) for name, values in train_info.items()},
                "metrics_log": metrics.text(),  # every record up to this step, to rebuild metrics.jsonl on resume
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
    records = parse_metrics(log_text, str(checkpoint_path)) if log_text is not None else read_metrics(out_dir / METRICS_FILE)
    last_record = records[-1] if records else None
    model.train()
    bar = tqdm(total=settings.steps, initial=step, disable=not (main and settings.progress and sys.stderr.isatty()), dynamic_ncols=True)
    with _stop_requests() as stop:
        while not budget_spent():
            started = time.perf_counter()
            loss, info = task.train_step(trained, optimizer, step, settings.clip_norm)  # one or more optimiser steps
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
            elif settings.checkpoint_every is not None and step % settings.checkpoint_every == 0:
                checkpoint()
            if stop_requested:
                checkpoint()
                bar.close()
                if main:
                    metrics.close()
                raise KeyboardInterrupt(f"stopped at step {step}; checkpoint saved, continue with --resume")
        if last_record is None or last_record["step"] != step:  # resumed with its budget already spent
            last_record = evaluate()  # (inside the stop handling: Ctrl-C now waits for this checkpoint)
            checkpoint()
    bar.close()
    if main:
        metrics.close()
    distributed.barrier()  # rank 0 has written the last checkpoint and record
    return last_record


LOOP_FILES = (CONFIG_FILE, METRICS_FILE, "tensorboard")  # what the loop writes besides checkpoints


def _how_to_start(run: RunConfig, out_dir: Path, resume: bool, task_type: type) -> str:
    """How training into `out_dir` begins, decided before anything is written.

    "resume": from its checkpoint (only with `resume`); "restart": the directory holds a run of
    the same config that was stopped before its first checkpoint (killed during start-up or
    during that first write), which has nothing to lose and begins again at step 0, with
    or without `resume`; "fresh": a new run, in a new directory or one without any file the
    loop would write. Anything else is a RunDirectoryError: a user's files are never overwritten.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirectoryError(f"{out_dir} exists and is not a directory; choose another --out")
    if (out_dir / CHECKPOINT_FILE).exists():
        if not resume:
            raise RunDirectoryError(f"{out_dir} already holds a run; pass --resume to continue it, or choose another --out")
        check_resumable(_saved_config(out_dir, run, task_type), run, out_dir, task_type)
        return "resume"
    if _started_by_the_loop(out_dir):
        # Killed before its first checkpoint, a run has at most the one record written just before
        # that checkpoint. More records and no checkpoint: a finished run whose checkpoint was
        # removed (committed results keep only config.json and metrics.jsonl), never restarted over.
        if len(read_metrics(out_dir / METRICS_FILE)) > 1:
            raise RunDirectoryError(
                f"{out_dir} holds the records of a run but no {CHECKPOINT_FILE} to continue it from; "
                "choose another --out (nothing was changed)"
            )
        try:
            check_resumable(_saved_config(out_dir, run, task_type), run, out_dir, task_type)
        except RunDirectoryError:
            if resume:
                raise
            raise RunDirectoryError(
                f"{out_dir} already holds a run (stopped before its first checkpoint) of another config; choose another --out"
            ) from None
        return "restart"
    if resume:
        raise RunDirectoryError(f"cannot resume {out_dir}: it holds no {CHECKPOINT_FILE}")
    ours = [name for name in LOOP_FILES if (out_dir / name).exists()] + sorted(p.name for p in out_dir.glob(CHECKPOINT_FILE + ".*.tmp"))
    if ours:
        raise RunDirectoryError(f"{out_dir} holds {', '.join(ours)} but no run started by rrnn train; choose another --out (nothing was changed)")
    return "fresh"


def _saved_config(out_dir: Path, run: RunConfig, task_type: type) -> RunConfig:
    """The config saved in `out_dir`, read as one of `run`'s task (`task_type`); a run of another task is refused by name."""

    def config_type_of(task_name: str) -> type:
        if task_name != run.task_name:
            raise RunDirectoryError(f"{out_dir} holds a {task_name} run, not {run.task_name}")
        return task_type.config_type

    return read_config(out_dir, config_type_of)


def _started_by_the_loop(out_dir: Path) -> bool:
    """Whether `out_dir/config.json` is one the loop wrote (it carries `RUN_FORMAT`)."""
    try:
        data = json.loads((out_dir / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == RUN_FORMAT


def check_resumable(saved: RunConfig, run: RunConfig, out_dir: Path, task_type: type) -> None:
    """Refuse to continue the run saved in `out_dir` with `run` if they differ in anything but
    the budget and logging options, naming each field that differs.

    A task's `location_fields` (where its data lies, such as the lm corpus directory) may
    change: the task checks on resume that the data there is the same (by content hash).
    """
    if saved.task_name != run.task_name:
        raise RunDirectoryError(f"{out_dir} holds a {saved.task_name} run, not {run.task_name}")
    differences = []
    for section in ("task", "core", "train"):
        old, new = dataclasses.asdict(getattr(saved, section)), dataclasses.asdict(getattr(run, section))
        for name, value in old.items():
            if section == "task" and name in task_type.location_fields:
                continue
            if section == "train" and name not in FIXED_ON_RESUME:
                continue
            if new.get(name) != value:
                differences.append(f"{section}.{name} (saved {value!r}, given {new.get(name)!r})")
    if differences:  # the restored weights, optimiser, schedule and data stream would not fit or would ignore them
        raise RunDirectoryError(
            f"cannot resume {out_dir} with a different {', '.join(differences)}; only the budget and logging options may change"
        )


def _first_missing(path: Path) -> Optional[Path]:
    """The outermost of `path` and its parents that does not exist (what `mkdir(parents=True)` creates)."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _remove_unfinished_run(out_dir: Path, created: Optional[Path]) -> None:
    """Undo a fresh start that failed before its first checkpoint: the loop's files, and the
    folders it made if they are empty again (a user's own files there are left alone)."""
    for name in (CONFIG_FILE, METRICS_FILE):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "tensorboard", ignore_errors=True)
    if created is None:
        return
    folder = out_dir
    while True:
        try:
            folder.rmdir()
        except OSError:  # not empty, or already gone
            return
        if folder == created:
            return
        folder = folder.parent


def _one_line(error: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its type and its message, whitespace collapsed."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def check_task_name(state: dict[str, Any], path: Path, run: RunConfig) -> None:
    """A checkpoint of another task (copied into this run directory) is refused by name."""
    saved = state.get("task_name")  # absent in checkpoints written before it was stored
    if saved is not None and saved != run.task_name:
        raise CheckpointError(f"{path} is the checkpoint of a {saved} run, but its config.json is for {run.task_name}")


def load_weights(model: nn.Module, weights: Any, path: Path) -> None:
    """`model.load_state_dict(weights)`, with a one-line CheckpointError saying how they differ."""
    if not isinstance(weights, dict):
        raise CheckpointError(f"the model weights in {path} are not a state dict")
    expected = model.state_dict()
    missing = [name for name in expected if name not in weights]
    unexpected = [name for name in weights if name not in expected]
    reshaped = [name for name in expected if name in weights and getattr(weights[name], "shape", None) != expected[name].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensors missing (first {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (first {unexpected[0]})")
    if reshaped:
        name = reshaped[0]
        saved_shape = list(getattr(weights[name], "shape", []))
        problems.append(f"{len(reshaped)} of another shape (first {name}: saved {saved_shape}, model {list(expected[name].shape)})")
    if problems:
        raise CheckpointError(f"the model in {path} does not fit its config.json: {'; '.join(problems)}")
    load_part("model weights", lambda: model.load_state_dict(weights), path, None)


def load_part(what: str, load: Any, path: Path, run: Optional[RunConfig]) -> None:
    """Run `load()`, turning the errors of state that does not fit (another task's, another
    size's, a damaged one) into one CheckpointError line. A ConfigError (e.g. the lm corpus
    is not the run's) passes through: it says what is wrong itself."""
    try:
        load()
    except ConfigError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as error:
        of = f" of this {run.task_name} run" if run is not None else ""
        raise CheckpointError(f"cannot restore the {what} from {path}: it does not fit the config{of} ({_one_line(error)})") from None


def read_config(run_dir: Path, config_type_of: Callable[[str], type]) -> RunConfig:
    """The RunConfig saved in a run directory, every value checked (`RunConfig.from_dict`);
    `config_type_of(task_name)` is the config type of the task it names (`runs.load_config`: the registry's)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunDirectoryError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunDirectoryError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise RunDirectoryError(f"{path} does not hold a run config (expected a JSON object)")
    if not isinstance(data.get("task_name"), str):
        raise RunDirectoryError(f"{path} is not a run config (it names no task_name)")
    config_type = config_type_of(data["task_name"])
    try:
        return RunConfig.from_dict(data, config_type)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


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
