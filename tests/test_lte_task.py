"""The Learning to Execute task: model, masking, curriculum through the loop, cores, command line, 2-process DDP."""

import json
import random

import pytest
import torch

from relational_rnn.cli import main
from relational_rnn.cores import CORES, CoreConfig
from relational_rnn.runs import build_run_config, train_run
from relational_rnn.tasks import get_task
from relational_rnn.tasks.lte import PAD_ID, encode_batch, generate, vocab_size
from relational_rnn.tasks.lte.task import LTEConfig, LTETask, batch_logits, masked_cross_entropy
from relational_rnn.train import read_metrics
from relational_rnn.train.checkpoint import load_checkpoint

from distributed_helpers import assert_same_training, default_dtype, train_in_two_processes

TINY = [("mem_slots", "2"), ("head_size", "4"), ("num_heads", "2"), ("max_length", "2"), ("max_nesting", "2"),
        ("batch_size", "8"), ("eval_samples", "16"), ("mlp_hidden", "8"), ("threads", "1"), ("progress", "false")]


def _run(steps=4, eval_every=2, **extra):
    overrides = TINY + [("steps", str(steps)), ("eval_every", str(eval_every))] + [(k, str(v)) for k, v in extra.items()]
    return build_run_config("lte", "cpu", overrides)


def _without_time(records):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in records]


def _task(core="rmc", program="program", **config):
    core_config = CoreConfig(core=core, mem_slots=2, head_size=4, num_heads=2, gate_style="memory")
    task_config = LTEConfig(program=program, max_length=3, max_nesting=2, batch_size=8, eval_samples=8, mlp_hidden=8, **config)
    return LTETask(task_config, core_config, seed=0, device=torch.device("cpu"))


def _pairs(program, count, seed=0):
    rng = random.Random(seed)
    return [generate(program, rng.randint(1, 3), rng.randint(1, 2), rng) for _ in range(count)]


@pytest.mark.parametrize("core", list(CORES))
def test_padded_batch_equals_each_program_alone(core):
    torch.manual_seed(0)
    task = _task(core)
    model = task.build_model().double()
    pairs = _pairs("program", 6)
    batch = encode_batch(pairs)
    assert len(set(batch.input_lengths.tolist())) > 1 and len(set(batch.target_lengths.tolist())) > 1
    logits = batch_logits(model, batch)
    losses = masked_cross_entropy(logits, batch.targets, batch.target_mask, reduction="none")
    for i, pair in enumerate(pairs):
        alone = encode_batch([pair])
        alone_logits = batch_logits(model, alone)
        steps = alone.targets.shape[1]
        torch.testing.assert_close(logits[i, :steps], alone_logits[0], rtol=1e-12, atol=1e-12)
        alone_loss = masked_cross_entropy(alone_logits, alone.targets, alone.target_mask)
        torch.testing.assert_close(losses[i], alone_loss, rtol=1e-12, atol=1e-12)


def test_mask_excludes_padding_from_loss_and_accuracy():
    torch.manual_seed(0)
    task = _task()
    batch = encode_batch(_pairs("program", 8, seed=1))
    logits = batch_logits(task.build_model(), batch).detach()
    padding = ~batch.target_mask
    assert padding.any()
    loss = masked_cross_entropy(logits, batch.targets, batch.target_mask)
    by_hand = torch.stack([
        torch.nn.functional.cross_entropy(logits[b, t], batch.targets[b, t])
        for b in range(len(batch)) for t in range(batch.target_lengths[b])
    ]).mean()
    torch.testing.assert_close(loss, by_hand)

    # Garbage on the padded positions (logits and targets) changes nothing.
    noisy_logits = torch.where(padding.unsqueeze(-1), 100 * torch.randn_like(logits), logits)
    noisy_targets = torch.where(padding, torch.randint_like(batch.targets, 1, vocab_size), batch.targets)
    torch.testing.assert_close(masked_cross_entropy(noisy_logits, noisy_targets, batch.target_mask), loss)
    from relational_rnn.tasks.lte import accuracy_counts

    assert accuracy_counts(noisy_logits, noisy_targets, batch.target_mask) == accuracy_counts(logits, batch.targets, batch.target_mask)
    assert (batch.targets[padding] == PAD_ID).all()


def test_curriculum_advances_visibly_and_resumes_exactly(tmp_path, capsys):
    options = dict(curriculum="naive", curriculum_threshold=0.0, curriculum_every=3, max_length=3, steps=8, eval_every=2)
    whole = train_run(_run(**options), tmp_path / "whole")
    assert "curriculum advanced to naive(length=2/3" in capsys.readouterr().out
    records = read_metrics(tmp_path / "whole" / "metrics.jsonl")
    # threshold 0: one level per check (after steps 3 and 6), length first then nesting
    assert [(r["train_curriculum_length"], r["train_curriculum_nesting"]) for r in records] == [(1, 1), (1.5, 1), (2, 1), (3, 1)]
    state = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["task_state"]
    assert (state["curriculum"]["length"], state["curriculum"]["nesting"]) == (3, 1)
    assert whole["step"] == 8

    # Stopped at step 4, one step into a curriculum window, then resumed: the same numbers.
    train_run(_run(**{**options, "steps": 4}), tmp_path / "parts")
    assert load_checkpoint(tmp_path / "parts" / "checkpoint.pt")["task_state"]["window"]["char_total"] > 0
    train_run(_run(**options), tmp_path / "parts", resume=True)
    assert _without_time(read_metrics(tmp_path / "parts" / "metrics.jsonl")) == _without_time(records)


@pytest.mark.parametrize("core", list(CORES))
def test_every_core_trains(tmp_path, core):
    record = train_run(_run(steps=3, eval_every=3, core=core), tmp_path / core)
    assert record["step"] == 3 and torch.isfinite(torch.tensor(record["loss"]))
    assert 0 <= record["char_accuracy"] <= 1 and 0 <= record["seq_accuracy"] <= record["char_accuracy"] + 1e-9
    config = json.loads((tmp_path / core / "config.json").read_text())
    assert config["core"]["core"] == core and config["task"]["program"] == "addition"


def test_cli_train_and_eval(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = [f"--{name.replace('_', '-')}" if i % 2 == 0 else name for pair in TINY for i, name in enumerate(pair)]
    assert main(["train", "lte", "--program", "reverse", "--core", "lstm", "--out", out, "--steps", "3", "--eval-every", "3", *args]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["eval", out]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["step"] == 3
    assert evaluated["char_accuracy"] == trained["char_accuracy"] and evaluated["loss"] == pytest.approx(trained["loss"])


@pytest.mark.parametrize(
    "option,value,message",
    [("program", "sorting", "program must be one of addition, control, program, copy, reverse, double; got 'sorting'"),
     ("curriculum", "easy", "curriculum must be one of baseline, naive, mix, combined"),
     ("max_length", "0", "max_length must be >= 1")],
)
def test_bad_config_is_one_clear_line(tmp_path, capsys, option, value, message):
    assert main(["train", "lte", f"--{option.replace('_', '-')}", value, "--out", str(tmp_path / "a"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_checkpoint_without_lte_state_is_one_line(tmp_path, capsys):
    """As if another task's checkpoint (written before checkpoints named their task) were copied in."""
    from relational_rnn.train.checkpoint import save_checkpoint

    train_run(_run(steps=1, eval_every=1), tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    del state["task_name"], state["format"]
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", state | {"task_state": {"envs": []}})
    for argv in (["eval", str(tmp_path / "run")], ["train", "lte", "--out", str(tmp_path / "run"), "--resume", "--steps", "2"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("rrnn: error: cannot restore the task state from ") and "(KeyError: 'curriculum')" in err
        assert len(err.splitlines()) == 1


def test_registered_with_presets_and_report_group():
    task = get_task("lte")
    assert task is LTETask and task.main_metric == "char_accuracy" and "| RMC | 99.9 | 99.6 | 79.0 |" in task.paper_results
    paper = task.presets()["paper"]
    assert (paper.task.max_length, paper.task.max_nesting, paper.task.batch_size, paper.task.eval_samples) == (5, 2, 128, 12_800)
    assert (paper.core.mem_slots, paper.core.num_heads, paper.core.head_size, paper.core.gate_style) == (4, 4, 128, "memory")
    assert (paper.train.steps, paper.train.lr) == (200_000, 1e-3)
    assert task.results_group(LTEConfig(program="double")) == "double"


def test_two_processes_train_as_one_with_the_same_global_batch(tmp_path):
    """2 gloo processes, 4 of the 8 programs each (the combined curriculum mixes lengths, so the
    halves hold different numbers of characters), stopped after step 3 and resumed: the same
    evaluations, training accuracy, curriculum and weights as one process (float rounding aside).
    The loss divides by the whole batch's characters, and the curriculum counts both ranks'."""
    options = [*TINY, ("steps", "6"), ("eval_every", "3"), ("curriculum", "combined"), ("curriculum_threshold", "0.0"),
               ("curriculum_every", "4"), ("max_length", "3")]
    with default_dtype(torch.float64):  # float64: rounding noise stays far below Adam's eps (distributed_helpers)
        train_run(build_run_config("lte", "cpu", options), tmp_path / "single")
    train_in_two_processes("lte", options, tmp_path / "ddp", stop_at=3, dtype=torch.float64)
    keys = ("loss", "char_accuracy", "seq_accuracy", "train_loss", "train_char_accuracy", "train_seq_accuracy",
            "train_curriculum_length", "train_curriculum_nesting")
    single, ddp = assert_same_training(tmp_path / "single", tmp_path / "ddp", keys, rel=1e-9, rtol=1e-9, atol=1e-9)
    assert ddp["task_state"] == single["task_state"]
    assert single["task_state"]["curriculum"]["length"] == 2 and single["task_state"]["window"]["char_total"] > 0
