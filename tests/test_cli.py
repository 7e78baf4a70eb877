"""The command line: train, resume, eval, presets; bad input is one line on stderr and a non-zero exit."""

import json
import os
import stat

import pytest
import torch

from relational_rnn.cli import main
from relational_rnn.cores import CORES

TINY = ["--mem-slots", "2", "--head-size", "4", "--num-heads", "2", "--num-vectors", "3", "--vector-dim", "2",
        "--batch-size", "8", "--eval-samples", "32", "--mlp-hidden", "8", "--threads", "1"]


def _last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def test_train_resume_and_eval(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "nth-farthest", "--core", "lstm", "--out", out, "--steps", "4", "--eval-every", "2", *TINY]) == 0
    first = _last_json(capsys.readouterr().out)
    assert first["step"] == 4
    assert main(["train", "nth-farthest", "--out", out, "--steps", "6", "--resume"]) == 0
    assert _last_json(capsys.readouterr().out)["step"] == 6
    assert main(["eval", out]) == 0
    evaluated = _last_json(capsys.readouterr().out)
    assert evaluated["step"] == 6 and 0 <= evaluated["accuracy"] <= 1
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["core"]["core"] == "lstm" and config["train"]["steps"] == 6


@pytest.mark.parametrize("core", list(CORES))
def test_every_registered_core_trains_from_the_command_line(tmp_path, capsys, core):
    out = str(tmp_path / core)
    assert main(["train", "nth-farthest", "--core", core, "--out", out, "--steps", "2", "--eval-every", "2", *TINY]) == 0
    assert _last_json(capsys.readouterr().out)["step"] == 2
    assert json.loads((tmp_path / core / "config.json").read_text())["core"]["core"] == core


def test_an_unknown_core_is_one_line_naming_the_registered_ones(tmp_path, capsys):
    assert main(["train", "nth-farthest", "--core", "mamba", "--out", str(tmp_path / "run"), "--steps", "1", *TINY]) == 2
    err = capsys.readouterr().err
    assert "unknown core 'mamba'" in err and ", ".join(CORES) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_presets_lists_both_scales(capsys):
    assert main(["presets", "nth-farthest"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("paper:") and "\ncpu:" in text and '"batch_size": 1600' in text


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    """Directories for the scan below: a good run, and copies of it with one thing wrong."""
    root = tmp_path_factory.mktemp("bad-inputs")
    assert main(["train", "nth-farthest", "--out", str(root / "good"), "--steps", "1", *TINY]) == 0
    assert main(["train", "nth-farthest", "--out", str(root / "bigger"), "--steps", "1", *TINY, "--mem-slots", "3"]) == 0
    good_config = json.loads((root / "good" / "config.json").read_text())
    good_checkpoint = (root / "good" / "checkpoint.pt").read_bytes()

    def run_dir(name, config=good_config, checkpoint=good_checkpoint, metrics=None):
        (root / name).mkdir()
        (root / name / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
        if checkpoint is not None:
            (root / name / "checkpoint.pt").write_bytes(checkpoint)
        if metrics is not None:
            (root / name / "metrics.jsonl").write_text(metrics)

    def changed(section, name, value):
        config = json.loads(json.dumps(good_config))
        (config[section] if section else config)[name] = value
        return config

    run_dir("not-a-config", "[1]")
    run_dir("unknown-task", '{"task_name": "chess"}')
    run_dir("corrupt", checkpoint=b"\x00garbage")
    run_dir("missing-checkpoint", checkpoint=None)
    run_dir("other-size", checkpoint=(root / "bigger" / "checkpoint.pt").read_bytes())
    state = torch.load(root / "good" / "checkpoint.pt", weights_only=True)
    torch.save(state | {"task_name": "lte"}, root / "lte-checkpoint.pt")
    run_dir("other-task", checkpoint=(root / "lte-checkpoint.pt").read_bytes())
    run_dir("lr-fast", changed("train", "lr", "fast"))
    run_dir("fractional", changed("task", "num_vectors", 4.5))
    run_dir("extra-key", changed(None, "extra", 1))
    run_dir("no-step", metrics='{"loss": 1.0}\n')
    run_dir("list-line", metrics="[1, 2]\n")
    (root / "foreign").mkdir()
    (root / "foreign" / "config.json").write_text('{"mine": true}\n')
    return root


BAD_INPUTS = [
    (["train", "chess", "--out", "{tmp}/a"], "unknown task 'chess'"),
    (["train", "nth-farthest", "--out", "{tmp}/a", "--widht", "3"], "unknown option 'widht'"),
    (["train", "nth-farthest", "--out", "{tmp}/a", "--gate-style", "bad", "--steps", "1"], "gate_style must be one of"),
    (["train", "nth-farthest", "--out", "{tmp}/a", "--steps", "0"], "steps must be >= 1"),
    (["train", "nth-farthest", "--out", "{tmp}/a", "--threads", "-1"], "threads must be >= 0"),
    (["train", "nth-farthest", "--out", "{tmp}/a", "--lr-final", "0.5"], "lr_final must lie in"),
    (["train", "nth-farthest", "--out", "{tmp}/a", "--checkpoint-every", "0"], "checkpoint_every must be >= 1"),
    (["train", "nth-farthest", "--out", "{tmp}/a", "--checkpoint-every", "-3"], "checkpoint_every must be >= 1"),
    (["train", "nth-farthest", "--out", "{tmp}/good/config.json", "--steps", "1"], "exists and is not a directory"),
    (["train", "nth-farthest", "--out", "{tmp}/foreign", "--steps", "1"], "holds config.json but no run started by rrnn train"),
    (["train", "nth-farthest", "--out", "{tmp}/foreign", "--resume"], "is not a run config (it names no task_name)"),
    (["train", "nth-farthest", "--out", "{tmp}/good", "--steps", "2"], "already holds a run; pass --resume"),
    (["train", "nth-farthest", "--out", "{tmp}/a", "--resume"], "cannot resume"),
    (["train", "lte", "--out", "{tmp}/good", "--resume"], "holds a nth-farthest run, not lte"),
    (["train", "nth-farthest", "--out", "{tmp}/other-size", "--resume", "--steps", "2"], "does not fit its config.json"),
    (["train", "nth-farthest", "--out", "{tmp}/other-task", "--resume", "--steps", "2"], "checkpoint of a lte run"),
    (["train", "nth-farthest", "--out", "{tmp}/lr-fast", "--resume", "--steps", "2"], "train.lr expects float, got 'fast'"),
    (["eval", "{tmp}/not-a-config"], "expected a JSON object"),
    (["eval", "{tmp}/nowhere"], "config.json is missing"),
    (["eval", "{tmp}/corrupt"], "corrupt"),
    (["eval", "{tmp}/missing-checkpoint"], "no checkpoint at"),
    (["eval", "{tmp}/other-size"], "of another shape (first "),
    (["eval", "{tmp}/other-task"], "checkpoint of a lte run"),
    (["eval", "{tmp}/fractional"], "task.num_vectors expects int, got 4.5"),
    (["eval", "{tmp}/extra-key"], "unknown key 'extra'"),
    (["eval", "{tmp}/good", "--split", "test"], "options"),
    (["inspect", "{tmp}/other-size", "--out", "{tmp}/pictures"], "does not fit its config.json"),
    (["play", "{tmp}/other-task"], "checkpoint of a lte run"),
    (["play", "{tmp}/good"], "only pacman runs can be played"),
    (["play"], "the following arguments are required: run_dir"),
    (["generate", "{tmp}/good"], "only lm runs can generate text"),
    (["presets", "chess"], "unknown task 'chess'"),
    (["report", "{tmp}/unknown-task", "--out", "{tmp}/report"], "not a run config this version can read"),
    (["report", "{tmp}/no-step", "--out", "{tmp}/report"], "line 1: not an evaluation record"),
    (["report", "{tmp}/list-line", "--out", "{tmp}/report"], "line 1: not an evaluation record"),
    (["report", "{tmp}/good"], "give --out DIR"),  # never the committed docs/ by default
    (["generate", "{tmp}/nowhere"], "config.json is missing"),
    (["inspect", "{tmp}/nowhere", "--out", "{tmp}/pictures"], "config.json is missing"),
    (["demo", "--minutes", "0", "--out", "{tmp}/demo"], "minutes must be a finite number > 0"),
    (["train", "chess", "--help"], "unknown task 'chess'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["bench", "--cases", "bad"], "invalid choice: 'bad'"),  # bench parses its own options, one line too
    (["bench", "--threads", "0"], "--threads and --repeats must be >= 1"),
]


@pytest.mark.parametrize("argv,message", BAD_INPUTS)
def test_bad_input_is_one_clear_line_and_changes_nothing(bad_inputs, capsys, monkeypatch, argv, message):
    """Every subcommand, over a table of bad inputs: one line on stderr, exit code 2, no file changed
    (run from inside the scanned folder, so a default output path would show up there too)."""
    monkeypatch.chdir(bad_inputs)
    before = _files(bad_inputs)
    capsys.readouterr()
    try:
        code = main([part.replace("{tmp}", str(bad_inputs)) for part in argv])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert _files(bad_inputs) == before


def _files(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_out_of_memory_is_one_line_and_leaves_no_run_directory(tmp_path, capsys, monkeypatch):
    from relational_rnn.tasks.nth_farthest import NthFarthestTask

    def allocate(self, model, step):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 512000000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(NthFarthestTask, "training_loss", allocate)
    assert main(["train", "nth-farthest", "--out", str(tmp_path / "run"), *TINY, "--batch-size", "1000000000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rrnn: error: out of memory (") and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_checkpoints_are_readable_like_the_other_files(tmp_path):
    """Not 0600 (as tempfile makes them): whoever may read config.json may evaluate the run."""
    previous = os.umask(0o022)
    try:
        assert main(["train", "nth-farthest", "--out", str(tmp_path / "run"), "--steps", "1", *TINY]) == 0
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "run").iterdir()}
    assert modes == {"checkpoint.pt": 0o644, "config.json": 0o644, "metrics.jsonl": 0o644}


def test_demo_summarises_the_committed_full_question_runs(tmp_path, monkeypatch):
    import json as json_

    from relational_rnn import cli

    for core, values in (("rmc", (0.9, 0.8)), ("lstm", (0.3, 0.3))):
        for seed, value in enumerate(values):
            run = tmp_path / "ladder" / f"paper-{core}-seed{seed}"
            run.mkdir(parents=True)
            (run / "config.json").write_text(json_.dumps({"train": {"minutes": 5}}))
            (run / "metrics.jsonl").write_text(json_.dumps({"step": 10, "accuracy": 0.1}) + "\n" + json_.dumps({"step": 20, "accuracy": value}) + "\n")
    monkeypatch.setattr(cli, "NTH_FARTHEST_RUNS", tmp_path)
    assert cli._measured_summary("ladder/paper-{core}-seed*") == "RMC 0.850 ± 0.071, LSTM 0.300 ± 0.000 (2 seeds each, 5 min)"
    assert cli._measured_summary("search/nothing-{core}") is None


def test_demo_verdict_is_computed_from_the_numbers():
    from relational_rnn.cli import demo_verdict

    assert demo_verdict({"rmc": 0.87, "lstm": 0.34}, plateau=1 / 3) == "RMC ahead by 53.0 points; only the RMC left the plateau (0.333)"
    assert demo_verdict({"rmc": 0.49, "lstm": 0.50}, plateau=0.5).startswith("neither left the plateau (0.500); RMC -1.0 points")
    assert demo_verdict({"rmc": 0.70, "lstm": 0.90}, plateau=0.5) == "LSTM ahead by 20.0 points; both left the plateau (0.500)"


def test_train_help_lists_every_config_field_with_each_presets_value(capsys):
    from relational_rnn.config import field_descriptions
    from relational_rnn.tasks import get_task

    with pytest.raises(SystemExit) as exit:
        main(["train", "nth-farthest", "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    presets = get_task("nth-farthest").presets()
    for section in ("task", "core", "train"):
        for name in field_descriptions(type(getattr(presets["cpu"], section))):
            option = f"--{name.replace('_', '-')}"  # no nth-farthest field is in two sections
            values = " | ".join(f"{p} {json.dumps(getattr(getattr(c, section), name))}" for p, c in presets.items())
            assert f"  {option}  [{values}]" in text, (section, name)
    assert "  --mem-slots  [paper 8 | cpu 4]\n      RMC: memory slots N\n" in text
    assert "      Adam's learning rate" in text and "--out OUT" in text


def test_eval_help_lists_each_tasks_evaluation_options(capsys):
    """Built from each task's `eval_options`: a new task's options appear without touching the CLI."""
    from relational_rnn.tasks import TASKS

    with pytest.raises(SystemExit) as exit:
        main(["eval", "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    assert "usage: rrnn eval" in text and "evaluation options, by the run's task" in text
    for name, task_type in TASKS.items():
        assert f"  {name}  " in text, name
        for option, description in task_type.eval_options.items():
            assert f"{option}  " in text and description in text, (name, option)
    assert {"--split valid|test", "--tokens N|all", "--data-dir DIR"} == set(TASKS["lm"].eval_options)


def test_field_descriptions_come_from_metadata_or_the_comment_beside_the_field():
    import dataclasses

    from relational_rnn.config import field_descriptions

    @dataclasses.dataclass
    class Example:
        alpha: int = 1  # the first
        # and its second line (a commented field follows)
        beta: str = "#not a comment"  # beta's
        # the comment above a field without one
        gamma: float = 0.5
        delta: int = dataclasses.field(default=2, metadata={"help": "from metadata"})  # not this
        epsilon: int = 3

    assert field_descriptions(Example) == {"alpha": "the first and its second line (a commented field follows)", "beta": "beta's",
                                           "gamma": "the comment above a field without one", "delta": "from metadata",
                                           "epsilon": ""}


def test_eval_help_shows_each_tasks_evaluation_options(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["eval", "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    for option in ("--split valid|test", "--tokens N|all", "--data-dir DIR", "--episodes N", "--seed S", "--policy sample|greedy"):
        assert option in text


def test_version_is_the_installed_distributions(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out == f"rrnn {version('relational-rnn')}\n"


MISSING_EXTRAS_SCRIPT = """
import contextlib, io, json, sys
sys.modules["gymnasium"] = None  # as if the [rl] and [plots] extras were not installed
sys.modules["matplotlib"] = None
sys.modules["PIL"] = None
import relational_rnn
from relational_rnn.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def test_a_missing_extra_is_one_line_naming_it_and_the_rest_works(bad_inputs, tmp_path):
    """In a subprocess without gymnasium, matplotlib and pillow: `import relational_rnn`, nth-farthest and
    every task's presets work; pacman, report and inspect say which extra to install, and write nothing."""
    import subprocess
    import sys

    cases = [
        (["presets", "nth-farthest"], 0, None),
        (["train", "nth-farthest", "--out", str(tmp_path / "nf"), "--steps", "1", "--progress", "false", *TINY], 0, None),
        (["train", "pacman", "--out", str(tmp_path / "pm"), "--steps", "1"], 2, "[rl]"),
        (["train", "pacman", "--help"], 2, "[rl]"),
        (["presets", "pacman"], 2, "[rl]"),
        (["report", str(bad_inputs / "good"), "--out", str(tmp_path / "report")], 2, "[plots]"),
        (["inspect", str(bad_inputs / "good"), "--out", str(tmp_path / "pictures")], 2, "[plots]"),
    ]
    before = _files(bad_inputs)
    done = subprocess.run([sys.executable, "-c", MISSING_EXTRAS_SCRIPT, json.dumps([argv for argv, _, _ in cases])],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    for (argv, expected, extra), (code, err) in zip(cases, json.loads(done.stdout)):
        assert code == expected, (argv, err)
        if extra is not None:
            assert len(err.strip().splitlines()) == 1 and f"pip install 'relational-rnn{extra}'" in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nf"]
    assert _files(bad_inputs) == before


@pytest.mark.parametrize("argv,message", [
    (["train", "nth-farthest", "--out", "{tmp}/a", "--steps", "0"], "steps must be >= 1"),
    (["eval", "{tmp}/other-task"], "checkpoint of a lte run"),
    (["report", "{tmp}/good"], "give --out DIR"),
])
def test_bad_input_through_the_real_entry_point_is_one_line(bad_inputs, argv, message):
    """A few rows of the scan again, as a user runs them: a process of its own, exit code 2, one line."""
    import subprocess
    import sys

    before = _files(bad_inputs)
    done = subprocess.run([sys.executable, "-m", "relational_rnn.cli", *(part.replace("{tmp}", str(bad_inputs)) for part in argv)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=bad_inputs)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert _files(bad_inputs) == before
