"""Mini Pac-Man throughput: environment steps per second under a random policy.

Usage: python benchmarks/bench_pacman_env.py [--steps N] [--mode MODE]
Prints one JSON line: steps/s for obs="full" and obs="viewport" (single
process, one environment, resets included, policy actions pre-drawn).
"""

import argparse
import json
import platform
import time

import numpy as np

from relational_rnn.envs import MiniPacman


def steps_per_second(obs: str, mode: str, steps: int, seed: int = 0) -> tuple[float, int]:
    env = MiniPacman(mode=mode, obs=obs)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(5, size=steps).tolist()
    episodes = 0
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
            episodes += 1
    return steps / (time.perf_counter() - start), episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--mode", default="regular")
    args = parser.parse_args()
    result = {"bench": "pacman_env", "policy": "random", "mode": args.mode, "steps": args.steps}
    for obs in ("full", "viewport"):
        sps, episodes = steps_per_second(obs, args.mode, args.steps)
        result[f"{obs}_steps_per_s"] = round(sps)
        result[f"{obs}_episodes"] = episodes
    result["numpy"] = np.__version__
    result["python"] = platform.python_version()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
