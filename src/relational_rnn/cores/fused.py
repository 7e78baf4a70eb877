"""The fused sequence path of the RMC: one hand-written forward and backward for a whole sequence.

`RelationalMemory` uses it by default when the core has one attention block (every task's
preset has) and gradients are on. It computes the same numbers as `fast_step` run under
autograd (tests/test_fast_path.py checks outputs and every gradient against the
straightforward path, float64 to 1e-10), but:

* it saves less for backward: per step only the qkv projection P, the MLP's hidden
  pre-activations, the second residual sum R2, the gates and the (tiny) attention weights,
  plus the memories, which are the outputs anyway. The layer norms, tanh and the first
  residual sum R1 are recomputed in backward from those (cheap next to the matrix products);
* it builds no autograd graph (~40 nodes per step) and keeps the per-step loops short, since
  at small batch each PyTorch call costs more than its arithmetic: intermediates are written
  straight into preallocated [T, ...] buffers (`out=`), biases and residuals ride on the
  matrix products (`addmm`, `baddbmm`), the attention's scale on its products (`alpha`);
* backward recomputes what only reads saved tensors (the layer norms, R1, tanh) for chunks
  of steps at once (all T steps for small shapes, step by step for large ones:
  `RECOMPUTE_ELEMENTS`), and runs the recursion through time step by step, weight gradients
  accumulating in place (`addmm_`);
* tiny attention products whose inner size is a few slots run as one multiply-add per slot
  (`_bmm`), the softmax runs over a middle dimension and tanh is computed as 2 sigmoid(2x) - 1
  (each faster on CPU: `benchmarks/bench_ops.py`).

One step, with memory M [B, N, D] (its rows flattened to [B*N, D] where convenient) and the
step's input terms Px (the input row's qkv projection) and Gx (the gates' input part):

    P = M Wq^T + bq;  Q = LN1(P);  q, k, v = heads of Q, with k, v also of the input row LN1(Px)
    A = softmax(q k^T * scale);  O = A v;  R1 = M + O;  Y1 = LN2(R1)
    R2 = MLP(Y1) + Y1;  Y2 = LN3(R2)
    G = sigmoid(tanh(M) Wg^T + Gx);  i, f = G;  M' = i * tanh(Y2) + f * M   (M' = Y2 ungated)
    next memory = M' where keep[t] (the sequence has not ended), else M

with scale the cell's `query_scale`: key_size**-0.5, or (2 key_size + head_size)**-0.5 with
`attention_scale="qkv"`.

The heads live in one buffer, [T, B*H, N+1, per head] (`_head_buffer`): each step's N memory
rows and its input row, head by head, so that q, k and v are views that the batched matmuls
read directly (the input rows are written once for all steps, the memory rows step by step).

Backward walks these in reverse with the usual rules (layer-norm, softmax, tanh, sigmoid and
ReLU backward are PyTorch's own kernels). Not supported, so `RelationalMemory` runs
`fast_step` under autograd instead: autocast (mixed dtypes) and `torch.func` transforms (the
function has no vmap or forward-mode rule). A double backward (backward with
`create_graph=True`, e.g. for a gradient penalty) works: the gradients then come from
`FusedGradients`, which recomputes the sequence under autograd; a plain backward keeps the
hand-written one.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

aten = torch.ops.aten


class Weights(NamedTuple):
    """The parameters the time loop uses, in the order `FusedSequence.apply` takes them."""

    qkv: Tensor
    qkv_bias: Tensor
    qkv_norm: Tensor
    qkv_norm_bias: Tensor
    attention_norm: Tensor
    attention_norm_bias: Tensor
    mlp_norm: Tensor
    mlp_norm_bias: Tensor
    gate: Optional[Tensor]  # the gates' memory part, [2g, D]; None without gating
    mlp: tuple[Tensor, ...]  # weight 1, bias 1, weight 2, bias 2, ...

    def flat(self) -> tuple[Optional[Tensor], ...]:
        return (*self[:9], *self.mlp)

    @classmethod
    def from_flat(cls, flat: tuple[Optional[Tensor], ...]) -> "Weights":
        return cls(*flat[:9], mlp=tuple(flat[9:]))


class SequenceShape:
    """The sizes and options of one call."""

    def __init__(
        self, memory: Tensor, input_qkv: Tensor, heads: int, key_size: int, head_size: int,
        gate_style: Optional[str], mlp_layers: int, eps: float, scale: Optional[float] = None,
    ) -> None:  # fmt: skip
        self.steps, self.batch = input_qkv.shape[0], input_qkv.shape[1]
        self.slots, self.width = memory.shape[1], memory.shape[2]
        self.rows = self.batch * self.slots
        self.heads, self.key_size, self.head_size = heads, key_size, head_size
        self.per_head = 2 * key_size + head_size  # one head's [query | key | value] in the projection
        self.gate_style = gate_style  # "unit" (one gate per unit), "memory" (one per row) or None
        self.gate_size = {"unit": self.width, "memory": 1, None: 0}[gate_style]
        self.mlp_layers = mlp_layers
        self.eps = eps
        self.scale = key_size**-0.5 if scale is None else scale  # multiplies q k^T (the cell's query_scale)


def _layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(normalised x, mean, rstd) over the last dimension; recomputing it gives the same bits."""
    return torch.native_layer_norm(x, (x.shape[-1],), weight, bias, eps)


def _layer_norm_backward(
    grad: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor, bias: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(d x, d weight, d bias) of `_layer_norm`."""
    return aten.native_layer_norm_backward(grad, x, (x.shape[-1],), mean, rstd, weight, bias, [True, True, True])


def _tanh(x: Tensor) -> Tensor:
    """tanh(x) as 2 sigmoid(2x) - 1: the same function, faster than `torch.tanh` on this
    project's CPUs (op-level table, docs/performance.md); off by at most ~2e-7 absolute in float32."""
    return torch.sigmoid(x * 2).mul_(2).sub_(1)


def _at(*tensors: Optional[Tensor]) -> list[Optional[tuple[Tensor, ...]]]:
    """Each [T, ...] tensor as the tuple of its T per-step views (None stays None)."""
    return [None if tensor is None else tensor.unbind(0) for tensor in tensors]


def _head_buffer(s: SequenceShape, input_normed: Tensor) -> Tensor:
    """[T, B*H, N+1, per head], with each step's input row LN1(Px) [T, B, F] in place as row N;
    rows 0..N-1 are for the memory rows (`_memory_row_places`)."""
    rows = input_normed.new_empty(s.steps, s.batch, s.heads, s.slots + 1, s.per_head)
    rows[:, :, :, s.slots].copy_(input_normed.view(s.steps, s.batch, s.heads, s.per_head))
    return rows.view(s.steps, s.batch * s.heads, s.slots + 1, s.per_head)


def _memory_row_places(s: SequenceShape, rows: Tensor) -> Tensor:
    """The memory rows' places in `rows` [T, B*H, N+1, per head], as a view in row layout
    [T, B, N, H, per head]: copying the normed memory rows qkv [T, B*N, F] there fills them."""
    places = rows.view(s.steps, s.batch, s.heads, s.slots + 1, s.per_head)[:, :, :, : s.slots]
    return places.transpose(2, 3)


def _split_heads(s: SequenceShape, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Views of `rows` [..., B*H, N+1, per head]: queries [..., N, k] (memory rows only), keys
    [..., N+1, k] and values [..., N+1, v] (memory rows and the input row)."""
    k = s.key_size
    return rows[..., : s.slots, :k], rows[..., k : 2 * k], rows[..., 2 * k :]


def _bmm(a: Tensor, b: Tensor, out: Optional[Tensor] = None, scale: float = 1.0) -> Tensor:
    """scale * (a @ b) for batches of small matrices, a [..., m, c] and b [..., c, n].

    PyTorch's CPU bmm runs one BLAS call for the whole batch only when `out` is contiguous (else
    one per matrix), and below 400 multiply-adds per matrix it loops over scalars instead. There,
    when the inner size c is only a few slots (c < 8: A v and the attention's gradients), c
    multiply-adds of whole [..., m, n] slices (a column of a times a row of b) are faster
    (op-level table, docs/performance.md).
    """
    inner = a.shape[-1]
    if inner < 8 and inner * a.shape[-2] * b.shape[-1] < 400:
        if scale != 1.0:
            a = a * scale
        columns, rows = a.unsqueeze(-1).unbind(-2), b.unsqueeze(-2).unbind(-3)  # [..., m, 1] and [..., 1, n]
        out = torch.mul(columns[0], rows[0], out=out)
        for column, row in zip(columns[1:], rows[1:]):
            out.addcmul_(column, row)
        return out
    if out is None:
        out = a.new_empty(*a.shape[:-1], b.shape[-1])
    return torch.baddbmm(out, a, b, beta=0, alpha=scale, out=out)  # beta=0: out's old values are ignored


def _join_heads(s: SequenceShape, queries: Optional[Tensor], keys: Tensor, values: Tensor) -> Tensor:
    """The inverse of `_split_heads` for one kind of row: queries [..., B*H, R, k] (None: zeros),
    keys [..., B*H, R, k] and values [..., B*H, R, v] -> rows [..., B, R, F], head by head."""
    lead, count = keys.shape[:-3], keys.shape[-2]
    joined = keys.new_empty(*lead, s.batch, count, s.heads, s.per_head)
    k = s.key_size
    for part, source in ((slice(0, k), queries), (slice(k, 2 * k), keys), (slice(2 * k, None), values)):
        target = joined[..., part]
        if source is None:
            target.zero_()
        else:
            target.copy_(source.view(*lead, s.batch, s.heads, count, -1).transpose(-3, -2))
    return joined.view(*lead, s.batch, count, -1)


def _first_sum(s: SequenceShape, memory_rows: Tensor, attended: Tensor) -> Tensor:
    """R1 = M + O in row layout [..., B*N, D], from memory rows [..., B*N, D] and the attended
    values O [..., B*H, N, v], which go back from heads to rows on the way."""
    lead = memory_rows.shape[:-2]
    total = memory_rows.new_empty(memory_rows.shape)
    heads_last = attended.view(*lead, s.batch, s.heads, s.slots, s.head_size).transpose(-3, -2)
    rows = (*lead, s.batch, s.slots, s.heads, s.head_size)
    torch.add(memory_rows.view(rows), heads_last, out=total.view(rows))
    return total


def _gate_product(s: SequenceShape, grad: Tensor, factor: Tensor, out: Tensor) -> None:
    """out = grad * factor [B, N, D], summed over the units when one gate covers a whole row
    (gate_style "memory", out [B, N, 1]): d loss / d (one gate) before its sigmoid."""
    if s.gate_style == "unit":
        torch.mul(grad, factor, out=out)
    else:
        torch.sum(grad * factor, dim=-1, keepdim=True, out=out)


RECOMPUTE_ELEMENTS = 2**19
"""How many steps backward recomputes at once: as many as keep the chunk's qkv rows (steps x B*N
x F values) within this, at least one. Fewer calls for small shapes, where each call costs more
than its arithmetic; cache-sized temporaries for large ones (all steps at once of a large batch
would be big fresh allocations, slower than recomputing step by step)."""


class _Recomputed(NamedTuple):
    """What one step of the forward computed without saving it, recomputed for backward."""

    qkv_mean: Tensor
    qkv_rstd: Tensor
    first_sum: Tensor  # R1
    first_normed: Tensor  # Y1
    first_mean: Tensor
    first_rstd: Tensor
    second_mean: Tensor
    second_rstd: Tensor
    tanh_second: Optional[Tensor]  # tanh(Y2), None ungated
    tanh_entering: Optional[Tensor]  # tanh(M), None ungated


def _recompute(
    s: SequenceShape, w: Weights, steps: slice, entering: Tensor, projections: Tensor, attention: Tensor,
    second_sums: Tensor, heads: Tensor,
) -> list[_Recomputed]:  # fmt: skip
    """Recompute the steps in `steps` from what was saved, one call per operation for all of
    them, and write their normed memory rows into the head buffer `heads`."""
    qkv, qkv_mean, qkv_rstd = _layer_norm(projections[steps], w.qkv_norm, w.qkv_norm_bias, s.eps)
    places = _memory_row_places(s, heads)[steps]
    places.copy_(qkv.view(places.shape))
    values = _split_heads(s, heads[steps])[2]
    attended = _bmm(attention[steps].flatten(0, 1).transpose(1, 2), values.flatten(0, 1))
    count = places.shape[0]
    first_sums = _first_sum(s, entering[steps], attended.view(count, -1, s.slots, s.head_size))
    first_normed, first_mean, first_rstd = _layer_norm(first_sums, w.attention_norm, w.attention_norm_bias, s.eps)
    second_normed, second_mean, second_rstd = _layer_norm(second_sums[steps], w.mlp_norm, w.mlp_norm_bias, s.eps)
    tanh_second = tanh_entering = None
    if s.gate_style is not None:
        tanh_second, tanh_entering = _tanh(second_normed), _tanh(entering[steps])
    fields = (qkv_mean, qkv_rstd, first_sums, first_normed, first_mean, first_rstd, second_mean, second_rstd, tanh_second, tanh_entering)
    per_step = [[None] * count if field is None else field.unbind(0) for field in fields]
    return [_Recomputed(*step) for step in zip(*per_step)]


class FusedSequence(torch.autograd.Function):
    """outputs [T, B, N*D] = the RMC (one block) over T steps; see the module docstring.

    apply(shape, memory [B, N, D], input_qkv [T, B, F] (before LN1), input_gates [T, B, 2g] or
    None, keep [T, B, 1, 1] or None, *Weights.flat()).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, s: SequenceShape, memory: Tensor, input_qkv: Tensor, input_gates: Optional[Tensor],
        keep: Optional[Tensor], *flat_weights: Optional[Tensor],
    ) -> Tensor:  # fmt: skip
        w = Weights.from_flat(flat_weights)
        mlp_weights, mlp_biases = w.mlp[0::2], w.mlp[1::2]
        last_layer = s.mlp_layers - 1
        gated = s.gate_style is not None
        heads = _head_buffer(s, _layer_norm(input_qkv, w.qkv_norm, w.qkv_norm_bias, s.eps)[0])
        if gated:  # Gx for every memory row, so that it rides on the gates' matmul as its bias
            row_gates = input_gates.unsqueeze(2).expand(s.steps, s.batch, s.slots, -1).reshape(s.steps, s.rows, -1)

        outputs = memory.new_empty(s.steps, s.batch, s.slots * s.width)
        # What backward needs, written in place step by step:
        projections = memory.new_empty(s.steps, s.rows, w.qkv.shape[0])  # P
        attention = memory.new_empty(s.steps, s.batch * s.heads, s.slots + 1, s.slots)  # A, keys first
        hidden = memory.new_empty(last_layer, s.steps, s.rows, s.width)  # the MLP's pre-activations
        second_sums = memory.new_empty(s.steps, s.rows, s.width)  # R2
        gates = memory.new_empty(s.steps, s.batch, s.slots, 2 * s.gate_size)  # G
        scores = memory.new_empty(s.batch * s.heads, s.slots + 1, s.slots)  # q k^T * scale, reused every step
        # Per-step views, taken once ("x_at[t]" indexes a tuple; "x[t]" would be one more PyTorch call).
        projection_at, attention_at, second_sum_at = _at(projections, attention, second_sums)
        memory_places_at, queries_at, keys_at, values_at = _at(_memory_row_places(s, heads), *_split_heads(s, heads))
        hidden_at = [_at(layer)[0] for layer in hidden]
        output_at = _at(outputs.view(s.steps, *memory.shape))[0]
        if gated:
            gates_at, row_gates_at = _at(gates, row_gates)

        current = memory
        for t in range(s.steps):
            memory_rows = current.view(s.rows, s.width)
            projection = torch.addmm(w.qkv_bias, memory_rows, w.qkv.t(), out=projection_at[t])
            qkv = _layer_norm(projection, w.qkv_norm, w.qkv_norm_bias, s.eps)[0]
            memory_places_at[t].copy_(qkv.view(memory_places_at[t].shape))
            queries, keys, values = queries_at[t], keys_at[t], values_at[t]
            # A = softmax(q k^T * scale), keys first: PyTorch's CPU softmax is about 3x faster over a
            # middle dimension than over a last dimension of only N + 1 entries.
            weights = torch.softmax(_bmm(keys, queries.transpose(1, 2), out=scores, scale=s.scale), dim=1, out=attention_at[t])
            first_sum = _first_sum(s, memory_rows, _bmm(weights.transpose(1, 2), values))
            first_normed = _layer_norm(first_sum, w.attention_norm, w.attention_norm_bias, s.eps)[0]
            layer_input = first_normed
            for index in range(last_layer):
                layer_output = torch.addmm(mlp_biases[index], layer_input, mlp_weights[index].t(), out=hidden_at[index][t])
                layer_input = torch.relu(layer_output)
            second_sum = torch.addmm(mlp_biases[-1], layer_input, mlp_weights[-1].t(), out=second_sum_at[t]).add_(first_normed)
            second_normed = _layer_norm(second_sum, w.mlp_norm, w.mlp_norm_bias, s.eps)[0].view_as(current)
            output = output_at[t]
            if gated:
                step_gates = gates_at[t]
                torch.addmm(row_gates_at[t], _tanh(memory_rows), w.gate.t(), out=step_gates.view(s.rows, -1)).sigmoid_()
                input_gate, forget_gate = step_gates.split(s.gate_size, dim=-1)
                new = torch.addcmul(forget_gate * current, input_gate, _tanh(second_normed), out=output if keep is None else None)
            else:
                new = second_normed
            if keep is not None:
                torch.where(keep[t], new, current, out=output)
            elif new is not output:
                output.copy_(new)
            current = output

        ctx.shape = s
        ctx.save_for_backward(
            memory, outputs, input_qkv, projections, attention, hidden, second_sums, gates, keep, input_gates, *flat_weights
        )
        return outputs

    @staticmethod
    def backward(ctx, grad_outputs: Tensor):  # type: ignore[override]
        if torch.is_grad_enabled():  # backward(create_graph=True): the gradients must be differentiable
            return FusedSequence.differentiable_backward(ctx, grad_outputs)
        return FusedSequence.backward_by_hand(ctx, grad_outputs)

    @staticmethod
    def differentiable_backward(ctx, grad_outputs: Tensor):
        """The gradients as the outputs of `FusedGradients`, which autograd can differentiate again."""
        saved = ctx.saved_tensors
        memory, _, input_qkv, *_, keep, input_gates = saved[:10]
        flat = saved[10:]
        inputs = (memory, input_qkv, input_gates, *flat)
        positions = (1, 2, 3, *range(5, 5 + len(flat)))  # each input's position among apply's arguments
        wanted = tuple(i for i, tensor in enumerate(inputs) if tensor is not None and ctx.needs_input_grad[positions[i]])
        result: list[Optional[Tensor]] = [None] * (5 + len(flat))
        if wanted:
            grads = FusedGradients.apply(ctx.shape, wanted, keep, grad_outputs, *inputs)
            for index, grad in zip(wanted, (grads,) if isinstance(grads, Tensor) else grads):
                result[positions[index]] = grad
        return tuple(result)

    @staticmethod
    def backward_by_hand(ctx, grad_outputs: Tensor):
        """The hand-written backward (grad mode is off: the engine runs backward so without create_graph).

        Three phases: the recursion through time, step by step, after recomputing each chunk of
        steps (module docstring); then what needs every step's gradients: the input rows' LN1
        backward (from d loss / d their keys and values), the gates' input part, the layer
        norms' weight and bias gradients (kept per step, summed once).
        """
        s: SequenceShape = ctx.shape
        memory, outputs, input_qkv, projections, attention, hidden, second_sums, gates, keep, _, *flat = ctx.saved_tensors
        w = Weights.from_flat(tuple(flat))
        mlp_weights = w.mlp[0::2]
        gated = s.gate_style is not None
        width = s.width

        # 1. What the steps computed, from what was saved: chunks of steps at once, last chunk first.
        entering = torch.cat([memory.reshape(1, s.rows, width), outputs[:-1].view(s.steps - 1, s.rows, width)])  # M
        input_normed, input_mean, input_rstd = _layer_norm(input_qkv, w.qkv_norm, w.qkv_norm_bias, s.eps)
        heads = _head_buffer(s, input_normed)  # the memory rows are filled chunk by chunk (`_recompute`)
        queries, keys, values = _split_heads(s, heads)
        chunk = max(1, RECOMPUTE_ELEMENTS // (s.rows * w.qkv.shape[0]))  # steps recomputed at once

        # 2. The recursion. Weight gradients accumulate in place (`addmm_`), the layer norms'
        # per step in lists (summed at the end); these buffers keep d loss / d the gates'
        # pre-activations, the keys and the values for what comes after the loop.
        grad = {name: torch.zeros_like(getattr(w, name)) for name in ("qkv", "qkv_bias", "gate") if getattr(w, name) is not None}
        grad_mlp = [torch.zeros_like(value) for value in w.mlp]  # weight 1, bias 1, ...
        norm_names = ("qkv_norm", "attention_norm", "mlp_norm")
        norm_grads: dict[str, list[tuple[Tensor, Tensor]]] = {name: [] for name in norm_names}  # (d weight, d bias)
        grad_pre_gates = torch.empty_like(gates) if gated else None
        grad_keys_all = memory.new_empty(keys.shape)
        grad_values_all = memory.new_empty(values.shape)
        # Per-step views, taken once ("x_at[t]" indexes a tuple; "x[t]" would be one more PyTorch call).
        entering_at, grad_outputs_at, keep_at, attention_at, projections_at = _at(entering, grad_outputs, keep, attention, projections)
        queries_at, keys_at, values_at, second_sums_at = _at(queries, keys, values, second_sums)
        grad_keys_all_at, grad_values_all_at = _at(grad_keys_all, grad_values_all)
        hidden_at = [_at(layer)[0] for layer in hidden]
        if gated:
            gates_at, grad_pre_gates_at = _at(gates, grad_pre_gates)
        grad_memory = None  # d loss / d (memory after step t), [B, N, D]
        for stop in range(s.steps, 0, -chunk):
            start = max(0, stop - chunk)
            recomputed = _recompute(s, w, slice(start, stop), entering, projections, attention, second_sums, heads)
            for t in reversed(range(start, stop)):
                r = recomputed[t - start]
                current = entering_at[t].view_as(memory)
                step_grad = grad_outputs_at[t].reshape(memory.shape)
                grad_memory = step_grad if grad_memory is None else grad_memory.add_(step_grad)
                # The gradient for the memory entering this step (not needed at step 0 when the
                # initial memory is a constant) sums what flows back through the gates, the first
                # residual, the qkv projection and, for finished sequences, `keep`.
                need_previous = t > 0 or ctx.needs_input_grad[1]
                grad_from_gates = grad_kept = None
                if keep is not None:
                    grad_new = grad_memory * keep_at[t]
                    grad_kept = grad_memory * keep_at[t].logical_not()
                else:
                    grad_new = grad_memory

                # M' = i * tanh(Y2) + f * M, G = sigmoid(tanh(M) Wg^T + Gx).
                if gated:
                    step_gates, step_grad_gates = gates_at[t], grad_pre_gates_at[t]
                    input_gate, forget_gate = step_gates.split(s.gate_size, dim=-1)
                    step_tanh = r.tanh_second.view_as(current)
                    grad_second_normed = aten.tanh_backward(grad_new * input_gate, step_tanh).view(s.rows, width)
                    grad_input_gate, grad_forget_gate = step_grad_gates.split(s.gate_size, dim=-1)
                    _gate_product(s, grad_new, step_tanh, out=grad_input_gate)
                    _gate_product(s, grad_new, current, out=grad_forget_gate)
                    aten.sigmoid_backward.grad_input(step_grad_gates, step_gates, grad_input=step_grad_gates)
                    grad["gate"].addmm_(step_grad_gates.view(s.rows, -1).t(), r.tanh_entering)
                    if need_previous:
                        grad_from_gates = torch.mm(step_grad_gates.view(s.rows, -1), w.gate)
                        aten.tanh_backward.grad_input(grad_from_gates, r.tanh_entering, grad_input=grad_from_gates)
                        grad_from_gates.view_as(current).addcmul_(grad_new, forget_gate)
                else:
                    grad_second_normed = grad_new.reshape(s.rows, width)

                # Y2 = LN3(R2), R2 = MLP(Y1) + Y1.
                grad_second_sum, *step_norm_grads = _layer_norm_backward(
                    grad_second_normed, second_sums_at[t], r.second_mean, r.second_rstd, w.mlp_norm, w.mlp_norm_bias
                )
                norm_grads["mlp_norm"].append(step_norm_grads)
                grad_layer = grad_second_sum
                for index in reversed(range(s.mlp_layers)):
                    layer_input = r.first_normed if index == 0 else torch.relu(hidden_at[index - 1][t])
                    grad_mlp[2 * index].addmm_(grad_layer.t(), layer_input)
                    grad_mlp[2 * index + 1].add_(grad_layer.sum(0))
                    if index > 0:
                        grad_layer = aten.threshold_backward(torch.mm(grad_layer, mlp_weights[index]), hidden_at[index - 1][t], 0)
                grad_first_normed = torch.addmm(grad_second_sum, grad_layer, mlp_weights[0])

                # Y1 = LN2(R1), R1 = M + O.
                grad_first_sum, *step_norm_grads = _layer_norm_backward(
                    grad_first_normed, r.first_sum, r.first_mean, r.first_rstd, w.attention_norm, w.attention_norm_bias
                )
                norm_grads["attention_norm"].append(step_norm_grads)

                # O = A v with A = softmax(q k^T * scale) (stored keys first, [B*H, N+1, N]), keys and
                # values over the memory rows and the input row.
                weights = attention_at[t]
                grad_attended = grad_first_sum.view(s.batch, s.slots, s.heads, s.head_size).transpose(1, 2)
                grad_attended = grad_attended.reshape(s.batch * s.heads, s.slots, s.head_size)
                grad_scores = aten._softmax_backward_data(_bmm(values_at[t], grad_attended.transpose(1, 2)), weights, 1, weights.dtype)
                grad_scores = grad_scores.mul_(s.scale)  # d loss / d (q k^T)
                grad_queries = _bmm(grad_scores.transpose(1, 2), keys_at[t])
                grad_keys = _bmm(grad_scores, queries_at[t], out=grad_keys_all_at[t])
                grad_values = _bmm(weights, grad_attended, out=grad_values_all_at[t])
                grad_qkv = _join_heads(s, grad_queries, grad_keys[:, : s.slots], grad_values[:, : s.slots]).view(s.rows, -1)

                # Q = LN1(P), P = M Wq^T + bq.
                grad_projection, *step_norm_grads = _layer_norm_backward(
                    grad_qkv, projections_at[t], r.qkv_mean, r.qkv_rstd, w.qkv_norm, w.qkv_norm_bias
                )
                norm_grads["qkv_norm"].append(step_norm_grads)
                grad["qkv"].addmm_(grad_projection.t(), entering_at[t])
                grad["qkv_bias"].add_(grad_projection.sum(0))
                grad_memory = None
                if need_previous:  # grad_first_sum is not needed any more: collect into it
                    grad_memory = grad_first_sum.addmm_(grad_projection, w.qkv)
                    for extra in (grad_from_gates, grad_kept):
                        if extra is not None:
                            grad_memory.add_(extra.view_as(grad_memory))
                    grad_memory = grad_memory.view_as(current)

        # 3. The input rows' share of LN1, and the sums over steps.
        input_row = (slice(None), slice(None), slice(s.slots, None))  # [T, B*H, N+1, ...] -> [T, B*H, 1, ...]
        grad_input_normed = _join_heads(s, None, grad_keys_all[input_row], grad_values_all[input_row]).view(input_qkv.shape)
        grad_input_qkv, *input_norm_grads = _layer_norm_backward(
            grad_input_normed, input_qkv, input_mean, input_rstd, w.qkv_norm, w.qkv_norm_bias
        )
        norm_grads["qkv_norm"].append(input_norm_grads)
        for name in norm_names:
            grad[name], grad[name + "_bias"] = (torch.stack(tensors).sum(0) for tensors in zip(*norm_grads[name]))
        grad.setdefault("gate", None)
        grad_input_gates = grad_pre_gates.sum(2) if gated else None  # Gx reaches every memory row of its sequence
        grad_weights_flat = Weights(**{name: grad[name] for name in Weights._fields if name != "mlp"}, mlp=tuple(grad_mlp)).flat()
        grad_initial_memory = grad_memory if ctx.needs_input_grad[1] else None
        return None, grad_initial_memory, grad_input_qkv, grad_input_gates, None, *grad_weights_flat


# --- double backward -------------------------------------------------------------------------------


def _heads_under_autograd(s: SequenceShape, qkv: Tensor, input_normed: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """`_split_heads` of the rows [B*H, N+1, per head] built from normed memory rows qkv [B*N, F]
    and the input row [B, F] out of place (differentiable)."""
    memory_rows = qkv.view(s.batch, s.slots, s.heads, s.per_head).transpose(1, 2)
    input_row = input_normed.view(s.batch, 1, s.heads, s.per_head).transpose(1, 2)
    rows = torch.cat([memory_rows, input_row], dim=2).view(s.batch * s.heads, s.slots + 1, s.per_head)
    return _split_heads(s, rows)


def _step_under_autograd(s: SequenceShape, w: Weights, current: Tensor, input_normed: Tensor, input_gates: Optional[Tensor]) -> Tensor:
    """One step of the module docstring's maths with out-of-place operations only (differentiable
    any number of times): memory [B, N, D], the step's LN1(Px) [B, F] and Gx [B, 2g] -> next memory."""
    rows = current.reshape(s.rows, s.width)
    projection = F.linear(rows, w.qkv, w.qkv_bias)
    qkv = F.layer_norm(projection, (projection.shape[-1],), w.qkv_norm, w.qkv_norm_bias, s.eps)
    queries, keys, values = _heads_under_autograd(s, qkv, input_normed)
    weights = torch.softmax(torch.bmm(keys, queries.transpose(1, 2)) * s.scale, dim=1)  # keys first, as stored
    attended = torch.bmm(weights.transpose(1, 2), values).view(s.batch, s.heads, s.slots, s.head_size)
    first_sum = rows + attended.transpose(1, 2).reshape(s.rows, s.width)
    first_normed = F.layer_norm(first_sum, (s.width,), w.attention_norm, w.attention_norm_bias, s.eps)
    layer = first_normed
    for index in range(s.mlp_layers):
        layer = F.linear(layer, w.mlp[2 * index], w.mlp[2 * index + 1])
        if index < s.mlp_layers - 1:
            layer = torch.relu(layer)
    second_normed = F.layer_norm(layer + first_normed, (s.width,), w.mlp_norm, w.mlp_norm_bias, s.eps).view_as(current)
    if s.gate_style is None:
        return second_normed
    gates = torch.sigmoid(F.linear(torch.tanh(rows), w.gate).view(s.batch, s.slots, -1) + input_gates.unsqueeze(1))
    input_gate, forget_gate = gates.split(s.gate_size, dim=-1)
    return input_gate * torch.tanh(second_normed) + forget_gate * current


def _sequence_under_autograd(s: SequenceShape, memory: Tensor, input_qkv: Tensor, input_gates: Optional[Tensor],
                             keep: Optional[Tensor], flat: tuple[Optional[Tensor], ...]) -> Tensor:  # fmt: skip
    """What `FusedSequence.forward` computes, under autograd: outputs [T, B, N*D]."""
    w = Weights.from_flat(flat)
    normed = F.layer_norm(input_qkv, (input_qkv.shape[-1],), w.qkv_norm, w.qkv_norm_bias, s.eps).unbind(0)
    gates = [None] * s.steps if input_gates is None else input_gates.unbind(0)
    outputs, current = [], memory
    for t in range(s.steps):
        new = _step_under_autograd(s, w, current, normed[t], gates[t])
        current = new if keep is None else torch.where(keep[t], new, current)
        outputs.append(current.reshape(s.batch, -1))
    return torch.stack(outputs)


def _leaves(tensors: tuple[Optional[Tensor], ...]) -> list[Optional[Tensor]]:
    return [None if tensor is None else tensor.detach().requires_grad_() for tensor in tensors]


class FusedGradients(torch.autograd.Function):
    """The gradients of `FusedSequence`, as a function of its inputs and of `grad_outputs` that
    autograd can differentiate: what `FusedSequence.backward` returns under create_graph=True.

    apply(shape, wanted, keep, grad_outputs, memory, input_qkv, input_gates, *Weights.flat())
    -> the gradients w.r.t. the inputs numbered in `wanted` (0: memory, 1: input_qkv, ...).

    Forward recomputes the sequence under autograd (`_sequence_under_autograd`) on detached
    copies of the inputs and differentiates it once; backward does the same twice. Copies,
    because an input's history may hold one of the weights (the input terms use the qkv
    projection too): differentiating through that history would count its gradient twice.
    Each derivative costs one more forward of the sequence; a third derivative raises.
    """

    @staticmethod
    def forward(ctx, s: SequenceShape, wanted: tuple[int, ...], keep: Optional[Tensor], grad_outputs: Tensor,  # type: ignore[override]
                *inputs: Optional[Tensor]):  # fmt: skip
        ctx.shape, ctx.wanted = s, wanted
        ctx.save_for_backward(keep, grad_outputs, *inputs)
        with torch.enable_grad():
            leaves = _leaves(inputs)
            outputs = _sequence_under_autograd(s, leaves[0], leaves[1], leaves[2], keep, tuple(leaves[3:]))
            grads = torch.autograd.grad(outputs, [leaves[i] for i in wanted], grad_outputs, allow_unused=True)
        return tuple(torch.zeros_like(leaves[i]) if grad is None else grad for i, grad in zip(wanted, grads))

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_grads: Optional[Tensor]):  # type: ignore[override]
        s, wanted = ctx.shape, ctx.wanted
        keep, grad_outputs, *inputs = ctx.saved_tensors
        with torch.enable_grad():
            leaves = _leaves(tuple(inputs))
            upstream = grad_outputs.detach().requires_grad_()
            outputs = _sequence_under_autograd(s, leaves[0], leaves[1], leaves[2], keep, tuple(leaves[3:]))
            grads = torch.autograd.grad(outputs, [leaves[i] for i in wanted], upstream, create_graph=True, allow_unused=True)
            pairs = [(g, gg) for g, gg in zip(grads, grad_grads) if g is not None and gg is not None and g.requires_grad]
            targets = [upstream, *(leaf for leaf in leaves if leaf is not None)]
            if pairs:
                second = list(torch.autograd.grad([g for g, _ in pairs], targets, [gg for _, gg in pairs], allow_unused=True))
            else:
                second = [None] * len(targets)
        grad_upstream, rest = second[0], iter(second[1:])
        grad_inputs = [None if leaf is None else next(rest) for leaf in leaves]
        return None, None, None, grad_upstream, *grad_inputs
