"""Checkpoints: written atomically, read back with a clear error when missing or corrupt."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "relational_rnn.checkpoint/1"
REQUIRED_KEYS = ("format", "step", "model", "optimizer", "scheduler", "rng", "task_state", "elapsed_seconds")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or not one of ours."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically: a temporary file in the same directory, fsync, rename.

    A process killed at any moment leaves either the old checkpoint or the new one, never half
    of one (at worst a `checkpoint.pt.*.tmp` beside it, which the next run of the loop removes).
    The file gets the permissions of any other file the user creates (0666 less the umask), so
    whoever may read `config.json` may also evaluate the checkpoint.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _create_temporary(path)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save({"format": FORMAT, **payload}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new `<name>.<random>.tmp` beside `path`, opened for writing with mode 0666 less the umask
    (unlike `tempfile.mkstemp`, whose files are 0600)."""
    while True:
        temporary = path.with_name(f"{path.name}.{os.urandom(4).hex()}.tmp")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), temporary
        except FileExistsError:
            continue


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; raise `CheckpointError` saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path} (expected a file written by 'rrnn train')")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror}") from None
    except Exception as error:  # torch raises many kinds for a damaged file
        detail = " ".join(str(error).split())[:200]  # one line, however long torch's message
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file ({type(error).__name__}: {detail})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a relational_rnn checkpoint (expected format {FORMAT!r})")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return payload


def capture_rng_state() -> dict[str, Any]:
    """Every random number generator a run touches, in a form `torch.load(weights_only=True)` accepts."""
    numpy_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set every generator `capture_rng_state` saw (its tensors may come back on any device)."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy(), *rest))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([cuda_state.cpu() for cuda_state in state["cuda"]])
