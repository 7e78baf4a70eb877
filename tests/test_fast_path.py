"""The fast paths of RelationalMemory against its straightforward path (the spec in code, itself
checked against the slow reference in test_relational_memory.py): outputs, final memory and
every gradient, over the option grid, in float64 (1e-10) and float32 (1e-5 relative).

Both fast paths are checked: the fused one (cores/fused.py, the default with one attention
block) and `fast_step` under autograd (`fused=False`, and every multi-block case)."""

import pytest
import torch

from relational_rnn import RelationalMemory
from relational_rnn.cores import relational_memory
from relational_rnn.cores.relational_memory import fold_input_projection

OPTION_GRID = {
    "unit gating": dict(mem_slots=3, head_size=4, num_heads=2),
    "memory gating": dict(mem_slots=3, head_size=4, num_heads=2, gate_style="memory"),
    "no gating": dict(mem_slots=3, head_size=4, num_heads=2, gate_style=None),
    "three blocks": dict(mem_slots=2, head_size=3, num_heads=2, num_blocks=3),
    "three blocks, memory gating": dict(mem_slots=2, head_size=3, num_heads=2, num_blocks=3, gate_style="memory"),
    "three blocks, no gating": dict(mem_slots=2, head_size=3, num_heads=2, num_blocks=3, gate_style=None),
    "key_size != head_size": dict(mem_slots=2, head_size=5, num_heads=2, key_size=3),
    "width < slots": dict(mem_slots=5, head_size=2, num_heads=2),
    "width > slots": dict(mem_slots=2, head_size=3, num_heads=3),
    "one slot (the LM shape)": dict(mem_slots=1, head_size=4, num_heads=3, key_size=2, attention_mlp_layers=3),
    "one MLP layer": dict(mem_slots=2, head_size=4, num_heads=1, attention_mlp_layers=1),
    "three MLP layers, biases": dict(mem_slots=2, head_size=4, num_heads=2, attention_mlp_layers=3, forget_bias=0.5, input_bias=-0.3),
    "qkv attention scale": dict(mem_slots=3, head_size=5, num_heads=2, key_size=3, attention_scale="qkv"),
    "qkv attention scale, three blocks": dict(mem_slots=2, head_size=3, num_heads=2, num_blocks=3, attention_scale="qkv"),
}


def _randomise(module):
    """Random non-trivial values everywhere (layer norms included), so every weight matters."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5)


def _pair(input_size, dtype=torch.float64, seed=0, fused=True, **options):
    """The same randomised weights in a straightforward-path and a fast-path module."""
    torch.manual_seed(seed)
    slow = RelationalMemory(input_size, fast=False, **options).to(dtype)
    _randomise(slow)
    fast = RelationalMemory(input_size, fused=fused, **options).to(dtype)
    fast.load_state_dict(slow.state_dict())
    return slow, fast


def _run(module, x, memory=None, lengths=None):
    """Outputs, final memory and the gradients of a loss touching every output, w.r.t. parameters, x and memory."""
    x = x.detach().requires_grad_(True)
    if memory is None:
        memory = module.initial_state(x.shape[0] if module.batch_first else x.shape[1], dtype=x.dtype)
    memory = memory.detach().requires_grad_(True)
    outputs, final = module(x, memory, lengths=lengths)
    weights = torch.linspace(-1, 1, outputs.numel(), dtype=x.dtype).view_as(outputs)
    loss = (outputs * weights).sum() + final.square().sum()
    gradients = torch.autograd.grad(loss, [*module.parameters(), x, memory])
    return [outputs, final, *gradients]


def _assert_all_close(expected, actual, dtype):
    for a, b in zip(expected, actual, strict=True):
        if dtype == torch.float64:
            torch.testing.assert_close(b, a, rtol=0, atol=1e-10)
        else:  # 1e-5 relative to the tensor's own scale
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5 * float(a.detach().abs().max()))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autograd"])
@pytest.mark.parametrize("case", OPTION_GRID)
@pytest.mark.parametrize("input_size", [3, 40])  # folded and plain input projection
def test_fast_path_equals_straightforward_path_float64(case, input_size, fused):
    slow, fast = _pair(input_size, fused=fused, **OPTION_GRID[case])
    assert fast.uses_fused_path == (fused and fast.num_blocks == 1)
    x = torch.randn(5, 3, input_size, dtype=torch.float64)
    _assert_all_close(_run(slow, x), _run(fast, x), torch.float64)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autograd"])
@pytest.mark.parametrize("case", ["unit gating", "memory gating", "three blocks, no gating", "one slot (the LM shape)", "width < slots", "qkv attention scale"])
def test_fast_path_equals_straightforward_path_float32(case, fused):
    slow, fast = _pair(6, dtype=torch.float32, seed=1, fused=fused, **OPTION_GRID[case])
    x = torch.randn(7, 4, 6)
    _assert_all_close(_run(slow, x), _run(fast, x), torch.float32)


def test_both_input_projection_branches_are_exercised():
    small_input = RelationalMemory(3, mem_slots=2, head_size=4, num_heads=2).cell
    large_input = RelationalMemory(40, mem_slots=2, head_size=4, num_heads=2).cell
    assert fold_input_projection(small_input, tokens=15)
    assert not fold_input_projection(large_input, tokens=15)


@pytest.mark.parametrize("blocks", [1, 2], ids=["fused", "autograd"])
@pytest.mark.parametrize("steps", [1, 2, 12, 100])
def test_sequence_lengths(steps, blocks):
    slow, fast = _pair(4, seed=2, mem_slots=3, head_size=4, num_heads=2, num_blocks=blocks)
    x = torch.randn(steps, 2, 4, dtype=torch.float64)
    _assert_all_close(_run(slow, x), _run(fast, x), torch.float64)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autograd"])
@pytest.mark.parametrize("gate_style", ["unit", "memory", None])
def test_batch_first_and_lengths(gate_style, fused):
    slow, fast = _pair(4, seed=3, fused=fused, mem_slots=2, head_size=4, num_heads=2, gate_style=gate_style)
    slow.batch_first = fast.batch_first = True
    x = torch.randn(3, 6, 4, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    _assert_all_close(_run(slow, x, lengths=lengths), _run(fast, x, lengths=lengths), torch.float64)


@pytest.mark.parametrize("case", ["unit gating", "memory gating", "no gating"])
def test_fused_path_with_the_constant_initial_memory(case):
    """No initial memory given: nothing asks for its gradient, so the fused backward skips it."""
    slow, fast = _pair(4, seed=8, **OPTION_GRID[case])
    x = torch.randn(6, 3, 4, dtype=torch.float64, requires_grad=True)
    results = []
    for module in (slow, fast):
        outputs, final = module(x)
        loss = (outputs * torch.linspace(-1, 1, outputs.numel(), dtype=x.dtype).view_as(outputs)).sum() + final.sum()
        results.append([outputs, final, *torch.autograd.grad(loss, [*module.parameters(), x])])
    _assert_all_close(*results, torch.float64)


def test_without_gradients_the_fast_path_fills_no_backward_buffers(monkeypatch):
    slow, fast = _pair(4, seed=9, mem_slots=3, head_size=4, num_heads=2)
    x = torch.randn(5, 2, 4, dtype=torch.float64)

    def refuse(*args, **kwargs):
        raise AssertionError("the fused path ran without gradients")

    monkeypatch.setattr(relational_memory, "fused_sequence", refuse)
    with torch.no_grad():
        expected, final = slow(x)
        outputs, fast_final = fast(x)
    assert not outputs.requires_grad
    torch.testing.assert_close(outputs, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(fast_final, final, rtol=0, atol=1e-10)


def test_fused_path_gradcheck():
    torch.manual_seed(10)
    rmc = RelationalMemory(input_size=2, mem_slots=2, head_size=2, num_heads=2, attention_mlp_layers=2).double()
    assert rmc.uses_fused_path
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    memory = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3, 2])
    assert torch.autograd.gradcheck(lambda x, m: rmc(x, m, lengths=lengths)[0], (x, memory))


def test_double_backward_through_the_fused_path_equals_the_autograd_path():
    """The fused path recomputes under autograd for a double backward (tests/test_core_edges.py has more)."""
    rmc = RelationalMemory(3, mem_slots=2, head_size=2, num_heads=2).double()
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    second = []
    for fused in (True, False):
        rmc.use_fused = fused
        (grad,) = torch.autograd.grad(rmc(x)[0].square().sum(), x, create_graph=True)
        second.append(torch.autograd.grad(grad.sum(), x)[0])
    torch.testing.assert_close(second[0], second[1], rtol=1e-10, atol=1e-10)


def test_fused_path_is_used_exactly_where_it_applies():
    assert RelationalMemory(3, mem_slots=2, head_size=4).uses_fused_path
    assert not RelationalMemory(3, mem_slots=2, head_size=4, fused=False).uses_fused_path
    assert not RelationalMemory(3, mem_slots=2, head_size=4, num_blocks=2).uses_fused_path
    assert not RelationalMemory(3, mem_slots=2, head_size=4, recompute=True).uses_fused_path
    assert not RelationalMemory(3, mem_slots=2, head_size=4, compile=True).uses_fused_path
    assert "fused=True" in repr(RelationalMemory(3, mem_slots=2, head_size=4))


@pytest.mark.parametrize("blocks", [1, 3], ids=["fused", "autograd"])
def test_chunked_memory_carry_equals_one_run(blocks):
    """Outputs and gradients of one run equal those of two chunks with the memory carried over."""
    slow, fast = _pair(4, seed=4, mem_slots=3, head_size=4, num_heads=2, num_blocks=blocks)
    x = torch.randn(7, 2, 4, dtype=torch.float64)
    results = []
    for run in ("whole", "chunked"):
        module = slow if run == "whole" else fast
        inputs = x.clone().requires_grad_(True)
        if run == "whole":
            outputs, final = module(inputs)
        else:
            first, memory = module(inputs[:3])
            second, final = module(inputs[3:], memory)
            outputs = torch.cat([first, second])
        loss = (outputs * torch.linspace(-1, 1, outputs.numel(), dtype=x.dtype).view_as(outputs)).sum() + final.sum()
        results.append([outputs, final, *torch.autograd.grad(loss, [inputs, *module.parameters()])])
    _assert_all_close(*results, torch.float64)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autograd"])
def test_final_memory_is_not_a_view_of_the_outputs(fused):
    """As with nn.LSTM: changing or keeping the final memory leaves the outputs alone."""
    rmc = RelationalMemory(4, mem_slots=2, head_size=4, num_heads=2, fused=fused)
    outputs, memory = rmc(torch.randn(5, 3, 4))
    assert memory.untyped_storage().data_ptr() != outputs.untyped_storage().data_ptr()
    before = outputs[-1].detach().clone()
    with torch.no_grad():
        memory.mul_(0)
    assert torch.equal(outputs[-1].detach(), before)
    outputs.sum().backward()


@pytest.mark.parametrize("case", ["unit gating", "three blocks, no gating"])
def test_recompute_gives_the_same_outputs_and_gradients(case):
    slow, fast = _pair(5, seed=5, **OPTION_GRID[case])
    fast.recompute = True
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    _assert_all_close(_run(slow, x), _run(fast, x), torch.float64)
    with torch.no_grad():  # no graph: recomputation is skipped
        torch.testing.assert_close(fast(x)[0], slow(x)[0], rtol=0, atol=1e-10)


def test_fast_path_gradcheck():
    torch.manual_seed(6)
    rmc = RelationalMemory(input_size=2, mem_slots=2, head_size=2, num_heads=2, num_blocks=2).double()
    x = torch.randn(3, 1, 2, dtype=torch.float64, requires_grad=True)
    memory = rmc.initial_state(1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, m: rmc(x, m)[0], (x, memory))


def test_fast_path_is_the_default_and_switchable():
    rmc = RelationalMemory(3, mem_slots=2, head_size=4)
    assert rmc.use_fast_path and not rmc.use_compile and not rmc.recompute
    assert callable(rmc.compile)  # nn.Module.compile is not hidden by the option
    assert "fast=True" in repr(rmc)
    assert not RelationalMemory(3, mem_slots=2, head_size=4, fast=False).use_fast_path
    # The speed options add no parameters: checkpoints load across them.
    other = RelationalMemory(3, mem_slots=2, head_size=4, fast=False, recompute=True)
    other.load_state_dict(rmc.state_dict())


def test_autocast_takes_the_autograd_path(monkeypatch):
    """The fused path expects one dtype throughout; under autocast the step runs under autograd."""
    rmc = RelationalMemory(4, mem_slots=2, head_size=4, num_heads=2)
    x = torch.randn(3, 2, 4)
    reference = rmc(x)[0]

    def refuse(*args, **kwargs):
        raise AssertionError("the fused path ran under autocast")

    monkeypatch.setattr(relational_memory, "fused_sequence", refuse)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs, _ = rmc(x)
    outputs.float().sum().backward()
    torch.testing.assert_close(outputs.float(), reference, rtol=0.05, atol=0.05)


def test_fused_tanh_is_tanh_to_float_rounding():
    """The fused path's 2 sigmoid(2x) - 1 against torch.tanh: the bound its docstring states."""
    from relational_rnn.cores.fused import _tanh

    x = torch.linspace(-20, 20, 200_001)
    assert (_tanh(x) - torch.tanh(x)).abs().max() <= 2e-7
    assert (_tanh(x.double()) - torch.tanh(x.double())).abs().max() <= 1e-15


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autograd"])
def test_memory_of_another_dtype_is_a_clear_error(fused):
    rmc = RelationalMemory(3, mem_slots=2, head_size=4, fused=fused)
    x = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="memory has dtype torch.float64 but the input has torch.float32"):
        rmc(x, rmc.initial_state(2).double())


def test_fused_sequence_refuses_several_blocks():
    cell = RelationalMemory(3, mem_slots=2, head_size=4, num_blocks=2).cell
    with pytest.raises(ValueError, match="num_blocks == 1"):
        relational_memory.fused_sequence(cell, torch.randn(2, 1, 3), cell.initial_state(1))


def test_fused_path_with_products_large_enough_for_batched_blas():
    """The grid's shapes are tiny, so the fused path's attention products all take `_bmm`'s
    multiply-add-per-slot branch; 8 slots and heads of 16 take the batched-matmul branch."""
    slow, fast = _pair(5, mem_slots=8, head_size=16, num_heads=2)
    x = torch.randn(3, 2, 5, dtype=torch.float64)
    _assert_all_close(_run(slow, x), _run(fast, x), torch.float64)


@pytest.mark.parametrize("shape", [(6, 3, 1, 5), (6, 3, 4, 5), (6, 9, 8, 16)], ids=["one slot", "slots", "batched blas"])
def test_fused_bmm_is_bmm(shape):
    from relational_rnn.cores.fused import _bmm

    batch, rows, inner, columns = shape
    a = torch.randn(batch, inner, rows, dtype=torch.float64).transpose(1, 2)  # a transposed operand, as in A^T v
    b = torch.randn(batch, inner, columns, dtype=torch.float64)
    torch.testing.assert_close(_bmm(a, b, scale=0.5), 0.5 * torch.bmm(a, b), rtol=0, atol=1e-12)
    out = torch.full((batch, rows, columns), float("nan"), dtype=torch.float64)
    assert _bmm(a, b, out=out) is out
    torch.testing.assert_close(out, torch.bmm(a, b), rtol=0, atol=1e-12)


@pytest.mark.parametrize("elements", [1, 100], ids=["step by step", "two steps at a time"])
@pytest.mark.parametrize("case", ["unit gating", "memory gating", "no gating", "one slot (the LM shape)"])
def test_fused_backward_recomputing_in_chunks_of_steps(monkeypatch, case, elements):
    """The grid's shapes are small enough to be recomputed all steps at once; smaller chunks must agree."""
    from relational_rnn.cores import fused

    slow, fast = _pair(3, **OPTION_GRID[case])
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    rows_times_features = 3 * fast.cell.mem_slots * fast.cell.blocks[0].qkv.out_features
    monkeypatch.setattr(fused, "RECOMPUTE_ELEMENTS", elements if elements == 1 else 2 * rows_times_features)
    lengths = torch.tensor([5, 2, 4])
    _assert_all_close(_run(slow, x, lengths=lengths), _run(fast, x, lengths=lengths), torch.float64)
