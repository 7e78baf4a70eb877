"""Learning to Execute data speed: samples/second generated and encoded.

Times ``LTEData.train_batch`` (generate + encode to tensors) for the program
task at L=5, n=2, batch 128 with the paper's ``mix`` curriculum, and the same
at full difficulty (``baseline``, the evaluation setting). Prints one JSON line.

    python benchmarks/bench_lte_data.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from relational_rnn.tasks.lte import LTEData


def rate(data: LTEData, seconds: float) -> float:
    data.train_batch(0, 0)  # warm up
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        data.train_batch(steps, 0)
        steps += 1
    return steps * data.batch_size / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = ap.parse_args()
    task, L, n, batch = "program", 5, 2, 128
    mix = rate(LTEData(task, L, n, "mix", batch), args.seconds)
    full = rate(LTEData(task, L, n, "baseline", batch), args.seconds)
    print(
        json.dumps(
            {
                "bench": "lte_data",
                "task": task,
                "max_length": L,
                "max_nesting": n,
                "batch_size": batch,
                "samples_per_s": round(mix),
                "curriculum": "mix",
                "samples_per_s_full_difficulty": round(full),
                "batches_per_s": round(mix / batch, 1),
                "machine": platform.machine(),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
