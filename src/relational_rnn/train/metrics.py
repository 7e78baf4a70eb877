"""The metrics log of a run: one JSON object per evaluation in `metrics.jsonl`.

The loop also keeps the log's text in every checkpoint, so a resume rewrites `metrics.jsonl`
exactly as it was at the checkpoint: a line lost or cut short after it (a kill, a crash
before the file reached the disk, a hand edit) is restored, and no evaluation step goes
missing from the log.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional


class MetricsError(ValueError):
    """A metrics file holds a line that is JSON but not an evaluation record."""


class MetricsLog:
    """Appends evaluation records to `metrics.jsonl` (and to TensorBoard when it is installed)."""

    def __init__(self, path: Path, tensorboard: bool = True) -> None:
        self.path = Path(path)
        self.lines: list[str] = []  # the records written, one JSON line each (with its newline)
        self.writer: Optional[Any] = None
        if tensorboard:
            try:  # optional: only when the tensorboard package is installed
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(self.path.parent / "tensorboard"))
            except ImportError:
                self.writer = None

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=False) + "\n"
        with self.path.open("a") as file:
            file.write(line)
        self.lines.append(line)
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, record["step"])
            self.writer.flush()

    def text(self) -> str:
        """Everything this log holds, as the file's text (what a checkpoint stores)."""
        return "".join(self.lines)

    def replace(self, text: str) -> None:
        """Make the file hold exactly `text` (a checkpoint's copy of the log), atomically."""
        temporary = self.path.with_suffix(".jsonl.tmp")
        temporary.write_text(text)
        temporary.replace(self.path)
        self.lines = text.splitlines(keepends=True)

    def truncate_after(self, step: int) -> None:
        """Drop records after `step`: a resumed run rewrites what the killed run logged past its checkpoint.

        For checkpoints without a copy of the log (written before it kept one)."""
        kept = [record for record in read_metrics(self.path) if record["step"] <= step]
        self.replace("".join(json.dumps(record) + "\n" for record in kept))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def parse_metrics(text: str, source: str = "metrics") -> list[dict[str, Any]]:
    """The records of a metrics log's text. A line that is not JSON (cut short by a kill) is
    skipped; JSON that is not a record (an object with an integer `step`) is a MetricsError."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, bool) or not isinstance(step, int):
            raise MetricsError(f"{source}, line {number}: not an evaluation record (a JSON object with an integer step)")
        records.append(record)
    return records


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All complete records of a metrics file (a line cut short by a kill is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except UnicodeDecodeError as error:
        raise MetricsError(f"{path} is not a text file ({error})") from None
    return parse_metrics(text, str(path))
