"""The shared training loop: run directory, determinism, budgets, and resume after a real kill."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from relational_rnn.runs import build_run_config, evaluate_run, train_run
from relational_rnn.train import RunDirectoryError, read_metrics

TINY = [("mem_slots", "2"), ("head_size", "4"), ("num_heads", "2"), ("num_vectors", "3"), ("vector_dim", "2"),
        ("batch_size", "16"), ("eval_samples", "64"), ("mlp_hidden", "16"), ("threads", "1")]


def _run(steps=6, eval_every=3, **extra):
    overrides = TINY + [("steps", str(steps)), ("eval_every", str(eval_every))] + [(k, str(v)) for k, v in extra.items()]
    return build_run_config("nth-farthest", "cpu", overrides)


def _without_time(records):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in records]


def test_run_directory_layout_and_records(tmp_path):
    last = train_run(_run(), tmp_path / "run")
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["checkpoint.pt", "config.json", "metrics.jsonl"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["task_name"] == "nth-farthest" and config["core"]["mem_slots"] == 2
    assert config["parameters"]["core"] > 0 and config["machine"]["torch_threads"] == 1
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [3, 6]
    assert {"step", "seconds", "loss", "accuracy", "train_loss", "lr"} <= set(records[-1])
    assert records[-1] == last
    assert evaluate_run(tmp_path / "run")["accuracy"] == last["accuracy"]


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    a = train_run(_run(), tmp_path / "a")
    b = train_run(_run(), tmp_path / "b")
    c = train_run(_run(seed=1), tmp_path / "c")
    assert _without_time([a]) == _without_time([b])
    assert a["train_loss"] != c["train_loss"]


def test_budget_end_always_evaluates(tmp_path):
    train_run(_run(steps=5, eval_every=100), tmp_path / "run")
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [5]
    run = _run(eval_every=100)
    run.override("steps", "none")
    run.override("minutes", "0.001")
    record = train_run(run, tmp_path / "timed")
    assert record["step"] >= 1 and record["seconds"] >= 0.06


def test_resume_in_process_equals_uninterrupted(tmp_path):
    whole = train_run(_run(steps=8, eval_every=2, lr_final=1e-4, lr_decay_rate=0.5, lr_decay_steps=3), tmp_path / "whole")
    train_run(_run(steps=4, eval_every=2, lr_final=1e-4, lr_decay_rate=0.5, lr_decay_steps=3), tmp_path / "parts")
    train_run(_run(steps=8, eval_every=2, lr_final=1e-4, lr_decay_rate=0.5, lr_decay_steps=3), tmp_path / "parts", resume=True)
    assert _without_time(read_metrics(tmp_path / "parts" / "metrics.jsonl")) == _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl"))
    assert whole["lr"] < 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resume_on_cuda_equals_uninterrupted(tmp_path):
    """The checkpoint's RNG states are CPU tensors whatever the run's device (they once were not)."""
    train_run(_run(steps=8, eval_every=2, device="cuda"), tmp_path / "whole")
    train_run(_run(steps=4, eval_every=2, device="cuda"), tmp_path / "parts")
    train_run(_run(steps=8, eval_every=2, device="cuda"), tmp_path / "parts", resume=True)
    assert _without_time(read_metrics(tmp_path / "parts" / "metrics.jsonl")) == _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl"))


def test_refuses_to_overwrite_or_resume_nothing(tmp_path):
    train_run(_run(steps=1), tmp_path / "run")
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        train_run(_run(steps=1), tmp_path / "run")
    with pytest.raises(RunDirectoryError, match="cannot resume"):
        train_run(_run(steps=1), tmp_path / "empty", resume=True)
    with pytest.raises(RunDirectoryError, match=r"different core.mem_slots \(saved 2, given 3\)"):
        train_run(_run(steps=2, mem_slots=3), tmp_path / "run", resume=True)
    with pytest.raises(RunDirectoryError, match=r"different train.lr \(saved 0.0003, given 0.0001\), train.seed \(saved 0, given 3\)"):  # the restored optimiser would ignore them
        train_run(_run(steps=2, seed=3, lr=1e-4), tmp_path / "run", resume=True)


def test_resume_with_the_budget_already_spent_still_ends_with_an_evaluation(tmp_path):
    train_run(_run(steps=4, eval_every=100, checkpoint_every=2), tmp_path / "run")
    (tmp_path / "run" / "metrics.jsonl").write_text("")  # as if killed before its first evaluation
    record = train_run(_run(steps=4, eval_every=100), tmp_path / "run", resume=True)
    assert record["step"] == 4 and [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [4]


def _cli(out_dir, steps, eval_every=25, checkpoint_every=5):
    args = ["--steps", str(steps), "--eval-every", str(eval_every), "--checkpoint-every", str(checkpoint_every)]
    for name, value in TINY:
        args += [f"--{name.replace('_', '-')}", value]
    return [sys.executable, "-m", "relational_rnn.cli", "train", "nth-farthest", "--out", str(out_dir), *args]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The metrics (times aside) of `_cli(..., 150)` run through without a stop."""
    out_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    subprocess.run(_cli(out_dir, 150), check=True, capture_output=True)
    return _without_time(read_metrics(out_dir / "metrics.jsonl"))


def test_killed_subprocess_resumes_as_if_uninterrupted(tmp_path, uninterrupted):
    steps = 150
    expected = uninterrupted

    victim = subprocess.Popen(_cli(tmp_path / "killed", steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics_file = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and len(read_metrics(metrics_file)) < 2:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)  # no chance to clean up: the hardest kind of stop
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    killed_at = read_metrics(metrics_file)[-1]["step"]
    assert killed_at < steps, "the run finished before it could be killed"

    resumed = subprocess.run(_cli(tmp_path / "killed", steps) + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert _without_time(read_metrics(metrics_file)) == expected
    assert not [p for p in os.listdir(tmp_path / "killed") if p.endswith(".tmp")]


def _files(directory):
    """{relative path: bytes} of every file below `directory`: what a refused command must leave as it was."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_never_writes_over_files_it_did_not_write(tmp_path):
    """A directory with a user's config.json or checkpoint.pt.*.tmp is refused, untouched; other files are kept."""
    for name in ("config.json", "checkpoint.pt.mine.tmp", "metrics.jsonl"):
        folder = tmp_path / name.replace(".", "-")
        folder.mkdir()
        (folder / name).write_text("the user's own file\n")
        with pytest.raises(RunDirectoryError, match=f"holds {name} but no run started by rrnn train"):
            train_run(_run(steps=1), folder)
        assert _files(folder) == {name: b"the user's own file\n"}
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "train.log").write_text("kept\n")  # as `rrnn train ... >> DIR/train.log` leaves it
    train_run(_run(steps=1), tmp_path / "notes")
    assert (tmp_path / "notes" / "train.log").read_text() == "kept\n"


def test_a_start_that_fails_leaves_nothing(tmp_path, monkeypatch):
    """Bad input found late (here: out of memory at the first step) removes what the start wrote."""
    from relational_rnn.tasks.nth_farthest import NthFarthestTask

    def out_of_memory(self, model, step):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory")

    monkeypatch.setattr(NthFarthestTask, "training_loss", out_of_memory)
    with pytest.raises(RuntimeError, match="not enough memory"):
        train_run(_run(), tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError):
        train_run(_run(), tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_lost_metrics_line_comes_back_on_resume(tmp_path):
    """metrics.jsonl cut after the checkpoint (a line lost or cut short) is rebuilt from the
    checkpoint's copy: no evaluation step goes missing from the log."""
    train_run(_run(steps=10, eval_every=2), tmp_path / "whole")
    train_run(_run(steps=6, eval_every=2), tmp_path / "cut")
    metrics = tmp_path / "cut" / "metrics.jsonl"
    text = metrics.read_text()
    metrics.write_text(text[: len(text) - 20])  # the step-6 record cut short
    train_run(_run(steps=10, eval_every=2), tmp_path / "cut", resume=True)
    assert [r["step"] for r in read_metrics(metrics)] == [2, 4, 6, 8, 10]
    assert _without_time(read_metrics(metrics)) == _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl"))


def test_a_damaged_metrics_file_is_a_clear_error_and_is_rebuilt_on_resume(tmp_path):
    from relational_rnn.train.metrics import MetricsError

    train_run(_run(steps=4, eval_every=2), tmp_path / "run")
    metrics = tmp_path / "run" / "metrics.jsonl"
    expected = metrics.read_text()
    for line in ('{"loss": 1.0}', "[1, 2]", '{"step": "4"}'):
        metrics.write_text(line + "\n")
        with pytest.raises(MetricsError, match="line 1: not an evaluation record"):
            read_metrics(metrics)
    train_run(_run(steps=4, eval_every=2), tmp_path / "run", resume=True)
    assert metrics.read_text() == expected


def _stoppable(cli, hook):
    """The training subprocess `cli`, with `hook` (Python source, e.g. patching a function to wait) run first.

    Ctrl-C gets Python's usual handler first: a suite started in the background (`nohup ... &`)
    hands its children SIGINT ignored, and the start-up tests need it to arrive as it does from a terminal."""
    source = (
        "import signal, sys, time, pathlib\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"{hook}\nfrom relational_rnn.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    return [sys.executable, "-c", source, *cli[cli.index("train"):]]


def _wait_for(path, process, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline and not path.exists() and process.poll() is None:
        time.sleep(0.01)
    assert path.exists(), "the subprocess never reached the point to stop it at"


def test_killed_during_its_first_checkpoint_write_starts_again(tmp_path):
    """SIGKILL while the first checkpoint is half written: both --resume and a fresh start accept
    the directory, begin at step 0 and log what an uninterrupted run logs."""
    steps, every = 8, dict(eval_every=3, checkpoint_every=100)  # the first checkpoint follows the first evaluation
    subprocess.run(_cli(tmp_path / "whole", steps, **every), check=True, capture_output=True)
    expected = _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl"))
    flag = tmp_path / "writing"
    hook = (
        "import relational_rnn.train.checkpoint as checkpoint\n"
        "def save(payload, file):\n"
        "    file.write(b'half a checkpoint'); file.flush()\n"
        f"    pathlib.Path({str(flag)!r}).touch(); time.sleep(600)\n"
        "checkpoint.torch.save = save\n"
    )
    victim = subprocess.Popen(_stoppable(_cli(tmp_path / "killed", steps, **every), hook), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(flag, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    left = sorted(os.listdir(tmp_path / "killed"))
    assert "checkpoint.pt" not in left and "metrics.jsonl" in left and any(name.endswith(".tmp") for name in left)
    for copy in ("killed-again", "other"):
        shutil.copytree(tmp_path / "killed", tmp_path / copy)

    resumed = subprocess.run(_cli(tmp_path / "killed", steps, **every) + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert _without_time(read_metrics(tmp_path / "killed" / "metrics.jsonl")) == expected
    assert not [p for p in os.listdir(tmp_path / "killed") if p.endswith(".tmp")]

    train_run(_run(steps=steps, **every), tmp_path / "killed-again")  # the same config, without --resume
    assert _without_time(read_metrics(tmp_path / "killed-again" / "metrics.jsonl")) == expected
    with pytest.raises(RunDirectoryError, match="stopped before its first checkpoint"):  # another config is refused
        train_run(_run(steps=steps, mem_slots=3), tmp_path / "other")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_training_checkpoints_and_resumes_exactly(tmp_path, sig, uninterrupted):
    steps = 150
    victim = subprocess.Popen(_cli(tmp_path / "stopped", steps), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path / "stopped" / "checkpoint.pt", victim)
    victim.send_signal(sig)
    _, err = victim.communicate(timeout=120)
    assert victim.returncode == 130, err
    assert err.startswith("rrnn: interrupted: stopped at step ") and "checkpoint saved" in err and len(err.splitlines()) == 1
    resumed = subprocess.run(_cli(tmp_path / "stopped", steps) + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert _without_time(read_metrics(tmp_path / "stopped" / "metrics.jsonl")) == uninterrupted


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_start_up_is_one_line_and_leaves_nothing(tmp_path, sig):
    flag = tmp_path / "starting"
    hook = (
        "from relational_rnn.tasks.nth_farthest import NthFarthestTask\n"
        "def slow(self, *args, **kwargs):\n"
        f"    pathlib.Path({str(flag)!r}).touch(); time.sleep(600)\n"
        "NthFarthestTask.__init__ = slow\n"
    )
    victim = subprocess.Popen(_stoppable(_cli(tmp_path / "run", 10), hook), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(flag, victim)
    victim.send_signal(sig)
    _, err = victim.communicate(timeout=120)
    assert victim.returncode == 130 and err == "rrnn: interrupted: during start-up, before any training step; nothing was saved\n"
    assert not (tmp_path / "run").exists()


def test_the_command_line_imports_torch_only_when_a_command_runs():
    """So a Ctrl-C while torch loads reaches rrnn's handler (one line) rather than printing a traceback."""
    probe = "import sys, relational_rnn, relational_rnn.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_linear_warmup_then_the_reference_schedule():
    from relational_rnn.train.loop import ExponentialDecayToFloor

    schedule = ExponentialDecayToFloor(1e-3, None, 0.9, 10, warmup_steps=4)
    assert [schedule(step) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    decaying = ExponentialDecayToFloor(1e-3, 5e-4, 0.5, 10, warmup_steps=2)
    assert decaying(0) == 0.5 and decaying(10) == 0.5 and decaying(100) == 0.5  # warmed up, then floored at 5e-4
    assert ExponentialDecayToFloor(1e-3, None, 0.9, 10)(0) == 1.0  # no warmup: the reference's constant lr


def test_a_task_may_build_its_optimiser_and_take_several_optimiser_steps_per_training_step(tmp_path, monkeypatch):
    """The loop's task hooks: `build_optimizer` gives the optimiser, `train_step` the training step (here two
    optimiser steps on the step's loss); the schedule still steps once per training step, and resume stays exact."""
    from relational_rnn.tasks.base import Task
    from relational_rnn.tasks.nth_farthest import NthFarthestTask
    from relational_rnn.train.checkpoint import load_checkpoint

    def build_optimizer(self, model, lr):
        return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.9))

    def train_step(self, model, optimizer, step, clip_norm):
        for _ in range(2):
            loss, info = Task.train_step(self, model, optimizer, step, clip_norm)
        return loss.detach(), info

    monkeypatch.setattr(NthFarthestTask, "build_optimizer", build_optimizer)
    monkeypatch.setattr(NthFarthestTask, "train_step", train_step)
    schedule = dict(lr_final=1e-4, lr_decay_rate=0.5, lr_decay_steps=3)
    whole = train_run(_run(steps=6, eval_every=2, **schedule), tmp_path / "whole")
    state = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert state["optimizer"]["param_groups"][0]["betas"] == (0.5, 0.9)
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {12}  # 2 per training step
    assert state["scheduler"]["last_epoch"] == 6 and whole["step"] == 6  # 1 per training step
    train_run(_run(steps=4, eval_every=2, **schedule), tmp_path / "parts")
    train_run(_run(steps=6, eval_every=2, **schedule), tmp_path / "parts", resume=True)
    assert _without_time(read_metrics(tmp_path / "parts" / "metrics.jsonl")) == _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl"))
