"""The fused sequence path of the RMC: one hand-written forward and backward for a whole sequence.

`RelationalMemory` uses it by default when the core has one attention block (every task's
preset has). It computes the same numbers as `fast_step` run under autograd (tests/test_fast_path.py
checks outputs and every gradient against the straightforward path, float64 to 1e-10), but:

* it saves less for backward: per step only the qkv projection P, the MLP's hidden
  pre-activations, the second residual sum R2, the gates and the (tiny) attention weights,
  plus the memories, which are the outputs anyway. The layer norms, tanh and the first
  residual sum R1 are recomputed in backward from those (cheap next to the matrix products);
* it builds no autograd graph (~40 nodes per step): weight gradients are accumulated in
  place (`addmm_`), intermediates are written straight into preallocated [T, ...] buffers,
  the softmax runs over a middle dimension (faster on CPU for N + 1 keys), and tanh is
  computed as 2 sigmoid(2x) - 1 (`torch.tanh` is slow on CPU).

The derivatives, for one step with memory M [B, N, D] (rows flattened to B*N where convenient):

    P = M Wq^T + bq;  Q = LN1(P);  q, k, v = heads of Q (and of the input row's Qx for k, v)
    A = softmax(q k^T / sqrt(key_size));  O = A v;  R1 = M + O;  Y1 = LN2(R1)
    R2 = MLP(Y1) + Y1;  Y2 = LN3(R2)
    G = sigmoid(tanh(M) Wg^T + gates_in);  i, f = G;  M' = i * tanh(Y2) + f * M

and backward walks them in reverse with the usual rules (layer-norm, softmax, tanh, sigmoid
and ReLU backward are PyTorch's own kernels). Double backward is not supported, and neither
is autocast: `RelationalMemory` takes the autograd path for both.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

aten = torch.ops.aten


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
    CPU (which is not vectorised well there); off by at most ~1e-7 absolute in float32."""
    return torch.sigmoid(x * 2).mul_(2).sub_(1)


class SequenceShape:
    """The sizes one sequence needs, computed once per call."""

    def __init__(self, memory: Tensor, input_qkv: Tensor, heads: int, key_size: int, head_size: int, gate_size: int, mlp_layers: int, eps: float) -> None:
        self.steps, self.batch = input_qkv.shape[0], input_qkv.shape[1]
        self.slots, self.width = memory.shape[1], memory.shape[2]
        self.heads, self.key_size, self.head_size = heads, key_size, head_size
        self.per_head = 2 * key_size + head_size  # one head's [query | key | value] in the projection
        self.gate_size = gate_size  # 0 without gating
        self.mlp_layers = mlp_layers
        self.eps = eps
        self.scale = key_size**-0.5


def _heads(shape: SequenceShape, qkv: Tensor, input_qkv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Queries of the memory rows and keys, values of memory + input rows, per head.

    qkv [B*N, F] (normed), input_qkv [B, F] (normed) -> queries [B*H, N, k], keys [B*H, N+1, k],
    values [B*H, N+1, v]: views of one tensor holding the rows head by head.
    """
    s = shape
    rows = torch.cat(
        [
            qkv.view(s.batch, s.slots, s.heads, s.per_head).transpose(1, 2),
            input_qkv.view(s.batch, 1, s.heads, s.per_head).transpose(1, 2),
        ],
        dim=2,
    ).view(s.batch * s.heads, s.slots + 1, s.per_head)
    k = s.key_size
    return rows[:, : s.slots, :k], rows[:, :, k : 2 * k], rows[:, :, 2 * k :]


def _attention_weights(shape: SequenceShape, queries: Tensor, keys: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(k)) stored transposed, [B*H, N+1 keys, N queries].

    Keys first: PyTorch's CPU softmax is ~3x faster over a middle dimension than over a
    last dimension of only N + 1 entries.
    """
    return torch.softmax(torch.bmm(keys, queries.transpose(1, 2)).mul_(shape.scale), dim=1)


def _residual(shape: SequenceShape, memory_rows: Tensor, attended: Tensor) -> Tensor:
    """R1 = memory + attention output, [B*N, D]; attended [B*H, N, v] goes back to row layout."""
    s = shape
    total = memory_rows.clone()
    total.view(s.batch, s.slots, s.heads, s.head_size).add_(attended.view(s.batch, s.heads, s.slots, s.head_size).transpose(1, 2))
    return total


class FusedSequence(torch.autograd.Function):
    """outputs [T, B, N*D] = the RMC (one block) run over T steps; see the module docstring."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        shape: SequenceShape,
        memory: Tensor,
        input_qkv: Tensor,
        input_gates: Optional[Tensor],
        keep: Optional[Tensor],
        qkv_weight: Tensor,
        qkv_bias: Tensor,
        qkv_norm_weight: Tensor,
        qkv_norm_bias: Tensor,
        attention_norm_weight: Tensor,
        attention_norm_bias: Tensor,
        mlp_norm_weight: Tensor,
        mlp_norm_bias: Tensor,
        gate_weight: Optional[Tensor],
        *mlp: Tensor,
    ) -> Tensor:
        s = shape
        rows_total, width = s.batch * s.slots, s.width
        mlp_weights, mlp_biases = mlp[0::2], mlp[1::2]
        input_normed = _layer_norm(input_qkv, qkv_norm_weight, qkv_norm_bias, s.eps)[0]

        outputs = memory.new_empty(s.steps, s.batch, s.slots * width)
        projections = memory.new_empty(s.steps, rows_total, qkv_weight.shape[0])  # P
        hidden = memory.new_empty(s.mlp_layers - 1, s.steps, rows_total, width)  # MLP pre-activations
        second_sums = memory.new_empty(s.steps, rows_total, width)  # R2
        gates = memory.new_empty(s.steps, s.batch, s.slots, 2 * s.gate_size)  # sigmoid outputs

        saved_weights = []  # the attention weights: tiny, and slow to recompute
        current = memory
        for t in range(s.steps):
            memory_rows = current.reshape(rows_total, width)
            projection = torch.addmm(qkv_bias, memory_rows, qkv_weight.t(), out=projections[t])
            qkv = _layer_norm(projection, qkv_norm_weight, qkv_norm_bias, s.eps)[0]
            queries, keys, values = _heads(s, qkv, input_normed[t])
            weights = _attention_weights(s, queries, keys)
            saved_weights.append(weights)
            attended = torch.bmm(weights.transpose(1, 2), values)
            first_normed = _layer_norm(_residual(s, memory_rows, attended), attention_norm_weight, attention_norm_bias, s.eps)[0]
            layer_input = first_normed
            for index in range(s.mlp_layers):
                target = hidden[index, t] if index < s.mlp_layers - 1 else None
                pre_activation = torch.addmm(mlp_biases[index], layer_input, mlp_weights[index].t(), out=target)
                layer_input = torch.relu(pre_activation) if index < s.mlp_layers - 1 else pre_activation
            second_sum = torch.add(layer_input, first_normed, out=second_sums[t])
            second_normed = _layer_norm(second_sum, mlp_norm_weight, mlp_norm_bias, s.eps)[0]
            output = outputs[t].view(s.batch, s.slots, width)
            if s.gate_size:
                pre_gates = torch.mm(_tanh(memory_rows), gate_weight.t()).view(s.batch, s.slots, -1)
                step_gates = torch.sigmoid(pre_gates.add_(input_gates[t].unsqueeze(1)), out=gates[t])
                input_gate, forget_gate = step_gates[..., : s.gate_size], step_gates[..., s.gate_size :]
                new = torch.addcmul(forget_gate * current, input_gate, _tanh(second_normed).view_as(current))
            else:
                new = second_normed.view_as(current)
            if keep is not None:
                torch.where(keep[t], new, current, out=output)
            else:
                output.copy_(new)
            current = output

        ctx.shape = shape
        ctx.has_keep = keep is not None
        ctx.has_gates = s.gate_size > 0
        ctx.save_for_backward(
            memory, outputs, input_qkv, projections, hidden, second_sums, gates,
            keep if keep is not None else memory.new_empty(0),
            qkv_weight, qkv_norm_weight, qkv_norm_bias, attention_norm_weight, attention_norm_bias,
            mlp_norm_weight, mlp_norm_bias,
            gate_weight if gate_weight is not None else memory.new_empty(0),
            *mlp_weights, *saved_weights,
        )  # fmt: skip
        ctx.mlp_layers = len(mlp_weights)
        return outputs

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_outputs: Tensor):  # type: ignore[override]
        s: SequenceShape = ctx.shape
        (
            memory, outputs, input_qkv, projections, hidden, second_sums, gates, keep,
            qkv_weight, qkv_norm_weight, qkv_norm_bias, attention_norm_weight, attention_norm_bias,
            mlp_norm_weight, mlp_norm_bias, gate_weight, *rest,
        ) = ctx.saved_tensors  # fmt: skip
        mlp_weights, saved_weights = rest[: ctx.mlp_layers], rest[ctx.mlp_layers :]
        rows_total, width, k = s.batch * s.slots, s.width, s.key_size

        input_normed, input_mean, input_rstd = _layer_norm(input_qkv, qkv_norm_weight, qkv_norm_bias, s.eps)
        grad_input_normed = torch.zeros_like(input_qkv)
        grad_input_gates = memory.new_empty(s.steps, s.batch, 2 * s.gate_size) if ctx.has_gates else None
        grad_qkv_weight = torch.zeros_like(qkv_weight)
        grad_qkv_bias = qkv_weight.new_zeros(qkv_weight.shape[0])
        grad_norms = [torch.zeros_like(p) for p in (qkv_norm_weight, qkv_norm_bias, attention_norm_weight, attention_norm_bias, mlp_norm_weight, mlp_norm_bias)]
        grad_gate_weight = torch.zeros_like(gate_weight) if ctx.has_gates else None
        grad_mlp_weights = [torch.zeros_like(w) for w in mlp_weights]
        grad_mlp_biases = [w.new_zeros(w.shape[0]) for w in mlp_weights]

        grad_memory = None  # d loss / d (memory after step t), [B, N, D]
        for t in reversed(range(s.steps)):
            current = memory if t == 0 else outputs[t - 1].view_as(memory)
            memory_rows = current.reshape(rows_total, width)
            step_grad = grad_outputs[t].reshape(memory.shape)
            grad_memory = step_grad if grad_memory is None else grad_memory.add_(step_grad)
            # The gradient for the memory entering this step (not needed at step 0 when the
            # initial memory is a constant) is the sum of what flows back through the gates,
            # the first residual, the qkv projection and, for finished sequences, `keep`.
            need_previous = t > 0 or ctx.needs_input_grad[1]
            grad_from_gates = grad_kept = None
            if ctx.has_keep:  # a finished sequence passes its memory through unchanged
                grad_new = grad_memory * keep[t]
                grad_kept = grad_memory * keep[t].logical_not()
            else:
                grad_new = grad_memory

            # Recompute this step's cheap intermediates from what was saved.
            projection = projections[t]
            qkv, qkv_mean, qkv_rstd = _layer_norm(projection, qkv_norm_weight, qkv_norm_bias, s.eps)
            queries, keys, values = _heads(s, qkv, input_normed[t])
            weights = saved_weights[t]
            attended = torch.bmm(weights.transpose(1, 2), values)
            first_sum = _residual(s, memory_rows, attended)
            first_normed, first_mean, first_rstd = _layer_norm(first_sum, attention_norm_weight, attention_norm_bias, s.eps)
            second_sum = second_sums[t]
            second_normed, second_mean, second_rstd = _layer_norm(second_sum, mlp_norm_weight, mlp_norm_bias, s.eps)

            # Gates: M' = i * tanh(Y2) + f * M.
            if ctx.has_gates:
                step_gates = gates[t]
                input_gate, forget_gate = step_gates[..., : s.gate_size], step_gates[..., s.gate_size :]
                tanh_second = _tanh(second_normed).view_as(current)
                grad_second_normed = aten.tanh_backward(grad_new * input_gate, tanh_second).view(rows_total, width)
                grad_input_gate, grad_forget_gate = grad_new * tanh_second, grad_new * current
                if s.gate_size == 1:  # "memory" gating: one gate value per row
                    grad_input_gate = grad_input_gate.sum(-1, keepdim=True)
                    grad_forget_gate = grad_forget_gate.sum(-1, keepdim=True)
                grad_pre_gates = aten.sigmoid_backward(torch.cat([grad_input_gate, grad_forget_gate], dim=-1), step_gates)
                torch.sum(grad_pre_gates, dim=1, out=grad_input_gates[t])
                grad_pre_gates = grad_pre_gates.view(rows_total, -1)
                tanh_memory = _tanh(memory_rows)
                grad_gate_weight.addmm_(grad_pre_gates.t(), tanh_memory)
                if need_previous:
                    grad_from_gates = aten.tanh_backward(torch.mm(grad_pre_gates, gate_weight), tanh_memory)
                    grad_from_gates.view_as(current).addcmul_(grad_new, forget_gate)
            else:
                grad_second_normed = grad_new.reshape(rows_total, width)

            # Y2 = LN3(R2), R2 = MLP(Y1) + Y1.
            grad_second_sum, grad_w, grad_b = _layer_norm_backward(grad_second_normed, second_sum, second_mean, second_rstd, mlp_norm_weight, mlp_norm_bias)
            grad_norms[4].add_(grad_w)
            grad_norms[5].add_(grad_b)
            grad_layer = grad_second_sum
            for index in reversed(range(s.mlp_layers)):
                layer_input = first_normed if index == 0 else torch.relu(hidden[index - 1, t])
                grad_mlp_weights[index].addmm_(grad_layer.t(), layer_input)
                grad_mlp_biases[index].add_(grad_layer.sum(0))
                grad_layer_input = torch.mm(grad_layer, mlp_weights[index])
                if index > 0:
                    grad_layer = aten.threshold_backward(grad_layer_input, hidden[index - 1, t], 0)
            grad_first_normed = grad_layer_input.add_(grad_second_sum)

            # Y1 = LN2(R1), R1 = M + O.
            grad_first_sum, grad_w, grad_b = _layer_norm_backward(grad_first_normed, first_sum, first_mean, first_rstd, attention_norm_weight, attention_norm_bias)
            grad_norms[2].add_(grad_w)
            grad_norms[3].add_(grad_b)

            # O = softmax(q k^T * scale) v, with keys and values over memory + input rows.
            grad_attended = grad_first_sum.view(s.batch, s.slots, s.heads, s.head_size).transpose(1, 2).reshape(s.batch * s.heads, s.slots, s.head_size)
            # (weights and scores are stored keys first: [B*H, N+1, N].)
            grad_weights = torch.bmm(values, grad_attended.transpose(1, 2))
            grad_scores = aten._softmax_backward_data(grad_weights, weights, 1, weights.dtype).mul_(s.scale)
            grad_rows = memory.new_empty(s.batch, s.heads, s.slots + 1, s.per_head)
            grad_rows_flat = grad_rows.view(s.batch * s.heads, s.slots + 1, s.per_head)
            grad_rows_flat[:, : s.slots, :k].copy_(torch.bmm(grad_scores.transpose(1, 2), keys))
            grad_rows_flat[:, s.slots, :k].zero_()  # the input row asks no query
            grad_rows_flat[:, :, k : 2 * k].copy_(torch.bmm(grad_scores, queries))
            grad_rows_flat[:, :, 2 * k :].copy_(torch.bmm(weights, grad_attended))
            grad_qkv = grad_rows[:, :, : s.slots].transpose(1, 2).reshape(rows_total, -1)
            grad_input_normed[t].view(s.batch, s.heads, s.per_head).copy_(grad_rows[:, :, s.slots])

            # Q = LN1(P), P = M Wq^T + bq.
            grad_projection, grad_w, grad_b = _layer_norm_backward(grad_qkv, projection, qkv_mean, qkv_rstd, qkv_norm_weight, qkv_norm_bias)
            grad_norms[0].add_(grad_w)
            grad_norms[1].add_(grad_b)
            grad_qkv_weight.addmm_(grad_projection.t(), memory_rows)
            grad_qkv_bias.add_(grad_projection.sum(0))
            grad_memory = None
            if need_previous:  # grad_first_sum is free now: collect into it
                grad_memory = grad_first_sum.addmm_(grad_projection, qkv_weight)
                for extra in (grad_from_gates, grad_kept):
                    if extra is not None:
                        grad_memory.add_(extra.view_as(grad_memory))
                grad_memory = grad_memory.view_as(current)

        grad_input_qkv, grad_w, grad_b = _layer_norm_backward(grad_input_normed, input_qkv, input_mean, input_rstd, qkv_norm_weight, qkv_norm_bias)
        grad_norms[0].add_(grad_w)
        grad_norms[1].add_(grad_b)
        grad_mlp = [g for pair in zip(grad_mlp_weights, grad_mlp_biases) for g in pair]
        return (
            None, grad_memory if ctx.needs_input_grad[1] else None, grad_input_qkv, grad_input_gates, None,
            grad_qkv_weight, grad_qkv_bias, *grad_norms, grad_gate_weight, *grad_mlp,
        )  # fmt: skip
