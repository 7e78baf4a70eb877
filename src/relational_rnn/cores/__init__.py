"""Recurrent cores with one contract, so every task can swap them with one option.

    outputs, state = core(x, state=None, lengths=None)
    core.initial_state(batch_size, device=None, dtype=None)
    core.reset_state(state, done)        # fresh state where done[b] is true
    core.output_size                     # features per step of `outputs`
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import nn

from .lstm import LSTMCore, lstm_hidden_size_for, lstm_parameter_count
from .relational_memory import CoreTrace, RelationalMemory, RelationalMemoryCell, identity_memory, recording

CORE_KINDS = ("rmc", "lstm")

__all__ = [
    "CORE_KINDS",
    "CoreConfig",
    "CoreTrace",
    "LSTMCore",
    "RelationalMemory",
    "RelationalMemoryCell",
    "build_core",
    "count_parameters",
    "identity_memory",
    "lstm_hidden_size_for",
    "lstm_parameter_count",
    "recording",
]


@dataclass
class CoreConfig:
    """Which core a task uses and its sizes. The LSTM, unless sized by `lstm_hidden`, gets
    about the parameter count of the RMC described by the other fields."""

    core: str = "rmc"
    mem_slots: int = 4
    head_size: int = 16
    num_heads: int = 4
    num_blocks: int = 1
    gate_style: Optional[str] = "unit"
    attention_mlp_layers: int = 2
    key_size: Optional[int] = None
    forget_bias: float = 1.0
    input_bias: float = 0.0
    lstm_hidden: Optional[int] = None
    lstm_layers: int = 1


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _rmc_options(config: CoreConfig) -> dict:
    return dict(
        num_heads=config.num_heads,
        num_blocks=config.num_blocks,
        gate_style=config.gate_style,
        attention_mlp_layers=config.attention_mlp_layers,
        key_size=config.key_size,
        forget_bias=config.forget_bias,
        input_bias=config.input_bias,
    )


def build_core(config: CoreConfig, input_size: int, batch_first: bool = False) -> nn.Module:
    """Build the core named by `config.core` ("rmc" or "lstm") for inputs of `input_size` features."""
    if config.core == "rmc":
        return RelationalMemory(
            input_size, config.mem_slots, config.head_size, batch_first=batch_first, **_rmc_options(config)
        )
    if config.core == "lstm":
        hidden = config.lstm_hidden
        if hidden is None:
            rmc = RelationalMemory(input_size, config.mem_slots, config.head_size, **_rmc_options(config))
            hidden = lstm_hidden_size_for(count_parameters(rmc), input_size, config.lstm_layers)
        return LSTMCore(input_size, hidden, config.lstm_layers, batch_first=batch_first)
    raise ValueError(f"unknown core {config.core!r}; expected one of {', '.join(CORE_KINDS)}")
