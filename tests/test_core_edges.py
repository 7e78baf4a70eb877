"""RelationalMemory as torch users use it: empty sequences, wrong dtypes, torch.func and double backward
on the default (fused) path, each checked against the straightforward path or a plain loop."""

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

