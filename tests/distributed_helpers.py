"""Two-process DDP training for the tests: `torchrun --nproc_per_node 2` imitated on the CPU.

`train_in_two_processes` starts 2 processes with `torch.multiprocessing.spawn`, each given the
environment torchrun would give it (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT), so the
loop's `distributed.process_group` joins them with gloo. Each trains a run stopped after
`stop_at` steps and then resumed to the end of its budget, so a test checks the resume under
DDP too. `assert_same_training` compares such a run with a one-process run of the same options:
with the same global batch the two must log the same numbers and end with the same weights.

In float32 the two differ by more than rounding: Adam divides each gradient by its own scale, so
a near-zero gradient's rounding noise (about Adam's eps) becomes an lr-sized step. Trained in
float64 (`default_dtype`, both runs) that noise is far below eps: the weights agree to ~1e-13.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import torch

from relational_rnn.runs import build_run_config, train_run
from relational_rnn.train import load_checkpoint, read_metrics

PROCESSES = 2


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for one process group's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def default_dtype(dtype: Optional[torch.dtype]) -> Iterator[None]:
    """torch's default floating dtype set to `dtype` meanwhile (None: left as it is)."""
    previous = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _worker(rank: int, ports: list[int], task: str, preset: str, options: list[tuple[str, str]], out_dir: str, stop_at: int,
            dtype: Optional[torch.dtype]) -> None:
    """Process `rank`, set up as torchrun would: `stop_at` steps, then a resume to the end of the budget
    (each start its own process group, hence its own port)."""
    torch.set_num_threads(1)
    if dtype is not None:
        torch.set_default_dtype(dtype)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(PROCESSES), MASTER_ADDR="127.0.0.1")
    first = build_run_config(task, preset, options)
    first.override("steps", str(stop_at))
    os.environ["MASTER_PORT"] = str(ports[0])
    train_run(first, Path(out_dir))
    os.environ["MASTER_PORT"] = str(ports[1])
    train_run(build_run_config(task, preset, options), Path(out_dir), resume=True)


def train_in_two_processes(task: str, options: list[tuple[str, str]], out_dir: Path, stop_at: int, preset: str = "cpu",
                           dtype: Optional[torch.dtype] = None) -> None:
    """Train `task` with `options` into `out_dir` in 2 gloo processes, interrupted after `stop_at` steps and resumed
    (in `dtype` as torch's default floating dtype, if given)."""
    ports = [free_port(), free_port()]
    torch.multiprocessing.spawn(_worker, args=(ports, task, preset, options, str(out_dir), stop_at, dtype), nprocs=PROCESSES)


def assert_same_training(single: Path, ddp: Path, keys: tuple[str, ...], rel: float, rtol: float, atol: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run directories `single` and `ddp` logged evaluations at the same steps with the metrics
    `keys` equal to `rel`, and their final weights agree to (`rtol`, `atol`); returns both checkpoints."""
    records_a, records_b = read_metrics(single / "metrics.jsonl"), read_metrics(ddp / "metrics.jsonl")
    assert [r["step"] for r in records_b] == [r["step"] for r in records_a]
    for a, b in zip(records_a, records_b):
        for key in keys:
            assert b[key] == pytest.approx(a[key], rel=rel), (a["step"], key)
    state_a, state_b = load_checkpoint(single / "checkpoint.pt"), load_checkpoint(ddp / "checkpoint.pt")
    assert state_b["model"].keys() == state_a["model"].keys()
    for name, weight in state_a["model"].items():
        torch.testing.assert_close(state_b["model"][name], weight, rtol=rtol, atol=atol, msg=lambda text: f"{name}: {text}")
    return state_a, state_b
