"""Recurrent cores with one contract, so every task can swap them with one option (`--core NAME`).

The contract is `RecurrentCore` (cores/base.py):

    outputs, state = core(x, state=None, lengths=None)  # x may also be a PackedSequence
    core.initial_state(batch_size, device=None, dtype=None)
    core.reset_state(state, done)        # fresh state where done[b] is true
    core.detach_state(state), core.select_state(state, index)
    core.output_size                     # features per step of `outputs`

Each core lives in its own file and registers itself in `CORES` under its `--core` name:
rmc (relational_memory.py), lstm, gru, transformer and deltanet. `build_core(config, ...)`
builds the one `config.core` names; docs/cores.md describes each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .base import CORES, CoreKind, RecurrentCore, State, count_parameters, register_core, width_for_parameters

# Importing a core's module registers it; this order is the registry's (the RMC first).
from .relational_memory import CoreTrace, RelationalMemory, RelationalMemoryCell, identity_memory, recording
from .lstm import LSTMCore, lstm_hidden_size_for, lstm_parameter_count
from .gru import GRUCore
from .transformer import TransformerCore
from .deltanet import DeltaNetCore

CORE_KINDS = tuple(CORES)  # the registered names, in registration order: rmc first

__all__ = [
    "CORES",
    "CORE_KINDS",
    "CoreConfig",
    "CoreKind",
    "CoreTrace",
    "DeltaNetCore",
    "GRUCore",
    "LSTMCore",
    "RecurrentCore",
    "RelationalMemory",
    "RelationalMemoryCell",
    "State",
    "TransformerCore",
    "build_core",
    "count_parameters",
    "identity_memory",
    "lstm_hidden_size_for",
    "lstm_parameter_count",
    "recording",
    "register_core",
    "width_for_parameters",
]


@dataclass
class CoreConfig:
    """Which core a task uses and its sizes (plain data, saved in each run's config.json).

    The RMC fields describe the RMC; every other core, unless its width field is set
    (`lstm_hidden`, `gru_hidden`, `transformer_size`, `deltanet_size`), gets about the
    parameter count of that RMC, or `size_to_parameters` when given. Fields added later
    have defaults, so older config.json files still load.
    """

    core: str = "rmc"  # which core: a name in the registry CORES (rmc, lstm, gru, transformer, deltanet)
    mem_slots: int = 4  # RMC: memory slots N
    head_size: int = 16  # RMC: width of each attention head (a slot is num_heads * head_size wide)
    num_heads: int = 4  # RMC: attention heads
    num_blocks: int = 1  # RMC: attention blocks (attend, then MLP) per time step
    gate_style: Optional[str] = "unit"  # RMC: "unit" (a gate per unit), "memory" (per slot) or None (no gating)
    attention_mlp_layers: int = 2  # RMC: layers of the MLP after each attention block
    key_size: Optional[int] = None  # RMC: width of queries and keys per head (None: head_size)
    attention_scale: str = "key"  # "key" or "qkv", see docs/core.md
    attention: str = "full"  # ablation (docs/questions.md): "full", "input-only" (no slot-to-slot exchange) or "none"
    slot_binding: str = "learned"  # "learned" (the paper's model) or "position": a diagnostic oracle, input t written into slot t mod N only
    forget_bias: float = 1.0  # RMC: constant added to the forget gate before its sigmoid
    input_bias: float = 0.0  # RMC: constant added to the input gate before its sigmoid
    lstm_hidden: Optional[int] = None  # LSTM width (None: sized to the RMC's parameter count)
    lstm_layers: int = 1  # stacked LSTM layers
    size_to_parameters: Optional[int] = None  # the parameter count the non-RMC cores are sized to (None: the RMC's)
    gru_hidden: Optional[int] = None  # GRU width (None: sized to the RMC's parameter count)
    gru_layers: int = 1  # stacked GRU layers
    transformer_size: Optional[int] = None  # model width, a multiple of transformer_heads
    transformer_layers: int = 2  # Transformer layers
    transformer_heads: int = 4  # Transformer attention heads
    transformer_window: int = 128  # steps of keys and values each layer keeps (the state)
    transformer_mlp_size: Optional[int] = None  # None: 4 * transformer_size, or sized with it
    deltanet_size: Optional[int] = None  # model width, a multiple of deltanet_heads
    deltanet_layers: int = 2  # DeltaNet layers
    deltanet_heads: int = 4  # DeltaNet heads, one matrix memory each
    deltanet_mlp_size: Optional[int] = None  # None: 4 * deltanet_size, or sized with it


def build_core(config: CoreConfig, input_size: int, batch_first: bool = False) -> RecurrentCore:
    """Build the core named by `config.core` (one of `CORES`) for inputs of `input_size` features."""
    kind = CORES.get(config.core)
    if kind is None:
        raise ValueError(f"unknown core {config.core!r}; expected one of {', '.join(CORES)}")
    return kind.build(config, input_size, batch_first)
