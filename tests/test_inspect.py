"""rrnn inspect: attention pictures for RMC runs, a clear refusal for LSTM runs."""

from relational_rnn.cli import main
from relational_rnn.runs import build_run_config, train_run
from test_lm_task import corpus_dir  # noqa: F401  (a fixture: a tiny WikiText-layout corpus)

TINY = [("mem_slots", "2"), ("head_size", "4"), ("num_heads", "2"), ("num_vectors", "3"), ("vector_dim", "2"),
        ("batch_size", "8"), ("eval_samples", "40"), ("mlp_hidden", "8"), ("threads", "1"), ("steps", "2"), ("eval_every", "2")]


def test_inspect_writes_pictures_for_an_rmc_run(tmp_path, capsys):
    train_run(build_run_config("nth-farthest", "cpu", TINY), tmp_path / "rmc")
    assert main(["inspect", str(tmp_path / "rmc"), "--samples", "2", "--out", str(tmp_path / "pictures")]) == 0
    names = sorted(p.name for p in (tmp_path / "pictures").iterdir())
    assert names == ["attention_by_role.png", "attention_sample0.png", "attention_sample1.png"]
    assert all((tmp_path / "pictures" / name).stat().st_size > 2000 for name in names)


def test_inspect_refuses_an_lstm_run(tmp_path, capsys):
    train_run(build_run_config("nth-farthest", "cpu", TINY + [("core", "lstm")]), tmp_path / "lstm")
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "lstm"), "--out", str(tmp_path / "pictures")]) == 2
    err = capsys.readouterr().err
    assert "'lstm' core" in err and "needs an RMC run" in err and len(err.strip().splitlines()) == 1


def _inspect_writes_one_picture_per_sample(run_dir, out_dir):
    assert main(["inspect", str(run_dir), "--samples", "2", "--out", str(out_dir)]) == 0
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["attention_sample0.png", "attention_sample1.png"]


def test_inspect_works_for_lte_and_pacman_runs(tmp_path):
    from test_lte_task import TINY as LTE_TINY
    from test_pacman_task import TINY as PACMAN_TINY

    short = [("steps", "1"), ("eval_every", "1")]
    train_run(build_run_config("lte", "cpu", LTE_TINY + short), tmp_path / "lte")
    _inspect_writes_one_picture_per_sample(tmp_path / "lte", tmp_path / "lte-pictures")
    train_run(build_run_config("pacman", "cpu", PACMAN_TINY + short), tmp_path / "pacman")
    _inspect_writes_one_picture_per_sample(tmp_path / "pacman", tmp_path / "pacman-pictures")


def test_inspect_works_for_lm_runs(tmp_path, corpus_dir):
    from test_lm_task import tiny

    train_run(build_run_config("lm", "cpu", tiny(corpus_dir) + [("steps", "1"), ("eval_every", "1")]), tmp_path / "lm")
    _inspect_writes_one_picture_per_sample(tmp_path / "lm", tmp_path / "lm-pictures")
