"""LSTMCore: nn.LSTM behind the core contract, and the equal-parameter sizing helper."""

import pytest
import torch

from relational_rnn import CoreConfig, LSTMCore, RelationalMemory, build_core, count_parameters, lstm_hidden_size_for
from relational_rnn.cores import lstm_parameter_count


@pytest.mark.parametrize("target,input_size,layers", [(10_000, 10, 1), (2_000_000, 40, 1), (500_000, 64, 2)])
def test_sizing_helper_gets_closest_parameter_count(target, input_size, layers):
    hidden = lstm_hidden_size_for(target, input_size, layers)
    core = LSTMCore(input_size, hidden, layers)
    assert count_parameters(core) == lstm_parameter_count(input_size, hidden, layers)
    for other in (hidden - 1, hidden + 1):
        assert abs(lstm_parameter_count(input_size, hidden, layers) - target) <= abs(lstm_parameter_count(input_size, other, layers) - target)


def test_build_core_sizes_lstm_to_the_rmc():
    config = CoreConfig(core="rmc", mem_slots=4, head_size=16, num_heads=4)
    rmc = build_core(config, input_size=12)
    lstm = build_core(CoreConfig(core="lstm", mem_slots=4, head_size=16, num_heads=4), input_size=12)
    assert isinstance(rmc, RelationalMemory) and isinstance(lstm, LSTMCore)
    assert abs(count_parameters(lstm) - count_parameters(rmc)) / count_parameters(rmc) < 0.01
    with pytest.raises(ValueError, match="unknown core 'mamba'; expected one of rmc, lstm, gru"):
        build_core(CoreConfig(core="mamba"), input_size=12)


def test_same_contract_as_the_rmc():
    torch.manual_seed(0)
    core = LSTMCore(3, 5, batch_first=True)
    x = torch.randn(2, 4, 3)
    outputs, state = core(x)
    assert outputs.shape == (2, 4, core.output_size)
    first, mid = core(x[:, :2])
    second, end = core(x[:, 2:], mid)
    torch.testing.assert_close(torch.cat([first, second], 1), outputs)
    torch.testing.assert_close(end[1], state[1])
    h, c = core.initial_state(2)
    assert h.shape == c.shape == (1, 2, 5) and not h.any()


def test_lengths_give_each_sequence_its_own_final_state():
    torch.manual_seed(1)
    core = LSTMCore(3, 5).double()
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 1, 3])
    _, (h, c) = core(x, lengths=lengths)
    for b, length in enumerate(lengths.tolist()):
        _, (h_alone, c_alone) = core(x[:length, b : b + 1])
        torch.testing.assert_close(h[:, b : b + 1], h_alone)
        torch.testing.assert_close(c[:, b : b + 1], c_alone)


def test_reset_state_zeroes_chosen_entries():
    core = LSTMCore(3, 5)
    _, state = core(torch.randn(2, 3, 3))
    h, c = core.reset_state(state, torch.tensor([False, True, False]))
    assert not h[:, 1].any() and not c[:, 1].any()
    torch.testing.assert_close(h[:, 0], state[0][:, 0])


def test_bad_inputs_raise_clear_errors():
    core = LSTMCore(3, 5)
    with pytest.raises(ValueError, match="input_size=3"):
        core(torch.randn(2, 2, 4))
    with pytest.raises(ValueError, match=r"\(1, 2, 5\), got \(1, 3, 5\)"):
        core(torch.randn(4, 2, 3), (torch.zeros(1, 3, 5), torch.zeros(1, 3, 5)))
    with pytest.raises(ValueError, match="pair"):
        core(torch.randn(4, 2, 3), torch.zeros(1, 2, 5))
    with pytest.raises(ValueError, match="hidden_size"):
        LSTMCore(3, 0)
