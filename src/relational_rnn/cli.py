"""The `rrnn` command line: parse, build the config, call the layer below.

    rrnn train TASK --out DIR [--core rmc|lstm] [--preset cpu|paper] [--steps N | --minutes M]
               [--seed S] [--resume] [--OPTION VALUE ...]
    rrnn eval DIR [--OPTION VALUE ...]                 (lm: --split valid|test)
    rrnn generate DIR --prompt "..." --tokens N --temperature T [--seed S]
    rrnn play DIR [--out episode.gif] [--seed S]
    rrnn presets TASK
    rrnn report RUN_DIR... --out docs
    rrnn inspect DIR --samples K --out DIR
    rrnn demo
    rrnn bench [--cases ...] [--threads N] [--markdown docs/performance.md]

Any config field can be set as `--field-name VALUE` (e.g. `--mem-slots 4 --lr 3e-4`), or as
`--section.field VALUE` where a name is in two sections.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from .train.checkpoint import CheckpointError
from .train.config import ConfigError, RunConfig
from .train.loop import CONFIG_FILE, RunDirectoryError, evaluate_run, load_config, train


class UsageError(ValueError):
    pass


def _parse_overrides(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """['--mem-slots', '4', '--lr=1e-3'] -> [('mem_slots', '4'), ('lr', '1e-3')]."""
    pairs, index = [], 0
    tokens = list(tokens)
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--") or len(token) == 2:
            raise UsageError(f"unexpected argument {token!r}; options look like --name VALUE")
        if "=" in token:
            name, value = token[2:].split("=", 1)
            index += 1
        else:
            if index + 1 >= len(tokens):
                raise UsageError(f"option {token} needs a value")
            name, value = token[2:], tokens[index + 1]
            index += 2
        pairs.append((name.replace("-", "_"), value))
    return pairs


def build_run_config(task_name: str, preset: str, overrides: Sequence[tuple[str, Any]]) -> RunConfig:
    """The preset's config with `overrides` applied in order."""
    from .tasks import get_task

    task_type = get_task(task_name)
    presets = task_type.presets()
    if preset not in presets:
        raise ConfigError(f"unknown preset {preset!r} for {task_name}; expected one of {', '.join(presets)}")
    chosen = presets[preset]
    run = RunConfig(
        task_name=task_name,
        preset=preset,
        task=dataclasses.replace(chosen.task),
        core=dataclasses.replace(chosen.core),
        train=dataclasses.replace(chosen.train),
    )
    for name, value in overrides:
        run.override(name, value)
    return run


def command_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    overrides = _parse_overrides(extra)
    named = [("core", args.core), ("steps", args.steps), ("minutes", args.minutes), ("seed", args.seed), ("threads", args.threads), ("data_dir", args.data)]
    given = [(name, value) for name, value in named if value is not None]
    if args.minutes is not None and args.steps is None:
        given.append(("steps", "none"))  # a time budget alone
    out_dir = Path(args.out)
    if args.resume and (out_dir / CONFIG_FILE).exists():
        run = load_config(out_dir)  # continue the saved run; options given now may extend its budget
        if run.task_name != args.task:
            raise UsageError(f"{out_dir} holds a {run.task_name} run, not {args.task}")
        for name, value in given + overrides:
            run.override(name, value)
    else:
        run = build_run_config(args.task, args.preset, given + overrides)
    record = train(run, out_dir, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from rank 0
        print(json.dumps({"run": str(out_dir), **record}))
    return 0


def command_eval(args: argparse.Namespace, extra: Sequence[str]) -> int:
    options = dict(_parse_overrides(extra))
    results = evaluate_run(Path(args.run_dir), device=args.device, **options)
    print(json.dumps({"run": args.run_dir, **results}))
    return 0


def command_presets(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .tasks import get_task

    if extra:
        raise UsageError(f"unexpected arguments {' '.join(extra)}")
    for name, preset in get_task(args.task).presets().items():
        print(f"{name}: {preset.description}")
        for section in ("task", "core", "train"):
            print(f"  {section}: {json.dumps(dataclasses.asdict(getattr(preset, section)))}")
    return 0


def command_demo(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Train an RMC and an equal-size LSTM on cpu-scale N-th farthest and print both test accuracies."""
    overrides = _parse_overrides(extra)
    results = {}
    for core in ("rmc", "lstm"):
        out_dir = Path(args.out) / f"nth-farthest-{core}"
        run = build_run_config("nth-farthest", "cpu", [("core", core), ("minutes", args.minutes), ("steps", "none"), *overrides])
        resume = (out_dir / "checkpoint.pt").exists()
        print(f"== N-th farthest, cpu preset, {core.upper()} core, {args.minutes} minutes -> {out_dir}", flush=True)
        results[core] = train(run, out_dir, resume=resume)
    chance = 1 / run.task.num_vectors
    print()
    print(f"N-th farthest (cpu preset, K={run.task.num_vectors}, d={run.task.vector_dim}), test accuracy on {run.task.eval_samples} fixed samples:")
    for core, record in results.items():
        print(f"  {core.upper():4s} {record['accuracy']:.3f}  after {record['step']} steps, {record['seconds'] / 60:.1f} min")
    print(f"  chance {chance:.3f}; the paper (K=8, d=16, GPU scale): RMC 0.91, LSTM < 0.30")
    return 0


def _trained_task_with(run_dir: str, device: Optional[str], method: str, refusal: str):
    """(task, model, checkpoint) of a trained run whose task has `method`; a UsageError saying `refusal` if not."""
    from .train.loop import load_trained

    run, task, model, state = load_trained(Path(run_dir), device=device)
    if not hasattr(task, method):
        raise UsageError(f"{run_dir} holds a {run.task_name} run; {refusal}")
    return task, model, state


def command_play(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Render one episode of a trained agent to an animated GIF (tasks with a `play` method: pacman)."""
    if extra:
        raise UsageError(f"unexpected arguments {' '.join(extra)}")
    task, model, state = _trained_task_with(args.run_dir, args.device, "play", "only pacman runs can be played")
    seed = None if args.seed is None else int(args.seed)
    print(json.dumps({"run": args.run_dir, "step": state["step"], **task.play(model, Path(args.out), seed=seed)}))
    return 0


def command_generate(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Sample text from a trained language model (tasks with a `generate` method: lm)."""
    if extra:
        raise UsageError(f"unexpected arguments {' '.join(extra)}")
    task, model, _ = _trained_task_with(args.run_dir, args.device, "generate", "only lm runs can generate text")
    words = task.generate(model, args.prompt, tokens=args.tokens, temperature=args.temperature, seed=args.seed)
    print(" ".join([args.prompt.strip(), *words]).strip().replace(" <eos> ", "\n").replace("<eos>", "\n"))
    return 0


def command_inspect(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Attention pictures of a trained RMC run."""
    from .inspect import inspect_run

    if extra:
        raise UsageError(f"unexpected arguments {' '.join(extra)}")
    for path in inspect_run(Path(args.run_dir), args.samples, Path(args.out)):
        print(f"wrote {path}")
    return 0


def command_report(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .report import write_report

    if extra:
        raise UsageError(f"unexpected arguments {' '.join(extra)}")
    command = "rrnn report " + " ".join([*args.run_dirs, "--out", args.out])
    path = write_report([Path(p) for p in args.run_dirs], Path(args.out), command)
    print(f"wrote {path}")
    return 0


def command_bench(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """The core benchmark suite (relational_rnn.bench, also benchmarks/bench_cores.py); options pass through."""
    from .bench import main as bench_main

    return bench_main(list(extra))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rrnn", description="Relational recurrent neural networks: train, evaluate, inspect.")
    commands = parser.add_subparsers(dest="command", required=True)

    train_parser = commands.add_parser("train", help="train a task; unknown --name VALUE options set config fields")
    train_parser.add_argument("task", help="nth-farthest, lte, lm or pacman")
    train_parser.add_argument("--out", required=True, help="run directory")
    train_parser.add_argument("--core", choices=["rmc", "lstm"], help="recurrent core (default: the preset's, rmc)")
    train_parser.add_argument("--preset", default="cpu", help="cpu (minutes on a laptop) or paper (the paper's scale)")
    budget = train_parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", help="optimiser steps")
    budget.add_argument("--minutes", help="training minutes")
    train_parser.add_argument("--seed")
    train_parser.add_argument("--threads", help="torch threads (0: one per core)")
    train_parser.add_argument("--data", help="corpus directory (lm); the same as --data-dir")
    train_parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train_parser.set_defaults(handler=command_train)

    eval_parser = commands.add_parser("eval", help="reload a run's checkpoint and report its metric on the fixed evaluation set")
    eval_parser.add_argument("run_dir")
    eval_parser.add_argument("--device", choices=["cpu", "cuda"])
    eval_parser.set_defaults(handler=command_eval)

    presets_parser = commands.add_parser("presets", help="show a task's presets")
    presets_parser.add_argument("task")
    presets_parser.set_defaults(handler=command_presets)

    play_parser = commands.add_parser("play", help="render one episode of a trained pacman agent to an animated GIF")
    play_parser.add_argument("run_dir")
    play_parser.add_argument("--out", default="episode.gif", help="GIF file to write")
    play_parser.add_argument("--seed", type=int, help="environment seed (default: the task's eval_seed)")
    play_parser.add_argument("--device", choices=["cpu", "cuda"])
    play_parser.set_defaults(handler=command_play)

    generate_parser = commands.add_parser("generate", help="sample text from a trained lm run")
    generate_parser.add_argument("run_dir")
    generate_parser.add_argument("--prompt", default="", help="words to continue (unknown words read as <unk>)")
    generate_parser.add_argument("--tokens", type=int, default=50, help="words to sample")
    generate_parser.add_argument("--temperature", type=float, default=1.0, help="divides the log-probabilities; < 1 is more conservative")
    generate_parser.add_argument("--seed", type=int, default=0)
    generate_parser.add_argument("--device", choices=["cpu", "cuda"])
    generate_parser.set_defaults(handler=command_generate)

    inspect_parser = commands.add_parser("inspect", help="attention maps of a trained RMC run, as PNGs")
    inspect_parser.add_argument("run_dir")
    inspect_parser.add_argument("--samples", type=int, default=4, help="evaluation samples to draw")
    inspect_parser.add_argument("--out", required=True, help="folder for the PNGs")
    inspect_parser.set_defaults(handler=command_inspect)

    report_parser = commands.add_parser("report", help="write results.md and learning curves from run directories")
    report_parser.add_argument("run_dirs", nargs="+", help="run directories, or folders holding them")
    report_parser.add_argument("--out", default="docs", help="folder for results.md and the plots")
    report_parser.set_defaults(handler=command_report)

    demo_parser = commands.add_parser("demo", help="cpu-scale N-th farthest, RMC and LSTM, printing both test accuracies")
    demo_parser.add_argument("--out", default="runs/demo")
    demo_parser.add_argument("--minutes", default="4", help="training minutes per core")
    demo_parser.set_defaults(handler=command_demo)

    bench_parser = commands.add_parser(
        "bench", add_help=False, help="benchmark the RMC paths against an equal-size LSTM (rrnn bench --help)"
    )
    bench_parser.set_defaults(handler=command_bench)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "eval", "demo", "presets", "bench"):
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    try:
        return args.handler(args, extra)
    except (ValueError, OSError, CheckpointError, RunDirectoryError, FloatingPointError) as error:  # bad input: one line, no traceback
        print(f"rrnn: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"rrnn: interrupted: {interrupt}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
