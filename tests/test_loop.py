"""The shared training loop: run directory, determinism, budgets, and resume after a real kill."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from relational_rnn.cli import build_run_config
from relational_rnn.train import RunDirectoryError, evaluate_run, read_metrics, train

TINY = [("mem_slots", "2"), ("head_size", "4"), ("num_heads", "2"), ("num_vectors", "3"), ("vector_dim", "2"),
        ("batch_size", "16"), ("eval_samples", "64"), ("mlp_hidden", "16"), ("threads", "1")]


def _run(steps=6, eval_every=3, **extra):
    overrides = TINY + [("steps", str(steps)), ("eval_every", str(eval_every))] + [(k, str(v)) for k, v in extra.items()]
    return build_run_config("nth-farthest", "cpu", overrides)


def _without_time(records):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in records]


def test_run_directory_layout_and_records(tmp_path):
    last = train(_run(), tmp_path / "run")
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
    a = train(_run(), tmp_path / "a")
    b = train(_run(), tmp_path / "b")
    c = train(_run(seed=1), tmp_path / "c")
    assert _without_time([a]) == _without_time([b])
    assert a["train_loss"] != c["train_loss"]


def test_budget_end_always_evaluates(tmp_path):
    train(_run(steps=5, eval_every=100), tmp_path / "run")
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [5]
    run = _run(eval_every=100)
    run.override("steps", "none")
    run.override("minutes", "0.001")
    record = train(run, tmp_path / "timed")
    assert record["step"] >= 1 and record["seconds"] >= 0.06


def test_resume_in_process_equals_uninterrupted(tmp_path):
    whole = train(_run(steps=8, eval_every=2, lr_final=1e-4, lr_decay_rate=0.5, lr_decay_steps=3), tmp_path / "whole")
    train(_run(steps=4, eval_every=2, lr_final=1e-4, lr_decay_rate=0.5, lr_decay_steps=3), tmp_path / "parts")
    train(_run(steps=8, eval_every=2, lr_final=1e-4, lr_decay_rate=0.5, lr_decay_steps=3), tmp_path / "parts", resume=True)
    assert _without_time(read_metrics(tmp_path / "parts" / "metrics.jsonl")) == _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl"))
    assert whole["lr"] < 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resume_on_cuda_equals_uninterrupted(tmp_path):
    """The checkpoint's RNG states are CPU tensors whatever the run's device (they once were not)."""
    train(_run(steps=8, eval_every=2, device="cuda"), tmp_path / "whole")
    train(_run(steps=4, eval_every=2, device="cuda"), tmp_path / "parts")
    train(_run(steps=8, eval_every=2, device="cuda"), tmp_path / "parts", resume=True)
    assert _without_time(read_metrics(tmp_path / "parts" / "metrics.jsonl")) == _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl"))


def test_refuses_to_overwrite_or_resume_nothing(tmp_path):
    train(_run(steps=1), tmp_path / "run")
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        train(_run(steps=1), tmp_path / "run")
    with pytest.raises(RunDirectoryError, match="cannot resume"):
        train(_run(steps=1), tmp_path / "empty", resume=True)
    with pytest.raises(RunDirectoryError, match="differs"):
        train(_run(steps=2, mem_slots=3), tmp_path / "run", resume=True)
    with pytest.raises(RunDirectoryError, match="different seed, lr"):  # the restored optimiser would ignore them
        train(_run(steps=2, seed=3, lr=1e-4), tmp_path / "run", resume=True)


def test_resume_with_the_budget_already_spent_still_ends_with_an_evaluation(tmp_path):
    train(_run(steps=4, eval_every=100, checkpoint_every=2), tmp_path / "run")
    (tmp_path / "run" / "metrics.jsonl").write_text("")  # as if killed before its first evaluation
    record = train(_run(steps=4, eval_every=100), tmp_path / "run", resume=True)
    assert record["step"] == 4 and [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [4]


def _cli(out_dir, steps):
    args = ["--steps", str(steps), "--eval-every", "25", "--checkpoint-every", "5"]
    for name, value in TINY:
        args += [f"--{name.replace('_', '-')}", value]
    return [sys.executable, "-m", "relational_rnn.cli", "train", "nth-farthest", "--out", str(out_dir), *args]


def test_killed_subprocess_resumes_as_if_uninterrupted(tmp_path):
    steps = 150
    subprocess.run(_cli(tmp_path / "whole", steps), check=True, capture_output=True)
    expected = _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl"))

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
