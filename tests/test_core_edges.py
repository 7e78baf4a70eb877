"""RelationalMemory as torch users use it: empty sequences, wrong dtypes, torch.func and double backward
on the default (fused) path, each checked against the straightforward path or a plain loop; infinite
gate biases, the meta device and torch.jit.trace."""

import warnings

import pytest
import torch
from torch.func import functional_call, grad, vmap

from relational_rnn import RelationalMemory


def _pair(**options):
    """The default module and a straightforward-path twin with the same weights, in float64."""
    torch.manual_seed(0)
    default = RelationalMemory(3, 2, 4, num_heads=2, **options).double()
    slow = RelationalMemory(3, 2, 4, num_heads=2, fast=False, **options).double()
    slow.load_state_dict(default.state_dict())
    return default, slow


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("batch_first", [False, True])
def test_an_empty_sequence_gives_no_outputs_and_the_memory_unchanged(fast, batch_first):
    rmc = RelationalMemory(3, 2, 4, num_heads=2, fast=fast, batch_first=batch_first)
    memory = torch.randn(5, 2, 8, requires_grad=True)
    x = torch.randn(5, 0, 3) if batch_first else torch.randn(0, 5, 3)
    outputs, final = rmc(x, memory)
    assert outputs.shape == ((5, 0, 16) if batch_first else (0, 5, 16))
    assert torch.equal(final, memory) and final.data_ptr() != memory.data_ptr()  # a copy, as after any step
    final.sum().backward()
    assert torch.equal(memory.grad, torch.ones_like(memory))
    with torch.no_grad():
        assert torch.equal(rmc(x)[1], rmc.initial_state(5))


def test_an_input_of_another_dtype_is_a_clear_error():
    rmc = RelationalMemory(3, 2, 4, num_heads=2)
    for module, x in ((rmc, torch.randn(4, 2, 3, dtype=torch.float64)), (rmc.cell, torch.randn(2, 3, dtype=torch.float64))):
        with pytest.raises(ValueError, match=r"input has dtype torch.float64 but the module's parameters are torch.float32"):
            module(x)
    with pytest.raises(ValueError, match="input has dtype torch.int64"):
        RelationalMemory(3, 2, 4, fast=False)(torch.ones(4, 2, 3, dtype=torch.long))
    assert RelationalMemory(3, 2, 4).double()(torch.randn(4, 2, 3, dtype=torch.float64))[0].dtype == torch.float64


@pytest.mark.parametrize("gate_style", ["unit", "memory", None])
def test_torch_func_grad_on_the_default_path_equals_autograd(gate_style):
    rmc, slow = _pair(gate_style=gate_style)
    assert rmc.uses_fused_path
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    params = {name: p.detach() for name, p in rmc.named_parameters()}
    by_func = grad(lambda p: functional_call(rmc, p, (x,))[0].pow(2).sum())(params)
    expected = torch.autograd.grad(slow(x)[0].pow(2).sum(), list(slow.parameters()))
    for (name, _), want in zip(slow.named_parameters(), expected):
        torch.testing.assert_close(by_func[name], want, rtol=1e-10, atol=1e-10)


def test_vmap_on_the_default_path_equals_a_loop():
    rmc, _ = _pair()
    xs = torch.randn(3, 5, 2, 3, dtype=torch.float64, requires_grad=True)  # 3 independent batches
    mapped = vmap(lambda x: rmc(x)[0])(xs)
    torch.testing.assert_close(mapped, torch.stack([rmc(x)[0] for x in xs]), rtol=1e-12, atol=1e-12)
    mapped.sum().backward()  # and gradients through it
    assert xs.grad is not None and torch.isfinite(xs.grad).all()


@pytest.mark.parametrize("gate_style", ["unit", "memory", None])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_double_backward_on_the_default_path_equals_the_straightforward_path(gate_style, with_lengths):
    rmc, slow = _pair(gate_style=gate_style)
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    memory = rmc.initial_state(3).requires_grad_()
    lengths = torch.tensor([5, 2, 4]) if with_lengths else None
    results = []
    for module in (rmc, slow):
        inputs = (x.clone().requires_grad_(), memory)
        outputs, final = module(inputs[0], memory, lengths=lengths)
        loss = outputs.pow(2).sum() + final.sin().sum()
        first = torch.autograd.grad(loss, [*inputs, *module.parameters()], create_graph=True)
        penalty = sum(g.pow(2).sum() for g in first)  # a gradient penalty, as in WGAN-GP
        results.append(torch.autograd.grad(penalty, [*inputs, *module.parameters()]))
    for fused, reference in zip(*results):
        torch.testing.assert_close(fused, reference, rtol=1e-9, atol=1e-9)


def test_plain_backward_still_takes_the_hand_written_path(monkeypatch):
    """The recomputation costs a forward: it must only run when a double backward is asked for."""
    from relational_rnn.cores.fused import FusedSequence

    calls = []
    monkeypatch.setattr(FusedSequence, "differentiable_backward", staticmethod(lambda *a: calls.append(a)))
    rmc, _ = _pair()
    rmc(torch.randn(4, 2, 3, dtype=torch.float64))[0].sum().backward()
    assert calls == []



PATHS = {"straightforward": dict(fast=False), "fused": dict(), "autograd": dict(fused=False), "two blocks": dict(num_blocks=2)}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("gate_style", ["unit", "memory"])
def test_infinite_gate_biases_make_the_memory_ignore_the_input(gate_style, path):
    """forget_bias=+inf, input_bias=-inf: forget gate 1, input gate 0, so M' = 0 * tanh(A) + 1 * M = M
    exactly, whatever the input, and no gradient reaches the input (none of it NaN)."""
    rmc = RelationalMemory(3, 2, 4, num_heads=2, gate_style=gate_style, forget_bias=float("inf"),
                           input_bias=float("-inf"), **PATHS[path]).double()  # fmt: skip
    assert (rmc.forget_bias, rmc.input_bias) == (float("inf"), float("-inf"))
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    start = torch.randn(3, 2, 8, dtype=torch.float64, requires_grad=True)
    outputs, final = rmc(x, start)
    assert torch.equal(final, start) and torch.equal(outputs, start.flatten(1).expand(5, -1, -1))
    assert torch.equal(rmc(torch.zeros_like(x), start)[0], outputs)  # the same as with no input at all
    grads = torch.autograd.grad((outputs * torch.randn_like(outputs)).sum(), [x, start, *rmc.parameters()], allow_unused=True)
    assert torch.equal(grads[0], torch.zeros_like(x))
    assert all(g is None or torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("bias", ["forget_bias", "input_bias"])
def test_a_nan_gate_bias_is_refused_and_infinities_are_not(bias):
    with pytest.raises(ValueError, match=rf"^{bias} must be a number \(infinities allowed, not NaN\), got nan"):
        RelationalMemory(3, 2, 4, **{bias: float("nan")})
    for value in (float("inf"), float("-inf")):
        assert getattr(RelationalMemory(3, 2, 4, **{bias: value}), bias) == value


@pytest.mark.parametrize("path", ["default", "straightforward"])
def test_a_module_moved_to_meta_runs_and_gives_meta_tensors_of_the_right_shapes(path):
    rmc = RelationalMemory(3, 2, 4, num_heads=2, fast=path == "default", batch_first=True).to("meta")
    x = torch.randn(5, 7, 3, device="meta")
    outputs, memory = rmc(x)
    assert outputs.device.type == memory.device.type == "meta"
    assert outputs.shape == (5, 7, 16) and memory.shape == (5, 2, 8)
    assert rmc(x, memory, lengths=torch.full((5,), 7))[1].shape == (5, 2, 8)
    built_there = RelationalMemory(3, 2, 4, num_heads=2, input_rows=2, device="meta")
    assert built_there(torch.randn(4, 5, 2, 3, device="meta"))[0].shape == (4, 5, 16)


@pytest.mark.parametrize("options", [dict(), dict(fast=False), dict(num_blocks=2), dict(input_rows=2)],
                         ids=["default", "straightforward", "two blocks", "input rows"])  # fmt: skip
def test_a_traced_module_gives_the_eager_outputs_on_the_traced_shape(options):
    torch.manual_seed(1)
    rmc = RelationalMemory(3, 2, 4, num_heads=2, **options).double()
    rows = (options["input_rows"],) if "input_rows" in options else ()
    example, other = (torch.randn(6, 2, *rows, 3, dtype=torch.float64) for _ in range(2))
    with warnings.catch_warnings():  # the tracer warns that sizes are fixed (they are, by design) and that it is deprecated
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(rmc, (example,))
    for x in (example, other):  # the same shape, other numbers too
        for got, expected in zip(traced(x), rmc(x), strict=True):
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
