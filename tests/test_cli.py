"""The command line: train, resume, eval, presets; bad input is one line on stderr and a non-zero exit."""

import json

import pytest

from relational_rnn.cli import main

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


def test_presets_lists_both_scales(capsys):
    assert main(["presets", "nth-farthest"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("paper:") and "\ncpu:" in text and '"batch_size": 1600' in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "chess", "--out", "{tmp}/a"], "unknown task 'chess'"),
        (["train", "nth-farthest", "--out", "{tmp}/a", "--widht", "3"], "unknown option 'widht'"),
        (["train", "nth-farthest", "--out", "{tmp}/a", "--gate-style", "bad", "--steps", "1"], "gate_style must be one of"),
        (["train", "nth-farthest", "--out", "{tmp}/a", "--steps", "0"], "steps must be >= 1"),
        (["train", "nth-farthest", "--out", "{tmp}/a", "--threads", "-1"], "threads must be >= 0"),
        (["train", "nth-farthest", "--out", "{tmp}/a", "--lr-final", "0.5"], "lr_final must lie in"),
        (["train", "nth-farthest", "--out", "{tmp}/good/config.json", "--steps", "1"], "File exists"),
        (["eval", "{tmp}/not-a-config"], "expected a JSON object"),
        (["report", "{tmp}/unknown-task"], "not a run config this version can read"),
        (["train", "nth-farthest", "--out", "{tmp}/a", "--resume"], "cannot resume"),
        (["eval", "{tmp}/nowhere"], "config.json is missing"),
        (["eval", "{tmp}/corrupt"], "corrupt"),
        (["eval", "{tmp}/missing-checkpoint"], "no checkpoint at"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, argv, message):
    main(["train", "nth-farthest", "--out", str(tmp_path / "good"), "--steps", "1", *TINY])
    (tmp_path / "not-a-config").mkdir()
    (tmp_path / "not-a-config" / "config.json").write_text("[1]")
    (tmp_path / "unknown-task").mkdir()
    (tmp_path / "unknown-task" / "config.json").write_text('{"task_name": "chess"}')
    for name, content in (("corrupt", b"\x00garbage"), ("missing-checkpoint", None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_bytes((tmp_path / "good" / "config.json").read_bytes())
        if content is not None:
            (tmp_path / name / "checkpoint.pt").write_bytes(content)
    capsys.readouterr()
    code = main([part.replace("{tmp}", str(tmp_path)) for part in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
