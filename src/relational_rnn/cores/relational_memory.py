"""The Relational Memory Core (Santoro et al., 2018), as specified in spec/rmc.md.

Two modules share one set of parameters:

* `RelationalMemoryCell`: one time step, `(input [B, I], memory [B, N, D]) -> (output [B, N*D], memory)`.
* `RelationalMemory`: a whole sequence, shaped like `torch.nn.LSTM`:
  `outputs, memory = rmc(x, memory=None)`.

The step follows the spec in order: project the input to one extra row, attend over
memory + input rows (`num_blocks` times, each block with its own projection and norms,
one MLP shared by all blocks), drop the input row, then gate the new memory against the
old one with constant input/forget biases.

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


def attention_mask(attention: str, num_queries: int, num_rows: int, device: torch.device, dtype: torch.dtype) -> Optional[Tensor]:
    """The additive mask [num_queries, num_rows] (0 or -inf) the `attention` ablation puts on the scores.

    The rows are the memory slots then the input row (the last); queries are the first
    `num_queries` rows. "full": None (every row reads every row); "input-only": row i reads
    only itself and the input row, so no slot reads another slot.
    """
    if attention == "full":
        return None
    if attention != "input-only":
        raise ValueError(f"attention {attention!r} has no mask")
    rows = torch.arange(num_rows, device=device)
    allowed = (rows[:num_queries, None] == rows[None, :]) | (rows[None, :] == num_rows - 1)
    return torch.zeros(allowed.shape, device=device, dtype=dtype).masked_fill_(~allowed, float("-inf"))


def _truncated_normal_(weight: Tensor, fan_in: int) -> None:
    """Sonnet's default initialiser: truncated normal (2 std), std = 1/sqrt(fan_in)."""
    std = 1.0 / math.sqrt(fan_in)
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


def _linear(in_features: int, out_features: int) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
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

    attention[t][b]: block b's attention weights at step t, [B, heads, N+1, N+1] (rows: the
    N memory slots then the input row, each attending over the same N+1 rows);
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
    the input row only) or "none" (the attention output of every row is the input row, so each
    slot is updated by the same residual, norms and MLP with no interaction; the qkv
    projection is then unused).
    """

    def __init__(
        self,
        mem_size: int,
        num_heads: int,
        key_size: int,
        head_size: int,
        query_scale: Optional[float] = None,
        attention: str = "full",
    ) -> None:
        super().__init__()
        self.attention = attention
        self.num_heads = num_heads
        self.key_size = key_size
        self.head_size = head_size
        self.query_scale = key_size**-0.5 if query_scale is None else query_scale
        qkv_size = num_heads * (2 * key_size + head_size)
        self.qkv = _linear(mem_size, qkv_size)
        self.qkv_norm = nn.LayerNorm(qkv_size, eps=1e-5)
        self.attention_norm = nn.LayerNorm(mem_size, eps=1e-5)
        self.mlp_norm = nn.LayerNorm(mem_size, eps=1e-5)

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
        mask = attention_mask(self.attention, rows.shape[1], rows.shape[1], rows.device, scores.dtype)
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


def _make_mlp(width: int, num_layers: int) -> nn.Sequential:
    """`num_layers` Linear(width, width) with ReLU between them and nothing after the last."""
    layers: list[nn.Module] = []
    for index in range(num_layers):
        if index > 0:
            layers.append(nn.ReLU())
        layers.append(_linear(width, width))
    return nn.Sequential(*layers)


class RelationalMemoryCell(nn.Module):
    """One time step of the Relational Memory Core: `(input, memory) -> (output, memory)`.

    Args mirror the reference (spec/rmc.md): `mem_slots` rows of width
    `mem_size = num_heads * head_size`; `gate_style` "unit", "memory" or None;
    `forget_bias` / `input_bias` are constants, not parameters; `attention_scale` "key"
    (queries scaled by key_size**-0.5, the default) or "qkv" (by (2*key_size + head_size)**-0.5,
    the June 2018 release; docs/core.md).

    Two options are not the paper's model and exist to take it apart (docs/questions.md):
    `attention` "input-only" or "none" (see `AttentionBlock`), and `slot_binding="position"`,
    an oracle binding: at step t only slot t mod mem_slots is updated, every other slot is
    kept as it was, so input t is written into slot t mod N (t counts from 0 at each
    sequence call, or is the cell's `step_index`).
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
        attention_scale: str = "key",
        attention: str = "full",
        slot_binding: str = "learned",
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
        if gate_style not in GATE_STYLES:
            raise ValueError(f"gate_style must be one of 'unit', 'memory' or None, got {gate_style!r}")
        if not isinstance(attention_scale, str) or attention_scale not in ATTENTION_SCALES:
            raise ValueError(f"attention_scale must be 'key' or 'qkv', got {attention_scale!r}")
        if not isinstance(attention, str) or attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {', '.join(map(repr, ATTENTION_MODES))}, got {attention!r}")
        if not isinstance(slot_binding, str) or slot_binding not in SLOT_BINDINGS:
            raise ValueError(f"slot_binding must be one of {', '.join(map(repr, SLOT_BINDINGS))}, got {slot_binding!r}")
        for name, value in (("forget_bias", forget_bias), ("input_bias", input_bias)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")

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
        self.mem_size = num_heads * head_size
        self.trace: Optional[CoreTrace] = None  # set while `recording(...)` is active

        self.input_projection = _linear(input_size, self.mem_size)
        self.blocks = nn.ModuleList(
            AttentionBlock(self.mem_size, num_heads, self.key_size, head_size, self.query_scale, attention)
            for _ in range(num_blocks)
        )
        self.mlp = _make_mlp(self.mem_size, attention_mlp_layers)
        if gate_style is not None:
            gate_size = self.mem_size if gate_style == "unit" else 1
            self.gate_input = _linear(self.mem_size, 2 * gate_size)
            self.gate_memory = _linear(self.mem_size, 2 * gate_size)

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
        """One step from an already projected input [B, D]; returns the next memory [B, N, D].

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
        rows = torch.cat([memory, projected_input.unsqueeze(1)], dim=1)  # [B, N+1, D]
        for block in self.blocks:
            rows = block(rows, self.mlp, trace)
        attended_memory = rows[:, : self.mem_slots]
        if self.gate_style is None:
            return attended_memory
        input_gate, forget_gate = self.gates(projected_input, memory)
        if trace is not None:
            trace.input_gate.append(input_gate.detach())
            trace.forget_gate.append(forget_gate.detach())
        return input_gate * torch.tanh(attended_memory) + forget_gate * memory

    def gates(self, projected_input: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Input and forget gates, [B, N, g] each, from the projected input and tanh(previous memory)."""
        pre_activation = self.gate_input(projected_input).unsqueeze(1) + self.gate_memory(torch.tanh(memory))
        input_pre, forget_pre = pre_activation.chunk(2, dim=-1)
        return torch.sigmoid(input_pre + self.input_bias), torch.sigmoid(forget_pre + self.forget_bias)

    def forward(
        self, x: Tensor, memory: Optional[Tensor] = None, step_index: Optional[int] = None
    ) -> tuple[Tensor, Tensor]:
        """x [B, input_size], memory [B, N, D] or None -> (output [B, N*D], next memory [B, N, D]).

        `step_index`: the step's position in its sequence, for `slot_binding="position"` only."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[-1] != self.input_size:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"input must have shape (batch, input_size={self.input_size}), got {shape}")
        self.check_input_dtype(x)
        if memory is None:
            memory = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        else:
            self.check_memory(memory, x.shape[0], x)
        next_memory = self.step(self.input_projection(x), memory, step_index)
        return next_memory.flatten(1), next_memory


def bind_to_slot(next_memory: Tensor, memory: Tensor, step_index: int) -> Tensor:
    """The oracle binding: `next_memory` in slot `step_index mod N`, `memory` in every other slot."""
    slots = memory.shape[1]
    written = torch.arange(slots, device=memory.device).view(1, slots, 1) == step_index % slots
    return torch.where(written, next_memory, memory)


class RelationalMemory(RecurrentCore):
    """The Relational Memory Core over a sequence, with the call shape of `torch.nn.LSTM`.

    `outputs, memory = rmc(x, memory=None)` with `x` of shape (T, B, input_size), or
    (B, T, input_size) when `batch_first=True`. `outputs` holds the flattened memory after
    every step, (T, B, mem_slots * mem_size); `memory` is the final memory (B, mem_slots, mem_size).

    `lengths` (optional, [B]) lets sequences of different lengths share a batch: entry b
    stops updating after `lengths[b]` steps, so its final memory (and its outputs from then
    on) are those at its own end.

    Speed options (none changes the results beyond float rounding; see docs/performance.md):
    `fast` (default True; the attribute `use_fast_path` can be flipped later) runs the fast
    path instead of the straightforward per-step `cell.step`. With one attention block and
    gradients on, the fast path is fused (`fused=True`, attribute `use_fused`): one
    hand-written forward and backward for the whole sequence (cores/fused.py), which keeps
    about half the activations of autograd's; otherwise (`fused=False`, several blocks, no
    gradients, `torch.autocast`) it is `fast_sequence`, the step `fast_step` under autograd.
    Two options apply to `fast_step` (and so turn the fused path off): `compile=True`
    (attribute `use_compile`) wraps it in `torch.compile` (compiled on the first call, which
    is slow); `recompute=True` keeps only each step's input memory for backward and
    recomputes the step there (`torch.utils.checkpoint`): least activation memory, more time.
    Everything torch users differentiate with works on the default path: under `torch.func`
    transforms (grad, vmap, jacrev, ...) the fast path runs `fast_sequence` instead of the fused
    function, and a double backward (`create_graph=True`) through the fused path recomputes the
    sequence under autograd in its backward (`cores/fused.py`).
    """

    state_batch_dim = 0  # the memory [B, mem_slots, mem_size] (the `RecurrentCore` contract)

    def __init__(
        self,
        input_size: int,
        mem_slots: int,
        head_size: int,
        *,
        batch_first: bool = False,
        fast: bool = True,
        fused: bool = True,
        compile: bool = False,
        recompute: bool = False,
        **options,
    ) -> None:
        super().__init__()
        self.cell = RelationalMemoryCell(input_size, mem_slots, head_size, **options)
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

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in {
                "input_size", "mem_slots", "head_size", "num_heads", "num_blocks", "forget_bias",
                "input_bias", "gate_style", "attention_mlp_layers", "key_size", "mem_size", "output_size",
                "attention_scale", "query_scale", "attention", "slot_binding",
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
        `fused`, no compile or recompute, and the paper's model (no `attention` ablation or
        `slot_binding` diagnostic: those run `fast_sequence`)."""
        cell = self.cell
        return (
            self.use_fused
            and cell.num_blocks == 1
            and not self.use_compile
            and not self.recompute
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
        x = self.check_sequence(x)  # [T, B, input_size]
        cell.check_input_dtype(x)
        steps, batch = x.shape[0], x.shape[1]
        memory = self.state_for(memory, batch, x)
        keep = _length_mask(lengths, steps, batch, x.device)

        if steps == 0:
            return self.no_steps(x, batch, memory)
        if self.use_fast_path and cell.trace is None:
            # Without gradients the fused forward would only fill buffers nobody reads; autocast
            # mixes dtypes and torch.func transforms need rules the fused function lacks.
            if (
                self.uses_fused_path
                and torch.is_grad_enabled()
                and not _autocast_enabled(x.device.type)
                and not _functorch_active()
            ):
                out, memory = fused_sequence(cell, x, memory, keep)
            else:
                out, memory = fast_sequence(cell, x, memory, keep, step=self._step_function(), recompute=self.recompute)
        else:
            # Every step's input row at once. `unbind` rather than `projected[t]`: indexing would
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
    """Whether torch.autocast is on for this device (the fused path does not handle mixed dtypes)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


# --- the fast path ----------------------------------------------------------------------------------


def _input_terms(cell: RelationalMemoryCell, x: Tensor) -> tuple[Optional[Tensor], Tensor, Optional[Tensor]]:
    """Everything that depends on the input alone, for all T steps at once.

    Returns (input rows [T, B, D] or None when no later block reads them, block 1's qkv
    projection of the input row [T, B, F] before its layer norm, the gates' input part
    [T, B, 2g] with every bias and constant of the gate pre-activation folded in, or None
    without gating).
    When it costs fewer multiply-adds (`fold_input_projection`), the input projection is
    folded into the weights of the two input-term matmuls,
    W (W_p x + b_p) + b = (W W_p) x + (W b_p + b), so the input rows are never formed.
    """
    block = cell.blocks[0]
    projection = cell.input_projection
    terms = [(block.qkv.weight, block.qkv.bias)]
    if cell.gate_style is not None:
        g = cell.gate_input.out_features // 2
        bias = cell.gate_input.bias + cell.gate_memory.bias
        constants = torch.cat([bias.new_full((g,), cell.input_bias), bias.new_full((g,), cell.forget_bias)])
        terms.append((cell.gate_input.weight, bias + constants))
    rows = projection(x) if cell.num_blocks > 1 or cell.attention == "none" else None
    if fold_input_projection(cell, tokens=x.shape[0] * x.shape[1]):
        outputs = [F.linear(x, weight @ projection.weight, torch.addmv(bias, weight, projection.bias)) for weight, bias in terms]
    else:
        rows_now = rows if rows is not None else projection(x)
        outputs = [F.linear(rows_now, weight, bias) for weight, bias in terms]
    gates = outputs[1] if cell.gate_style is not None else None
    return rows, outputs[0], gates


def fold_input_projection(cell: RelationalMemoryCell, tokens: int) -> bool:
    """Whether folding the input projection into the input-term matmuls costs fewer multiply-adds.

    Folded: one product of the weights, (out x D x I), then (tokens x I x out), plus the input
    rows themselves when a later block needs them. Plain: tokens x D x (I + out).
    """
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
    input_row: Optional[Tensor],
    input_qkv: Tensor,
    input_gates: Optional[Tensor],
) -> Tensor:
    """One step of the fast path: memory [B, N, D] and the step's `_input_terms` -> next memory.

    Same maths as `RelationalMemoryCell.step`, less work:
    * block 1 projects only the N memory rows; the input row's normed qkv comes precomputed;
    * in the last block only the memory rows ask queries and go through the residuals and the
      MLP: the input row's own output is dropped after it (with one block the input row is
      just one more key and value);
    * attention as two batched matmuls (`scaled_dot_product_attention` was measured: its CPU
      kernel is slower for a handful of rows, and it has no double backward);
    * the gates' input part and all gate biases come precomputed: one matmul, one add and one
      sigmoid for both gates;
    * functional calls instead of module calls (less Python per step).
    """
    batch, slots = memory.shape[0], memory.shape[1]
    heads, key_size, head_size = cell.num_heads, cell.key_size, cell.head_size
    last = len(cell.blocks) - 1
    if cell.attention == "none":  # the ablation: the input row replaces the attention output
        rows = torch.cat([memory, input_row.unsqueeze(1)], dim=1)
        for block in cell.blocks:
            rows = _norm(block.attention_norm, rows + rows[:, -1:])
            rows = _norm(block.mlp_norm, _mlp(cell.mlp, rows) + rows)
        return _gate(cell, memory, rows[:, :slots], input_gates)
    rows = memory  # the rows entering the block: memory, plus the input row while a later block reads it
    for index, block in enumerate(cell.blocks):
        if index == 0:
            memory_qkv = _norm(block.qkv_norm, F.linear(memory, block.qkv.weight, block.qkv.bias))
            qkv = torch.cat([memory_qkv, input_qkv.unsqueeze(1)], dim=1)
            if index != last:
                rows = torch.cat([memory, input_row.unsqueeze(1)], dim=1)
        else:
            qkv = _norm(block.qkv_norm, F.linear(rows, block.qkv.weight, block.qkv.bias))
        qkv = qkv.view(batch, -1, heads, 2 * key_size + head_size).transpose(1, 2)
        queries, keys, values = qkv.split([key_size, key_size, head_size], dim=-1)
        if index == last:  # only the memory rows' results are kept
            queries, rows = queries[:, :, :slots], rows[:, :slots]
        scores = torch.matmul(queries, keys.transpose(-1, -2)).mul_(cell.query_scale)
        if cell.attention != "full":
            scores = scores + attention_mask(cell.attention, scores.shape[-2], scores.shape[-1], scores.device, scores.dtype)
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
    """The fast path over a sequence: x [T, B, input_size], memory [B, N, D] -> (outputs [T, B, N*D], memory).

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
    _, qkv, gates = _input_terms(cell, x)
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
