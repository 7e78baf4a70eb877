"""Run directories by task name (relational_rnn.runs): build a config, load it back checked, reload a
trained model whose checkpoint must fit, evaluate; the registry looked up here, never in train/."""

import ast
import json
from pathlib import Path

import pytest

import relational_rnn
from relational_rnn.config import ConfigError
from relational_rnn.runs import build_run_config, evaluate_run, load_config, load_trained, train_run
from relational_rnn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from relational_rnn.train.loop import RunDirectoryError
from test_loop import _run


def test_unknown_task_and_preset():
    with pytest.raises(ConfigError, match="unknown task 'chess'"):
        build_run_config("chess", "cpu", [])
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        build_run_config("nth-farthest", "huge", [])


def test_checkpoint_of_another_run_is_one_clear_line(tmp_path):
    train_run(_run(steps=2), tmp_path / "small")
    train_run(_run(steps=2, mem_slots=3), tmp_path / "big")
    (tmp_path / "small" / "checkpoint.pt").write_bytes((tmp_path / "big" / "checkpoint.pt").read_bytes())
    for attempt in (lambda: train_run(_run(steps=4), tmp_path / "small", resume=True), lambda: evaluate_run(tmp_path / "small")):
        with pytest.raises(CheckpointError, match=r"does not fit its config.json: .* of another shape") as error:
            attempt()
        assert "\n" not in str(error.value)
    state = load_checkpoint(tmp_path / "big" / "checkpoint.pt")
    save_checkpoint(tmp_path / "small" / "checkpoint.pt", {k: v for k, v in state.items() if k != "format"} | {"task_name": "pacman"})
    with pytest.raises(CheckpointError, match="is the checkpoint of a pacman run, but its config.json is for nth-farthest"):
        evaluate_run(tmp_path / "small")


def test_config_json_values_are_checked(tmp_path):
    train_run(_run(steps=1), tmp_path / "run")
    path = tmp_path / "run" / "config.json"
    good = json.loads(path.read_text())
    cases = [
        (("train", "lr"), "fast", "train.lr expects float, got 'fast'"),
        (("task", "num_vectors"), 4.5, "task.num_vectors expects int, got 4.5"),
        (("core", "gate_style"), 3, "core.gate_style expects str or null, got 3"),
        (("train", "progress"), "yes", "train.progress expects bool"),
        (("task", "num_vectorz"), 4, "unknown field task.num_vectorz"),
        (("extra",), 1, "unknown key 'extra'"),
    ]
    for keys, value, message in cases:
        data = json.loads(json.dumps(good))
        (data[keys[0]] if len(keys) == 2 else data)[keys[-1]] = value
        path.write_text(json.dumps(data))
        with pytest.raises(ConfigError, match=message):
            load_config(tmp_path / "run")
    data = json.loads(json.dumps(good))
    data["train"]["steps"] = 1e3  # JSON's way of writing 1000 by hand
    del data["core"]["forget_bias"]  # a field this file predates: its default
    path.write_text(json.dumps(data))
    assert load_config(tmp_path / "run").train.steps == 1000


def test_load_trained_and_evaluate_run(tmp_path):
    last = train_run(_run(steps=2, eval_every=2), tmp_path / "run")
    run, task, model, state = load_trained(tmp_path / "run", device="cpu")
    assert run == load_config(tmp_path / "run") and task.name == "nth-farthest" and state["step"] == 2 and not model.training
    results = evaluate_run(tmp_path / "run")
    assert results["step"] == 2 and results["accuracy"] == last["accuracy"] and results["loss"] == pytest.approx(last["loss"])
    with pytest.raises(RunDirectoryError, match="is not a run directory: config.json is missing"):
        evaluate_run(tmp_path)


def test_old_import_paths_still_work():
    """`relational_rnn.cli.build_run_config` and `relational_rnn.train.load_*` predate this module."""
    import relational_rnn.cli
    import relational_rnn.runs
    import relational_rnn.train
    import relational_rnn.train.config

    assert relational_rnn.cli.build_run_config is relational_rnn.runs.build_run_config
    for name in ("load_config", "load_trained", "evaluate_run"):
        assert getattr(relational_rnn.train, name) is getattr(relational_rnn.runs, name)
    assert relational_rnn.train.config.RunConfig is relational_rnn.config.RunConfig


def test_the_training_loop_never_imports_the_task_registry():
    """train/ sits below tasks/ (the tasks import its config and distributed helpers): the loop is given the task type."""
    package = Path(relational_rnn.__file__).parent
    for path in sorted((package / "train").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert not module.startswith("..tasks") and not module.startswith("relational_rnn.tasks"), f"{path.name} imports {module}"


def test_a_finished_run_whose_checkpoint_was_removed_is_never_trained_over(tmp_path):
    """Committed results keep config.json and metrics.jsonl only: training into one again must
    refuse (with or without --resume) and leave both files as they were."""
    out = tmp_path / "run"
    train_run(_run(steps=4), out)
    (out / "checkpoint.pt").unlink()
    before = {name: (out / name).read_bytes() for name in ("config.json", "metrics.jsonl")}
    for resume in (False, True):
        with pytest.raises(RunDirectoryError, match="holds the records of a run but no checkpoint.pt"):
            train_run(_run(steps=4), out, resume=resume)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.jsonl"]
