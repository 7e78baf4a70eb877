"""The demo's whole training step: the N-th farthest cpu preset, every registered core at equal size.

One training step as the loop takes it (fresh batch, forward, loss, backward, optimiser:
`Task.train_step`), in CPU seconds of this one-thread process, the cores interleaved round by
round (`bench.task_step_times`); prints a markdown table with each core's ratio to the LSTM.

    python benchmarks/bench_train_step.py [--preset cpu] [--rounds 7] [--steps-per-round 5]
"""

from __future__ import annotations

import argparse

import torch

from relational_rnn.bench import task_step_times, training_setup
from relational_rnn.cores import CORES
from relational_rnn.runs import build_run_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps-per-round", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    setups = {core: training_setup(build_run_config("nth-farthest", args.preset, [("core", core)])) for core in CORES}
    seconds = task_step_times(setups, args.rounds, args.steps_per_round)
    print(f"| core | CPU ms per training step (nth-farthest {args.preset} preset, 1 thread) | / LSTM |\n|---|---|---|")
    for core, value in seconds.items():
        print(f"| {core} | {1000 * value:.1f} | {value / seconds['lstm']:.2f}x |")


if __name__ == "__main__":
    main()
