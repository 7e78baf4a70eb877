"""Whole training steps of every registered core at equal size, per task (the demo's by default).

One training step as the loop takes it (fresh batch, forward, loss, backward, optimiser:
`Task.train_step`; for Mini Pac-Man one A2C unroll of the preset's envs), in CPU seconds of
this one-thread process, the cores interleaved round by round (`bench.task_step_times`);
prints a markdown table with each core's ratio to the LSTM, per task of `--tasks` (default:
nth-farthest, the demo's step).

    python benchmarks/bench_train_step.py [--preset cpu] [--rounds 7] [--steps-per-round 5]
    python benchmarks/bench_train_step.py --tasks nth-farthest,lte,lm,pacman \
        --lm-data ../shared/data/wikitext-2 --lm-adaptive-softmax      # every task's cpu shape

The lm task reads `--lm-data` (a WikiText-layout folder) or, without it, a synthetic corpus
(see below); `--lm-adaptive-softmax` trains it with the head of the committed LM runs
(adaptive softmax, output dropout 0.1) instead of the preset's tied full softmax. The
adaptive head's cut-offs come from word frequencies, so time it on real text.

With `--device cuda` it compares instead, per task of `--tasks` at the paper preset, the RMC
trained eagerly, the RMC with `--cuda-graphs on` (its calls through `GraphedModel`, as `rrnn
train` makes them) and the equal-size LSTM (eager: cuDNN), in wall time between
`torch.cuda.synchronize()` calls; `--markdown FILE` also writes the table between its markers
in FILE. The lm task trains on a synthetic corpus (uniformly random words of a vocabulary of
`--lm-vocab`, WikiText-2's size by default) at `--lm-batch` streams (the paper's 64 per GPU):

    python benchmarks/bench_train_step.py --device cuda --markdown docs/performance_cuda.md
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import torch

from relational_rnn.bench import task_step_times, training_setup, write_markdown
from relational_rnn.cores import CORES
from relational_rnn.runs import build_run_config

BEGIN = "<!-- rrnn bench_train_step cuda: begin (generated, do not edit by hand) -->"
END = "<!-- rrnn bench_train_step cuda: end -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default=None, help="default: cpu (paper with --device cuda)")
    parser.add_argument("--rounds", type=int, default=None, help="default: 7 (3 with --device cuda)")
    parser.add_argument("--steps-per-round", type=int, default=None, help="default: 5 (3 with --device cuda)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tasks", default=None, help="the tasks, comma-separated (default: nth-farthest; nth-farthest,lm with --device cuda)")
    parser.add_argument("--lm-vocab", type=int, default=33_278, help="words of the synthetic lm corpus")
    parser.add_argument("--lm-batch", type=int, default=64, help="with --device cuda: the lm's streams")
    parser.add_argument("--lm-data", type=Path, help="on the CPU: a WikiText-layout corpus for the lm task instead of the synthetic one")
    parser.add_argument("--lm-adaptive-softmax", action="store_true",
                        help="on the CPU: the lm with the committed runs' head (adaptive softmax, output dropout 0.1)")
    parser.add_argument("--markdown", type=Path, help="with --device cuda: also write the table into this file, between its markers")
    args = parser.parse_args()
    if args.device == "cuda":
        args.tasks = args.tasks or "nth-farthest,lm"
        cuda_comparison(args)
        return
    cpu_comparison(args)


def cpu_comparison(args: argparse.Namespace) -> None:
    """Every registered core per task at the preset: CPU ms per training step and the ratio to the LSTM."""
    preset, rounds, steps_per_round, warmup = args.preset or "cpu", args.rounds or 7, args.steps_per_round or 5, 3
    torch.set_num_threads(1)
    print(f"| task ({preset} preset) | core | CPU ms per training step (1 thread) | / LSTM |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for task_name in (args.tasks or "nth-farthest").split(","):
            overrides = []
            if task_name == "lm":
                # the steps of every core draw windows in turn from one counter: enough windows that none wraps
                steps = len(CORES) * (warmup + rounds * steps_per_round) + 2
                task = build_run_config("lm", preset, []).task
                corpus = args.lm_data or synthetic_corpus(Path(scratch), args.lm_vocab, task.batch_size * task.bptt * (steps + 2))
                overrides = [("data_dir", str(corpus))]
                if args.lm_adaptive_softmax:
                    overrides += [("adaptive_softmax", "true"), ("output_dropout", "0.1")]
            setups = {core: training_setup(build_run_config(task_name, preset, overrides + [("core", core)])) for core in CORES}
            seconds = task_step_times(setups, rounds, steps_per_round, warmup=warmup)
            label = task_name + (" (adaptive softmax)" if task_name == "lm" and args.lm_adaptive_softmax else "")
            for core, value in seconds.items():
                print(f"| {label} | {core} | {1000 * value:.1f} | {value / seconds['lstm']:.2f}x |", flush=True)
            del setups


def synthetic_corpus(root: Path, vocab: int, tokens: int, seed: int = 0) -> Path:
    """A WikiText-layout corpus of uniformly random words w0..w{vocab-1}, lines of 20 words."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    for split, count in (("train", tokens), ("valid", 2_000), ("test", 2_000)):
        lines = [" ".join(rng.choices(words, k=20)) for _ in range(count // 21 + 1)]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def cuda_comparison(args: argparse.Namespace) -> None:
    """RMC eager, RMC graphed and LSTM per task: ms per training step, steps/s, ratio to the LSTM."""
    from relational_rnn.train.cuda_graphs import GraphedModel

    device = torch.device(args.device)  # "cuda" (the CPU only to try this function out, with a fake capture)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_train_step.py: --device cuda, but torch sees no CUDA device")
    preset, rounds, steps_per_round, warmup = args.preset or "paper", args.rounds or 3, args.steps_per_round or 3, 2
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for task_name in [name for name in args.tasks.split(",") if name]:
            overrides = []
            if task_name == "lm":  # enough windows that no step reaches the shorter last one (a second capture)
                steps = 3 * (warmup + rounds * steps_per_round) + 2
                bptt = build_run_config("lm", preset, []).task.bptt
                corpus = synthetic_corpus(Path(scratch), args.lm_vocab, args.lm_batch * bptt * (steps + 2))
                overrides = [("data_dir", str(corpus)), ("batch_size", str(args.lm_batch))]
            runs = {"RMC": build_run_config(task_name, preset, overrides + [("core", "rmc")]),
                    "LSTM": build_run_config(task_name, preset, overrides + [("core", "lstm")])}
            setups = {"RMC, eager": training_setup(runs["RMC"], device)}
            task, model, optimizer, clip = training_setup(runs["RMC"], device)
            setups["RMC, --cuda-graphs on"] = (task, GraphedModel(model, strict=True), optimizer, clip)
            setups["LSTM (cuDNN), eager"] = training_setup(runs["LSTM"], device)
            seconds = task_step_times(setups, rounds, steps_per_round, warmup=warmup, cuda=device.type == "cuda")
            shape = describe(task_name, runs["RMC"], setups["RMC, eager"][0])
            for label, value in seconds.items():
                rows.append(f"| {task_name} ({shape}) | {label} | {1000 * value:.1f} | {1 / value:.1f} | "
                            f"{value / seconds['LSTM (cuDNN), eager']:.2f}x |")
            del setups, task, model, optimizer
            if device.type == "cuda":
                torch.cuda.empty_cache()
    table = "\n".join([
        f"Produced by `python benchmarks/bench_train_step.py --device cuda --tasks {args.tasks}` on "
        f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'the CPU'}, torch {torch.__version__}: one whole training step as `rrnn train` "
        f"takes it (batch, forward, loss, backward, clipping, Adam), wall time between `torch.cuda.synchronize()` "
        f"calls, the median of {rounds} rounds of {steps_per_round} steps after {warmup} warm-up steps (which "
        "include the capture), the variants taking turns in each round.",
        "",
        "| task (shape) | variant | ms / step | steps / s | x LSTM time |",
        "|---|---|---|---|---|",
        *rows,
    ])
    print(table)
    if args.markdown:
        write_markdown(args.markdown, table, BEGIN, END)
        print(f"wrote the table into {args.markdown}")


def describe(task_name: str, run, task) -> str:
    """The shape of a run in a few words, for the table."""
    if task_name == "lm":
        t = run.task
        return f"{run.preset} preset, batch {t.batch_size}, BPTT {t.bptt}, synthetic corpus of {len(task.vocabulary()):,} words"
    if task_name == "nth-farthest":
        return f"{run.preset} preset, K={run.task.num_vectors}, batch {run.task.batch_size}"
    return f"{run.preset} preset"


if __name__ == "__main__":
    main()
