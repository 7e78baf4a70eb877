"""The core contract (cores/base.py), checked for every registered core: shapes in both layouts,
lengths, PackedSequence inputs, chunked == whole with the state carried (and gradients through it), reset, detach,
select, state_dict round trip, float64, `.to()`, sizing, and Mini Pac-Man training through the
loop (whose task carries the core's state from step to step): stopped and resumed, and killed
with SIGKILL and resumed, both equal to an uninterrupted run."""

import signal
import subprocess
import sys
import time

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from relational_rnn.cores import CORES, CoreConfig, RecurrentCore, build_core, count_parameters
from relational_rnn.runs import build_run_config, train_run
from relational_rnn.train import read_metrics

ALL_CORES = list(CORES)
SMALL = dict(mem_slots=2, head_size=4, num_heads=2, transformer_window=4)  # a window shorter than the sequences below


def _core(name, input_size=3, batch_first=False, seed=0, **options):
    torch.manual_seed(seed)
    return build_core(CoreConfig(core=name, **{**SMALL, **options}), input_size, batch_first=batch_first).double()


def _parts(core, state):
    return core.state_parts(state)


def _assert_states_equal(core, got, expected, **tolerance):
    for a, b in zip(_parts(core, got), _parts(core, expected), strict=True):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, **tolerance)
        else:
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", ALL_CORES)
def test_every_core_is_a_recurrent_core_with_its_initial_state(name):
    core = _core(name)
    assert isinstance(core, RecurrentCore)
    state = core.initial_state(5)
    dims = core.state_batch_dims()
    assert len(dims) == len(_parts(core, state))
    for part, dim in zip(_parts(core, state), dims):
        assert part.shape[dim] == 5
        assert part.dtype in (torch.float64, torch.bool)
    assert all(p.dtype == torch.float32 for p in _parts(core, core.initial_state(2, dtype=torch.float32)) if p.is_floating_point())


@pytest.mark.parametrize("name", ALL_CORES)
def test_shapes_in_both_layouts_and_the_same_numbers(name):
    time_major, batch_major = _core(name), _core(name, batch_first=True)
    batch_major.load_state_dict(time_major.state_dict())
    x = torch.randn(7, 2, 3, dtype=torch.float64)
    outputs, state = time_major(x)
    assert outputs.shape == (7, 2, time_major.output_size)
    outputs_bf, state_bf = batch_major(x.transpose(0, 1))
    assert outputs_bf.shape == (2, 7, batch_major.output_size)
    torch.testing.assert_close(outputs_bf.transpose(0, 1), outputs)
    _assert_states_equal(time_major, state_bf, state)
    for got, fresh in zip(_parts(time_major, state), _parts(time_major, time_major.initial_state(2))):
        assert got.shape == fresh.shape


@pytest.mark.parametrize("name", ALL_CORES)
def test_chunked_equals_whole_with_the_state_carried_and_gradients_through_it(name):
    core = _core(name)
    x = torch.randn(11, 3, 3, dtype=torch.float64, requires_grad=True)
    outputs, state = core(x)
    loss = outputs.square().sum() + sum(p.square().sum() for p in _parts(core, state) if p.is_floating_point())
    whole_grads = torch.autograd.grad(loss, [x, *core.parameters()])

    pieces, carried = [], None
    for chunk in (slice(0, 4), slice(4, 5), slice(5, 11)):
        piece, carried = core(x[chunk], carried)
        pieces.append(piece)
    chunked = torch.cat(pieces)
    torch.testing.assert_close(chunked, outputs, rtol=0, atol=1e-10)
    _assert_states_equal(core, carried, state, rtol=0, atol=1e-10)
    loss = chunked.square().sum() + sum(p.square().sum() for p in _parts(core, carried) if p.is_floating_point())
    chunked_grads = torch.autograd.grad(loss, [x, *core.parameters()])
    for a, b in zip(chunked_grads, whole_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("name", ALL_CORES)
def test_lengths_give_each_entry_the_state_after_its_own_last_step(name, batch_first):
    core = _core(name, batch_first=batch_first)
    lengths = torch.tensor([9, 5, 1])
    x = torch.randn(3, 9, 3, dtype=torch.float64)  # batch first here; transposed for time-major cores
    feed = (lambda t: t) if batch_first else (lambda t: t.transpose(0, 1))
    outputs, state = core(feed(x), lengths=lengths)
    outputs = feed(outputs)  # back to batch first
    for entry, length in enumerate(lengths.tolist()):
        alone_outputs, alone_state = core(feed(x[entry : entry + 1, :length]))
        torch.testing.assert_close(outputs[entry : entry + 1, :length], feed(alone_outputs), rtol=0, atol=1e-10)
        _assert_states_equal(core, core.select_state(state, torch.tensor([entry])), alone_state, rtol=0, atol=1e-10)


@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("name", ALL_CORES)
def test_a_packed_sequence_gives_packed_outputs_equal_to_the_padded_call_with_lengths(name, batch_first, enforce_sorted):
    """As with nn.LSTM: a PackedSequence in, a PackedSequence out, packed the same way (batch_sizes,
    sorted_indices, unsorted_indices), holding the outputs of the padded call with `lengths`; the
    final state (in the batch's original order) is that call's too, and gradients flow."""
    core = _core(name, batch_first=batch_first)
    lengths = torch.tensor([9, 5, 5, 1]) if enforce_sorted else torch.tensor([5, 9, 1, 5])  # ties included
    feed = (lambda t: t) if batch_first else (lambda t: t.transpose(0, 1))
    x = feed(torch.randn(4, 9, 3, dtype=torch.float64)).requires_grad_(True)
    _, start = core(feed(torch.randn(4, 2, 3, dtype=torch.float64)))  # a state that is not the initial one
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    outputs, state = core(packed, start)
    padded_outputs, padded_state = core(x, start, lengths=lengths)
    expected = pack_padded_sequence(padded_outputs, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    assert isinstance(outputs, PackedSequence)
    assert torch.equal(outputs.batch_sizes, packed.batch_sizes)
    for got, want in ((outputs.sorted_indices, packed.sorted_indices), (outputs.unsorted_indices, packed.unsorted_indices)):
        assert (got is None and want is None) or torch.equal(got, want)
    torch.testing.assert_close(outputs.data, expected.data, rtol=0, atol=1e-12)
    _assert_states_equal(core, state, padded_state, rtol=0, atol=1e-12)
    unpacked, unpacked_lengths = pad_packed_sequence(outputs, batch_first=batch_first)
    assert torch.equal(unpacked_lengths, lengths) and unpacked.shape[-1] == core.output_size
    (gradient,) = torch.autograd.grad(outputs.data.square().sum(), x)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0
    with pytest.raises(ValueError, match="carries its own lengths"):
        core(packed, start, lengths=lengths)


def test_the_lstm_core_packs_its_outputs_exactly_as_nn_lstm_does():
    core = _core("lstm")
    packed = pack_padded_sequence(torch.randn(6, 3, 3, dtype=torch.float64), torch.tensor([4, 6, 2]), enforce_sorted=False)
    outputs, (h, c) = core(packed)
    reference, (h_ref, c_ref) = core.lstm(packed)
    for got, want in zip((*outputs, h, c), (*reference, h_ref, c_ref), strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", ALL_CORES)
def test_reset_state_gives_the_initial_state_only_where_done(name):
    core = _core(name)
    _, state = core(torch.randn(6, 3, 3, dtype=torch.float64))
    reset = core.reset_state(state, torch.tensor([True, False, True]))
    fresh = core.initial_state(3)
    for got, old, new, dim in zip(_parts(core, reset), _parts(core, state), _parts(core, fresh), core.state_batch_dims()):
        assert torch.equal(got.select(dim, 0), new.select(dim, 0)) and torch.equal(got.select(dim, 2), new.select(dim, 2))
        assert torch.equal(got.select(dim, 1), old.select(dim, 1))
    assert any(not torch.equal(old.select(d, 1), new.select(d, 1)) for old, new, d in
               zip(_parts(core, state), _parts(core, fresh), core.state_batch_dims()))  # fmt: skip


@pytest.mark.parametrize("name", ALL_CORES)
def test_detach_cuts_the_graph_and_keeps_the_values(name):
    core = _core(name)
    _, state = core(torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True))
    detached = core.detach_state(state)
    assert all(part.grad_fn is None and not part.requires_grad for part in _parts(core, detached))
    _assert_states_equal(core, detached, state, rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL_CORES)
def test_select_state_continues_like_the_chosen_entries_of_the_batch(name):
    core = _core(name)
    x = torch.randn(8, 4, 3, dtype=torch.float64)
    _, state = core(x[:5])
    outputs, _ = core(x[5:], state)
    chosen = torch.tensor([3, 0])
    selected_outputs, _ = core(x[5:, chosen], core.select_state(state, chosen))
    torch.testing.assert_close(selected_outputs, outputs[:, chosen], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ALL_CORES)
def test_state_parts_round_trip(name):
    core = _core(name)
    _, state = core(torch.randn(3, 2, 3, dtype=torch.float64))
    _assert_states_equal(core, core.state_from_parts(core.state_parts(state)), state, rtol=0, atol=0)
    assert type(core.state_from_parts(core.state_parts(state))) is type(state)


@pytest.mark.parametrize("name", ALL_CORES)
def test_state_dict_round_trip_gives_the_same_numbers(name):
    core, twin = _core(name, seed=0), _core(name, seed=1)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    assert not torch.allclose(core(x)[0], twin(x)[0])
    twin.load_state_dict(core.state_dict())
    torch.testing.assert_close(twin(x)[0], core(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL_CORES)
def test_float32_float64_and_to(name):
    core = _core(name).float()
    x = torch.randn(4, 2, 3)
    outputs32, state32 = core(x)
    assert outputs32.dtype == torch.float32
    core.to(torch.float64)
    outputs64, state64 = core(x.double())
    assert outputs64.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in _parts(core, state64) if p.is_floating_point())
    torch.testing.assert_close(outputs64.float(), outputs32, rtol=1e-4, atol=1e-4)
    devices = ["cuda"] if torch.cuda.is_available() else []
    for device in devices:
        moved = core.to(device)
        outputs_there, state_there = moved(x.double().to(device))
        assert all(p.device.type == device for p in _parts(core, state_there))
        torch.testing.assert_close(outputs_there.cpu(), outputs64, rtol=1e-6, atol=1e-6)
        core.to("cpu")


@pytest.mark.parametrize("input_size", [3, 64])
@pytest.mark.parametrize("name", [name for name in ALL_CORES if name != "rmc"])
def test_sized_to_the_rmc_parameter_count_or_a_given_one(name, input_size):
    config = CoreConfig(core=name)
    rmc = count_parameters(build_core(CoreConfig(core="rmc"), input_size))
    assert abs(count_parameters(build_core(config, input_size)) - rmc) / rmc < 0.03
    sized = count_parameters(build_core(CoreConfig(core=name, size_to_parameters=20_000), input_size))
    assert abs(sized - 20_000) / 20_000 < 0.03


@pytest.mark.parametrize("name", ALL_CORES)
def test_an_empty_sequence_gives_no_outputs_and_the_state_unchanged(name):
    core = _core(name)
    state = core.initial_state(2)
    outputs, after = core(torch.zeros(0, 2, 3, dtype=torch.float64), state)
    assert outputs.shape == (0, 2, core.output_size)
    _assert_states_equal(core, after, state, rtol=0, atol=0)


# --- through the training loop ------------------------------------------------------------------

PACMAN = [("mem_slots", "2"), ("head_size", "4"), ("num_heads", "2"), ("embed_size", "8"), ("num_envs", "3"),
          ("unroll_length", "4"), ("eval_episodes", "2"), ("max_steps", "20"), ("threads", "1"), ("obs", "viewport"),
          ("transformer_window", "3")]  # fmt: skip


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.mark.parametrize("name", ALL_CORES)
def test_training_through_the_loop_resumes_exactly_with_the_core_state_carried(name, tmp_path):
    """Pac-Man carries the core's state from one training step to the next and keeps it in the
    checkpoint: stopping after 3 steps and resuming gives the numbers of an unstopped run."""

    def run(steps):
        return build_run_config("pacman", "cpu", PACMAN + [("core", name), ("steps", str(steps)), ("eval_every", "3")])

    train_run(run(6), tmp_path / "whole")
    train_run(run(3), tmp_path / "parts")
    train_run(run(6), tmp_path / "parts", resume=True)
    whole = _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl"))
    assert len(whole) == 2 and _without_time(read_metrics(tmp_path / "parts" / "metrics.jsonl")) == whole


@pytest.mark.parametrize("name", ALL_CORES)
def test_killed_mid_training_resumes_as_if_uninterrupted(name, tmp_path):
    """SIGKILL (no chance to clean up) during Pac-Man training, then `--resume`: the metrics of a
    run that was never stopped, for every core."""
    steps, options = 100, PACMAN + [("core", name), ("eval_every", "10"), ("checkpoint_every", "5"), ("progress", "false")]
    train_run(build_run_config("pacman", "cpu", options + [("steps", str(steps))]), tmp_path / "whole")
    command = [sys.executable, "-m", "relational_rnn.cli", "train", "pacman", "--out", str(tmp_path / "killed"),
               "--steps", str(steps), *[arg for key, value in options for arg in (f"--{key.replace('_', '-')}", value)]]
    victim = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics_file = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not read_metrics(metrics_file):  # killed after its first evaluation
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert read_metrics(metrics_file)[-1]["step"] < steps, "the run finished before it could be killed"
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert _without_time(read_metrics(metrics_file)) == _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl"))
