"""What the reference's own tests expect of its RelationalMemory, checked against ours.

Sonnet v1's `relational_memory_test.py` checks shapes and behaviour, not numbers: the sizes of
the state and the output, the output and state shapes with the input flattened to a vector or
kept as a matrix (`treat_input_as_matrix`), two steps of recurrence for several slot/width
combinations (the padded or truncated identity initial memory), the errors for bad arguments,
the gate shapes for each gate style, that the memory changes without gating, that infinite gate
biases erase the input, and that a key size other than the head size works. These are the same
checks written for this module (our error wording; the reference's sizes). Sonnet flattens each
step's input for itself; here a step's input is already (input_size,) or, with `input_rows`,
(input_rows, input_size), so its (batch, 3, 3) inputs become 9 features or 3 rows of 3.

Each check runs on the straightforward path (`fast=False`) and the default one.
"""

import pytest
import torch

from relational_rnn import RelationalMemory, recording

PATHS = {"straightforward": dict(fast=False), "default": dict()}
BATCH = 5


def _one_step(rmc, x):
    """One step from the initial memory: (initial memory, output [B, N*D], memory after the step)."""
    initial = rmc.initial_state(x.shape[0])
    outputs, memory = rmc(x.unsqueeze(0), initial)
    return initial, outputs[0], memory


def test_state_size_and_output_size():
    rmc = RelationalMemory(9, mem_slots=4, head_size=32)
    assert list(rmc.state_size) == [4, 32]
    assert rmc.output_size == 4 * 32


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("as_matrix", [True, False], ids=["matrix input", "vector input"])
def test_output_and_state_shapes(as_matrix, path):
    inputs = torch.zeros(BATCH, 3, 3)
    if as_matrix:  # three rows of three features, each one more row to attend over
        rmc = RelationalMemory(3, mem_slots=4, head_size=32, num_heads=2, input_rows=3, **PATHS[path])
        x = inputs
    else:  # the matrix flattened to nine features
        rmc = RelationalMemory(9, mem_slots=4, head_size=32, num_heads=2, **PATHS[path])
        x = inputs.flatten(1)
    initial, output, memory = _one_step(rmc, x)
    assert memory.shape == initial.shape == (BATCH, 4, 64)
    assert output.shape == (BATCH, 4 * 32 * 2)
    cell_output, cell_memory = rmc.cell(x, initial)  # the one-step module agrees
    assert cell_output.shape == output.shape and cell_memory.shape == memory.shape


def test_a_matrix_input_adds_one_attended_row_per_input_row():
    rmc = RelationalMemory(3, mem_slots=4, head_size=8, num_heads=2, input_rows=3)
    with recording(rmc) as trace:
        rmc(torch.randn(2, BATCH, 3, 3))
    assert trace.attention[0][0].shape == (BATCH, 2, 4 + 3, 4 + 3)  # [B, heads, N + R, N + R]
    assert rmc.cell.gate_input.in_features == 3 * 16  # the gates read the three projected rows


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mem_slots,head_size,num_heads", [(2, 2, 1), (4, 4, 2), (8, 8, 3), (16, 16, 4)])
def test_two_steps_of_recurrence_with_five_blocks(mem_slots, head_size, num_heads, path):
    """Slots and width in every relation (D = N, D > N): the initial memory is built right and carried."""
    rmc = RelationalMemory(3, mem_slots, head_size, num_heads, num_blocks=5, **PATHS[path])
    x = torch.zeros(BATCH, 3)
    hidden_0 = rmc.initial_state(BATCH)
    _, hidden_1 = rmc.cell(x, hidden_0)
    _, hidden_2 = rmc.cell(x, hidden_1)
    assert hidden_1.shape == hidden_2.shape == (BATCH, mem_slots, head_size * num_heads)
    _, sequence_memory = rmc(torch.zeros(2, BATCH, 3))
    torch.testing.assert_close(sequence_memory, hidden_2)


@pytest.mark.parametrize("mem_slots,mem_size", [(4, 4), (3, 8), (6, 4)])
def test_initial_state_is_the_identity_padded_or_truncated(mem_slots, mem_size):
    memory = RelationalMemory(3, mem_slots, mem_size).initial_state(BATCH)
    expected = torch.zeros(mem_slots, mem_size)
    for i in range(min(mem_slots, mem_size)):
        expected[i, i] = 1.0
    assert torch.equal(memory, expected.expand(BATCH, -1, -1))


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(num_blocks=0), "num_blocks must be an integer >= 1"),
        (dict(attention_mlp_layers=0), "attention_mlp_layers must be an integer >= 1"),
        (dict(gate_style="bad_gate"), "gate_style must be one of"),
    ],
)
def test_bad_arguments_are_value_errors(options, message):
    with pytest.raises(ValueError, match=message):
        RelationalMemory(3, mem_slots=4, head_size=32, **options)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_the_attention_mlp_has_its_layers_of_memory_width(layers):
    """Sonnet's MLP([mem_size] * attention_mlp_layers): that many Linear layers, ReLU between, none after."""
    mlp = RelationalMemory(3, mem_slots=2, head_size=8, num_heads=2, attention_mlp_layers=layers).cell.mlp
    linears = [layer for layer in mlp if isinstance(layer, torch.nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(16, 16)] * layers
    assert [type(layer).__name__ for layer in mlp] == ["Linear"] + ["ReLU", "Linear"] * (layers - 1)


@pytest.mark.parametrize("gate_style,gate_size", [("unit", 128), ("memory", 1)])
def test_gate_shapes(gate_style, gate_size):
    rmc = RelationalMemory(9, mem_slots=4, head_size=32, num_heads=4, gate_style=gate_style)
    with recording(rmc) as trace:
        rmc(torch.randn(1, 4, 9))
    assert trace.input_gate[0].shape == trace.forget_gate[0].shape == (4, 4, gate_size)  # [B, N, g]


@pytest.mark.parametrize("path", PATHS)
def test_the_memory_changes_without_gating(path):
    rmc = RelationalMemory(9, mem_slots=2, head_size=32, num_heads=4, gate_style=None, **PATHS[path])
    initial, _, memory = _one_step(rmc, torch.zeros(BATCH, 9))
    assert (memory != initial).any()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("gate_style", ["unit", "memory"])
def test_infinite_gate_biases_erase_the_input(gate_style, path):
    rmc = RelationalMemory(9, mem_slots=2, head_size=32, num_heads=2, gate_style=gate_style,
                           forget_bias=float("+inf"), input_bias=float("-inf"), **PATHS[path])  # fmt: skip
    initial, _, memory = _one_step(rmc, torch.ones(BATCH, 9))
    assert torch.equal(memory, initial)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("gate_style", ["unit", "memory"])
def test_a_key_size_other_than_the_head_size(gate_style, path):
    rmc = RelationalMemory(9, mem_slots=2, head_size=32, num_heads=2, gate_style=gate_style, key_size=128, **PATHS[path])
    assert rmc.key_size == 128 != rmc.head_size
    assert rmc.cell.blocks[0].qkv.out_features == 2 * (2 * 128 + 32)
    initial, _, memory = _one_step(rmc, torch.ones(BATCH, 9))
    assert (memory != initial).any()
