"""The LSTM baseline: `torch.nn.LSTM` behind the same interface as `RelationalMemory`."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .relational_memory import _check_positive_int, _length_mask

LSTMState = tuple[Tensor, Tensor]


def lstm_parameter_count(input_size: int, hidden_size: int, num_layers: int = 1) -> int:
    """Parameters of `nn.LSTM(input_size, hidden_size, num_layers)` (two bias vectors per layer)."""
    total = 0
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else hidden_size
        total += 4 * hidden_size * (layer_input + hidden_size) + 8 * hidden_size
    return total


def lstm_hidden_size_for(parameters: int, input_size: int, num_layers: int = 1) -> int:
    """The hidden size whose `nn.LSTM` parameter count is closest to `parameters`."""
    _check_positive_int("parameters", parameters)
    # One layer: 4h^2 + 4h(input + 2) = P; more layers add 8h^2 + 8h each. Solve, then search nearby.
    a = 4 + 8 * (num_layers - 1)
    b = 4 * (input_size + 2) + 8 * (num_layers - 1)
    guess = max(1, int((-b + math.sqrt(b * b + 4 * a * parameters)) / (2 * a)))
    candidates = range(max(1, guess - 2), guess + 3)
    return min(candidates, key=lambda h: abs(lstm_parameter_count(input_size, h, num_layers) - parameters))


class LSTMCore(nn.Module):
    """`torch.nn.LSTM` with the core contract: `outputs, state = core(x, state=None, lengths=None)`.

    `state` is the LSTM's `(h, c)`, each (num_layers, B, hidden_size); outputs are the last
    layer's hidden states, (T, B, hidden_size) or (B, T, hidden_size) with `batch_first`.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *, batch_first: bool = False) -> None:
        super().__init__()
        _check_positive_int("input_size", input_size)
        _check_positive_int("hidden_size", hidden_size)
        _check_positive_int("num_layers", num_layers)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=batch_first)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def initial_state(
        self,
        batch_size: int,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> LSTMState:
        """Zero (h, c), each (num_layers, batch_size, hidden_size)."""
        _check_positive_int("batch_size", batch_size)
        reference = self.lstm.weight_ih_l0
        shape = (self.num_layers, batch_size, self.hidden_size)
        device = device if device is not None else reference.device
        dtype = dtype if dtype is not None else reference.dtype
        return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)

    def reset_state(self, state: LSTMState, done: Tensor) -> LSTMState:
        """Zero the state of batch entries where `done` [B] is true."""
        keep = (~done.to(torch.bool)).view(1, -1, 1)
        return tuple(torch.where(keep, part, torch.zeros_like(part)) for part in state)

    def _check_state(self, state: object, batch: int, like: Tensor) -> None:
        expected = (self.num_layers, batch, self.hidden_size)
        if not (isinstance(state, (tuple, list)) and len(state) == 2 and all(isinstance(s, Tensor) for s in state)):
            raise ValueError(f"state must be a pair (h, c) of tensors of shape {expected}")
        for name, part in zip("hc", state):
            if tuple(part.shape) != expected:
                raise ValueError(f"state {name} must have shape (num_layers, batch, hidden) = {expected}, got {tuple(part.shape)}")
            if part.device != like.device:
                raise ValueError(f"state {name} is on {part.device} but the input is on {like.device}")

    def forward(
        self, x: Tensor, state: Optional[LSTMState] = None, lengths: Optional[Tensor] = None
    ) -> tuple[Tensor, LSTMState]:
        layout = "(batch, time, input_size)" if self.batch_first else "(time, batch, input_size)"
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.input_size:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"input must have shape {layout} with input_size={self.input_size}, got {shape}")
        steps, batch = (x.shape[1], x.shape[0]) if self.batch_first else (x.shape[0], x.shape[1])
        if state is None:
            state = self.initial_state(batch, device=x.device, dtype=x.dtype)
        else:
            self._check_state(state, batch, x)
        if lengths is None:
            outputs, (h, c) = self.lstm(x, tuple(state))
            return outputs, (h, c)
        _length_mask(lengths, steps, batch, x.device)  # validates lengths
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=self.batch_first, enforce_sorted=False)
        outputs, (h, c) = self.lstm(packed, tuple(state))
        outputs, _ = pad_packed_sequence(outputs, batch_first=self.batch_first, total_length=steps)
        return outputs, (h, c)
