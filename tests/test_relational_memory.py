"""RelationalMemory against the slow spec reference, plus its interface and errors."""

import inspect
import re

import pytest
import torch

from relational_rnn import RelationalMemory, RelationalMemoryCell, count_parameters
from relational_rnn.cores import CoreConfig, build_core
from reference_rmc import reference_initial_memory, reference_parameter_count, reference_step

FIDELITY_CASES = {
    "unit gating": dict(mem_slots=3, head_size=4, num_heads=2),
    "memory gating": dict(mem_slots=3, head_size=4, num_heads=2, gate_style="memory"),
    "no gating": dict(mem_slots=3, head_size=4, num_heads=2, gate_style=None),
    "three blocks": dict(mem_slots=2, head_size=3, num_heads=2, num_blocks=3),
    "key_size != head_size": dict(mem_slots=2, head_size=5, num_heads=2, key_size=3),
    "width < slots": dict(mem_slots=5, head_size=2, num_heads=2),
    "width > slots": dict(mem_slots=2, head_size=3, num_heads=3),
    "one MLP layer": dict(mem_slots=2, head_size=4, num_heads=1, attention_mlp_layers=1),
    "three MLP layers, biases": dict(mem_slots=2, head_size=4, num_heads=2, attention_mlp_layers=3, forget_bias=0.5, input_bias=-0.3),
    "qkv attention scale": dict(mem_slots=3, head_size=4, num_heads=2, attention_scale="qkv"),
}

QKV_SCALE_CASES = {
    "one block": dict(mem_slots=3, head_size=4, num_heads=2),
    "key_size != head_size": dict(mem_slots=2, head_size=5, num_heads=2, key_size=3),
    "three blocks, memory gating": dict(mem_slots=2, head_size=3, num_heads=2, num_blocks=3, gate_style="memory"),
}


MATRIX_CASES = {  # input_rows: several input rows per step (Sonnet's treat_input_as_matrix)
    "unit gating": dict(mem_slots=3, head_size=4, num_heads=2, input_rows=3),
    "memory gating": dict(mem_slots=2, head_size=4, num_heads=2, input_rows=2, gate_style="memory"),
    "no gating": dict(mem_slots=3, head_size=4, num_heads=2, input_rows=2, gate_style=None),
    "two blocks": dict(mem_slots=2, head_size=3, num_heads=2, num_blocks=2, input_rows=3),
    "key_size != head_size, qkv scale": dict(mem_slots=2, head_size=5, num_heads=2, key_size=3, input_rows=2, attention_scale="qkv"),
    "one input row": dict(mem_slots=3, head_size=4, num_heads=2, input_rows=1),
    "input-only attention": dict(mem_slots=3, head_size=4, num_heads=2, input_rows=2, attention="input-only"),
    "position binding": dict(mem_slots=3, head_size=4, num_heads=2, input_rows=2, slot_binding="position"),
}
PATHS = {"straightforward": dict(fast=False), "fast": dict(fused=False), "default": dict()}


def _randomise(module):
    """Random non-trivial values everywhere (layer norms included), so every weight matters."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5)


def _reference_run(cell, x, memory):
    """The slow reference over x [T, B, ...] from `memory`: the outputs [T, B, N*D] and the final memory."""
    outputs = []
    for t in range(x.shape[0]):
        memory = reference_step(cell, x[t], memory, step_index=t)
        outputs.append(memory.flatten(1))
    return torch.stack(outputs), memory


@pytest.mark.parametrize("case", FIDELITY_CASES)
def test_matches_spec_reference_over_several_steps(case):
    torch.manual_seed(0)
    options = FIDELITY_CASES[case]
    rmc = RelationalMemory(input_size=3, **options).double()
    _randomise(rmc)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    outputs, final = rmc(x)

    memory = reference_initial_memory(2, rmc.mem_slots, rmc.mem_size)
    for t in range(4):
        memory = reference_step(rmc.cell, x[t], memory)
        torch.testing.assert_close(outputs[t], memory.flatten(1), rtol=0, atol=1e-10)
    torch.testing.assert_close(final, memory, rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", QKV_SCALE_CASES)
def test_straightforward_path_with_qkv_attention_scale_matches_spec_reference(case):
    """attention_scale="qkv" (queries / sqrt(2k + v)) on the spec-in-code path against the reference."""
    torch.manual_seed(11)
    rmc = RelationalMemory(input_size=3, fast=False, attention_scale="qkv", **QKV_SCALE_CASES[case]).double()
    _randomise(rmc)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    outputs, final = rmc(x)

    memory = reference_initial_memory(2, rmc.mem_slots, rmc.mem_size)
    for t in range(4):
        memory = reference_step(rmc.cell, x[t], memory, attention_scale="qkv")
        torch.testing.assert_close(outputs[t], memory.flatten(1), rtol=0, atol=1e-10)
    torch.testing.assert_close(final, memory, rtol=0, atol=1e-10)
    # The reference with the other scale is far outside that tolerance: the comparison does see the scale.
    key_memory = reference_step(rmc.cell, x[0], reference_initial_memory(2, rmc.mem_slots, rmc.mem_size), attention_scale="key")
    assert (key_memory.flatten(1) - outputs[0]).abs().max() > 1e-6


@pytest.mark.parametrize("fast", [False, True], ids=["straightforward", "fast"])
def test_key_and_qkv_attention_scales_give_different_outputs(fast):
    torch.manual_seed(12)
    key = RelationalMemory(input_size=3, mem_slots=3, head_size=4, num_heads=2, fast=fast).double()
    _randomise(key)
    qkv = RelationalMemory(input_size=3, mem_slots=3, head_size=4, num_heads=2, fast=fast, attention_scale="qkv").double()
    qkv.load_state_dict(key.state_dict())  # the option adds no parameters
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    assert (key(x)[0] - qkv(x)[0]).abs().max() > 1e-4


def test_attention_scale_option_is_stored_shown_and_forwarded():
    default = RelationalMemory(input_size=3, mem_slots=2, head_size=4, num_heads=2, key_size=3)
    assert default.attention_scale == default.cell.attention_scale == "key"
    assert default.query_scale == 3**-0.5 and default.cell.blocks[0].query_scale == 3**-0.5
    qkv = RelationalMemory(input_size=3, mem_slots=2, head_size=4, num_heads=2, key_size=3, attention_scale="qkv")
    assert qkv.attention_scale == "qkv"
    assert qkv.query_scale == (2 * 3 + 4) ** -0.5 and qkv.cell.blocks[0].query_scale == qkv.query_scale
    assert "attention_scale='qkv'" in repr(qkv) and "attention_scale='key'" in repr(default)
    # CoreConfig passes it through (the command line's --attention-scale).
    assert CoreConfig().attention_scale == "key"
    core = build_core(CoreConfig(mem_slots=2, head_size=4, num_heads=2, attention_scale="qkv"), input_size=3)
    assert core.attention_scale == "qkv" and core.query_scale == 12**-0.5


@pytest.mark.parametrize("value", ["sqrt", "Key", None, 0.5])
def test_bad_attention_scale_raises_value_error_naming_the_option_and_values(value):
    with pytest.raises(ValueError, match=r"^attention_scale must be 'key' or 'qkv', got "):
        RelationalMemory(input_size=3, mem_slots=2, head_size=4, attention_scale=value)


@pytest.mark.parametrize(
    "options",
    [
        dict(mem_slots=3, head_size=4, num_heads=2),
        dict(mem_slots=8, head_size=32, num_heads=8),
        dict(mem_slots=2, head_size=5, num_heads=3, key_size=2, num_blocks=3, attention_mlp_layers=4),
        dict(mem_slots=2, head_size=5, gate_style="memory"),
        dict(mem_slots=2, head_size=5, gate_style=None),
    ],
)
def test_parameter_count_matches_spec_formula(options):
    rmc = RelationalMemory(input_size=7, **options)
    assert count_parameters(rmc) == reference_parameter_count(7, **options)


@pytest.mark.parametrize("slots,width", [(3, 3), (3, 8), (6, 4)])
def test_initial_memory_is_padded_or_truncated_identity(slots, width):
    rmc = RelationalMemory(input_size=2, mem_slots=slots, head_size=width)
    memory = rmc.initial_state(2)
    assert memory.shape == (2, slots, width)
    torch.testing.assert_close(memory, reference_initial_memory(2, slots, width, dtype=torch.float32))
    assert rmc.initial_state(1, dtype=torch.float64).dtype == torch.float64


def test_defaults_follow_the_reference():
    cell = RelationalMemoryCell(input_size=4, mem_slots=2, head_size=3)
    assert (cell.num_heads, cell.num_blocks, cell.attention_mlp_layers) == (1, 1, 2)
    assert (cell.forget_bias, cell.input_bias, cell.gate_style, cell.key_size) == (1.0, 0.0, "unit", 3)
    names = [name for name, _ in cell.named_parameters()]
    assert not any("bias" in name and "gate" in name and name.endswith(("forget_bias", "input_bias")) for name in names)
    # Biases start at zero, weights are truncated normal with std 1/sqrt(fan_in).
    assert torch.all(cell.input_projection.bias == 0)
    big = RelationalMemoryCell(input_size=400, mem_slots=2, head_size=300)
    weight = big.input_projection.weight
    assert weight.abs().max() <= 2 / 400**0.5 + 1e-6
    assert 0.7 / 20 < weight.std() < 1.0 / 20


def test_mlp_layers_have_their_own_weights_and_no_final_relu():
    cell = RelationalMemoryCell(input_size=4, mem_slots=2, head_size=3, attention_mlp_layers=3)
    linears = [m for m in cell.mlp if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 and len({id(m.weight) for m in linears}) == 3
    assert isinstance(cell.mlp[-1], torch.nn.Linear)
    # Each block has its own projection and norms; the MLP is one module for all blocks.
    cell = RelationalMemoryCell(input_size=4, mem_slots=2, head_size=3, num_blocks=2)
    assert cell.blocks[0].qkv.weight is not cell.blocks[1].qkv.weight


def test_running_in_two_chunks_equals_one_run():
    torch.manual_seed(1)
    rmc = RelationalMemory(input_size=3, mem_slots=3, head_size=4, num_heads=2, num_blocks=2).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    whole, final = rmc(x)
    first, memory = rmc(x[:4])
    second, final_chunked = rmc(x[4:], memory)
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(final_chunked, final, rtol=0, atol=1e-12)


def test_cell_step_equals_sequence_module():
    torch.manual_seed(2)
    rmc = RelationalMemory(input_size=3, mem_slots=2, head_size=4, num_heads=2)
    x = torch.randn(3, 5, 3)
    outputs, _ = rmc(x)
    memory = None
    for t in range(3):
        output, memory = rmc.cell(x[t], memory)
        torch.testing.assert_close(output, outputs[t])


def test_batch_first_layout():
    torch.manual_seed(3)
    rmc = RelationalMemory(input_size=3, mem_slots=2, head_size=4)
    rmc_bf = RelationalMemory(input_size=3, mem_slots=2, head_size=4, batch_first=True)
    rmc_bf.load_state_dict(rmc.state_dict())
    x = torch.randn(5, 2, 3)
    out, memory = rmc(x)
    out_bf, memory_bf = rmc_bf(x.transpose(0, 1))
    assert out_bf.shape == (2, 5, 8)
    torch.testing.assert_close(out_bf, out.transpose(0, 1))
    torch.testing.assert_close(memory_bf, memory)


def test_lengths_make_a_padded_batch_equal_to_separate_runs():
    torch.manual_seed(4)
    rmc = RelationalMemory(input_size=3, mem_slots=2, head_size=4, num_heads=2, batch_first=True).double()
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    outputs, memory = rmc(x, lengths=lengths)
    for b, length in enumerate(lengths.tolist()):
        alone_out, alone_memory = rmc(x[b : b + 1, :length])
        torch.testing.assert_close(memory[b : b + 1], alone_memory, rtol=0, atol=1e-12)
        torch.testing.assert_close(outputs[b, :length], alone_out[0], rtol=0, atol=1e-12)


def test_reset_state_replaces_chosen_entries_only():
    rmc = RelationalMemory(input_size=3, mem_slots=2, head_size=4)
    _, memory = rmc(torch.randn(3, 4, 3))
    reset = rmc.reset_state(memory, torch.tensor([True, False, True, False]))
    torch.testing.assert_close(reset[[0, 2]], rmc.initial_state(2))
    torch.testing.assert_close(reset[[1, 3]], memory[[1, 3]])


def test_gradcheck_tiny_config():
    torch.manual_seed(5)
    rmc = RelationalMemory(input_size=2, mem_slots=2, head_size=2, num_heads=2, num_blocks=2).double()
    x = torch.randn(2, 1, 2, dtype=torch.float64, requires_grad=True)
    memory = rmc.initial_state(1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, m: rmc(x, m)[0], (x, memory))


def test_dtypes_state_dict_and_moves():
    torch.manual_seed(6)
    rmc = RelationalMemory(input_size=3, mem_slots=2, head_size=4)
    x = torch.randn(2, 2, 3)
    out32, _ = rmc(x)
    assert out32.dtype == torch.float32
    out64, memory64 = rmc.to(torch.float64)(x.double())
    assert out64.dtype == memory64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out32, rtol=1e-5, atol=1e-6)
    copy = RelationalMemory(input_size=3, mem_slots=2, head_size=4).double()
    copy.load_state_dict(rmc.state_dict())
    torch.testing.assert_close(copy(x.double())[0], out64)
    assert not any("forget_bias" in key or "input_bias" in key for key in rmc.state_dict())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("path", [dict(fast=False), dict(fused=False), dict()], ids=["reference", "autograd", "fused"])
@pytest.mark.parametrize("gate_style", ["unit", "memory", None])
def test_cuda_matches_cpu(path, gate_style):
    """Every path on CUDA gives the CPU straightforward path's outputs and gradients (float64)."""
    torch.manual_seed(7)
    reference = RelationalMemory(input_size=3, mem_slots=3, head_size=4, num_heads=2, gate_style=gate_style, fast=False).double()
    rmc = RelationalMemory(input_size=3, mem_slots=3, head_size=4, num_heads=2, gate_style=gate_style, **path).double()
    rmc.load_state_dict(reference.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    initial = torch.randn(2, 3, 8, dtype=torch.float64)
    lengths = torch.tensor([5, 3])
    results = []
    for module, device in ((reference, "cpu"), (rmc.cuda(), "cuda")):
        inputs, start = x.to(device).requires_grad_(True), initial.to(device).requires_grad_(True)
        outputs, memory = module(inputs, start, lengths=lengths.to(device))
        assert memory.device.type == device
        weights = torch.linspace(-1, 1, outputs.numel(), dtype=x.dtype, device=device).view_as(outputs)
        loss = (outputs * weights).sum() + memory.square().sum()
        gradients = torch.autograd.grad(loss, [inputs, start, *module.parameters()])
        results.append([t.cpu() for t in (outputs, memory, *gradients)])
    for cpu, gpu in zip(*results, strict=True):
        torch.testing.assert_close(gpu, cpu, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(gate_style="per-slot"), "gate_style"),
        (dict(num_blocks=0), "num_blocks"),
        (dict(attention_mlp_layers=0), "attention_mlp_layers"),
        (dict(head_size=0), "head_size"),
        (dict(mem_slots=-1), "mem_slots"),
        (dict(num_heads=1.5), "num_heads"),
        (dict(key_size=0), "key_size"),
        (dict(forget_bias=float("nan")), "forget_bias"),
        (dict(attention_scale="total"), "attention_scale"),
    ],
)
def test_bad_options_raise_value_error_naming_the_option(options, message):
    arguments = dict(input_size=3, mem_slots=2, head_size=4) | options
    with pytest.raises(ValueError, match=message):
        RelationalMemory(**arguments)


def test_bad_inputs_raise_clear_errors():
    rmc = RelationalMemory(input_size=3, mem_slots=2, head_size=4, num_heads=2)
    with pytest.raises(ValueError, match=r"\(time, batch, input_size\).*got \(4, 3\)"):
        rmc(torch.randn(4, 3))
    with pytest.raises(ValueError, match="input_size=3, got"):
        rmc(torch.randn(4, 2, 5))
    with pytest.raises(ValueError, match=r"\(2, 2, 8\), got \(2, 3, 8\)"):
        rmc(torch.randn(4, 2, 3), torch.zeros(2, 3, 8))
    with pytest.raises(ValueError, match=r"\(2, 2, 8\), got \(5, 2, 8\)"):  # batch mismatch
        rmc(torch.randn(4, 2, 3), torch.zeros(5, 2, 8))
    with pytest.raises(ValueError, match="lengths must lie in 1..4"):
        rmc(torch.randn(4, 2, 3), lengths=torch.tensor([5, 1]))
    with pytest.raises(ValueError, match=r"\(batch, input_size=3\)"):
        rmc.cell(torch.randn(2, 4, 3))


# --- several input rows per step (Sonnet's treat_input_as_matrix) --------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", MATRIX_CASES)
def test_input_rows_match_the_spec_reference(case, path):
    """Each of the R rows projected, attention over the N + R rows, the gates reading the R
    projected rows flattened: every path against the loop-by-loop reference in float64."""
    torch.manual_seed(13)
    rmc = RelationalMemory(input_size=3, **MATRIX_CASES[case], **PATHS[path]).double()
    _randomise(rmc)
    assert not rmc.uses_fused_path  # the fused function reads one input row: the fast path takes over
    x = torch.randn(4, 2, rmc.input_rows, 3, dtype=torch.float64)
    start = torch.randn(2, rmc.mem_slots, rmc.mem_size, dtype=torch.float64)
    outputs, final = rmc(x, start)
    expected_outputs, expected_final = _reference_run(rmc.cell, x, start)
    torch.testing.assert_close(outputs, expected_outputs, rtol=0, atol=1e-10)
    torch.testing.assert_close(final, expected_final, rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", ["unit gating", "two blocks", "no gating"])
def test_input_rows_fast_path_gradients_equal_the_straightforward_path(case):
    torch.manual_seed(14)
    slow = RelationalMemory(input_size=3, fast=False, batch_first=True, **MATRIX_CASES[case]).double()
    _randomise(slow)
    fast = RelationalMemory(input_size=3, batch_first=True, **MATRIX_CASES[case]).double()
    fast.load_state_dict(slow.state_dict())
    x = torch.randn(2, 5, slow.input_rows, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 3])
    results = []
    for module in (slow, fast):
        inputs = x.clone().requires_grad_(True)
        outputs, final = module(inputs, lengths=lengths)
        loss = (outputs * torch.linspace(-1, 1, outputs.numel(), dtype=x.dtype).view_as(outputs)).sum() + final.square().sum()
        results.append([outputs, final, *torch.autograd.grad(loss, [inputs, *module.parameters()])])
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("path", PATHS)
def test_one_input_row_gives_the_numbers_of_the_vector_input(path):
    """input_rows=1 has the parameters of the vector-input module and its numbers."""
    torch.manual_seed(15)
    vector = RelationalMemory(3, 3, 4, 2, **PATHS[path]).double()
    rows = RelationalMemory(3, 3, 4, 2, input_rows=1, **PATHS[path]).double()
    rows.load_state_dict(vector.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for got, expected in zip(rows(x.unsqueeze(2)), vector(x), strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_input_rows_shape_the_gate_and_the_attention_and_refuse_other_inputs():
    rmc = RelationalMemory(5, 3, 4, 2, input_rows=4)
    assert rmc.cell.gate_input.weight.shape == (2 * 8, 4 * 8)  # all R projected rows, flattened (as in Sonnet)
    assert "input_rows=4" in repr(rmc)
    assert count_parameters(rmc) == reference_parameter_count(5, 3, 4, num_heads=2, input_rows=4)
    with pytest.raises(ValueError, match=r"\(time, batch, input_rows, input_size\) with input_rows=4, input_size=5, got \(6, 2, 5\)"):
        rmc(torch.randn(6, 2, 5))
    with pytest.raises(ValueError, match=r"input_rows=4"):
        rmc(torch.randn(6, 2, 3, 5))
    with pytest.raises(ValueError, match=r"\(batch, input_rows=4, input_size=5\)"):
        rmc.cell(torch.randn(2, 5))
    output, memory = rmc.cell(torch.randn(2, 4, 5))
    assert output.shape == (2, 24) and memory.shape == (2, 3, 8)
    with pytest.raises(ValueError, match="attention='none' needs one input row"):
        RelationalMemory(5, 3, 4, input_rows=2, attention="none")
    with pytest.raises(ValueError, match="input_rows must be an integer >= 1"):
        RelationalMemory(5, 3, 4, input_rows=0)


# --- the constructor as torch users expect it ----------------------------------------------------


def test_the_readme_positional_order_works_and_equals_keywords():
    torch.manual_seed(16)
    positional = RelationalMemory(8, 2, 8, 2, 3, 0.5, -0.5, "memory", 3, 4)
    torch.manual_seed(16)
    keywords = RelationalMemory(input_size=8, mem_slots=2, head_size=8, num_heads=2, num_blocks=3, forget_bias=0.5,
                                input_bias=-0.5, gate_style="memory", attention_mlp_layers=3, key_size=4)  # fmt: skip
    assert repr(positional) == repr(keywords)
    for (name, a), (_, b) in zip(positional.state_dict().items(), keywords.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert RelationalMemory(8, 2, 8, 2).num_heads == 2


@pytest.mark.parametrize("module", [RelationalMemory, RelationalMemoryCell])
def test_a_misspelled_option_is_a_type_error_naming_the_class_called(module):
    with pytest.raises(TypeError, match=rf"^{module.__name__}.__init__\(\) got an unexpected keyword argument 'num_head'"):
        module(8, 2, 8, num_head=2)


@pytest.mark.parametrize("module", [RelationalMemory, RelationalMemoryCell])
def test_every_argument_is_in_the_signature_and_documented_under_args(module):
    doc = inspect.getdoc(module)
    entries = re.findall(r"^    (\w+(?:, \w+)*):", doc[doc.index("Args:") :], flags=re.MULTILINE)
    documented = [name for entry in entries for name in entry.split(", ")]
    assert documented == list(inspect.signature(module).parameters)  # each once, in the signature's order
    assert "spec/rmc.md" not in doc and "docs/core.md" in doc


def test_device_and_dtype_create_the_parameters_there():
    built = RelationalMemory(3, 2, 4, 2, num_blocks=2, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in built.parameters())
    assert built(torch.randn(4, 2, 3, dtype=torch.float64))[0].dtype == torch.float64
    assert built.initial_state(2).dtype == torch.float64
    on_meta = RelationalMemoryCell(3, 2, 4, 2, gate_style="memory", device="meta")
    assert all(p.device.type == "meta" for p in on_meta.parameters())
    # The same sizes and initialisation as a module built on the CPU and converted.
    torch.manual_seed(17)
    here = RelationalMemory(3, 2, 4, 2, device="cpu", dtype=torch.float32)
    torch.manual_seed(17)
    default = RelationalMemory(3, 2, 4, 2)
    for a, b in zip(here.parameters(), default.parameters(), strict=True):
        assert torch.equal(a, b)


def test_state_size_and_output_size_as_in_sonnet():
    rmc = RelationalMemory(3, 4, 8, 2)
    assert rmc.state_size == rmc.cell.state_size == torch.Size([4, 16])
    assert rmc.output_size == rmc.cell.output_size == 64
    assert rmc.initial_state(3).shape == (3, *rmc.state_size)
