"""DeltaNet: linear attention with the delta rule (Schlag et al. 2021; Yang et al. 2024).

Like the RMC's, its state is a fixed-size matrix memory: per layer and head a matrix
W [value_size, key_size], written to at every step with the delta rule,

    W_t = W_{t-1} + beta_t (v_t - W_{t-1} k_t) k_t^T,        output o_t = W_t q_t,

that is: read what the memory holds under key k_t, and move it a fraction beta_t in (0, 1)
towards v_t (a step of online regression of v on k). Keys and queries are L2-normalised per
head (so each write is bounded and W stays well conditioned, as in Yang et al. 2024), and
beta_t = sigmoid(Linear(h_t)) per head, computed from the input.

One layer (pre-norm): q, k, v, beta from LayerNorm(h); h = h + out(concat of the heads' o_t);
h = h + MLP(LayerNorm(h)) with MLP Linear(d, m), GELU, Linear(m, d) (m = 4d unless sized); then a
final LayerNorm.

Two ways to run the recurrence, equal up to rounding (tests/test_deltanet.py: float64, 1e-10):

* `delta_rule_steps`: the formula above, one step at a time; the definition;
* `delta_rule_chunked` (the default, `chunk_size` steps at once): the WY form of Yang et al.
  2024. Within a chunk starting from W_0, W_t = W_0 + sum_{i<=t} u_i k_i^T, where the u_i
  solve the unit lower-triangular system u_i + beta_i sum_{j<i} (k_i . k_j) u_j =
  beta_i (v_i - W_0 k_i): one triangular solve per chunk instead of `chunk_size` sequential
  rank-one updates; the outputs are W_0 q_t + sum_{i<=t} (k_i . q_t) u_i.

With `lengths`, the steps past an entry's length get beta = 0 (no write), so its final state
is the one after its own last step. State: W [layers, B, heads, value_size, key_size], zero
at the start. Cost per step: O(d^2 / heads) per layer for the recurrence (independent of the
sequence length), O(d^2) for the projections and MLP.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import LayerStackCore, _check_positive_int, _check_state_tensor, register_core
from .transformer import HeadsLayer, sized_widths


def delta_rule_steps(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
    """The delta rule one step at a time.

    q, k [B, H, T, key_size], v [B, H, T, value_size], beta [B, H, T], memory W [B, H, value_size, key_size]
    -> (outputs [B, H, T, value_size], final memory).
    """
    outputs = []
    for q_t, k_t, v_t, beta_t in zip(q.unbind(2), k.unbind(2), v.unbind(2), beta.unbind(2)):
        read = torch.einsum("bhvk,bhk->bhv", memory, k_t)
        memory = memory + torch.einsum("bhv,bhk->bhvk", beta_t.unsqueeze(-1) * (v_t - read), k_t)
        outputs.append(torch.einsum("bhvk,bhk->bhv", memory, q_t))
    return torch.stack(outputs, dim=2), memory


def delta_rule_chunked(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, memory: Tensor, chunk_size: int = 64
) -> tuple[Tensor, Tensor]:
    """The delta rule `chunk_size` steps at a time (the WY form, see the module docstring); same
    arguments and results as `delta_rule_steps`."""
    outputs = []
    steps = q.shape[2]
    for start in range(0, steps, chunk_size):
        chunk = slice(start, min(start + chunk_size, steps))
        q_c, k_c, v_c, beta_c = q[:, :, chunk], k[:, :, chunk], v[:, :, chunk], beta[:, :, chunk]
        length = q_c.shape[2]
        # (I + strictly-lower(diag(beta) K K^T)) U = diag(beta) (V - K W_0^T)
        strictly_lower = torch.tril(beta_c.unsqueeze(-1) * (k_c @ k_c.transpose(-1, -2)), diagonal=-1)
        system = strictly_lower + torch.eye(length, device=q.device, dtype=q.dtype)
        right = beta_c.unsqueeze(-1) * (v_c - k_c @ memory.transpose(-1, -2))
        u = torch.linalg.solve_triangular(system, right, upper=False, unitriangular=True)  # [B, H, C, value_size]
        scores = torch.tril(q_c @ k_c.transpose(-1, -2))  # k_i . q_t for i <= t
        outputs.append(q_c @ memory.transpose(-1, -2) + scores @ u)
        memory = memory + u.transpose(-1, -2) @ k_c
    return torch.cat(outputs, dim=2), memory


class DeltaNetLayer(HeadsLayer):
    """One pre-norm layer: a multi-head delta-rule memory, then an MLP."""

    def __init__(self, model_size: int, num_heads: int, mlp_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_size = model_size // num_heads
        self.memory_norm = nn.LayerNorm(model_size)
        self.qkv = nn.Linear(model_size, 3 * model_size)
        self.beta = nn.Linear(model_size, num_heads)
        self.out = nn.Linear(model_size, model_size)
        self.mlp_norm = nn.LayerNorm(model_size)
        self.mlp = nn.Sequential(nn.Linear(model_size, mlp_size), nn.GELU(), nn.Linear(mlp_size, model_size))

    def forward(self, h: Tensor, memory: Tensor, keep: Optional[Tensor], chunk_size: Optional[int]) -> tuple[Tensor, Tensor]:
        """h [B, T, d], memory [B, heads, head_size, head_size], keep [B, T] or None -> (new h, final memory)."""
        normed = self.memory_norm(h)
        q, k, v = self.heads(normed)  # each [B, heads, T, head_size]
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        beta = torch.sigmoid(self.beta(normed)).transpose(1, 2)  # [B, heads, T]
        if keep is not None:
            beta = beta * keep.unsqueeze(1).to(beta.dtype)  # no write past an entry's length
        if chunk_size is None:
            outputs, memory = delta_rule_steps(q, k, v, beta, memory)
        else:
            outputs, memory = delta_rule_chunked(q, k, v, beta, memory, chunk_size)
        return self.finish(h, outputs), memory


class DeltaNetCore(LayerStackCore):
    """A stack of delta-rule memory layers with the core contract.

    `outputs, state = core(x, state=None, lengths=None)`: x (T, B, input_size), or
    (B, T, input_size) with `batch_first`; outputs model_size features per step; state W
    [layers, B, heads, head_size, head_size]. `chunk_size` (None: step by step) picks the
    form of the recurrence; both give the same numbers up to rounding.
    """

    state_batch_dim = 1  # W [layers, B, heads, value_size, key_size]
    extra_option = "chunk_size"

    def __init__(
        self,
        input_size: int,
        model_size: int,
        num_layers: int = 2,
        num_heads: int = 4,
        mlp_size: Optional[int] = None,
        *,
        batch_first: bool = False,
        chunk_size: Optional[int] = 64,
    ) -> None:
        super().__init__()
        mlp_size = self._check_sizes(input_size, model_size, num_layers, num_heads, mlp_size)
        if chunk_size is not None:
            _check_positive_int("chunk_size", chunk_size)
        if model_size % num_heads:
            raise ValueError(f"model_size must be a multiple of num_heads = {num_heads}, got {model_size}")
        self.chunk_size = chunk_size
        self._build_layers(DeltaNetLayer, input_size, model_size, num_layers, num_heads, mlp_size, batch_first)

    def initial_state(
        self, batch_size: int, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None
    ) -> Tensor:
        """An empty memory: zeros [layers, batch_size, heads, head_size, head_size]."""
        options = self.state_options(batch_size, device, dtype, self.input_projection.weight)
        return torch.zeros((self.num_layers, batch_size, self.num_heads, self.head_size, self.head_size), **options)

    def check_state(self, state: object, batch: int, like: Tensor) -> None:
        expected = (self.num_layers, batch, self.num_heads, self.head_size, self.head_size)
        _check_state_tensor(state, expected, "layers, batch, heads, head_size, head_size")

    def _run(self, x: Tensor, state: Tensor, lengths: Optional[Tensor], keep: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """x [B, T, input_size] (T >= 1) -> (outputs [B, T, model_size], the memory after each entry's last step)."""
        batch, steps = x.shape[0], x.shape[1]
        keep = None if keep is None else keep.view(steps, batch).transpose(0, 1)  # [B, T]
        h = self.input_projection(x)
        memories = []
        for index, layer in enumerate(self.layers):
            h, memory = layer(h, state[index], keep, self.chunk_size)
            memories.append(memory)
        return self.final_norm(h), torch.stack(memories)


@register_core("deltanet", "linear attention with the delta rule: per head a matrix memory written at every step")
def build_deltanet(config, input_size: int, batch_first: bool = False) -> DeltaNetCore:
    def make(width: int, mlp_size: Optional[int]) -> DeltaNetCore:
        return DeltaNetCore(input_size, width, config.deltanet_layers, config.deltanet_heads, mlp_size, batch_first=batch_first)

    width, mlp_size = sized_widths(make, config.deltanet_size, config.deltanet_mlp_size, config.deltanet_heads, config, input_size)
    return make(width, mlp_size)
