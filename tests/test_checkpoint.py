"""Checkpoints: atomic writes, clear errors for missing, corrupt or foreign files, RNG round trip."""

import random

import numpy as np
import pytest
import torch

from relational_rnn.train.checkpoint import CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint

PAYLOAD = {"step": 3, "elapsed_seconds": 1.0, "model": {"w": torch.ones(2)}, "optimizer": {}, "scheduler": {}, "rng": {}, "task_state": {}}


def test_save_is_atomic_and_round_trips(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, PAYLOAD)
    save_checkpoint(path, PAYLOAD | {"step": 4})
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left behind
    assert load_checkpoint(path)["step"] == 4


def test_a_failed_write_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, PAYLOAD)
    with pytest.raises(Exception):
        save_checkpoint(path, PAYLOAD | {"model": lambda: None})  # cannot be pickled
    assert load_checkpoint(path)["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "junk.pt")
    save_checkpoint(tmp_path / "good.pt", PAYLOAD)
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a relational_rnn checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    state = capture_rng_state()
    save_checkpoint(tmp_path / "c.pt", PAYLOAD | {"rng": state})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_checkpoint_mode_follows_the_umask_and_unreadable_is_said_so(tmp_path, monkeypatch):
    import os
    import stat

    previous = os.umask(0o027)
    try:
        save_checkpoint(tmp_path / "c.pt", PAYLOAD)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "c.pt").stat().st_mode) == 0o640  # not tempfile's 0600

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*c.pt: Permission denied"):
        load_checkpoint(tmp_path / "c.pt")
