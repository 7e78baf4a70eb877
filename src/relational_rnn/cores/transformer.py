"""A causal pre-norm Transformer that runs recurrently: its state is a sliding cache of keys and values.

Each layer keeps the keys and values of the last `window` steps (a sliding KV cache, as in
Transformer-XL), so the model can be called one window of the LM, one RL step or one whole
sequence at a time, and truncated backprop works as with any recurrent core: each step
attends to itself and to the `window` steps before it, whether those came in this call or
an earlier one. Sequences longer than the window see only the window.

One layer (pre-norm, as in GPT-2 and most Transformers since):

    h = h + out(attention(q, k, v))    with q, k, v from LayerNorm(h), heads of width d / heads
    h = h + MLP(LayerNorm(h))          MLP: Linear(d, m), GELU, Linear(m, d), m = 4d unless sized

then a final LayerNorm. Positions are rotary (RoPE, Su et al. 2021): the score of query t and
key s depends only on t - s, so the cached keys are stored unrotated and rotated by their
place in [cache; this call's steps] at each call, and no absolute step count is needed.
Attention is `torch.nn.functional.scaled_dot_product_attention` with a boolean mask that
hides empty cache slots (the first `window` steps after a reset) and steps outside the window.

State: (keys [layers, B, heads, window, head_size], values (same shape), filled [B, window]
booleans: which cache slots hold a step). Cost per step: O(window * d) per layer for
attention, O(d^2) for the projections and MLP, and the state is window * 2d numbers per layer.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import LayerStackCore, _check_state_parts, parameters_of, register_core, width_for_parameters
from .relational_memory import target_parameters

TransformerState = tuple[Tensor, Tensor, Tensor]
ROPE_BASE = 10_000.0


def rotate(x: Tensor, positions: Tensor) -> Tensor:
    """Rotary position embedding: x [..., P, head_size] rotated by angle position * frequency.

    The two halves of each head form the pairs (x1[i], x2[i]), rotated by positions * ROPE_BASE**(-2i/head_size).
    """
    half = x.shape[-1] // 2
    frequencies = ROPE_BASE ** (-torch.arange(half, device=x.device, dtype=x.dtype) / half)
    angles = positions.to(x.dtype).unsqueeze(-1) * frequencies  # [P, half]
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class HeadsLayer(nn.Module):
    """What a pre-norm layer of heads (the Transformer's, DeltaNet's) does around its heads:
    `heads` splits the rows into queries, keys and values per head, `finish` merges the heads'
    outputs back (the residual through `out`) and adds the MLP's residual. A subclass makes
    `num_heads`, `head_size`, `qkv`, `out`, `mlp_norm` and `mlp` (in the order its
    initialisation wants; their names are the state dict's)."""

    def heads(self, normed: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """normed [B, T, d] -> queries, keys, values, each [B, heads, T, head_size]."""
        batch, steps = normed.shape[0], normed.shape[1]
        qkv = self.qkv(normed).view(batch, steps, 3, self.num_heads, self.head_size)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def finish(self, h: Tensor, outputs: Tensor) -> Tensor:
        """h [B, T, d] and the heads' outputs [B, heads, T, head_size] -> the layer's new h."""
        h = h + self.out(outputs.transpose(1, 2).reshape(h.shape))
        return h + self.mlp(self.mlp_norm(h))


class TransformerLayer(HeadsLayer):
    """One pre-norm layer: causal self-attention over [cache; new steps], then an MLP."""

    def __init__(self, model_size: int, num_heads: int, mlp_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_size = model_size // num_heads
        self.attention_norm = nn.LayerNorm(model_size)
        self.qkv = nn.Linear(model_size, 3 * model_size)
        self.out = nn.Linear(model_size, model_size)
        self.mlp_norm = nn.LayerNorm(model_size)
        self.mlp = nn.Sequential(nn.Linear(model_size, mlp_size), nn.GELU(), nn.Linear(mlp_size, model_size))

    def forward(self, h: Tensor, cached_keys: Tensor, cached_values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h [B, T, d], cache [B, heads, W, head_size], mask [B, 1, T, W + T] (true: may attend)
        -> (new h, all keys [B, heads, W + T, head_size] unrotated, all values)."""
        steps, window = h.shape[1], cached_keys.shape[2]
        queries, keys, values = self.heads(self.attention_norm(h))
        keys = torch.cat([cached_keys, keys], dim=2)
        values = torch.cat([cached_values, values], dim=2)
        positions = torch.arange(window + steps, device=h.device)
        attended = F.scaled_dot_product_attention(
            rotate(queries, positions[window:]), rotate(keys, positions), values, attn_mask=mask
        )
        return self.finish(h, attended), keys, values


class TransformerCore(LayerStackCore):
    """A causal pre-norm Transformer with a sliding KV cache of `window` steps as its state.

    `outputs, state = core(x, state=None, lengths=None)`: x (T, B, input_size), or
    (B, T, input_size) with `batch_first`; outputs (same layout, model_size features): the
    final LayerNorm of the last layer. With `lengths`, entry b's state is the cache after its
    own lengths[b] steps.
    """

    state_batch_dim = (1, 1, 0)  # keys, values [layers, B, ...], filled [B, window]
    extra_option = "window"

    def __init__(
        self,
        input_size: int,
        model_size: int,
        num_layers: int = 2,
        num_heads: int = 4,
        window: int = 128,
        mlp_size: Optional[int] = None,
        *,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        mlp_size = self._check_sizes(input_size, model_size, num_layers, num_heads, mlp_size, window=window)
        if model_size % (2 * num_heads):
            raise ValueError(f"model_size must be a multiple of 2 * num_heads = {2 * num_heads} (rotary pairs), got {model_size}")
        self.window = window
        self._build_layers(TransformerLayer, input_size, model_size, num_layers, num_heads, mlp_size, batch_first)

    def initial_state(
        self, batch_size: int, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None
    ) -> TransformerState:
        """An empty cache: zero keys and values, no slot filled."""
        options = self.state_options(batch_size, device, dtype, self.input_projection.weight)
        shape = (self.num_layers, batch_size, self.num_heads, self.window, self.head_size)
        filled = torch.zeros(batch_size, self.window, dtype=torch.bool, device=options["device"])
        return torch.zeros(shape, **options), torch.zeros(shape, **options), filled

    def check_state(self, state: object, batch: int, like: Tensor) -> None:
        expected = (self.num_layers, batch, self.num_heads, self.window, self.head_size)
        if not (isinstance(state, (tuple, list)) and len(state) == 3 and all(isinstance(s, Tensor) for s in state)):
            raise ValueError(f"state must be (keys, values, filled): two tensors of shape {expected} and [batch, window] booleans")
        keys, values, filled = state
        _check_state_parts((("keys", keys), ("values", values)), expected, "layers, batch, heads, window, head_size", like)
        if tuple(filled.shape) != (batch, self.window) or filled.dtype != torch.bool:
            raise ValueError(f"state filled must be booleans of shape (batch, window) = {(batch, self.window)}")

    def _run(
        self, x: Tensor, state: TransformerState, lengths: Optional[Tensor], keep: Optional[Tensor]
    ) -> tuple[Tensor, TransformerState]:
        """x [B, T, input_size] (T >= 1) -> (outputs [B, T, d], the cache after each entry's last step)."""
        cached_keys, cached_values, filled = state
        batch, steps = x.shape[0], x.shape[1]
        window = self.window
        # Query t sits at place window + t of [cache; steps]; it may attend to places t .. window + t,
        # cache slots only where filled (this call's steps are always there).
        places = torch.arange(window + steps, device=x.device)
        query_places = places[window:].unsqueeze(1)
        in_window = (places.unsqueeze(0) >= query_places - window) & (places.unsqueeze(0) <= query_places)  # [T, W + T]
        present = torch.cat([filled, filled.new_ones(batch, steps)], dim=1)  # [B, W + T]
        mask = (in_window.unsqueeze(0) & present.unsqueeze(1)).unsqueeze(1)  # [B, 1, T, W + T]

        # The new cache: the `window` places before each entry's end (window + its length).
        ends = torch.full((batch,), steps, device=x.device) if lengths is None else torch.as_tensor(lengths).to(x.device)
        kept = ends.view(batch, 1) + torch.arange(window, device=x.device)  # [B, W] places in [cache; steps]
        h = self.input_projection(x)
        new_keys, new_values = [], []
        for index, layer in enumerate(self.layers):
            h, keys, values = layer(h, cached_keys[index], cached_values[index], mask)
            gather = kept.view(batch, 1, window, 1).expand(batch, self.num_heads, window, self.head_size)
            new_keys.append(keys.gather(2, gather))
            new_values.append(values.gather(2, gather))
        new_filled = present.gather(1, kept)
        return self.final_norm(h), (torch.stack(new_keys), torch.stack(new_values), new_filled)


@register_core("transformer", "causal pre-norm Transformer with rotary positions and a sliding KV cache of transformer_window steps")
def build_transformer(config, input_size: int, batch_first: bool = False) -> TransformerCore:
    def make(width: int, mlp_size: Optional[int]) -> TransformerCore:
        return TransformerCore(input_size, width, config.transformer_layers, config.transformer_heads,
                               config.transformer_window, mlp_size, batch_first=batch_first)  # fmt: skip

    width, mlp_size = sized_widths(
        make, config.transformer_size, config.transformer_mlp_size, 2 * config.transformer_heads, config, input_size
    )
    return make(width, mlp_size)


def sized_widths(make, width: Optional[int], mlp_size: Optional[int], step: int, config, input_size: int) -> tuple[int, Optional[int]]:
    """(model width, MLP width) for a layered core `make(width, mlp_size)`: the given ones, or sized
    to `target_parameters`: first the width (a multiple of `step`, with the MLP at 4x), then the MLP
    width, whose every unit adds only about 2 * width * layers parameters, to land close to the target."""
    if width is not None:
        return width, mlp_size
    target = target_parameters(config, input_size)
    width = width_for_parameters(target, lambda w: parameters_of(lambda: make(w, None)), range(step, 1 << 14, step))
    if mlp_size is None:
        mlp_size = width_for_parameters(target, lambda m: parameters_of(lambda: make(width, m)), range(1, 16 * width + 1))
    return width, mlp_size
