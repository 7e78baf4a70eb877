"""rrnn inspect: attention pictures for RMC runs, a clear refusal for LSTM runs."""

from relational_rnn.cli import build_run_config, main
from relational_rnn.train import train

TINY = [("mem_slots", "2"), ("head_size", "4"), ("num_heads", "2"), ("num_vectors", "3"), ("vector_dim", "2"),
        ("batch_size", "8"), ("eval_samples", "40"), ("mlp_hidden", "8"), ("threads", "1"), ("steps", "2"), ("eval_every", "2")]


def test_inspect_writes_pictures_for_an_rmc_run(tmp_path, capsys):
    train(build_run_config("nth-farthest", "cpu", TINY), tmp_path / "rmc")
    assert main(["inspect", str(tmp_path / "rmc"), "--samples", "2", "--out", str(tmp_path / "pictures")]) == 0
    names = sorted(p.name for p in (tmp_path / "pictures").iterdir())
    assert names == ["attention_by_role.png", "attention_sample0.png", "attention_sample1.png"]
    assert all((tmp_path / "pictures" / name).stat().st_size > 2000 for name in names)


def test_inspect_refuses_an_lstm_run(tmp_path, capsys):
    train(build_run_config("nth-farthest", "cpu", TINY + [("core", "lstm")]), tmp_path / "lstm")
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "lstm"), "--out", str(tmp_path / "pictures")]) == 2
    err = capsys.readouterr().err
    assert "'lstm' core" in err and "needs an RMC run" in err and len(err.strip().splitlines()) == 1
