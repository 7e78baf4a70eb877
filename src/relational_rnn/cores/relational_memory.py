"""The Relational Memory Core (Santoro et al., 2018), as docs/core.md describes it.

Two modules share one set of parameters:

* `RelationalMemoryCell`: one time step, `(input [B, I], memory [B, N, D]) -> (output [B, N*D], memory)`.
* `RelationalMemory`: a whole sequence, shaped like `torch.nn.LSTM`:
  `outputs, memory = rmc(x, memory=None)`.

The step follows the spec in order: project the input to one extra row (to R extra rows with
`input_rows=R`, Sonnet's `treat_input_as_matrix`), attend over memory + input rows
(`num_blocks` times, each block with its own projection and norms, one MLP shared by all
blocks), drop the input rows, then gate the new memory against the old one with constant
input/forget biases.

`RelationalMemory` runs a sequence in one of two ways that give the same numbers:

* the straightforward path (`fast=False`): `RelationalMemoryCell.step` once per time step;
  it is the spec in code, and what the tests compare with the slow reference;
* the fast path (`fast=True`, the default): `fast_sequence` / `fast_step` below, which do
  only the work the maths needs (each saving is listed in their docstrings). Tests check it
  against the straightforward path for every option (tests/test_fast_path.py).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from relational_rnn.cores.base import RecurrentCore, _check_positive_int, _length_mask, parameters_of, register_core
from relational_rnn.cores.fused import FusedSequence, SequenceShape, Weights

GATE_STYLES = ("unit", "memory", None)
ATTENTION_SCALES = ("key", "qkv")
# Ablations and a diagnostic (docs/questions.md); the defaults are the paper's model.
ATTENTION_MODES = ("full", "input-only", "none")
SLOT_BINDINGS = ("learned", "position")


def query_scale_for(attention_scale: str, key_size: int, head_size: int) -> float:
    """The factor the queries are multiplied by before the dot products (docs/core.md).

    "key": key_size**-0.5 (the default; Sonnet since November 2018);
    "qkv": (2 * key_size + head_size)**-0.5, the qkv size per head (Sonnet as released in June 2018).
    """
    if attention_scale == "key":
        return key_size**-0.5
    if attention_scale == "qkv":
        return (2 * key_size + head_size) ** -0.5
    raise ValueError(f"attention_scale must be 'key' or 'qkv', got {attention_scale!r}")


def attention_mask(
    attention: str, num_queries: int, num_rows: int, device: torch.device, dtype: torch.dtype, input_rows: int = 1
) -> Optional[Tensor]:
    """The additive mask [num_queries, num_rows] (0 or -inf) the `attention` ablation puts on the scores.

    The rows are the memory slots then the `input_rows` input rows (the last ones); queries are
    the first `num_queries` rows. "full": None (every row reads every row); "input-only": row i
    reads only itself and the input rows, so no slot reads another slot.
    """
    if attention == "full":
        return None
    if attention != "input-only":
        raise ValueError(f"attention {attention!r} has no mask")
    rows = torch.arange(num_rows, device=device)
    allowed = (rows[:num_queries, None] == rows[None, :]) | (rows[None, :] >= num_rows - input_rows)
    return torch.zeros(allowed.shape, device=device, dtype=dtype).masked_fill_(~allowed, float("-inf"))


def _truncated_normal_(weight: Tensor, fan_in: int) -> None:
    """Sonnet's default initialiser: truncated normal (2 std), std = 1/sqrt(fan_in)."""
    std = 1.0 / math.sqrt(fan_in)
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


def _linear(in_features: int, out_features: int, **factory) -> nn.Linear:
    """nn.Linear with Sonnet's initialisation; `factory` is torch's `device=` / `dtype=`."""
    layer = nn.Linear(in_features, out_features, **factory)
    _truncated_normal_(layer.weight, in_features)
    nn.init.zeros_(layer.bias)
    return layer


def identity_memory(
    batch_size: int,
    mem_slots: int,
    mem_size: int,
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """The reference initial memory: I_N per batch entry, zero-padded or truncated to width D."""
    eye = torch.eye(mem_slots, device=device, dtype=dtype)
    if mem_size > mem_slots:
        eye = F.pad(eye, (0, mem_size - mem_slots))
    else:
        eye = eye[:, :mem_size]
    return eye.unsqueeze(0).expand(batch_size, mem_slots, mem_size).contiguous()


@dataclass
class CoreTrace:
    """What the core did at each step while `recording` was active (tensors detached, on the core's device).

    attention[t][b]: block b's attention weights at step t, [B, heads, N+R, N+R] (rows: the
    N memory slots then the R input rows, R = 1 unless `input_rows` is set, each attending
    over the same N+R rows);
    input_gate[t], forget_gate[t]: [B, N, g] (g = mem_size for "unit" gating, 1 for "memory";
    empty lists without gating).
    """

    attention: list[list[Tensor]] = field(default_factory=list)
    input_gate: list[Tensor] = field(default_factory=list)
    forget_gate: list[Tensor] = field(default_factory=list)


@contextmanager
def recording(core: nn.Module) -> Iterator[CoreTrace]:
    """Record attention weights and gates of every step the core takes inside the `with` block.

        with recording(rmc) as trace:
            outputs, memory = rmc(x)
        trace.attention[-1][0]  # the first block's weights at the last step

    `core` is a `RelationalMemory` or `RelationalMemoryCell`. While recording, the sequence
    module runs the straightforward path (same numbers; the fast path skips the input row's
    query, so it has no full attention map to record). Off, it costs nothing.
    """
    cell = core.cell if isinstance(core, RelationalMemory) else core
    if not isinstance(cell, RelationalMemoryCell):
        raise TypeError(f"recording needs a RelationalMemory or RelationalMemoryCell, got {type(core).__name__}")
    trace = CoreTrace()
    cell.trace = trace
    try:
        yield trace
    finally:
        cell.trace = None


class AttentionBlock(nn.Module):
    """One round of multi-head attention over the rows, with this block's own projection and norms.

    The MLP is passed in so that all blocks share one (as in the reference). `query_scale`
    multiplies the queries (None: key_size**-0.5, see `query_scale_for`). `attention` is the
    ablation (`ATTENTION_MODES`): "full" (the paper), "input-only" (row i attends to itself and
    the input rows only) or "none" (the attention output of every row is the input row, so each
    slot is updated by the same residual, norms and MLP with no interaction; the qkv
    projection is then unused). `input_rows`: how many of the rows are input rows (the last
    ones); `factory`: torch's `device=` / `dtype=` for the parameters.
    """

    def __init__(
        self,
        mem_size: int,
        num_heads: int,
        key_size: int,
        head_size: int,
        query_scale: Optional[float] = None,
        attention: str = "full",
        input_rows: int = 1,
        **factory,
    ) -> None:
        super().__init__()
        self.attention = attention
        self.input_rows = input_rows
        self.num_heads = num_heads
        self.key_size = key_size
        self.head_size = head_size
        self.query_scale = key_size**-0.5 if query_scale is None else query_scale
        qkv_size = num_heads * (2 * key_size + head_size)
        self.qkv = _linear(mem_size, qkv_size, **factory)
        self.qkv_norm = nn.LayerNorm(qkv_size, eps=1e-5, **factory)
        self.attention_norm = nn.LayerNorm(mem_size, eps=1e-5, **factory)
        self.mlp_norm = nn.LayerNorm(mem_size, eps=1e-5, **factory)

    def split_heads(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """rows [B, R, D] -> queries, keys [B, H, R, k] and values [B, H, R, v] (queries unscaled)."""
        batch, num_rows, _ = rows.shape
        qkv = self.qkv_norm(self.qkv(rows))
        qkv = qkv.view(batch, num_rows, self.num_heads, 2 * self.key_size + self.head_size)
        qkv = qkv.transpose(1, 2)
        return qkv.split([self.key_size, self.key_size, self.head_size], dim=-1)

    def attend(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Plain multi-head attention of every row over all rows; returns (output [B, R, D], weights)."""
        queries, keys, values = self.split_heads(rows)
        queries = queries * self.query_scale
        scores = queries @ keys.transpose(-1, -2)  # [B, H, R, R]
        mask = attention_mask(self.attention, rows.shape[1], rows.shape[1], rows.device, scores.dtype, self.input_rows)
        if mask is not None:
            scores = scores + mask
        weights = torch.softmax(scores, dim=-1)
        output = (weights @ values).transpose(1, 2).reshape(rows.shape)
        return output, weights

    def forward(self, rows: Tensor, mlp: nn.Module, trace: Optional["CoreTrace"] = None) -> Tensor:
        if self.attention == "none":  # the input row (the last) stands in for the attention output
            attended = rows[:, -1:].expand_as(rows)
        else:
            attended, weights = self.attend(rows)
            if trace is not None:
                trace.attention[-1].append(weights.detach())
        rows = self.attention_norm(rows + attended)
        return self.mlp_norm(mlp(rows) + rows)


def _make_mlp(width: int, num_layers: int, **factory) -> nn.Sequential:
    """`num_layers` Linear(width, width) with ReLU between them and nothing after the last."""
    layers: list[nn.Module] = []
    for index in range(num_layers):
        if index > 0:
            layers.append(nn.ReLU())
        layers.append(_linear(width, width, **factory))
    return nn.Sequential(*layers)


MODEL_ARGS = """\
        input_size: features of one step's input (of each input row with `input_rows`).
        mem_slots: N, the rows of memory.
        head_size: v, the value width of each attention head; a memory row is
            mem_size = num_heads * head_size wide.
        num_heads: H, the attention heads.
        num_blocks: attention + MLP rounds per step, each block with its own qkv projection
            and layer norms (the MLP is one module shared by all blocks).
        forget_bias: constant added to the forget gate's pre-activation (not a parameter).
            Any number but NaN: +inf makes the forget gate exactly 1.
        input_bias: constant added to the input gate's pre-activation (not a parameter).
            Any number but NaN: -inf makes the input gate exactly 0 (with forget_bias=+inf
            the memory then ignores the input: Sonnet's input-erasure test).
        gate_style: "unit" (a gate per memory feature), "memory" (one gate per slot) or None
            (no gating: the attended memory is the next memory).
        attention_mlp_layers: Linear(mem_size, mem_size) layers of the row-wise MLP after
            attention, with ReLU between them and none after the last.
        key_size: k, the query and key width per head; None means head_size.
        attention_scale: "key" (queries scaled by key_size**-0.5, the default) or "qkv" (by
            (2 * key_size + head_size)**-0.5, Sonnet's June 2018 release; docs/core.md).
        attention: an ablation, not the paper's model (docs/questions.md): "full" (the
            default), "input-only" or "none" (see `AttentionBlock`).
        slot_binding: "learned" (the paper's model) or "position", an oracle binding for
            diagnostics: at step t only slot t mod mem_slots is updated, every other slot is
            kept as it was (t counts from 0 at each sequence call, or is the cell's `step_index`).
        input_rows: None (the default): one input vector per step, projected to one extra
            row. R: each step's input is R rows of input_size features, each projected (by the
            same Linear) to a row of memory width, and attention runs over the N memory rows
            and these R rows: Sonnet's `treat_input_as_matrix=True`. As in Sonnet, the gates'
            input part is one Linear over all R projected rows flattened (R * mem_size
            features), so R is fixed when the module is built. With R = 1 the numbers are
            those of the vector input. Not with attention="none" (which has one input row
            stand in for the attention output)."""
DEVICE_ARGS = """\
        device, dtype: where and in which dtype the parameters are created, as for torch's
            own modules (`device="meta"` builds without memory)."""


class RelationalMemoryCell(nn.Module):
    __doc__ = f"""One time step of the Relational Memory Core: `(input, memory) -> (output, memory)`.

    The maths, step by step, and every option's reference default: docs/core.md (which follows
    the paper and Sonnet v1's `RelationalMemory`). `cell(x, memory)` takes x [B, input_size]
    ([B, input_rows, input_size] with `input_rows`) and memory [B, mem_slots, mem_size] (None:
    the initial memory) and returns the output [B, mem_slots * mem_size] (the next memory
    flattened) and the next memory.

    Args:
{MODEL_ARGS}
{DEVICE_ARGS}
    """

    def __init__(
        self,
        input_size: int,
        mem_slots: int,
        head_size: int,
        num_heads: int = 1,
        num_blocks: int = 1,
        forget_bias: float = 1.0,
        input_bias: float = 0.0,
        gate_style: Optional[str] = "unit",
        attention_mlp_layers: int = 2,
        key_size: Optional[int] = None,
        *,
        attention_scale: str = "key",
        attention: str = "full",
        slot_binding: str = "learned",
        input_rows: Optional[int] = None,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        _check_positive_int("input_size", input_size)
        _check_positive_int("mem_slots", mem_slots)
        _check_positive_int("head_size", head_size)
        _check_positive_int("num_heads", num_heads)
        _check_positive_int("num_blocks", num_blocks)
        _check_positive_int("attention_mlp_layers", attention_mlp_layers)
        if key_size is not None:
            _check_positive_int("key_size", key_size)
        if input_rows is not None:
            _check_positive_int("input_rows", input_rows)
        if gate_style not in GATE_STYLES:
            raise ValueError(f"gate_style must be one of 'unit', 'memory' or None, got {gate_style!r}")
        if not isinstance(attention_scale, str) or attention_scale not in ATTENTION_SCALES:
            raise ValueError(f"attention_scale must be 'key' or 'qkv', got {attention_scale!r}")
        if not isinstance(attention, str) or attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {', '.join(map(repr, ATTENTION_MODES))}, got {attention!r}")
        if not isinstance(slot_binding, str) or slot_binding not in SLOT_BINDINGS:
            raise ValueError(f"slot_binding must be one of {', '.join(map(repr, SLOT_BINDINGS))}, got {slot_binding!r}")
        if attention == "none" and input_rows is not None and input_rows > 1:
            raise ValueError(f"attention='none' needs one input row, got input_rows={input_rows}")
        for name, value in (("forget_bias", forget_bias), ("input_bias", input_bias)):
            # Infinities are fine (a gate of exactly 0 or 1); NaN would make every memory NaN.
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"{name} must be a number (infinities allowed, not NaN), got {value!r}")

        self.input_size = input_size
        self.mem_slots = mem_slots
        self.head_size = head_size
        self.num_heads = num_heads
        self.num_blocks = num_blocks
        self.forget_bias = float(forget_bias)
        self.input_bias = float(input_bias)
        self.gate_style = gate_style
        self.attention_mlp_layers = attention_mlp_layers
        self.key_size = key_size if key_size is not None else head_size
        self.attention_scale = attention_scale
        self.query_scale = query_scale_for(attention_scale, self.key_size, head_size)  # multiplies the queries
        self.attention = attention
        self.slot_binding = slot_binding
        self.input_rows = input_rows
        self.mem_size = num_heads * head_size
        self.trace: Optional[CoreTrace] = None  # set while `recording(...)` is active

        factory = dict(device=device, dtype=dtype)
        rows = self.rows_per_step
        self.input_projection = _linear(input_size, self.mem_size, **factory)
        self.blocks = nn.ModuleList(
            AttentionBlock(self.mem_size, num_heads, self.key_size, head_size, self.query_scale, attention, rows, **factory)
            for _ in range(num_blocks)
        )
        self.mlp = _make_mlp(self.mem_size, attention_mlp_layers, **factory)
        if gate_style is not None:
            gate_size = self.mem_size if gate_style == "unit" else 1
            self.gate_input = _linear(rows * self.mem_size, 2 * gate_size, **factory)  # all input rows, flattened
            self.gate_memory = _linear(self.mem_size, 2 * gate_size, **factory)

    @property
    def rows_per_step(self) -> int:
        """R, the input rows appended to the memory each step: `input_rows`, or 1 for a vector input."""
        return 1 if self.input_rows is None else self.input_rows

    @property
    def state_size(self) -> torch.Size:
        """The shape of the memory of one batch entry, (mem_slots, mem_size) (Sonnet's `state_size`)."""
        return torch.Size([self.mem_slots, self.mem_size])

    @property
    def output_size(self) -> int:
        """Features of one step's output: the flattened memory, mem_slots * mem_size."""
        return self.mem_slots * self.mem_size

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, mem_slots={self.mem_slots}, head_size={self.head_size}, "
            f"num_heads={self.num_heads}, num_blocks={self.num_blocks}, key_size={self.key_size}, "
            f"gate_style={self.gate_style!r}, forget_bias={self.forget_bias}, input_bias={self.input_bias}, "
            f"attention_mlp_layers={self.attention_mlp_layers}, attention_scale={self.attention_scale!r}"
            + (f", attention={self.attention!r}" if self.attention != "full" else "")
            + (f", slot_binding={self.slot_binding!r}" if self.slot_binding != "learned" else "")
            + (f", input_rows={self.input_rows}" if self.input_rows is not None else "")
        )

    def initial_state(
        self,
        batch_size: int,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> Tensor:
        """The identity initial memory [B, mem_slots, mem_size] on the parameters' device and dtype."""
        _check_positive_int("batch_size", batch_size)
        reference = self.input_projection.weight
        return identity_memory(
            batch_size,
            self.mem_slots,
            self.mem_size,
            device=device if device is not None else reference.device,
            dtype=dtype if dtype is not None else reference.dtype,
        )

    def reset_state(self, memory: Tensor, done: Tensor) -> Tensor:
        """Replace the memory of batch entries where `done` [B] is true by the initial memory."""
        fresh = self.initial_state(memory.shape[0], device=memory.device, dtype=memory.dtype)
        return torch.where(done.view(-1, 1, 1).to(torch.bool), fresh, memory)

    # --- the step ---------------------------------------------------------------------------------

    def check_memory(self, memory: Tensor, batch_size: int, like: Tensor) -> None:
        expected = (batch_size, self.mem_slots, self.mem_size)
        if not isinstance(memory, Tensor):
            raise TypeError(f"memory must be a Tensor of shape {expected}, got {type(memory).__name__}")
        if tuple(memory.shape) != expected:
            raise ValueError(
                f"memory must have shape (batch, mem_slots, mem_size) = {expected}, got {tuple(memory.shape)}"
            )
        if memory.device != like.device:
            raise ValueError(f"memory is on {memory.device} but the input is on {like.device}")
        if memory.dtype != like.dtype:
            raise ValueError(f"memory has dtype {memory.dtype} but the input has {like.dtype}")

    def check_input_dtype(self, x: Tensor) -> None:
        """An input of another dtype than the parameters (float64 into a float32 module) is a
        clear error here, not torch's `mat1 and mat2 must have the same dtype` deep inside;
        under autocast, which casts for itself, any floating dtype is fine."""
        dtype = self.input_projection.weight.dtype
        if x.dtype != dtype and not (x.is_floating_point() and _autocast_enabled(x.device.type)):
            raise ValueError(
                f"input has dtype {x.dtype} but the module's parameters are {dtype}; convert one of them "
                f"(x.to({dtype}) or module.to({x.dtype}))"
            )

    def step(self, projected_input: Tensor, memory: Tensor, step_index: Optional[int] = None) -> Tensor:
        """One step from an already projected input, [B, D] or R rows [B, R, D]; returns the next
        memory [B, N, D].

        `step_index` (the step's position in the sequence) is needed only by `slot_binding="position"`.
        """
        if self.slot_binding == "position":
            if step_index is None:
                raise ValueError("slot_binding='position' needs the step's index: cell(x, memory, step_index=t)")
            return bind_to_slot(self.step_learned(projected_input, memory), memory, step_index)
        return self.step_learned(projected_input, memory)

    def step_learned(self, projected_input: Tensor, memory: Tensor) -> Tensor:
        """The paper's step: attention, MLP, gating; every slot may change."""
        trace = self.trace
        if trace is not None:
            trace.attention.append([])
        input_rows = projected_input.unsqueeze(1) if projected_input.dim() == 2 else projected_input  # [B, R, D]
        rows = torch.cat([memory, input_rows], dim=1)  # [B, N+R, D]
        for block in self.blocks:
            rows = block(rows, self.mlp, trace)
        attended_memory = rows[:, : self.mem_slots]
        if self.gate_style is None:
            return attended_memory
        input_gate, forget_gate = self.gates(input_rows, memory)
        if trace is not None:
            trace.input_gate.append(input_gate.detach())
            trace.forget_gate.append(forget_gate.detach())
        return input_gate * torch.tanh(attended_memory) + forget_gate * memory

    def gates(self, projected_input: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Input and forget gates, [B, N, g] each, from the projected input ([B, D], or the R
        input rows [B, R, D], read flattened as in Sonnet) and tanh(previous memory)."""
        pre_activation = self.gate_input(projected_input.flatten(1)).unsqueeze(1) + self.gate_memory(torch.tanh(memory))
        input_pre, forget_pre = pre_activation.chunk(2, dim=-1)
        return torch.sigmoid(input_pre + self.input_bias), torch.sigmoid(forget_pre + self.forget_bias)

    def forward(
        self, x: Tensor, memory: Optional[Tensor] = None, step_index: Optional[int] = None
    ) -> tuple[Tensor, Tensor]:
        """x [B, input_size] ([B, input_rows, input_size] with `input_rows`), memory [B, N, D] or
        None -> (output [B, N*D], next memory [B, N, D]).

        `step_index`: the step's position in its sequence, for `slot_binding="position"` only."""
        row_shape = (self.input_size,) if self.input_rows is None else (self.input_rows, self.input_size)
        if not isinstance(x, Tensor) or x.dim() != 1 + len(row_shape) or tuple(x.shape[1:]) != row_shape:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            layout = "batch, input_size" if self.input_rows is None else f"batch, input_rows={self.input_rows}, input_size"
            raise ValueError(f"input must have shape ({layout}={self.input_size}), got {shape}")
        self.check_input_dtype(x)
        batch = int(x.shape[0])  # an int also under torch.jit.trace, which makes sizes tensors
        if memory is None:
            memory = self.initial_state(batch, device=x.device, dtype=x.dtype)
        else:
            self.check_memory(memory, batch, x)
        next_memory = self.step(self.input_projection(x), memory, step_index)
        return next_memory.flatten(1), next_memory


def bind_to_slot(next_memory: Tensor, memory: Tensor, step_index: int) -> Tensor:
    """The oracle binding: `next_memory` in slot `step_index mod N`, `memory` in every other slot."""
    slots = memory.shape[1]
    written = torch.arange(slots, device=memory.device).view(1, slots, 1) == step_index % slots
    return torch.where(written, next_memory, memory)


class RelationalMemory(RecurrentCore):
    __doc__ = f"""The Relational Memory Core over a sequence, with the call shape of `torch.nn.LSTM`.

    `outputs, memory = rmc(x, memory=None, lengths=None)` with `x` of shape (T, B, input_size),
    or (B, T, input_size) when `batch_first=True` ((T, B, input_rows, input_size) or
    (B, T, input_rows, input_size) with `input_rows`). `outputs` holds the flattened memory
    after every step, (T, B, mem_slots * mem_size); `memory` is the final memory
    (B, mem_slots, mem_size). `x` may also be a `torch.nn.utils.rnn.PackedSequence`; the
    outputs are then one too, as with `nn.LSTM` (see `RecurrentCore`).

    `lengths` (optional, [B]) lets sequences of different lengths share a batch: entry b
    stops updating after `lengths[b]` steps, so its final memory (and its outputs from then
    on) are those at its own end.

    Args:
{MODEL_ARGS}
        batch_first: x and the outputs are (B, T, ...) instead of (T, B, ...).
        fast: run the fast path (the default; the attribute `use_fast_path` can be flipped
            later) instead of the straightforward per-step `cell.step`.
        fused: with one attention block and gradients on, the fast path is fused (attribute
            `use_fused`): one hand-written forward and backward for the whole sequence
            (cores/fused.py), which keeps about half the activations of autograd's.
        compile: wrap `fast_step` in `torch.compile` (attribute `use_compile`; compiled on
            the first call, which is slow).
        recompute: keep only each step's input memory for backward and recompute the step
            there (`torch.utils.checkpoint`): least activation memory, more time.
{DEVICE_ARGS}

    The speed options change nothing beyond float rounding (docs/performance.md). Without the
    fused path (`fused=False`, several blocks, no gradients, `torch.autocast`, `compile`,
    `recompute`, `input_rows`, an `attention` or `slot_binding` diagnostic) the fast path is
    `fast_sequence`, the step `fast_step` under autograd. Everything torch users differentiate
    with works on the default path: under `torch.func` transforms (grad, vmap, jacrev, ...)
    the fast path runs `fast_sequence` instead of the fused function, and a double backward
    (`create_graph=True`) through the fused path recomputes the sequence under autograd in its
    backward (`cores/fused.py`). The module also runs on the meta device and under
    `torch.jit.trace` (which fixes the traced shapes).
    """

    state_batch_dim = 0  # the memory [B, mem_slots, mem_size] (the `RecurrentCore` contract)

    def __init__(
        self,
        input_size: int,
        mem_slots: int,
        head_size: int,
        num_heads: int = 1,
        num_blocks: int = 1,
        forget_bias: float = 1.0,
        input_bias: float = 0.0,
        gate_style: Optional[str] = "unit",
        attention_mlp_layers: int = 2,
        key_size: Optional[int] = None,
        *,
        attention_scale: str = "key",
        attention: str = "full",
        slot_binding: str = "learned",
        input_rows: Optional[int] = None,
        batch_first: bool = False,
        fast: bool = True,
        fused: bool = True,
        compile: bool = False,
        recompute: bool = False,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        self.cell = RelationalMemoryCell(
            input_size, mem_slots, head_size, num_heads, num_blocks, forget_bias, input_bias, gate_style,
            attention_mlp_layers, key_size, attention_scale=attention_scale, attention=attention,
            slot_binding=slot_binding, input_rows=input_rows, device=device, dtype=dtype,
        )  # fmt: skip
        self.batch_first = batch_first
        self.use_fast_path = bool(fast)
        self.use_fused = bool(fused)
        self.use_compile = bool(compile)  # not `self.compile`: that would hide nn.Module.compile()
        self.recompute = bool(recompute)
        self._compiled_step: Optional[Callable[..., Tensor]] = None

    @property
    def output_size(self) -> int:
        """Features of one step's output: the flattened memory, mem_slots * mem_size."""
        return self.cell.output_size

    @property
    def state_size(self) -> torch.Size:
        """The shape of the memory of one batch entry, (mem_slots, mem_size) (Sonnet's `state_size`)."""
        return self.cell.state_size

    @property
    def input_dims(self) -> tuple[tuple[str, int], ...]:
        """One step's input per batch entry: (input_rows, input_size) with `input_rows`, else (input_size,)."""
        if self.cell.input_rows is None:
            return super().input_dims
        return (("input_rows", self.cell.input_rows), ("input_size", self.cell.input_size))

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in {
                "input_size", "mem_slots", "head_size", "num_heads", "num_blocks", "forget_bias",
                "input_bias", "gate_style", "attention_mlp_layers", "key_size", "mem_size", "output_size",
                "attention_scale", "query_scale", "attention", "slot_binding", "input_rows",
            }:
                return getattr(self.cell, name)
            raise

    def initial_state(
        self,
        batch_size: int,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> Tensor:
        """The identity initial memory [B, mem_slots, mem_size]."""
        return self.cell.initial_state(batch_size, device=device, dtype=dtype)

    def reset_state(self, memory: Tensor, done: Tensor) -> Tensor:
        """Replace the memory of batch entries where `done` [B] is true by the initial memory."""
        return self.cell.reset_state(memory, done)

    def check_state(self, memory: object, batch: int, like: Tensor) -> None:
        self.cell.check_memory(memory, batch, like)

    def extra_repr(self) -> str:
        return (
            f"batch_first={self.batch_first}, fast={self.use_fast_path}, fused={self.use_fused}, compile={self.use_compile}, "
            f"recompute={self.recompute}"
        )

    @property
    def uses_fused_path(self) -> bool:
        """Whether the fast path runs fused (`FusedSequence`) when gradients are on: one block,
        `fused`, no compile or recompute, one input vector per step (no `input_rows`: the fused
        function reads one input row) and the paper's model (no `attention` ablation or
        `slot_binding` diagnostic); everything else runs `fast_sequence`."""
        cell = self.cell
        return (
            self.use_fused
            and cell.num_blocks == 1
            and not self.use_compile
            and not self.recompute
            and cell.input_rows is None
            and cell.attention == "full"
            and cell.slot_binding == "learned"
        )

    def _step_function(self) -> Callable[..., Tensor]:
        """`fast_step`, or its `torch.compile`d version (made once, on first use) when `use_compile` is set."""
        if not self.use_compile:
            return fast_step
        if self._compiled_step is None:
            self._compiled_step = torch.compile(fast_step, dynamic=False)
        return self._compiled_step

    def forward(
        self, x: Tensor, memory: Optional[Tensor] = None, lengths: Optional[Tensor] = None
    ) -> tuple[Tensor, Tensor]:
        cell = self.cell
        x = self.check_sequence(x)  # [T, B, input_size] or [T, B, input_rows, input_size]
        cell.check_input_dtype(x)
        steps, batch = int(x.shape[0]), int(x.shape[1])  # ints also under torch.jit.trace, which makes sizes tensors
        memory = self.state_for(memory, batch, x)
        keep = _length_mask(lengths, steps, batch, x.device)

        if steps == 0:
            return self.no_steps(x, batch, memory)
        if self.use_fast_path and cell.trace is None:
            # Without gradients the fused forward would only fill buffers nobody reads; autocast
            # mixes dtypes, torch.func transforms need rules the fused function lacks, and
            # torch.jit.trace cannot record it (a Python autograd.Function with non-tensor arguments).
            if (
                self.uses_fused_path
                and torch.is_grad_enabled()
                and not _autocast_enabled(x.device.type)
                and not _functorch_active()
                and not torch.jit.is_tracing()
            ):
                out, memory = fused_sequence(cell, x, memory, keep)
            else:
                out, memory = fast_sequence(cell, x, memory, keep, step=self._step_function(), recompute=self.recompute)
        else:
            # Every step's input rows at once. `unbind` rather than `projected[t]`: indexing would
            # make backward build a zero [T, B, D] gradient per step (quadratic in T).
            projected = cell.input_projection(x).unbind(0)
            outputs = []
            for t in range(steps):
                next_memory = cell.step(projected[t], memory, step_index=t)
                memory = next_memory if keep is None else torch.where(keep[t], next_memory, memory)
                outputs.append(memory.flatten(1))
            out = torch.stack(outputs, dim=0)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, memory


def _functorch_active() -> bool:
    """Whether a `torch.func` transform (grad, vmap, jacrev, jvp, ...) is running this call."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)  # private, hence the guard
    return bool(active()) if active is not None else False


def _autocast_enabled(device_type: str) -> bool:
    """Whether torch.autocast is on for this device (the fused path does not handle mixed dtypes).

    A device autocast does not know (the meta device) has it off: asking torch would raise."""
    available = getattr(torch.amp, "is_autocast_available", None)  # torch >= 2.4
    if available is not None and not available(device_type):
        return False
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


# --- the fast path ----------------------------------------------------------------------------------


def _input_terms(cell: RelationalMemoryCell, x: Tensor) -> tuple[Optional[Tensor], Tensor, Optional[Tensor]]:
    """Everything that depends on the input alone, for all T steps at once.

    `x` is the sequence, [T, B, input_size] (or [T, B, R, input_size] with `input_rows`; a
    vector input is read as one row). Returns (input rows [T, B, R, D], or None when no later
    block reads them; block 1's qkv projection of the input rows [T, B, R, F] before its layer
    norm; the gates' input part [T, B, 2g] with every bias and constant of the gate
    pre-activation folded in, or None without gating).
    When it costs fewer multiply-adds (`fold_input_projection`), the input projection is
    folded into the weights of the two input-term matmuls,
    W (W_p x + b_p) + b = (W W_p) x + (W b_p + b), so the input rows are never formed.
    """
    x = x.unsqueeze(2) if cell.input_rows is None else x  # [T, B, R, input_size]
    block = cell.blocks[0]
    projection = cell.input_projection
    qkv_term = (block.qkv.weight, block.qkv.bias)
    gate_term = None
    if cell.gate_style is not None:
        g = cell.gate_input.out_features // 2
        bias = cell.gate_input.bias + cell.gate_memory.bias
        constants = torch.cat([bias.new_full((g,), cell.input_bias), bias.new_full((g,), cell.forget_bias)])
        gate_term = (cell.gate_input.weight, bias + constants)
    rows = projection(x) if cell.num_blocks > 1 or cell.attention == "none" else None
    if fold_input_projection(cell, tokens=x.shape[0] * x.shape[1]):

        def term(inputs: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
            return F.linear(inputs, weight @ projection.weight, torch.addmv(bias, weight, projection.bias))

        source = x
    else:
        term, source = F.linear, rows if rows is not None else projection(x)
    qkv = term(source, *qkv_term)
    gates = None if gate_term is None else term(source.flatten(2), *gate_term)  # the gates read all R rows at once
    return rows, qkv, gates


def fold_input_projection(cell: RelationalMemoryCell, tokens: int) -> bool:
    """Whether folding the input projection into the input-term matmuls costs fewer multiply-adds.

    Folded: one product of the weights, (out x D x I), then (tokens x I x out), plus the input
    rows themselves when a later block needs them. Plain: tokens x D x (I + out). Only with one
    input row per step (the gates' input part reads R rows flattened, which the fold does not cover).
    """
    if cell.rows_per_step != 1:
        return False
    out_features = cell.blocks[0].qkv.out_features + (cell.gate_input.out_features if cell.gate_style is not None else 0)
    width, in_features = cell.mem_size, cell.input_size
    needs_rows = cell.num_blocks > 1 or cell.attention == "none"
    folded = (tokens + width) * in_features * out_features + needs_rows * tokens * in_features * width
    return folded < tokens * width * (in_features + out_features)


def _norm(norm: nn.LayerNorm, rows: Tensor) -> Tensor:
    return F.layer_norm(rows, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _mlp(mlp: nn.Sequential, rows: Tensor) -> Tensor:
    for layer in mlp:
        rows = F.linear(rows, layer.weight, layer.bias) if isinstance(layer, nn.Linear) else F.relu(rows)
    return rows


def fast_step(
    cell: RelationalMemoryCell,
    memory: Tensor,
    input_rows: Optional[Tensor],
    input_qkv: Tensor,
    input_gates: Optional[Tensor],
) -> Tensor:
    """One step of the fast path: memory [B, N, D] and the step's `_input_terms` (input rows
    [B, R, D] or None, their normed qkv [B, R, F], the gates' input part [B, 2g] or None) -> next memory.

    Same maths as `RelationalMemoryCell.step`, less work:
    * block 1 projects only the N memory rows; the input rows' normed qkv comes precomputed;
    * in the last block only the memory rows ask queries and go through the residuals and the
      MLP: the input rows' own outputs are dropped after it (with one block the input rows are
      just more keys and values);
    * attention as two batched matmuls (`scaled_dot_product_attention` was measured: its CPU
      kernel is slower for a handful of rows, and it has no double backward);
    * the gates' input part and all gate biases come precomputed: one matmul, one add and one
      sigmoid for both gates;
    * functional calls instead of module calls (less Python per step).
    """
    batch, slots = memory.shape[0], memory.shape[1]
    heads, key_size, head_size = cell.num_heads, cell.key_size, cell.head_size
    last = len(cell.blocks) - 1
    if cell.attention == "none":  # the ablation: the (one) input row replaces the attention output
        rows = torch.cat([memory, input_rows], dim=1)
        for block in cell.blocks:
            rows = _norm(block.attention_norm, rows + rows[:, -1:])
            rows = _norm(block.mlp_norm, _mlp(cell.mlp, rows) + rows)
        return _gate(cell, memory, rows[:, :slots], input_gates)
    rows = memory  # the rows entering the block: memory, plus the input rows while a later block reads them
    for index, block in enumerate(cell.blocks):
        if index == 0:
            memory_qkv = _norm(block.qkv_norm, F.linear(memory, block.qkv.weight, block.qkv.bias))
            qkv = torch.cat([memory_qkv, input_qkv], dim=1)
            if index != last:
                rows = torch.cat([memory, input_rows], dim=1)
        else:
            qkv = _norm(block.qkv_norm, F.linear(rows, block.qkv.weight, block.qkv.bias))
        qkv = qkv.view(batch, -1, heads, 2 * key_size + head_size).transpose(1, 2)
        queries, keys, values = qkv.split([key_size, key_size, head_size], dim=-1)
        if index == last:  # only the memory rows' results are kept
            queries, rows = queries[:, :, :slots], rows[:, :slots]
        scores = torch.matmul(queries, keys.transpose(-1, -2)).mul_(cell.query_scale)
        if cell.attention != "full":
            queries_here, rows_here = scores.shape[-2], scores.shape[-1]
            mask = attention_mask(cell.attention, queries_here, rows_here, scores.device, scores.dtype, cell.rows_per_step)
            scores = scores + mask
        attended = torch.matmul(torch.softmax(scores, dim=-1), values)
        attended = attended.transpose(1, 2).reshape(rows.shape)
        rows = _norm(block.attention_norm, rows + attended)
        rows = _norm(block.mlp_norm, _mlp(cell.mlp, rows) + rows)
    return _gate(cell, memory, rows, input_gates)


def _gate(cell: RelationalMemoryCell, memory: Tensor, rows: Tensor, input_gates: Optional[Tensor]) -> Tensor:
    """The fast path's gating of the attended memory rows against the old memory (none without gating)."""
    if cell.gate_style is None:
        return rows
    gates = torch.sigmoid(F.linear(torch.tanh(memory), cell.gate_memory.weight) + input_gates.unsqueeze(1))
    input_gate, forget_gate = gates.chunk(2, dim=-1)
    return input_gate * torch.tanh(rows) + forget_gate * memory


def fast_sequence(
    cell: RelationalMemoryCell,
    x: Tensor,
    memory: Tensor,
    keep: Optional[Tensor] = None,
    step: Callable[..., Tensor] = fast_step,
    recompute: bool = False,
) -> tuple[Tensor, Tensor]:
    """The fast path over a sequence: x [T, B, input_size] (or [T, B, input_rows, input_size]),
    memory [B, N, D] -> (outputs [T, B, N*D], memory).

    Savings over the straightforward loop, besides those of `fast_step`:
    * everything input-only (`_input_terms`) runs once for all T steps, as big matmuls;
    * with `recompute`, each step is checkpointed: backward keeps only the step's inputs and
      reruns the step, trading about one extra forward for most of the activation memory.
    `keep` [T, B, 1, 1] (from `lengths`) freezes finished sequences, as in the straightforward path.
    """
    # `unbind`, not `[t]`: backward then stacks the T step gradients once, instead of building
    # a zero [T, B, ...] gradient for every step (quadratic in T).
    rows, qkv, gates = _input_terms(cell, x)
    qkv = _norm(cell.blocks[0].qkv_norm, qkv)
    rows, qkv, gates = (None if terms is None else terms.unbind(0) for terms in (rows, qkv, gates))
    outputs = []
    for t in range(x.shape[0]):
        arguments = (cell, memory, None if rows is None else rows[t], qkv[t], None if gates is None else gates[t])
        if recompute and torch.is_grad_enabled():
            next_memory = torch.utils.checkpoint.checkpoint(step, *arguments, use_reentrant=False)
        else:
            next_memory = step(*arguments)
        if cell.slot_binding == "position":
            next_memory = bind_to_slot(next_memory, memory, t)
        memory = next_memory if keep is None else torch.where(keep[t], next_memory, memory)
        outputs.append(memory.flatten(1))
    return torch.stack(outputs, dim=0), memory


def fused_sequence(cell: RelationalMemoryCell, x: Tensor, memory: Tensor, keep: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """The fused path (one attention block only): same contract as `fast_sequence`.

    The input-only terms come from `_input_terms` under autograd; the time loop, forward and
    backward, is `FusedSequence` (cores/fused.py), which saves less for backward.
    """
    if cell.num_blocks != 1:
        raise ValueError(f"the fused path needs num_blocks == 1, got {cell.num_blocks}")
    if cell.input_rows is not None:
        raise ValueError(f"the fused path reads one input vector per step, got input_rows={cell.input_rows}")
    _, qkv, gates = _input_terms(cell, x)
    qkv = qkv.squeeze(2)  # [T, B, F]: the one input row
    block = cell.blocks[0]
    shape = SequenceShape(
        memory, qkv, cell.num_heads, cell.key_size, cell.head_size, cell.gate_style, cell.attention_mlp_layers,
        block.qkv_norm.eps, scale=cell.query_scale,
    )  # fmt: skip
    weights = Weights(
        block.qkv.weight, block.qkv.bias, block.qkv_norm.weight, block.qkv_norm.bias,
        block.attention_norm.weight, block.attention_norm.bias, block.mlp_norm.weight, block.mlp_norm.bias,
        gate=None if cell.gate_style is None else cell.gate_memory.weight,
        mlp=tuple(tensor for layer in cell.mlp if isinstance(layer, nn.Linear) for tensor in (layer.weight, layer.bias)),
    )  # fmt: skip
    outputs = FusedSequence.apply(shape, memory, qkv, gates, keep, *weights.flat())
    # A copy, not a view of `outputs`: the caller may keep or change the final memory on its own.
    return outputs, outputs[-1].view_as(memory).clone()


# --- the registry entry -----------------------------------------------------------------------------


def rmc_options(config) -> dict:
    """The `RelationalMemoryCell` options a `CoreConfig` sets (besides mem_slots and head_size)."""
    return dict(
        num_heads=config.num_heads,
        num_blocks=config.num_blocks,
        gate_style=config.gate_style,
        attention_mlp_layers=config.attention_mlp_layers,
        key_size=config.key_size,
        attention_scale=config.attention_scale,
        attention=config.attention,
        slot_binding=config.slot_binding,
        forget_bias=config.forget_bias,
        input_bias=config.input_bias,
    )


def target_parameters(config, input_size: int) -> int:
    """The parameter count every other core is sized to: `config.size_to_parameters` when set, else
    that of the RMC the config's RMC fields describe (so `--core NAME` compares at equal size)."""
    if config.size_to_parameters is not None:
        _check_positive_int("size_to_parameters", config.size_to_parameters)
        return config.size_to_parameters
    return parameters_of(lambda: RelationalMemory(input_size, config.mem_slots, config.head_size, **rmc_options(config)))


@register_core("rmc", "the Relational Memory Core (Santoro et al. 2018): attention over a few memory slots, gated")
def build_rmc(config, input_size: int, batch_first: bool = False) -> RelationalMemory:
    return RelationalMemory(input_size, config.mem_slots, config.head_size, batch_first=batch_first, **rmc_options(config))
