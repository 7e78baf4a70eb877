"""The `rrnn` command line: parse, build the config, call the layer below.

    rrnn train TASK --out DIR [--core NAME] [--preset cpu|paper] [--steps N | --minutes M]
               [--seed S] [--resume] [--OPTION VALUE ...]
    rrnn eval DIR [--OPTION VALUE ...]                 (lm: --split valid|test)
    rrnn generate DIR --prompt "..." --tokens N --temperature T [--seed S]
    rrnn play DIR [--out episode.gif] [--seed S]
    rrnn presets TASK
    rrnn report RUN_DIR... --out DIR               (--out docs rewrites the committed docs/results.md)
    rrnn report RUN_DIR... --into docs/nth_farthest.md --section ladder [--kind comparison|runs]
    rrnn inspect DIR --samples K --out DIR
    rrnn demo
    rrnn bench [--cases ...] [--threads N] [--markdown docs/performance.md]
    rrnn --version

Any config field can be set as `--field-name VALUE` (e.g. `--mem-slots 4 --lr 3e-4`), or as
`--section.field VALUE` where a name is in two sections.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

# torch and everything built on it are imported inside the commands, so that a Ctrl-C while they
# load (seconds) reaches `main`'s handling: one line, not a traceback.
from . import __version__  # the package's one version (pyproject.toml reads it too); imports no torch
from .usage import OneLineParser  # argparse with one-line usage errors

CONFIG_FILE = "config.json"  # = train.loop.CONFIG_FILE (not imported here, see above)


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


def __getattr__(name: str) -> Any:
    """`relational_rnn.cli.build_run_config`, where it was before `relational_rnn.runs` (imported on first use: it needs torch)."""
    if name == "build_run_config":
        from .runs import build_run_config

        return build_run_config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _HelpAction(argparse.Action):
    """-h/--help that prints the parser's help and then `more_help`, text built only when asked for
    (it reads the task registry, which imports torch: `rrnn` does not at start-up)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, default: Any = argparse.SUPPRESS, help: Optional[str] = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Optional[str] = None) -> NoReturn:
        sys.stdout.write(parser.format_help() + self.more_help(parser, namespace))
        parser.exit(0)

    def more_help(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> str:
        raise NotImplementedError


class _TrainHelp(_HelpAction):
    """`rrnn train [TASK] --help`: the options, then (given a task) every config field of the task,
    core and train sections as an option, with each preset's value and the field's description."""

    def more_help(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> str:
        task = getattr(namespace, "task", None)
        if task is None:
            return "\nrrnn train TASK --help lists TASK's config fields (tasks: nth-farthest, lte, lm, pacman).\n"
        from .extras import MissingExtraError

        try:
            return "\n" + config_fields_help(task)
        except (ValueError, MissingExtraError) as error:  # an unknown task, or one whose extra is not installed
            parser.exit(2, f"{parser.prog}: error: {error}\n")


class _EvalHelp(_HelpAction):
    """`rrnn eval --help`: the options, then each task's evaluation options (`Task.eval_options`)."""

    def more_help(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> str:
        return "\n" + eval_options_help()


def config_fields_help(task_name: str, width: int = 100) -> str:
    """Every config field of a task's run as its option: each preset's value and the field's description."""
    import textwrap

    from .config import field_descriptions
    from .tasks import get_task

    presets = get_task(task_name).presets()
    sections = {name: {preset: getattr(chosen, name) for preset, chosen in presets.items()} for name in ("task", "core", "train")}
    owners: dict[str, int] = {}
    for configs in sections.values():
        for f in dataclasses.fields(next(iter(configs.values()))):
            owners[f.name] = owners.get(f.name, 0) + 1
    lines = [f"config fields of {task_name} (set any as --name VALUE; values: {', '.join(f'{p} preset' for p in presets)}):"]
    for section, configs in sections.items():
        config_type = type(next(iter(configs.values())))
        lines.append(f"\n{section}:")
        for name, description in field_descriptions(config_type).items():
            option = f"--{section}.{name}" if owners[name] > 1 else f"--{name.replace('_', '-')}"
            values = " | ".join(f"{preset} {json.dumps(getattr(config, name))}" for preset, config in configs.items())
            lines.append(f"  {option}  [{values}]")
            if description:
                lines.extend(textwrap.wrap(description, width, initial_indent="      ", subsequent_indent="      "))
    return "\n".join(lines) + "\n"


def eval_options_help() -> str:
    """Each registered task's evaluation options (`Task.eval_options`), for `rrnn eval --help`."""
    from .tasks import MISSING, TASKS

    none = {"none:": "the fixed evaluation set of the run's config"}
    options_of = {name: task_type.eval_options or none for name, task_type in TASKS.items()}
    name_width = max(len(name) for name in [*TASKS, *MISSING])
    option_width = max(len(option) for options in options_of.values() for option in options)
    lines = ["evaluation options, by the run's task (strings, as --name VALUE):"]
    for name, options in options_of.items():
        for index, (option, description) in enumerate(options.items()):
            lines.append(f"  {name if index == 0 else '':{name_width}}  {option:{option_width}}  {description}")
    for name in MISSING:
        lines.append(f"  {name:{name_width}}  (its optional dependencies are not installed)")
    return "\n".join(lines) + "\n"


def command_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .cores import CORES
    from .runs import build_run_config, load_config, train_run

    if args.core is not None and args.core not in CORES:  # the registry, not argparse choices: it needs torch
        raise UsageError(f"unknown core {args.core!r}; the cores are {', '.join(CORES)}")
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
    record = train_run(run, out_dir, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from rank 0
        print(json.dumps({"run": str(out_dir), **record}))
    return 0


def command_eval(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .runs import evaluate_run

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


DEMO_QUESTION = "farthest"  # the rung of the ladder that separates the cores at cpu scale (docs/nth_farthest.md)
NTH_FARTHEST_RUNS = Path(__file__).resolve().parents[2] / "results" / "runs" / "nth-farthest"  # in a clone of the repo
FULL_QUESTION_RUNS = {  # what the demo prints beside its rung: the committed runs on the paper's full question
    "no curriculum": "ladder/paper-{core}-seed*",
    "curriculum farthest -> paper": "search/s*-paper-{core}-farthest-curriculum-seed*",
    "curriculum recall -> farthest -> paper (batch 64, Adam 1e-3)": "search/s*-paper-{core}-b64-lr1e-3-question-curriculum-seed*",
}


def demo_verdict(accuracies: dict[str, float], plateau: float, margin: float = 0.05) -> str:
    """One line from the numbers: who left the plateau (by `margin`) and by how much the RMC leads."""
    left = [core.upper() for core, value in accuracies.items() if value >= plateau + margin]
    gap = 100 * (accuracies["rmc"] - accuracies["lstm"])
    if not left:
        return f"neither left the plateau ({plateau:.3f}); RMC {gap:+.1f} points against the LSTM"
    who = "both left the plateau" if len(left) == 2 else f"only the {left[0]} left the plateau"
    lead = f"RMC ahead by {gap:.1f} points" if gap > 0 else f"LSTM ahead by {-gap:.1f} points"
    return f"{lead}; {who} ({plateau:.3f})"


def _measured_summary(pattern: str) -> Optional[str]:
    """'RMC 0.495 ± 0.017, LSTM 0.488 ± 0.007 (3 seeds each, 5 min)': the final test accuracies of
    the committed runs matching `pattern` ({core} filled in), or None when they are not here."""
    import statistics

    from .train.metrics import read_metrics

    finals: dict[str, list[float]] = {}
    minutes = set()
    for core in ("rmc", "lstm"):
        for run_dir in sorted(NTH_FARTHEST_RUNS.glob(pattern.format(core=core))):
            records = read_metrics(run_dir / "metrics.jsonl")
            if records:
                finals.setdefault(core, []).append(records[-1]["accuracy"])
                minutes.add(json.loads((run_dir / CONFIG_FILE).read_text())["train"]["minutes"])
    if set(finals) != {"rmc", "lstm"}:
        return None
    spread = lambda v: f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"  # noqa: E731
    seeds = sorted({len(values) for values in finals.values()})
    return (f"RMC {spread(finals['rmc'])}, LSTM {spread(finals['lstm'])} ({'/'.join(map(str, seeds))} seeds each, "
            f"{', '.join(f'{m:g}' for m in sorted(minutes))} min)")


def command_demo(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Train an RMC and an equal-size LSTM side by side (one process and one core each) on a rung of
    cpu-scale N-th farthest; print both test accuracies, chance, the plateau and a computed verdict."""
    import subprocess
    import time

    from .runs import build_run_config
    from .tasks.nth_farthest import chance_and_plateau
    from .train.metrics import read_metrics

    overrides = _parse_overrides(extra)
    question = args.question
    run = build_run_config("nth-farthest", "cpu", [("question", question), ("minutes", args.minutes), ("steps", "none"), *overrides])
    run.train.validate()
    run.task.validate()
    processes, out_dirs = {}, {}
    started = time.perf_counter()
    print(f"== N-th farthest, cpu preset, question={question} (K={run.task.num_vectors}, d={run.task.vector_dim}): "
          f"RMC and an equal-size LSTM side by side, {args.minutes} min each", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for core in ("rmc", "lstm"):
        out_dirs[core] = Path(args.out) / f"nth-farthest-{question}-{core}"
        command = [sys.executable, "-m", "relational_rnn.cli", "train", "nth-farthest", "--out", str(out_dirs[core]), "--core", core,
                   "--question", question, "--minutes", str(args.minutes), "--progress", "false", *extra]
        if (out_dirs[core] / "checkpoint.pt").exists():
            command.append("--resume")
        log = (Path(args.out) / f"nth-farthest-{question}-{core}.log").open("w")
        processes[core] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        print(f"   {core.upper()} -> {out_dirs[core]} (log: {log.name})", flush=True)
    failed = [core for core, process in processes.items() if process.wait() != 0]
    if failed:
        raise UsageError(f"the {' and '.join(failed)} run failed; see its log in {args.out}")
    results = {core: read_metrics(out_dirs[core] / "metrics.jsonl")[-1] for core in processes}
    chance, plateau = chance_and_plateau(question, run.task.num_vectors)
    print()
    print(f"N-th farthest, question={question} (cpu preset, K={run.task.num_vectors}, d={run.task.vector_dim}), "
          f"test accuracy on {run.task.eval_samples} fixed samples:")
    for core, record in results.items():
        print(f"  {core.upper():4s} {record['accuracy']:.3f}  after {record['step']} steps, {record['seconds'] / 60:.1f} min")
    print(f"  chance {chance:.3f}; plateau {plateau:.3f} (the best a model blind to the vectors can do)")
    print(f"  verdict: {demo_verdict({core: record['accuracy'] for core, record in results.items()}, plateau)}")
    summaries = {name: _measured_summary(pattern) for name, pattern in FULL_QUESTION_RUNS.items()}
    if question != "paper" and any(summaries.values()):
        print(f"  the paper's full question, measured ({NTH_FARTHEST_RUNS.relative_to(NTH_FARTHEST_RUNS.parents[2])}, cpu preset, final test accuracy):")
        for name, summary in summaries.items():
            if summary:
                print(f"    {name}: {summary}")
    print(f"  the paper (K=8, d=16, GPU scale, full question): RMC 0.91, LSTM < 0.30; wall-clock {(time.perf_counter() - started) / 60:.1f} min")
    return 0


def _trained_task_with(run_dir: str, device: Optional[str], method: str, refusal: str):
    """(task, model, checkpoint) of a trained run whose task has `method`; a UsageError saying `refusal` if not."""
    from .runs import load_trained

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
    from .report import write_report, write_section

    if extra:
        raise UsageError(f"unexpected arguments {' '.join(extra)}")
    if args.into is not None:
        if args.section is None:
            raise UsageError("--into needs --section NAME (the marked section of the file to rewrite)")
        command = "rrnn report " + " ".join([*args.run_dirs, "--into", args.into, "--section", args.section, "--kind", args.kind])
        path = write_section([Path(p) for p in args.run_dirs], Path(args.into), args.section, args.kind, command)
    else:
        if args.out is None:
            raise UsageError("give --out DIR, the folder for results.md and its plots (--out docs rewrites the committed "
                             "docs/results.md), or --into FILE --section NAME")
        command = "rrnn report " + " ".join([*args.run_dirs, "--out", args.out])
        path = write_report([Path(p) for p in args.run_dirs], Path(args.out), command)
    print(f"wrote {path}")
    return 0


def command_bench(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """The core benchmark suite (relational_rnn.bench, also benchmarks/bench_cores.py); options pass through."""
    from .bench import main as bench_main

    return bench_main(list(extra))


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rrnn", description="Relational recurrent neural networks: train, evaluate, inspect.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train_parser = commands.add_parser("train", add_help=False, help="train a task; unknown --name VALUE options set config fields")
    train_parser.add_argument("-h", "--help", action=_TrainHelp, help="show this help and every config field of TASK, then exit")
    train_parser.add_argument("task", help="nth-farthest, lte, lm or pacman")
    train_parser.add_argument("--out", required=True, help="run directory")
    train_parser.add_argument("--core", help="recurrent core, one registered in relational_rnn.cores (docs/cores.md; an unknown "
                              "name lists them), sized to the RMC's parameter count (default: the preset's, rmc)")
    train_parser.add_argument("--preset", default="cpu", help="cpu (minutes on a laptop) or paper (the paper's scale)")
    budget = train_parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", help="optimiser steps")
    budget.add_argument("--minutes", help="training minutes")
    train_parser.add_argument("--seed")
    train_parser.add_argument("--threads", help="torch threads (0: one per core)")
    train_parser.add_argument("--data", help="corpus directory (lm); the same as --data-dir")
    train_parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train_parser.set_defaults(handler=command_train)

    eval_parser = commands.add_parser("eval", add_help=False, help="reload a run's checkpoint and report its metric on the fixed evaluation set")
    eval_parser.add_argument("-h", "--help", action=_EvalHelp, help="show this help and each task's evaluation options, then exit")
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
    report_parser.add_argument("--out", help="folder for results.md and the plots (required without --into; --out docs "
                               "rewrites the committed docs/results.md)")
    report_parser.add_argument("--into", help="instead: rewrite one marked section of this markdown file (e.g. docs/nth_farthest.md)")
    report_parser.add_argument("--section", help="the section's name, as in its marker line '<!-- rrnn report: NAME -->'")
    report_parser.add_argument("--kind", default="comparison", choices=["comparison", "runs"],
                               help="comparison: cores over seeds at equal steps and minutes, with curves; runs: every run, one row each")
    report_parser.set_defaults(handler=command_report)

    demo_parser = commands.add_parser("demo", help="cpu-scale N-th farthest, RMC and LSTM side by side, printing both test accuracies")
    demo_parser.add_argument("--out", default="runs/demo")
    demo_parser.add_argument("--minutes", default="4", help="training minutes per core")
    demo_parser.add_argument("--question", default=DEMO_QUESTION, choices=["paper", "rank", "farthest", "recall"],
                             help=f"which rung of the ladder (default {DEMO_QUESTION}: the one that separates the cores at this scale)")
    demo_parser.set_defaults(handler=command_demo)

    bench_parser = commands.add_parser(
        "bench", add_help=False, help="benchmark the RMC paths against an equal-size LSTM (rrnn bench --help)"
    )
    bench_parser.set_defaults(handler=command_bench)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one `rrnn` command; return its exit code (2: bad input, said in one line; 130: interrupted).

    SIGTERM is handled like Ctrl-C (SIGINT) from the start: training checkpoints and stops, anything
    else stops where it is, with one line on stderr either way.
    """
    previous = _terminate_as_interrupt()
    try:
        return _main(argv)
    except KeyboardInterrupt as interrupt:
        reason = str(interrupt)
        print(f"rrnn: interrupted: {reason}" if reason else "rrnn: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: Optional[Sequence[str]]) -> int:
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "eval", "demo", "presets", "bench"):
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    from .extras import missing_extra
    from .train.checkpoint import CheckpointError
    from .train.loop import RunDirectoryError

    try:
        return args.handler(args, extra)
    except (ValueError, OSError, CheckpointError, RunDirectoryError, FloatingPointError) as error:  # bad input: one line, no traceback
        print(f"rrnn: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except ImportError as error:
        missing = missing_extra(error, f"rrnn {args.command}")
        if missing is None:
            raise  # a bug: its traceback is what to report
        print(f"rrnn: error: {missing}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as error:
        if not _out_of_memory(error):
            raise  # a bug: its traceback is what to report
        print(f"rrnn: error: out of memory ({_one_line(error)}); lower the batch size or the model's sizes", file=sys.stderr)
        return 2


def _one_line(error: BaseException, limit: int = 500) -> str:
    """An error's message as one line (whitespace collapsed), at most `limit` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocation that failed: torch's OutOfMemoryError (CUDA), its CPU
    allocator's RuntimeError, or Python's MemoryError."""
    import torch

    if isinstance(error, (MemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))):  # torch < 2.5: cuda's
        return True
    text = str(error)
    return "DefaultCPUAllocator" in text or "can't allocate memory" in text or "out of memory" in text.lower()


def _raise_interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


def _terminate_as_interrupt() -> Any:
    """Make SIGTERM raise KeyboardInterrupt as SIGINT does (the training loop installs its own
    handler for both); return the previous handler, or None outside the main thread."""
    try:
        return signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # signals can only be handled in the main thread
        return None


if __name__ == "__main__":
    sys.exit(main())
