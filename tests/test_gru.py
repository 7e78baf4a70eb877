"""The GRU baseline: parameter count, sizing, and its own state checks (the rest: tests/test_core_contract.py)."""

import pytest
import torch
from torch import nn

from relational_rnn.cores import CoreConfig, GRUCore, build_core, count_parameters
from relational_rnn.cores.gru import gru_parameter_count


@pytest.mark.parametrize("input_size, hidden, layers", [(3, 5, 1), (12, 40, 2), (1, 1, 3)])
def test_parameter_count_formula_matches_torch(input_size, hidden, layers):
    assert gru_parameter_count(input_size, hidden, layers) == count_parameters(nn.GRU(input_size, hidden, layers))


def test_gru_hidden_fixes_the_width_and_layers_stack():
    core = build_core(CoreConfig(core="gru", gru_hidden=7, gru_layers=2), 3)
    assert isinstance(core, GRUCore) and core.output_size == 7
    assert core.initial_state(4).shape == (2, 4, 7)


def test_the_output_is_the_last_layers_state():
    core = GRUCore(3, 5, num_layers=2)
    outputs, h = core(torch.randn(6, 2, 3))
    torch.testing.assert_close(outputs[-1], h[-1])


def test_bad_inputs_raise_clear_errors():
    core = GRUCore(3, 5)
    with pytest.raises(ValueError, match="input_size=3"):
        core(torch.randn(2, 2, 4))
    with pytest.raises(ValueError, match=r"\(1, 2, 5\), got \(1, 3, 5\)"):
        core(torch.randn(4, 2, 3), torch.zeros(1, 3, 5))
    with pytest.raises(ValueError, match="got tuple"):
        core(torch.randn(4, 2, 3), (torch.zeros(1, 2, 5),))
    with pytest.raises(ValueError, match="hidden_size"):
        GRUCore(3, 0)
