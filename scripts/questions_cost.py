"""What a slot costs: time per training step and activation memory of the farthest-rung runs' configs.

For each run group given (a directory of seeds `NAME-seed0`, `NAME-seed1`, ...; the config of the
first seed is the group's), build the task and model of that config and measure, side by side
in one process on one torch thread:

  * the CPU time of one whole training step (fresh batch, forward, loss, backward, Adam step;
    process time, on one thread, so other jobs on the machine inflate it less than wall time),
    the median over rounds, the groups interleaved round by round so load hits all alike;
  * the activation memory: bytes of the distinct tensors autograd saves for backward in the
    core's forward (`bench.saved_activation_bytes`), per sample;

and read every seed's accuracy at the end of its wall-clock budget and at a common step from its
metrics.jsonl. Prints a markdown table and draws accuracy against time per step and against
activation memory (one small point per seed, the mean large).
Usage: python scripts/questions_cost.py --figure OUT.png [--step 2750] GROUP_DIR[:LABEL]...
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

from relational_rnn.bench import saved_activation_bytes, task_step_times, training_setup
from relational_rnn.runs import load_config
from relational_rnn.tasks import get_task
from relational_rnn.train.metrics import read_metrics


def group_runs(group: Path) -> list[Path]:
    """The seeds of a group: `group` is a prefix such as results/.../slots/slots8 (its -seedN dirs)."""
    runs = sorted(group.parent.glob(f"{group.name}-seed*"))
    if not runs:
        raise SystemExit(f"no runs {group}-seed*")
    return runs


def accuracies(runs: list[Path], step: int) -> tuple[list[float], list[float]]:
    """(accuracy at the end of each run, accuracy at `step` where logged)."""
    final, at_step = [], []
    for run_dir in runs:
        records = [r for r in read_metrics(run_dir / "metrics.jsonl") if "accuracy" in r]
        final.append(records[-1]["accuracy"])
        at_step += [r["accuracy"] for r in records if r["step"] == step]
    return final, at_step


def measure(groups: dict[str, list[Path]], rounds: int, steps_per_round: int) -> dict[str, dict]:
    runs = {label: load_config(seeds[0]) for label, seeds in groups.items()}
    setups = {label: training_setup(run) for label, run in runs.items()}
    seconds = task_step_times(setups, rounds, steps_per_round)
    results = {}
    for label, (task, model, _, _) in setups.items():
        inputs, _ = task.training_batch(0)
        _, saved = saved_activation_bytes(model.core, inputs)
        results[label] = {
            "ms_per_step": 1000 * seconds[label],
            "activation_mib_per_sample": saved / inputs.shape[0] / 2**20,
            "core_parameters": sum(p.numel() for p in model.core.parameters()),
            "model_parameters": sum(p.numel() for p in model.parameters()),
            "core": runs[label].core.core,
        }
    return results


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f} ({', '.join(f'{v:.3f}' for v in values)})"


def figure(rows: dict[str, dict], path: Path, chance: float, plateau: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, xlabel in ((axes[0], "ms_per_step", "CPU ms per training step (1 thread)"),
                            (axes[1], "activation_mib_per_sample", "activation memory, MiB per sample (core)")):
        for index, (label, row) in enumerate(rows.items()):
            colour = f"C{index}"
            ax.scatter([row[key]] * len(row["final"]), row["final"], s=12, color=colour, alpha=0.6)
            ax.scatter([row[key]], [statistics.mean(row["final"])], s=90, color=colour, edgecolor="black", label=label, zorder=3)
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
        ax.axhline(plateau, color="grey", linestyle=":", linewidth=1, label="blind to the vectors")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("test accuracy at the wall-clock budget")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="+", help="GROUP_DIR[:LABEL], e.g. results/runs/questions/slots/slots8:'8 slots'")
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--step", type=int, default=2750, help="the common step of the accuracy column")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps-per-round", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    groups = {}
    for spec in args.groups:
        path, _, label = spec.partition(":")
        groups[label or Path(path).name] = group_runs(Path(path))
    rows = measure(groups, args.rounds, args.steps_per_round)
    print(f"| run group | core | params (core / model) | CPU ms per training step | activation MiB per sample | "
          f"accuracy at the wall-clock budget | accuracy at step {args.step} |\n|---|---|---|---|---|---|---|")
    for label, runs in groups.items():
        row = rows[label]
        row["final"], at_step = accuracies(runs, args.step)
        print(f"| {label} | {row['core']} | {row['core_parameters']:,} / {row['model_parameters']:,} | {row['ms_per_step']:.1f} | "
              f"{row['activation_mib_per_sample']:.3f} | {mean_std(row['final'])} | {mean_std(at_step)} |")
    if args.figure:
        run = load_config(next(iter(groups.values()))[0])
        levels = get_task(run.task_name).reference_levels(run.task)
        figure(rows, args.figure, levels.get("chance", 0.0), levels.get("plateau (blind to the vectors)", 0.0))


if __name__ == "__main__":
    main(sys.argv[1:])
