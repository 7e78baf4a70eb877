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
from .config import ConfigError, upgraded_fields
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
    levels: dict[str, float] = field(default_factory=dict)  # the task's reference levels (chance, a plateau) for this config

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
        config["task"] = upgraded_fields(config["task"], task_type.config_type)  # an older version's fields, as meant
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
        levels=task_type.reference_levels(task_config),
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
    group_parts = group.split(", ") if group else []
    for section in ("task", "core", "train"):
        default = json.loads(json.dumps(dataclasses.asdict(getattr(preset, section))))  # as config.json has it
        for name, value in config[section].items():
            if section == "task" and (str(value) in group_parts or f"{name}={value}" in group_parts):
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


# --- sections of a task's doc: a comparison of cores, and a table of every run ---------------------

SECTION_KINDS = ("comparison", "runs")


def _at_step(run: RunSummary, metric: str, step: int) -> float:
    """The metric at the run's last evaluation at or before `step`."""
    before = [record for record in run.metrics if record["step"] <= step]
    return (before or run.metrics[:1])[-1][metric]


def _with_seeds(values: list[float]) -> str:
    """'0.912 ± 0.021 (0.93, 0.90, 0.91)': mean ± std with every seed's value kept."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})"


def _at_seconds(run: RunSummary, metric: str, seconds: float) -> float:
    """The metric at the run's last evaluation within `seconds` of training time."""
    before = [record for record in run.metrics if record["seconds"] <= seconds]
    return (before or run.metrics[:1])[-1][metric]


def _is_fraction(metric: str) -> bool:
    """Accuracies are fractions, so a gap between cores reads in points (0.1 = 10 points)."""
    return metric.endswith("accuracy")


def _verdict(by_core: dict[str, list[float]], metric: str, higher_is_better: bool) -> str:
    """Whether the RMC separates from each other core: every seed of the other core behind the
    RMC's worst seed, and for an accuracy the RMC's mean ahead by >= 10 points as well (the
    criterion of docs/nth_farthest.md). The gap is signed so that + means the RMC is better."""
    if "rmc" not in by_core or len(by_core) < 2:
        return "-"
    sign = 1 if higher_is_better else -1
    rmc = [sign * value for value in by_core["rmc"]]
    parts = []
    for core, values in sorted(by_core.items()):
        if core == "rmc":
            continue
        other = [sign * value for value in values]
        gap = statistics.mean(rmc) - statistics.mean(other)
        if _is_fraction(metric):
            separates = 100 * gap >= 10 and max(other) < min(rmc)
            gap_text = f"{100 * gap:+.1f} points"
        else:
            separates = max(other) < min(rmc)
            gap_text = f"{gap:+.4g} {metric}"
        parts.append(f"{'separates from' if separates else 'does not separate from'} {core} ({gap_text})")
    return "; ".join(parts)


def comparison_lines(runs: list[RunSummary], baselines: list[Baseline], image_dir: Path, link_prefix: str, name: str) -> list[str]:
    """Per group, each core over its seeds at the same step budget and the same wall-clock budget,
    and learning curves (one thin line per seed, the mean bold, chance, plateau and baselines drawn).

    The common step budget is the fewest steps any run of the group reached; the common wall-clock
    budget is the budget itself when the runs had minutes, else the least training time any run of
    the group took (each run read at its last evaluation within it). Extra evaluations stored
    beside the runs (`eval_<name>.json`) get a column each."""
    task_type = get_task(runs[0].task_name)
    metric = task_type.main_metric
    extra_names = sorted({name for run in runs for name in run.extra if metric in run.extra[name]})
    header = ["group", "core", "params (core)", "seeds", "steps", f"{metric} at the common step budget",
              f"{metric} at the common wall-clock budget"] + [f"{metric}, {extra}" for extra in extra_names]
    rows, verdicts = [], []
    groups = sorted({(run.group, run.changes, run.budget) for run in runs})
    for group, changes, budget in groups:
        members = [run for run in runs if (run.group, run.changes, run.budget) == (group, changes, budget)]
        common_step = min(run.final["step"] for run in members)
        timed = budget.endswith(" min")
        common_seconds = None if timed else min(run.final["seconds"] for run in members)
        time_budget = budget if timed else f"{common_seconds / 60:.1f} min"
        by_core: dict[str, list[RunSummary]] = defaultdict(list)
        for run in sorted(members, key=lambda r: (r.core != "rmc", r.core, r.seed)):
            by_core[run.core].append(run)
        at_steps = {core: [_at_step(run, metric, common_step) for run in group_runs] for core, group_runs in by_core.items()}
        at_time = {core: [run.final[metric] if timed else _at_seconds(run, metric, common_seconds) for run in group_runs]
                   for core, group_runs in by_core.items()}
        label = group + ("" if changes == "-" else f"; {changes}")
        for core, group_runs in by_core.items():
            row = [label, core, str(group_runs[0].parameters or "?"), str(len(group_runs)),
                   _spread([run.final["step"] for run in group_runs]), _with_seeds(at_steps[core]),
                   f"{_with_seeds(at_time[core])} at {time_budget}"]
            for extra in extra_names:
                values = [run.extra[extra][metric] for run in group_runs if extra in run.extra]
                row.append(_with_seeds(values) if len(values) == len(group_runs) else "-")
            rows.append(row)
        if "rmc" not in by_core or len(by_core) < 2:
            continue  # nothing to compare the RMC with inside this group
        digits = ".3f" if _is_fraction(metric) else ".4g"
        levels = ", ".join(f"{level} {value:{digits}}" for level, value in _levels(members, baselines, metric).items())
        levels = f" ({levels})" if levels else ""
        verdicts.append(f"- {label}{levels}: at {common_step} steps, RMC {_verdict(at_steps, metric, task_type.higher_is_better)}; "
                        f"at {time_budget} each, RMC {_verdict(at_time, metric, task_type.higher_is_better)}.")
        for extra in extra_names:
            values = {core: [run.extra[extra][metric] for run in group_runs] for core, group_runs in by_core.items()
                      if all(extra in run.extra for run in group_runs)}
            verdicts.append(f"  - {extra}: RMC {_verdict(values, metric, task_type.higher_is_better)}.")
    lines = _table(header, rows)
    criterion = ("its mean ahead by at least 10 points and no seed of the other core reaching the RMC's worst seed"
                 if _is_fraction(metric) else "no seed of the other core reaching the RMC's worst seed")
    if verdicts:
        lines += ["", f"Whether the RMC separates ({criterion}):", ""]
        lines += verdicts
    else:
        lines += ["", "No group holds the RMC beside another core, so there is no verdict within a group; "
                      "the groups differ in the options named in the first column."]
    lines += ["", f"Machine: {_machine_line(runs)}.", ""]
    lines += ["Runs: " + ", ".join(f"`{run.path.as_posix()}`" for run in runs) + ".", ""]
    image = plot_seed_curves(runs, baselines, metric, image_dir, name)
    lines += [f"![learning curves, {name}]({link_prefix}{image.name})", ""]
    return lines


def _levels(members: list[RunSummary], baselines: list[Baseline], metric: str) -> dict[str, float]:
    """The reference levels of a group: the task's (chance, a plateau) and the baselines of its preset and group."""
    first = members[0]
    levels = dict(first.levels)
    for baseline in baselines:
        if (baseline.task_name, baseline.preset, baseline.group) == (first.task_name, first.preset, first.group) \
                and isinstance(baseline.metrics.get(metric), (int, float)):
            levels[baseline.name] = baseline.metrics[metric]
    return levels


def plot_seed_curves(runs: list[RunSummary], baselines: list[Baseline], metric: str, image_dir: Path, name: str) -> Path:
    """A row per group: the metric against steps and against minutes; a thin line per seed, the
    mean over seeds bold (at the evaluations every seed has), the reference levels dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(run.group, run.changes, run.budget) for run in runs})
    figure, axes = plt.subplots(len(groups), 2, figsize=(10, 3.0 * len(groups) + 0.6), squeeze=False)
    cores = sorted({run.core for run in runs}, key=lambda core: (core != "rmc", core != "lstm", core))
    colours = {core: f"C{index}" for index, core in enumerate(cores)}  # the same colour for a core in every panel
    handles: dict[str, Any] = {}
    for row, (group, changes, budget) in zip(axes, groups):
        members = [run for run in runs if (run.group, run.changes, run.budget) == (group, changes, budget)]
        for core in sorted({run.core for run in members}, key=lambda c: (c != "rmc", c)):
            seeds = [run for run in members if run.core == core]
            colour = colours[core]
            common = sorted(set.intersection(*[{r["step"] for r in run.metrics} for run in seeds]))
            for run in seeds:
                steps = [r["step"] for r in run.metrics]
                values = [r[metric] for r in run.metrics]
                minutes = [r["seconds"] / 60 for r in run.metrics]
                row[0].plot(steps, values, color=colour, linewidth=0.7, alpha=0.55)
                row[1].plot(minutes, values, color=colour, linewidth=0.7, alpha=0.55)
            if common:
                at = [{r["step"]: r for r in run.metrics} for run in seeds]
                mean_value = [statistics.mean(records[step][metric] for records in at) for step in common]
                mean_minutes = [statistics.mean(records[step]["seconds"] / 60 for records in at) for step in common]
                (line,) = row[0].plot(common, mean_value, color=colour, linewidth=2.2)
                row[1].plot(mean_minutes, mean_value, color=colour, linewidth=2.2)
                handles[f"{core}: mean of {len(seeds)} seed(s) (thin: each seed)"] = line
        for style, (level, value) in zip(("--", ":", "-.", (0, (5, 1))), _levels(members, baselines, metric).items()):
            for axis in row:
                line = axis.axhline(value, color="gray" if level in ("chance", "random policy") else "tab:red", linestyle=style, linewidth=1)
            handles[level] = line
        title = group + ("" if changes == "-" else f"; {changes}")
        for axis, xlabel in zip(row, ("step", "minutes of training")):
            axis.set_title(f"{title} ({budget})", fontsize=9)
            axis.set_xlabel(xlabel)
            axis.set_ylabel(metric)
            axis.grid(alpha=0.3)
    figure.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(4, len(handles)), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.6 / (3.0 * len(groups) + 0.6), 1, 1))
    image_dir.mkdir(parents=True, exist_ok=True)
    path = image_dir / f"curves_{name}.png"
    figure.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(figure)
    return path


def run_table_lines(paths: Iterable[Path], runs: list[RunSummary]) -> list[str]:
    """Every run directory under `paths`, one row each, failures (no evaluation) included."""
    metric = get_task(runs[0].task_name).main_metric if runs else "metric"
    by_path = {run.path: run for run in runs}
    directories = sorted({config.parent for path in paths for config in Path(path).rglob(CONFIG_FILE)})
    header = ["run", "group", "core", "seed", "changes from preset", "budget", "steps", "minutes", f"final {metric}", f"best {metric}", "above every reference level"]
    rows = []
    for directory in directories:
        run = by_path.get(directory)
        if run is None:
            rows.append([f"`{directory.name}`", "-", "-", "-", "-", "-", "-", "-", "failed: no evaluation", "-", "-"])
            continue
        best = max(record[metric] for record in run.metrics)
        top = max(run.levels.values(), default=None)
        above = "-" if top is None else ("yes" if best >= top + 0.05 else "no")
        rows.append([f"`{directory.name}`", run.group, run.core, str(run.seed), run.changes, run.budget, str(run.final["step"]),
                     f"{run.final['seconds'] / 60:.1f}", f"{run.final[metric]:.3f}", f"{best:.3f}", above])
    lines = _table(header, rows)
    lines += ["", "'Above every reference level': the best evaluation at least 5 points above the highest of chance and the plateau.", ""]
    if runs:
        lines += [f"Machine: {_machine_line(runs)}.", ""]
    return lines


def write_section(paths: Iterable[Path], markdown: Path, section: str, kind: str, command: str) -> Path:
    """Replace the lines between `<!-- rrnn report: SECTION -->` and `<!-- end of rrnn report: SECTION -->`
    in `markdown` by a `kind` table of the runs under `paths`; images go beside the file.

    The markers must be there: a report never writes into a file that did not ask for it."""
    if kind not in SECTION_KINDS:
        raise ConfigError(f"unknown section kind {kind!r}; expected one of {', '.join(SECTION_KINDS)}")
    markdown = Path(markdown)
    begin, end = f"<!-- rrnn report: {section} -->", f"<!-- end of rrnn report: {section} -->"
    text = markdown.read_text() if markdown.is_file() else ""
    if begin not in text or end not in text or text.index(begin) > text.index(end):
        raise ConfigError(f"{markdown} has no section {section!r}: add the lines '{begin}' and '{end}' where it goes")
    paths = list(paths)
    runs, baselines = find_runs(paths)
    if not runs:
        raise ConfigError("no run directories with metrics found under " + ", ".join(str(p) for p in paths))
    stem = f"{markdown.stem}_{section}"
    body = [f"Generated by `{command}`; do not edit by hand.", ""]
    if kind == "comparison":
        body += comparison_lines(runs, baselines, markdown.parent, "", stem)
    else:
        body += run_table_lines(paths, runs)
    before, rest = text.split(begin, 1)
    after = rest.split(end, 1)[1]
    temporary = markdown.with_suffix(".md.tmp")
    temporary.write_text(before + begin + "\n" + "\n".join(body).rstrip() + "\n" + end + after)
    temporary.replace(markdown)
    return markdown
