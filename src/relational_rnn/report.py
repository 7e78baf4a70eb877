"""Turn run directories into `docs/results.md` and learning-curve PNGs.

Reads only what the training loop writes (`config.json`, `metrics.jsonl`) plus optional extra
evaluations a results script stores next to them (`eval_<name>.json`, e.g. `eval_test.json`
from `rrnn eval RUN --split test`). A directory holding `baseline.json`
(`{"task_name", "preset", "group", "name", "metrics": {...}}`) adds a baseline row (a random
policy, say) to its group. The output depends on the run directories alone, so the same runs
always give the same report.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from .tasks import get_task
from .train.config import ConfigError
from .train.loop import CONFIG_FILE, METRICS_FILE
from .train.metrics import read_metrics

BASELINE_FILE = "baseline.json"


@dataclass
class RunSummary:
    path: Path
    task_name: str
    preset: str
    group: str
    core: str
    seed: int
    budget: str  # what the run was allowed: "20000 steps" or "15 min"
    changes: str  # config fields that differ from the preset (seeds, budgets and the core kind aside)
    metrics: list[dict[str, Any]]
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # eval_<name>.json files
    parameters: Optional[int] = None
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics[-1]


@dataclass
class Baseline:
    task_name: str
    preset: str
    group: str
    name: str
    metrics: dict[str, Any]


def find_runs(paths: Iterable[Path]) -> tuple[list[RunSummary], list[Baseline]]:
    """Every run directory (and baseline file) at or below `paths`, in a stable order."""
    runs, baselines = [], []
    directories: set[Path] = set()
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"no such run directory: {path}")
        for config in sorted(path.rglob(CONFIG_FILE)) if path.is_dir() else []:
            directories.add(config.parent)
        for baseline in sorted(path.rglob(BASELINE_FILE)) if path.is_dir() else []:
            data = json.loads(baseline.read_text())
            baselines.append(Baseline(data["task_name"], data["preset"], data.get("group", ""), data["name"], data["metrics"]))
    for directory in sorted(directories):
        summary = load_run(directory)
        if summary is not None:
            runs.append(summary)
    baselines.sort(key=lambda b: (b.task_name, b.preset, b.group, b.name))
    return runs, baselines


def load_run(directory: Path) -> Optional[RunSummary]:
    """A run's summary, or None when it has no evaluation yet."""
    path = directory / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
        task_type = get_task(config["task_name"])
        task_config = task_type.config_type(**config["task"])
        config["core"]["core"], config["train"]["seed"]
    except (ValueError, KeyError, TypeError) as error:  # reads older runs too, unlike load_config
        raise ConfigError(f"{path} is not a run config this version can read ({type(error).__name__}: {error})") from None
    metrics = read_metrics(directory / METRICS_FILE)
    if not metrics:
        return None
    extra = {
        file.stem[len("eval_") :]: json.loads(file.read_text()) for file in sorted(directory.glob("eval_*.json"))
    }
    return RunSummary(
        path=directory,
        task_name=config["task_name"],
        preset=config["preset"],
        group=task_type.results_group(task_config),
        core=config["core"]["core"],
        seed=config["train"]["seed"],
        budget=_budget(config["train"]),
        changes=_changes_from_preset(task_type, config, task_type.results_group(task_config)),
        metrics=metrics,
        extra=extra,
        parameters=config.get("parameters", {}).get("core"),
        machine=config.get("machine", {}),
    )


NOT_CHANGES = {"seed", "core", "steps", "minutes", "threads", "progress", "device", "eval_every", "checkpoint_every"}


def _changes_from_preset(task_type: Any, config: dict[str, Any], group: str = "") -> str:
    """'lr=0.0003, num_blocks=3': what a run changed from its preset, so different settings are not averaged.

    The task field that names the run's group (the LTE program, the Pac-Man observation) is left
    out: the group column already says it."""
    preset = task_type.presets().get(config["preset"])
    if preset is None:
        return "?"
    changes = []
    for section in ("task", "core", "train"):
        default = json.loads(json.dumps(dataclasses.asdict(getattr(preset, section))))  # as config.json has it
        for name, value in config[section].items():
            if section == "task" and group and str(value) == group:
                continue
            if name not in NOT_CHANGES and default.get(name) != value:
                changes.append(f"{name}={value}")
    return ", ".join(changes) or "-"


def _budget(train: dict[str, Any]) -> str:
    if train.get("minutes") is not None:
        return f"{train['minutes']:g} min"
    return f"{train['steps']} steps"


def _spread(values: list[float]) -> str:
    """One value, or mean ± standard deviation; whole numbers (steps) stay whole."""
    if all(isinstance(value, int) for value in values):
        return str(values[0]) if len(values) == 1 else f"{statistics.mean(values):.0f} ± {statistics.stdev(values):.0f}"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _machine_line(runs: list[RunSummary]) -> str:
    machines = sorted(
        {
            f"{m.get('processor', '?')}, {m.get('cpu_count', '?')} cores, {m.get('torch_threads', '?')} torch thread(s), "
            f"torch {m.get('torch', '?')}, {m.get('device', '?')}{', ' + m['gpu'] if 'gpu' in m else ''}"
            for m in (run.machine for run in runs)
        }
    )
    return "; ".join(machines)


def task_section(task_name: str, runs: list[RunSummary], baselines: list[Baseline], image_dir: Path, link_prefix: str) -> list[str]:
    """The markdown of one task: a table per preset, learning curves, the paper's numbers."""
    task_type = get_task(task_name)
    metric = task_type.main_metric
    lines = [f"## {task_name}", ""]
    extra_names = sorted({name for run in runs for name in run.extra})
    header = ["preset", "group", "changes from preset", "budget", "core", "params (core)", "seeds", f"final {metric} (eval set)"]
    header += [f"{name} {metric}" for name in extra_names] + ["steps", "minutes / run"]
    rows = []
    by_key: dict[tuple[str, str, str, str, str], list[RunSummary]] = defaultdict(list)
    for run in runs:
        by_key[(run.preset, run.group, run.changes, run.budget, run.core)].append(run)
    for (preset, group, changes, budget, core), members in sorted(by_key.items()):
        finals = [run.final[metric] for run in members]
        row = [preset, group or "-", changes, budget, core, str(members[0].parameters or "?"), str(len(members)), _spread(finals)]
        for name in extra_names:
            values = [run.extra[name][metric] for run in members if name in run.extra and metric in run.extra[name]]
            row.append(_spread(values) if values else "-")
        row.append(_spread([run.final["step"] for run in members]))
        row.append(_spread([run.final["seconds"] / 60 for run in members]))
        rows.append(row)
    for baseline in baselines:
        value = baseline.metrics.get(metric)
        rows.append([baseline.preset, baseline.group or "-", "-", "-", baseline.name, "-", "-", f"{value:.4g}" if isinstance(value, (int, float)) else "-"]
                    + ["-"] * len(extra_names) + ["-", "-"])
    lines += _table(header, rows)
    lines += ["", f"Machine: {_machine_line(runs)}.", ""]
    lines += ["Runs: " + ", ".join(f"`{run.path.as_posix()}`" for run in runs) + ".", ""]
    image = plot_curves(task_name, runs, metric, image_dir)
    lines += [f"![{task_name} learning curves]({link_prefix}{image.name})", ""]
    if task_type.paper_results:
        lines += ["The paper's numbers (paper scale):", "", task_type.paper_results.strip(), ""]
    return lines


def plot_curves(task_name: str, runs: list[RunSummary], metric: str, image_dir: Path) -> Path:
    """One panel per (preset, group): the metric against training steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(run.preset, run.group) for run in runs})
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows), squeeze=False)
    for axis, (preset, group) in zip(axes.flat, panels):
        for run in sorted((r for r in runs if (r.preset, r.group) == (preset, group)), key=lambda r: (r.core, r.budget, r.seed)):
            steps = [record["step"] for record in run.metrics]
            values = [record[metric] for record in run.metrics]
            label = f"{run.core}, {run.budget}, seed {run.seed}" + ("" if run.changes == "-" else f", {run.changes}")
            axis.plot(steps, values, label=label, linewidth=1.2)
        axis.set_title(f"{task_name} {preset} {group}".strip(), fontsize=9)
        axis.set_xlabel("step")
        axis.set_ylabel(metric)
        axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    figure.tight_layout()
    image_dir.mkdir(parents=True, exist_ok=True)
    path = image_dir / f"curves_{task_name}.png"
    figure.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(figure)
    return path


def write_report(paths: Iterable[Path], out_dir: Path, command: str) -> Path:
    """Write `out_dir/results.md` (and curve PNGs beside it) from the runs under `paths`."""
    runs, baselines = find_runs(paths)
    if not runs:
        raise ConfigError("no run directories with metrics found under " + ", ".join(str(p) for p in paths))
    out_dir = Path(out_dir)
    lines = [
        "# Results",
        "",
        f"Generated by `{command}` from the run directories listed under each table; do not edit by hand.",
        "Each value is the final evaluation of a run on its task's fixed evaluation set (see the task's",
        "docs for the split); '±' is the standard deviation over seeds. Budgets are the steps and",
        "training minutes shown; the machine is named under each table.",
        "",
    ]
    for task_name in sorted({run.task_name for run in runs}):
        task_runs = [run for run in runs if run.task_name == task_name]
        task_baselines = [b for b in baselines if b.task_name == task_name]
        lines += task_section(task_name, task_runs, task_baselines, out_dir, "")
    path = out_dir / "results.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
