"""Mini Pac-Man results helpers: fixed-policy baselines and learning curves against env steps.

    python scripts/pacman_results.py baselines results/runs/pacman/published   # baselines.json (+ baseline.json files for the report)
    python scripts/pacman_results.py curves results/runs/pacman/published --out docs/pacman_curves.png
    python scripts/pacman_results.py table results/runs/pacman/published       # the markdown table of docs/pacman.md

Baselines play the cpu preset's evaluation episodes (the same env seeds as every run's
`episode_return`) with a uniformly random policy and with "always stay".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from relational_rnn.envs.pacman import OBS_TYPES
from relational_rnn.runs import build_run_config
from relational_rnn.tasks.pacman import PacmanTask, baseline_returns
from relational_rnn.train import read_metrics


def write_baselines(out_dir: Path, preset: str = "cpu") -> Path:
    """`out_dir/baselines.json` with both policies, and one `baseline.json` per (obs, policy) for `rrnn report`."""
    config = build_run_config("pacman", preset, []).task
    results = {policy: baseline_returns(config, policy) for policy in ("random", "stay")}
    fresh = {f"{policy}_100ep": baseline_returns(config, policy, episodes=100, seed=20000) for policy in ("random", "stay")}
    record = {
        "task_name": "pacman", "preset": preset, "task_config": dataclasses.asdict(config),
        "note": "the policies ignore the observation, so these numbers hold for obs=full and obs=viewport alike",
        **results,
        **fresh,  # the 100 fresh episodes of each run's eval_100ep.json
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "baselines.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    for obs in OBS_TYPES:
        for policy, result in results.items():
            folder = out_dir / "baselines" / f"{obs}-{policy}"
            folder.mkdir(parents=True, exist_ok=True)
            metrics = {k: result[k] for k in ("episode_return", "episode_return_std", "episode_length")}
            group = PacmanTask.results_group(dataclasses.replace(config, obs=obs))  # "full, rules=published"
            entry = {"task_name": "pacman", "preset": preset, "group": group, "name": f"{policy} policy", "metrics": metrics}
            (folder / "baseline.json").write_text(json.dumps(entry, indent=2) + "\n")
    return path


def plot_curves(runs_dir: Path, out: Path) -> Path:
    """Evaluation episode return against environment steps, one panel per observation setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baselines = json.loads((runs_dir / "baselines.json").read_text()) if (runs_dir / "baselines.json").exists() else {}
    figure, axes = plt.subplots(1, len(OBS_TYPES), figsize=(10, 3.6), squeeze=False)
    for axis, obs in zip(axes.flat, OBS_TYPES):
        for run_dir in sorted(runs_dir.glob(f"{obs}-*")):
            if not (run_dir / "metrics.jsonl").exists():
                continue
            records = read_metrics(run_dir / "metrics.jsonl")
            steps = [r["env_steps"] for r in records]
            line, = axis.plot(steps, [r["episode_return"] for r in records], label=f"{run_dir.name} (eval)")
            train = [(r["env_steps"], r["train_episode_return"]) for r in records if r.get("train_episode_return") is not None]
            axis.plot(*zip(*train), linestyle=":", color=line.get_color(), label=f"{run_dir.name} (train)")
        for policy, style in (("random", "--"), ("stay", "-.")):
            if policy in baselines:
                axis.axhline(baselines[policy]["episode_return"], color="grey", linestyle=style, label=f"{policy} policy")
        axis.set_title(f"Mini Pac-Man, regular mode, obs={obs}", fontsize=10)
        axis.set_xlabel("environment steps")
        axis.set_ylabel("episode return")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90, metadata={"Software": None})
    plt.close(figure)
    return out


def summary_table(runs_dir: Path) -> str:
    """Markdown: per run, the last evaluation, its best, the budget, the speed; then the baselines."""
    lines = ["| run | agent parameters | env steps | eval return (last, 32 ep.) | best eval return | "
             "train return (last interval) | return on 100 fresh ep. (mean +- std) | training time | env steps/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run_dir in sorted(p for p in runs_dir.iterdir() if (p / "metrics.jsonl").exists()):
        records = read_metrics(run_dir / "metrics.jsonl")
        last = records[-1]
        parameters = json.loads((run_dir / "config.json").read_text())["parameters"]["model"]
        fresh_path = run_dir / "eval_100ep.json"
        fresh = json.loads(fresh_path.read_text()) if fresh_path.exists() else None
        fresh_text = f"{fresh['episode_return']:.1f} +- {fresh['episode_return_std']:.1f}" if fresh else "-"
        lines.append(
            f"| {run_dir.name} | {parameters:,} | {last['env_steps']:,} | {last['episode_return']:.1f} | "
            f"{max(r['episode_return'] for r in records):.1f} | {last['train_episode_return']:.1f} | {fresh_text} | "
            f"{last['seconds'] / 60:.1f} min | {last['env_steps'] / last['seconds']:.0f} |"
        )
    if (runs_dir / "baselines.json").exists():
        baselines = json.loads((runs_dir / "baselines.json").read_text())
        for policy in ("random", "stay"):
            b, fresh = baselines[policy], baselines.get(f"{policy}_100ep")
            fresh_text = f"{fresh['episode_return']:.1f} +- {fresh['episode_return_std']:.1f}" if fresh else "-"
            lines.append(f"| {policy} policy | - | - | {b['episode_return']:.1f} | - | - | {fresh_text} | - | - |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["baselines", "curves", "table"])
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/pacman_curves.png"))
    args = parser.parse_args()
    if args.what == "table":
        print(summary_table(args.runs_dir))
        return
    path = write_baselines(args.runs_dir) if args.what == "baselines" else plot_curves(args.runs_dir, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
