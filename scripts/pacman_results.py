"""Mini Pac-Man's fixed-policy baselines, for the tables and curves of `rrnn report`.

    python scripts/pacman_results.py baselines results/runs/pacman/published   # baselines.json (+ baseline.json files for the report)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["baselines"])
    parser.add_argument("runs_dir", type=Path)
    args = parser.parse_args()
    print(f"wrote {write_baselines(args.runs_dir)}")


if __name__ == "__main__":
    main()
