"""Cost of one lm training step at the cpu preset: RMC vs LSTM, full vs adaptive softmax.

Times `--steps` optimiser steps (after one warm-up step) of the cpu preset on a corpus, in CPU
seconds of this process (so other load on a shared machine does not inflate them), with one
torch thread, and prints one JSON line per configuration.

    python benchmarks/bench_lm_step.py [--data ../shared/data/wikitext-2] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from relational_rnn.cores import count_parameters
from relational_rnn.runs import build_run_config
from relational_rnn.tasks import get_task

CONFIGS = [  # (core, adaptive softmax, cut-off fractions)
    ("rmc", "false", None),  # the preset's head: the full softmax tied to the embedding
    ("rmc", "true", "0.9,0.98"),
    ("rmc", "true", None),  # the preset's head until 2026-12 (docs/lm.md)
    ("lstm", "false", None),
    ("lstm", "true", None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/wikitext-2")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for core, adaptive, fractions in CONFIGS:
        options = [("data_dir", args.data), ("core", core), ("adaptive_softmax", adaptive)]
        if fractions:
            options.append(("cutoff_fractions", fractions))
        run = build_run_config("lm", "cpu", options)
        task = get_task("lm")(run.task, run.core, seed=0, device=torch.device("cpu"))
        torch.manual_seed(0)
        model = task.build_model()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(k: int) -> None:
            loss, _ = task.training_loss(model, k)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        step(0)
        started = time.process_time()
        for k in range(1, args.steps + 1):
            step(k)
        seconds = (time.process_time() - started) / args.steps
        tokens = run.task.batch_size * run.task.bptt
        print(json.dumps({
            "core": core, "adaptive_softmax": adaptive == "true", "cutoffs": task.cutoffs(),
            "parameters": count_parameters(model), "core_parameters": count_parameters(model.core),
            "cpu_ms_per_step": round(1000 * seconds), "tokens_per_cpu_second": round(tokens / seconds),
        }), flush=True)


if __name__ == "__main__":
    main()
