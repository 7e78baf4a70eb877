"""The core base class's helpers: sizing to a parameter count, the registry, states without their core,
and what any subclass gets for free (input checks, PackedSequence inputs)."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_sequence, pad_packed_sequence

from relational_rnn.cores import CORES, CoreConfig, RecurrentCore, RelationalMemory, build_core, count_parameters
from relational_rnn.cores.base import _length_mask, map_state, parameters_of, register_core, width_for_parameters


class RunningSum(RecurrentCore):
    """The smallest core: the state is the sum of the inputs so far, and each output the state."""

    def __init__(self, input_size: int, batch_first: bool = False) -> None:
        super().__init__()
        self.input_size, self.batch_first = input_size, batch_first
        self.scale = nn.Parameter(torch.ones(()))

    @property
    def output_size(self) -> int:
        return self.input_size

    def initial_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, self.input_size, **self.state_options(batch_size, device, dtype, self.scale))

    def forward(self, x, state=None, lengths=None):
        x = self.check_sequence(x)
        steps, batch = x.shape[:2]
        state = self.state_for(state, batch, x)
        keep = _length_mask(lengths, steps, batch, x.device)
        outputs = []
        for t in range(steps):
            new = state + self.scale * x[t]
            state = new if keep is None else torch.where(keep[t].view(batch, 1), new, state)
            outputs.append(state)
        outputs = torch.stack(outputs)
        return (outputs.transpose(0, 1) if self.batch_first else outputs), state


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


@pytest.mark.parametrize("batch_first", [False, True])
def test_any_core_takes_a_packed_sequence_and_returns_one(batch_first):
    """RecurrentCore itself unpacks a PackedSequence into the padded call with lengths and packs the
    outputs back the same way, so a core that only handles `lengths` gets it for free."""
    sequences = [torch.ones(2, 3), torch.arange(12.0).view(4, 3), torch.full((1, 3), 5.0)]  # unsorted lengths 2, 4, 1
    packed = pack_sequence(sequences, enforce_sorted=False)
    outputs, state = RunningSum(3, batch_first=batch_first)(packed)
    assert isinstance(outputs, PackedSequence) and torch.equal(outputs.sorted_indices, packed.sorted_indices)
    padded, lengths = pad_packed_sequence(outputs, batch_first=True)
    assert lengths.tolist() == [2, 4, 1]
    for entry, sequence in enumerate(sequences):
        torch.testing.assert_close(padded[entry, : len(sequence)], sequence.cumsum(0))
        torch.testing.assert_close(state[entry], sequence.sum(0))  # in the batch's original order


def test_check_sequence_names_the_layout_it_expects():
    with pytest.raises(ValueError, match=r"^input must have shape \(time, batch, input_size\) with input_size=3, got \(4, 2, 5\)$"):
        RunningSum(3)(torch.zeros(4, 2, 5))
    with pytest.raises(ValueError, match=r"\(batch, time, input_size\) with input_size=3, got \(4, 3\)"):
        RunningSum(3, batch_first=True)(torch.zeros(4, 3))
