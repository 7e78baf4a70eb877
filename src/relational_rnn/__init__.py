"""relational-rnn: a faithful, fast Relational Memory Core for PyTorch."""

from .cores import (
    CoreConfig,
    LSTMCore,
    RelationalMemory,
    RelationalMemoryCell,
    build_core,
    count_parameters,
    lstm_hidden_size_for,
    recording,
)

__all__ = [
    "CoreConfig",
    "LSTMCore",
    "RelationalMemory",
    "RelationalMemoryCell",
    "build_core",
    "count_parameters",
    "lstm_hidden_size_for",
    "recording",
]
__version__ = "0.1.0"
