"""relational-rnn: a faithful, fast Relational Memory Core for PyTorch.

The names below are imported on first use (PEP 562), so `import relational_rnn` (and the
`rrnn` command line starting up) does not import torch until something needs it: a Ctrl-C
while torch loads then reaches `rrnn`'s own handling instead of printing a traceback.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CORES": ".cores",
    "CoreConfig": ".cores",
    "DeltaNetCore": ".cores",
    "GRUCore": ".cores",
    "LSTMCore": ".cores",
    "RecurrentCore": ".cores",
    "RelationalMemory": ".cores",
    "RelationalMemoryCell": ".cores",
    "TransformerCore": ".cores",
    "build_core": ".cores",
    "count_parameters": ".cores",
    "lstm_hidden_size_for": ".cores",
    "recording": ".cores",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
