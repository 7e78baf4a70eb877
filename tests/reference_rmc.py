"""A slow, obviously-correct Relational Memory Core step, written from the spec (docs/core.md) with plain loops.

It reads the weights of a `RelationalMemoryCell` by name but shares no code with it: every
matrix product, layer norm, softmax and gate is spelled out element by element, so a bug in
the module's batched maths cannot hide in here too.
"""

import math

import torch


def _linear(weight, bias, vector):
    """weight [out, in] @ vector [in] + bias, as explicit sums."""
    return torch.stack([sum(weight[o, i] * vector[i] for i in range(vector.shape[0])) + bias[o] for o in range(weight.shape[0])])


def _layer_norm(vector, gain, bias, eps=1e-5):
    n = vector.shape[0]
    mean = sum(vector[i] for i in range(n)) / n
    var = sum((vector[i] - mean) ** 2 for i in range(n)) / n
    return torch.stack([(vector[i] - mean) / torch.sqrt(var + eps) * gain[i] + bias[i] for i in range(n)])


def _sigmoid(value):
    return 1.0 / (1.0 + torch.exp(-value))


def reference_initial_memory(batch, slots, width, dtype=torch.float64):
    memory = torch.zeros(batch, slots, width, dtype=dtype)
    for b in range(batch):
        for i in range(slots):
            if i < width:
                memory[b, i, i] = 1.0
    return memory


def reference_step(cell, x_t, memory, attention_scale=None, step_index=None):
    """One spec step for every batch entry: x_t [B, input_size], memory [B, N, D] -> next memory.

    With `cell.input_rows` = R, x_t is [B, R, input_size]: each row is projected by the same
    input projection and appended to the memory rows, attention runs over all N + R rows, and
    the gates' input part reads the R projected rows concatenated (Sonnet's treat_input_as_matrix).

    `attention_scale` (None: the cell's option): "key" divides the queries by sqrt(key_size),
    "qkv" by sqrt(2 key_size + head_size), the qkv size of one head (Sonnet's June 2018 release).
    The ablations (docs/questions.md) follow the cell's options: `cell.attention` "input-only"
    lets row i attend only to itself and the input row; "none" replaces the attention output of
    every row by the input row; `cell.slot_binding` "position" keeps every slot but
    `step_index mod N` as it was.
    """
    p = {name: value.detach() for name, value in cell.named_parameters()}
    B, N, D = memory.shape
    H, k, v = cell.num_heads, cell.key_size, cell.head_size
    per_head = 2 * k + v
    if attention_scale is None:
        attention_scale = cell.attention_scale
    divisor = {"key": math.sqrt(k), "qkv": math.sqrt(2 * k + v)}[attention_scale]
    mlp_linears = sorted({name.split(".")[1] for name in p if name.startswith("mlp.")}, key=int)
    result = torch.zeros_like(memory)
    for b in range(B):
        # 1. project the input to one row (each input row to one row); 2. append them to the memory rows.
        inputs = [x_t[b]] if getattr(cell, "input_rows", None) is None else [x_t[b, r] for r in range(x_t.shape[1])]
        projected = [_linear(p["input_projection.weight"], p["input_projection.bias"], row) for row in inputs]
        rows = [memory[b, i] for i in range(N)] + projected
        R = len(rows)
        # 3. the attention blocks, each with its own projection and norms, one MLP shared.
        for blk in range(cell.num_blocks):
            pre = f"blocks.{blk}."
            qkv = [
                _layer_norm(_linear(p[pre + "qkv.weight"], p[pre + "qkv.bias"], row), p[pre + "qkv_norm.weight"], p[pre + "qkv_norm.bias"])
                for row in rows
            ]
            attended = []
            for i in range(R):
                out = []
                for h in range(H):
                    q = qkv[i][h * per_head : h * per_head + k] / divisor
                    allowed = [j for j in range(R) if cell.attention == "full" or j == i or j >= N]
                    logits = [sum(q[a] * qkv[j][h * per_head + k + a] for a in range(k)) for j in allowed]
                    top = max(logits)
                    exps = [torch.exp(logit - top) for logit in logits]
                    total = sum(exps)
                    weights = [e / total for e in exps]
                    value = sum(w * qkv[j][h * per_head + 2 * k : h * per_head + 2 * k + v] for w, j in zip(weights, allowed))
                    out.append(value)
                attended.append(torch.cat(out) if cell.attention != "none" else rows[R - 1])
            rows = [
                _layer_norm(rows[i] + attended[i], p[pre + "attention_norm.weight"], p[pre + "attention_norm.bias"])
                for i in range(R)
            ]
            new_rows = []
            for row in rows:
                hidden = row
                for index, layer in enumerate(mlp_linears):
                    if index > 0:
                        hidden = torch.clamp(hidden, min=0.0)
                    hidden = _linear(p[f"mlp.{layer}.weight"], p[f"mlp.{layer}.bias"], hidden)
                new_rows.append(_layer_norm(hidden + row, p[pre + "mlp_norm.weight"], p[pre + "mlp_norm.bias"]))
            rows = new_rows
        # 4. drop the input row.
        attended_memory = rows[:N]
        # 5. gating.
        for i in range(N):
            if cell.gate_style is None:
                result[b, i] = attended_memory[i]
                continue
            every_input_row = torch.cat(projected)
            pre_act = _linear(p["gate_input.weight"], p["gate_input.bias"], every_input_row) + _linear(
                p["gate_memory.weight"], p["gate_memory.bias"], torch.tanh(memory[b, i])
            )
            g = pre_act.shape[0] // 2
            input_gate = _sigmoid(pre_act[:g] + cell.input_bias)
            forget_gate = _sigmoid(pre_act[g:] + cell.forget_bias)
            result[b, i] = input_gate * torch.tanh(attended_memory[i]) + forget_gate * memory[b, i]
        if cell.slot_binding == "position":
            for i in range(N):
                if i != step_index % N:
                    result[b, i] = memory[b, i]
    return result


def reference_parameter_count(input_size, mem_slots, head_size, num_heads=1, num_blocks=1, gate_style="unit",
                              attention_mlp_layers=2, key_size=None, input_rows=None):
    """The spec's formula (the gates' input Linear reads input_rows rows of width D)."""
    k = key_size or head_size
    D = num_heads * head_size
    F = num_heads * (2 * k + head_size)
    g = D if gate_style == "unit" else 1
    total = input_size * D + D + num_blocks * (D * F + F + 2 * F + 4 * D) + attention_mlp_layers * (D * D + D)
    if gate_style is not None:
        total += (input_rows or 1) * D * 2 * g + 2 * g + D * 2 * g + 2 * g
    return total
