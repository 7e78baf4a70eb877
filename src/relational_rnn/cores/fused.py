"""The fused sequence path of the RMC: one hand-written forward and backward for a whole sequence.

`RelationalMemory` uses it by default when the core has one attention block (every task's
preset has) and gradients are on. It computes the same numbers as `fast_step` run under
autograd (tests/test_fast_path.py checks outputs and every gradient against the
straightforward path, float64 to 1e-10), but:

* it saves less for backward: per step only the qkv projection P, the MLP's hidden
  pre-activations, the second residual sum R2, the gates and the (tiny) attention weights,
  plus the memories, which are the outputs anyway. The layer norms, tanh and the first
  residual sum R1 are recomputed in backward from those (cheap next to the matrix products);
* it builds no autograd graph (~40 nodes per step): weight gradients are accumulated in
  place (`addmm_`), intermediates are written straight into preallocated [T, ...] buffers,
  the softmax runs over a middle dimension and tanh is computed as 2 sigmoid(2x) - 1 (both
  faster on CPU: `benchmarks/bench_ops.py`).

One step, with memory M [B, N, D] (its rows flattened to [B*N, D] where convenient) and the
step's input terms Px (the input row's qkv projection) and Gx (the gates' input part):

    P = M Wq^T + bq;  Q = LN1(P);  q, k, v = heads of Q, with k, v also of the input row LN1(Px)
    A = softmax(q k^T * scale);  O = A v;  R1 = M + O;  Y1 = LN2(R1)
    R2 = MLP(Y1) + Y1;  Y2 = LN3(R2)
    G = sigmoid(tanh(M) Wg^T + Gx);  i, f = G;  M' = i * tanh(Y2) + f * M   (M' = Y2 ungated)
    next memory = M' where keep[t] (the sequence has not ended), else M

with scale the cell's `query_scale`: key_size**-0.5, or (2 key_size + head_size)**-0.5 with
`attention_scale="qkv"`.

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
    """tanh(x) as 2 sigmoid(2x) - 1: the same function, about twice as fast as `torch.tanh` on
    CPU; off by at most ~2e-7 absolute in float32."""
    return torch.sigmoid(x * 2).mul_(2).sub_(1)


def _heads(s: SequenceShape, qkv: Tensor, input_qkv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Queries of the memory rows; keys and values of the memory rows and the input row.

    qkv [B*N, F] and input_qkv [B, F], both normed -> queries [B*H, N, k], keys [B*H, N+1, k],
    values [B*H, N+1, v]: views of one tensor that holds the rows head by head.
    """
    memory_rows = qkv.view(s.batch, s.slots, s.heads, s.per_head).transpose(1, 2)
    input_row = input_qkv.view(s.batch, 1, s.heads, s.per_head).transpose(1, 2)
    rows = torch.cat([memory_rows, input_row], dim=2).view(s.batch * s.heads, s.slots + 1, s.per_head)
    k = s.key_size
    return rows[:, : s.slots, :k], rows[:, :, k : 2 * k], rows[:, :, 2 * k :]


def _attention_weights(s: SequenceShape, queries: Tensor, keys: Tensor) -> Tensor:
    """softmax(q k^T * scale), stored keys first: [B*H, N+1 keys, N queries].

    Keys first because PyTorch's CPU softmax is about 3x faster over a middle dimension than
    over a last dimension of only N + 1 entries.
    """
    return torch.softmax(torch.bmm(keys, queries.transpose(1, 2)).mul_(s.scale), dim=1)


def _first_sum(s: SequenceShape, memory_rows: Tensor, attended: Tensor) -> Tensor:
    """R1 = M + O as [B*N, D]; attended O [B*H, N, v] goes back to row layout on the way."""
    total = memory_rows.clone()
    heads_last = attended.view(s.batch, s.heads, s.slots, s.head_size).transpose(1, 2)
    total.view(s.batch, s.slots, s.heads, s.head_size).add_(heads_last)
    return total


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
        input_normed = _layer_norm(input_qkv, w.qkv_norm, w.qkv_norm_bias, s.eps)[0]

        outputs = memory.new_empty(s.steps, s.batch, s.slots * s.width)
        # What backward needs, written in place step by step:
        projections = memory.new_empty(s.steps, s.rows, w.qkv.shape[0])  # P
        attention = memory.new_empty(s.steps, s.batch * s.heads, s.slots + 1, s.slots)  # A, keys first
        hidden = memory.new_empty(last_layer, s.steps, s.rows, s.width)  # the MLP's pre-activations
        second_sums = memory.new_empty(s.steps, s.rows, s.width)  # R2
        gates = memory.new_empty(s.steps, s.batch, s.slots, 2 * s.gate_size)  # G

        current = memory
        for t in range(s.steps):
            memory_rows = current.reshape(s.rows, s.width)
            projection = torch.addmm(w.qkv_bias, memory_rows, w.qkv.t(), out=projections[t])
            qkv = _layer_norm(projection, w.qkv_norm, w.qkv_norm_bias, s.eps)[0]
            queries, keys, values = _heads(s, qkv, input_normed[t])
            weights = attention[t].copy_(_attention_weights(s, queries, keys))
            attended = torch.bmm(weights.transpose(1, 2), values)
            first_sum = _first_sum(s, memory_rows, attended)
            first_normed = _layer_norm(first_sum, w.attention_norm, w.attention_norm_bias, s.eps)[0]
            layer_input = first_normed
            for index in range(s.mlp_layers):
                target = hidden[index, t] if index < last_layer else None
                layer_output = torch.addmm(mlp_biases[index], layer_input, mlp_weights[index].t(), out=target)
                layer_input = torch.relu(layer_output) if index < last_layer else layer_output
            second_sum = torch.add(layer_input, first_normed, out=second_sums[t])
            second_normed = _layer_norm(second_sum, w.mlp_norm, w.mlp_norm_bias, s.eps)[0].view_as(current)
            if s.gate_style is not None:
                pre_gates = torch.mm(_tanh(memory_rows), w.gate.t()).view(s.batch, s.slots, -1)
                step_gates = torch.sigmoid(pre_gates.add_(input_gates[t].unsqueeze(1)), out=gates[t])
                input_gate, forget_gate = step_gates.split(s.gate_size, dim=-1)
                new = torch.addcmul(forget_gate * current, input_gate, _tanh(second_normed))
            else:
                new = second_normed
            output = outputs[t].view_as(current)
            if keep is not None:
                torch.where(keep[t], new, current, out=output)
            else:
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
        """The hand-written backward (grad mode is off: the engine runs backward so without create_graph)."""
        s: SequenceShape = ctx.shape
        memory, outputs, input_qkv, projections, attention, hidden, second_sums, gates, keep, _, *flat = ctx.saved_tensors
        w = Weights.from_flat(tuple(flat))
        mlp_weights = w.mlp[0::2]
        k = s.key_size
        gated = s.gate_style is not None

        input_normed, input_mean, input_rstd = _layer_norm(input_qkv, w.qkv_norm, w.qkv_norm_bias, s.eps)
        grad_input_normed = torch.zeros_like(input_qkv)
        grad_input_gates = memory.new_empty(s.steps, s.batch, 2 * s.gate_size) if gated else None
        # Parameter gradients, accumulated over the steps: same names as `Weights`.
        grad = {name: torch.zeros_like(value) for name, value in w._asdict().items() if name not in ("mlp", "gate")}
        grad["gate"] = torch.zeros_like(w.gate) if gated else None
        grad_mlp = [torch.zeros_like(value) for value in w.mlp]  # weight 1, bias 1, ...

        def add_norm_grads(name: str, weight_grad: Tensor, bias_grad: Tensor) -> None:
            grad[name].add_(weight_grad)
            grad[name + "_bias"].add_(bias_grad)

        grad_memory = None  # d loss / d (memory after step t), [B, N, D]
        for t in reversed(range(s.steps)):
            current = memory if t == 0 else outputs[t - 1].view_as(memory)
            memory_rows = current.reshape(s.rows, s.width)
            step_grad = grad_outputs[t].reshape(memory.shape)
            grad_memory = step_grad if grad_memory is None else grad_memory.add_(step_grad)
            # The gradient for the memory entering this step (not needed at step 0 when the
            # initial memory is a constant) sums what flows back through the gates, the first
            # residual, the qkv projection and, for finished sequences, `keep`.
            need_previous = t > 0 or ctx.needs_input_grad[1]
            grad_from_gates = grad_kept = None
            if keep is not None:
                grad_new = grad_memory * keep[t]
                grad_kept = grad_memory * keep[t].logical_not()
            else:
                grad_new = grad_memory

            # Recompute this step's cheap intermediates from what was saved.
            projection, weights, second_sum = projections[t], attention[t], second_sums[t]
            qkv, qkv_mean, qkv_rstd = _layer_norm(projection, w.qkv_norm, w.qkv_norm_bias, s.eps)
            queries, keys, values = _heads(s, qkv, input_normed[t])
            first_sum = _first_sum(s, memory_rows, torch.bmm(weights.transpose(1, 2), values))
            first_normed, first_mean, first_rstd = _layer_norm(first_sum, w.attention_norm, w.attention_norm_bias, s.eps)
            second_normed, second_mean, second_rstd = _layer_norm(second_sum, w.mlp_norm, w.mlp_norm_bias, s.eps)

            # M' = i * tanh(Y2) + f * M, G = sigmoid(tanh(M) Wg^T + Gx).
            if gated:
                step_gates = gates[t]
                input_gate, forget_gate = step_gates.split(s.gate_size, dim=-1)
                tanh_second = _tanh(second_normed).view_as(current)
                grad_second_normed = aten.tanh_backward(grad_new * input_gate, tanh_second).view(s.rows, s.width)
                grad_input_gate, grad_forget_gate = grad_new * tanh_second, grad_new * current
                if s.gate_style == "memory":  # one gate value per row, broadcast over its units
                    grad_input_gate = grad_input_gate.sum(-1, keepdim=True)
                    grad_forget_gate = grad_forget_gate.sum(-1, keepdim=True)
                grad_pre_gates = aten.sigmoid_backward(torch.cat([grad_input_gate, grad_forget_gate], dim=-1), step_gates)
                torch.sum(grad_pre_gates, dim=1, out=grad_input_gates[t])
                grad_pre_gates = grad_pre_gates.view(s.rows, -1)
                tanh_memory = _tanh(memory_rows)
                grad["gate"].addmm_(grad_pre_gates.t(), tanh_memory)
                if need_previous:
                    grad_from_gates = aten.tanh_backward(torch.mm(grad_pre_gates, w.gate), tanh_memory)
                    grad_from_gates.view_as(current).addcmul_(grad_new, forget_gate)
            else:
                grad_second_normed = grad_new.reshape(s.rows, s.width)

            # Y2 = LN3(R2), R2 = MLP(Y1) + Y1.
            grad_second_sum, *norm_grads = _layer_norm_backward(
                grad_second_normed, second_sum, second_mean, second_rstd, w.mlp_norm, w.mlp_norm_bias
            )
            add_norm_grads("mlp_norm", *norm_grads)
            grad_layer = grad_second_sum
            for index in reversed(range(s.mlp_layers)):
                layer_input = first_normed if index == 0 else torch.relu(hidden[index - 1, t])
                grad_mlp[2 * index].addmm_(grad_layer.t(), layer_input)
                grad_mlp[2 * index + 1].add_(grad_layer.sum(0))
                grad_layer_input = torch.mm(grad_layer, mlp_weights[index])
                if index > 0:
                    grad_layer = aten.threshold_backward(grad_layer_input, hidden[index - 1, t], 0)
            grad_first_normed = grad_layer_input.add_(grad_second_sum)

            # Y1 = LN2(R1), R1 = M + O.
            grad_first_sum, *norm_grads = _layer_norm_backward(
                grad_first_normed, first_sum, first_mean, first_rstd, w.attention_norm, w.attention_norm_bias
            )
            add_norm_grads("attention_norm", *norm_grads)

            # O = A v with A = softmax(q k^T * scale) (stored keys first, [B*H, N+1, N]), keys and
            # values over the memory rows and the input row.
            grad_attended = grad_first_sum.view(s.batch, s.slots, s.heads, s.head_size).transpose(1, 2)
            grad_attended = grad_attended.reshape(s.batch * s.heads, s.slots, s.head_size)
            grad_weights = torch.bmm(values, grad_attended.transpose(1, 2))
            grad_scores = aten._softmax_backward_data(grad_weights, weights, 1, weights.dtype).mul_(s.scale)
            grad_rows = memory.new_empty(s.batch, s.heads, s.slots + 1, s.per_head)
            grad_rows_flat = grad_rows.view(s.batch * s.heads, s.slots + 1, s.per_head)
            grad_rows_flat[:, : s.slots, :k].copy_(torch.bmm(grad_scores.transpose(1, 2), keys))
            grad_rows_flat[:, s.slots, :k].zero_()  # the input row asks no query
            grad_rows_flat[:, :, k : 2 * k].copy_(torch.bmm(grad_scores, queries))
            grad_rows_flat[:, :, 2 * k :].copy_(torch.bmm(weights, grad_attended))
            grad_qkv = grad_rows[:, :, : s.slots].transpose(1, 2).reshape(s.rows, -1)
            grad_input_normed[t].view(s.batch, s.heads, s.per_head).copy_(grad_rows[:, :, s.slots])

            # Q = LN1(P), P = M Wq^T + bq.
            grad_projection, *norm_grads = _layer_norm_backward(
                grad_qkv, projection, qkv_mean, qkv_rstd, w.qkv_norm, w.qkv_norm_bias
            )
            add_norm_grads("qkv_norm", *norm_grads)
            grad["qkv"].addmm_(grad_projection.t(), memory_rows)
            grad["qkv_bias"].add_(grad_projection.sum(0))
            grad_memory = None
            if need_previous:  # grad_first_sum is not needed any more: collect into it
                grad_memory = grad_first_sum.addmm_(grad_projection, w.qkv)
                for extra in (grad_from_gates, grad_kept):
                    if extra is not None:
                        grad_memory.add_(extra.view_as(grad_memory))
                grad_memory = grad_memory.view_as(current)

        grad_input_qkv, *norm_grads = _layer_norm_backward(
            grad_input_normed, input_qkv, input_mean, input_rstd, w.qkv_norm, w.qkv_norm_bias
        )
        add_norm_grads("qkv_norm", *norm_grads)
        grad_weights_flat = Weights(**{name: grad[name] for name in Weights._fields if name != "mlp"}, mlp=tuple(grad_mlp)).flat()
        grad_initial_memory = grad_memory if ctx.needs_input_grad[1] else None
        return None, grad_initial_memory, grad_input_qkv, grad_input_gates, None, *grad_weights_flat


# --- double backward -------------------------------------------------------------------------------


def _step_under_autograd(s: SequenceShape, w: Weights, current: Tensor, input_normed: Tensor, input_gates: Optional[Tensor]) -> Tensor:
    """One step of the module docstring's maths with out-of-place operations only (differentiable
    any number of times): memory [B, N, D], the step's LN1(Px) [B, F] and Gx [B, 2g] -> next memory."""
    rows = current.reshape(s.rows, s.width)
    projection = F.linear(rows, w.qkv, w.qkv_bias)
    qkv = F.layer_norm(projection, (projection.shape[-1],), w.qkv_norm, w.qkv_norm_bias, s.eps)
    queries, keys, values = _heads(s, qkv, input_normed)
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
