"""The LSTM baseline: `torch.nn.LSTM` behind the same interface as `RelationalMemory`."""

from __future__ import annotations

import math

from torch import Tensor, nn

from .base import TorchRNNCore, _check_positive_int, _check_state_parts, register_core, torch_rnn_parameter_count
from .relational_memory import target_parameters

LSTMState = tuple[Tensor, Tensor]


def lstm_parameter_count(input_size: int, hidden_size: int, num_layers: int = 1) -> int:
    """Parameters of `nn.LSTM(input_size, hidden_size, num_layers)` (two bias vectors per layer)."""
    return torch_rnn_parameter_count(4, input_size, hidden_size, num_layers)


def lstm_hidden_size_for(parameters: int, input_size: int, num_layers: int = 1) -> int:
    """The hidden size whose `nn.LSTM` parameter count is closest to `parameters`."""
    _check_positive_int("parameters", parameters)
    # One layer: 4h^2 + 4h(input + 2) = P; more layers add 8h^2 + 8h each. Solve, then search nearby.
    a = 4 + 8 * (num_layers - 1)
    b = 4 * (input_size + 2) + 8 * (num_layers - 1)
    guess = max(1, int((-b + math.sqrt(b * b + 4 * a * parameters)) / (2 * a)))
    candidates = range(max(1, guess - 2), guess + 3)
    return min(candidates, key=lambda h: abs(lstm_parameter_count(input_size, h, num_layers) - parameters))


class LSTMCore(TorchRNNCore):
    """`torch.nn.LSTM` with the core contract: `outputs, state = core(x, state=None, lengths=None)`.

    `state` is the LSTM's `(h, c)`, each (num_layers, B, hidden_size); outputs are the last
    layer's hidden states, (T, B, hidden_size) or (B, T, hidden_size) with `batch_first`.
    """

    state_batch_dim = (1, 1)  # h and c, each [num_layers, B, hidden_size]
    rnn_class = nn.LSTM
    rnn_name = "lstm"

    def check_state(self, state: object, batch: int, like: Tensor) -> None:
        expected = (self.num_layers, batch, self.hidden_size)
        if not (isinstance(state, (tuple, list)) and len(state) == 2 and all(isinstance(s, Tensor) for s in state)):
            raise ValueError(f"state must be a pair (h, c) of tensors of shape {expected}")
        _check_state_parts(zip("hc", state), expected, "num_layers, batch, hidden", like)


@register_core("lstm", "torch.nn.LSTM, sized to the RMC's parameter count unless lstm_hidden is set")
def build_lstm(config, input_size: int, batch_first: bool = False) -> LSTMCore:
    hidden = config.lstm_hidden
    if hidden is None:
        hidden = lstm_hidden_size_for(target_parameters(config, input_size), input_size, config.lstm_layers)
    return LSTMCore(input_size, hidden, config.lstm_layers, batch_first=batch_first)
