"""The core base class's helpers: sizing to a parameter count, the registry, states without their core."""

import pytest
import torch
from torch import nn

from relational_rnn.cores import CORES, CoreConfig, RelationalMemory, build_core, count_parameters
from relational_rnn.cores.base import map_state, parameters_of, register_core, width_for_parameters


def test_width_for_parameters_picks_the_closest_count():
    count = lambda width: width * width  # noqa: E731
    assert width_for_parameters(50, count, range(1, 100)) == 7  # 49 beats 64
    assert width_for_parameters(60, count, range(1, 100)) == 8  # 64 beats 49
    assert width_for_parameters(10**6, count, range(1, 100)) == 99  # the largest there is
    assert width_for_parameters(0, count, range(2, 100, 2)) == 2
    with pytest.raises(ValueError):
        width_for_parameters(5, count, [])


def test_parameters_of_counts_on_the_meta_device_what_a_real_build_has():
    make = lambda: RelationalMemory(7, 3, 8, num_heads=2)  # noqa: E731
    assert parameters_of(make) == count_parameters(make())


def test_the_registry_refuses_a_second_core_of_the_same_name():
    with pytest.raises(ValueError, match="already registered"):
        register_core("rmc", "again")(lambda config, input_size, batch_first=False: None)
    assert list(CORES)[:2] == ["rmc", "lstm"] and all(kind.description for kind in CORES.values())


def test_size_to_parameters_overrides_the_rmc_count_and_must_be_positive():
    sized = build_core(CoreConfig(core="gru", size_to_parameters=5000), 10)
    assert abs(count_parameters(sized) - 5000) < 200
    with pytest.raises(ValueError, match="size_to_parameters"):
        build_core(CoreConfig(core="gru", size_to_parameters=0), 10)


def test_map_state_keeps_the_structure():
    one = torch.ones(2)
    assert torch.equal(map_state(lambda t: t * 2, one), torch.full((2,), 2.0))
    pair = map_state(lambda t: t + 1, (one, one))
    assert isinstance(pair, tuple) and len(pair) == 2 and torch.equal(pair[1], torch.full((2,), 2.0))


def test_a_core_state_of_the_wrong_number_of_parts_is_refused():
    lstm = build_core(CoreConfig(core="lstm"), 3)
    with pytest.raises(ValueError, match="2 parts"):
        lstm.state_from_parts([torch.zeros(1)])
    rmc = build_core(CoreConfig(core="rmc"), 3)
    with pytest.raises(ValueError, match="one tensor"):
        rmc.state_from_parts([torch.zeros(1), torch.zeros(1)])
    assert isinstance(rmc, nn.Module)
