"""The GRU baseline: `torch.nn.GRU` behind the core contract (cores/base.py).

A GRU has one state vector per layer (no separate cell as in the LSTM) and three gates'
worth of weights instead of four, so at equal parameters it is about 15% wider.
"""

from __future__ import annotations

from torch import Tensor, nn

from .base import TorchRNNCore, _check_state_tensor, register_core, torch_rnn_parameter_count, width_for_parameters
from .relational_memory import target_parameters


def gru_parameter_count(input_size: int, hidden_size: int, num_layers: int = 1) -> int:
    """Parameters of `nn.GRU(input_size, hidden_size, num_layers)` (two bias vectors per layer)."""
    return torch_rnn_parameter_count(3, input_size, hidden_size, num_layers)


class GRUCore(TorchRNNCore):
    """`torch.nn.GRU` with the core contract: `outputs, state = core(x, state=None, lengths=None)`.

    `state` is the GRU's h, (num_layers, B, hidden_size), zeros at the start; outputs are the
    last layer's hidden states, (T, B, hidden_size) or (B, T, hidden_size) with `batch_first`.
    """

    state_batch_dim = 1  # h [num_layers, B, hidden_size]
    rnn_class = nn.GRU
    rnn_name = "gru"

    def check_state(self, state: object, batch: int, like: Tensor) -> None:
        expected = (self.num_layers, batch, self.hidden_size)
        _check_state_tensor(state, expected, "num_layers, batch, hidden")


@register_core("gru", "torch.nn.GRU, sized to the RMC's parameter count unless gru_hidden is set")
def build_gru(config, input_size: int, batch_first: bool = False) -> GRUCore:
    hidden = config.gru_hidden
    if hidden is None:
        target = target_parameters(config, input_size)
        hidden = width_for_parameters(
            target, lambda h: gru_parameter_count(input_size, h, config.gru_layers), range(1, 1 << 16)
        )
    return GRUCore(input_size, hidden, config.gru_layers, batch_first=batch_first)
