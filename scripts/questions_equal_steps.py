"""Every run group of docs/questions.md at equal step counts, and the ablation bars.

The report tables compare each group with itself at its own common step count; this puts every
group of the farthest rung at the same steps (1,500 and 2,750; evaluations every 250 steps)
and at the end of its 5-minute budget, mean ± std over its seeds with each seed listed, and
draws the bars: one bar per group (the seeds' mean), a dot per seed, chance and the 33% plateau
(blind to the vectors) drawn.
Usage: python scripts/questions_equal_steps.py [--figure docs/questions_bars.png]
       python scripts/questions_equal_steps.py --families lte-addition --metric char_accuracy --steps 1250 [--figure F]
       (the Learning to Execute runs: one family, per-character accuracy; the lines are the task's reference levels, none for LTE)
"""

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from relational_rnn.runs import load_config
from relational_rnn.tasks import get_task

ROOT = Path("results/runs/questions")
FAMILIES = ("attention", "binding", "slots", "baselines")  # the farthest-rung groups (lte-addition is another task)
STEPS = (1500, 2750)


def read_groups(families=FAMILIES, metric="accuracy") -> dict[str, list[dict[int, float]]]:
    """group name -> per seed {step: test metric}, in the order of `families`."""
    groups = defaultdict(list)
    for family in families:
        natural = lambda path: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]
        for run in sorted((ROOT / family).glob("*-seed*"), key=natural):
            records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
            groups[f"{family}/{run.name.rsplit('-seed', 1)[0]}"].append({r["step"]: r[metric] for r in records if metric in r})
    return groups


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})"


def reference_levels(family: str) -> dict[str, float]:
    """The task's named levels (chance, a plateau) for the config of the family's first run."""
    run = load_config(sorted((ROOT / family).glob("*-seed*"))[0])
    return get_task(run.task_name).reference_levels(run.task)


def figure(groups: dict[str, list[dict[int, float]]], path: Path, families, step: int, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for ax, (title, read) in zip(axes, ((f"at {step:,} steps", lambda seed: seed.get(step)),
                                        ("at the 5-minute budget", lambda seed: seed[max(seed)]))):
        for x, name in enumerate(names):
            values = [v for v in map(read, groups[name]) if v is not None]
            if len(values) < len(groups[name]):
                continue  # a group that never reached the step (16 slots in 5 minutes)
            family = families.index(name.split("/")[0])
            ax.bar(x, statistics.mean(values), color=f"C{family}", alpha=0.55, width=0.7)
            ax.scatter([x] * len(values), values, color="black", s=10, zorder=3)
        for (level, value), style in zip(reference_levels(families[0]).items(), ("--", ":", "-.")):
            ax.axhline(value, color="grey", linestyle=style, linewidth=1, label=level)
        ax.set_xticks(range(len(names)), [name.split("/")[1] for name in names], rotation=60, ha="right", fontsize=8)
        ax.set_title(f"test {metric.replace('_', ' ')} {title}")
        ax.set_ylim(0, 1)
    handles = [plt.Rectangle((0, 0), 1, 1, color=f"C{i}", alpha=0.55) for i in range(len(families))]
    lines, labels = axes[1].get_legend_handles_labels()
    axes[1].legend(handles + lines, list(families) + labels, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    axes[0].set_ylabel(f"{metric.replace('_', ' ')} (bar: mean of 3 seeds; dots: seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", type=Path, help="write the bars here")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), help="run families under results/runs/questions")
    parser.add_argument("--metric", default="accuracy")
    parser.add_argument("--steps", nargs="+", type=int, default=list(STEPS), help="the equal steps; the figure uses the last")
    args = parser.parse_args()
    groups = read_groups(args.families, args.metric)
    metric = args.metric.replace("_", " ")
    print("| run group | " + " | ".join(f"{metric} at step {s}" for s in args.steps) + f" | {metric} at the 5-minute budget |")
    print("|---|" + "---|" * (len(args.steps) + 1))
    for name, seeds in groups.items():
        cells = [spread([seed[s] for seed in seeds]) if all(s in seed for seed in seeds) else "-" for s in args.steps]
        cells.append(spread([seed[max(seed)] for seed in seeds]))
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.figure:
        figure(groups, args.figure, args.families, args.steps[-1], args.metric)


if __name__ == "__main__":
    main()
