"""The metrics log of a run: one JSON object per evaluation in `metrics.jsonl`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional


class MetricsLog:
    """Appends evaluation records to `metrics.jsonl` (and to TensorBoard when it is installed)."""

    def __init__(self, path: Path, tensorboard: bool = True) -> None:
        self.path = Path(path)
        self.writer: Optional[Any] = None
        if tensorboard:
            try:  # optional: only when the tensorboard package is installed
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(self.path.parent / "tensorboard"))
            except ImportError:
                self.writer = None

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as file:
            file.write(json.dumps(record, sort_keys=False) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, record["step"])
            self.writer.flush()

    def truncate_after(self, step: int) -> None:
        """Drop records after `step`: a resumed run rewrites what the killed run logged past its checkpoint."""
        kept = [record for record in read_metrics(self.path) if record["step"] <= step]
        temporary = self.path.with_suffix(".jsonl.tmp")
        temporary.write_text("".join(json.dumps(record) + "\n" for record in kept))
        temporary.replace(self.path)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All complete records of a metrics file (a line cut short by a kill is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
