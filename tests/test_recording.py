"""Recording attention and gates: the recorded weights are the ones the step used."""

import pytest
import torch

from relational_rnn import RelationalMemory, recording


def test_recording_gives_the_weights_the_step_used():
    torch.manual_seed(0)
    rmc = RelationalMemory(input_size=3, mem_slots=3, head_size=4, num_heads=2).double()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    plain_outputs, _ = rmc(x)
    with recording(rmc) as trace:
        outputs, final = rmc(x)
    torch.testing.assert_close(outputs, plain_outputs, rtol=0, atol=1e-10)  # recording changes nothing
    assert len(trace.attention) == 4 and len(trace.input_gate) == len(trace.forget_gate) == 4
    cell = rmc.cell
    memory = rmc.initial_state(2)
    for t in range(4):
        (weights,) = trace.attention[t]
        assert weights.shape == (2, 2, 4, 4)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 4, dtype=torch.float64))
        # Recompute the step by hand from the recorded weights: it must give the recorded output.
        block = cell.blocks[0]
        rows = torch.cat([memory, cell.input_projection(x[t]).unsqueeze(1)], dim=1)
        _, _, values = block.split_heads(rows)
        attended = (weights @ values).transpose(1, 2).reshape(rows.shape)
        rows = block.attention_norm(rows + attended)
        rows = block.mlp_norm(cell.mlp(rows) + rows)
        input_gate, forget_gate = trace.input_gate[t], trace.forget_gate[t]
        memory = input_gate * torch.tanh(rows[:, :3]) + forget_gate * memory
        torch.testing.assert_close(memory.flatten(1), outputs[t], rtol=0, atol=1e-10)
    torch.testing.assert_close(memory, final, rtol=0, atol=1e-10)


def test_one_map_per_block_and_gate_shapes():
    rmc = RelationalMemory(input_size=3, mem_slots=2, head_size=4, num_heads=3, num_blocks=3, gate_style="memory")
    with recording(rmc.cell) as trace:
        rmc(torch.randn(2, 5, 3))
    assert [len(step) for step in trace.attention] == [3, 3]
    assert trace.input_gate[0].shape == (5, 2, 1)
    with recording(rmc) as trace:
        RelationalMemory(3, 2, 4, gate_style=None)(torch.randn(1, 1, 3))  # another core: nothing recorded here
    assert trace.attention == []


def test_recording_stops_after_the_block_and_refuses_other_modules():
    rmc = RelationalMemory(input_size=3, mem_slots=2, head_size=4)
    with recording(rmc) as trace:
        rmc(torch.randn(2, 1, 3))
    rmc(torch.randn(2, 1, 3))
    assert len(trace.attention) == 2 and rmc.cell.trace is None
    with pytest.raises(TypeError, match="RelationalMemory"):
        with recording(torch.nn.LSTM(3, 4)):
            pass
