"""The RMC's ablations (`attention`) and oracle binding (`slot_binding`) against the slow spec reference.

They are not the paper's model (docs/questions.md); these tests pin down that each does what
its name says on the straightforward and the fast path, and that the fused path hands them
to the fast path instead of running the paper's maths.
"""

import pytest
import torch

from relational_rnn import RelationalMemory, RelationalMemoryCell
from relational_rnn.cores import CoreConfig, build_core
from reference_rmc import reference_initial_memory, reference_step

SHAPES = {
    "one block": dict(mem_slots=3, head_size=4, num_heads=2),
    "two blocks, memory gating": dict(mem_slots=3, head_size=3, num_heads=2, num_blocks=2, gate_style="memory"),
    "no gating": dict(mem_slots=2, head_size=4, num_heads=2, gate_style=None),
}
VARIANTS = {
    "input-only": dict(attention="input-only"),
    "none": dict(attention="none"),
    "position binding": dict(slot_binding="position"),
    "input-only + position binding": dict(attention="input-only", slot_binding="position"),
}


def _randomise(module):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5)


@pytest.mark.parametrize("fast", [False, True], ids=["straightforward", "fast"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_matches_spec_reference(variant, shape, fast):
    torch.manual_seed(3)
    rmc = RelationalMemory(input_size=3, fast=fast, **SHAPES[shape], **VARIANTS[variant]).double()
    _randomise(rmc)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with torch.enable_grad():  # gradients on: the fast path would be fused for the paper's model
        outputs, final = rmc(x)
    memory = reference_initial_memory(2, rmc.mem_slots, rmc.mem_size)
    for t in range(5):
        memory = reference_step(rmc.cell, x[t], memory, step_index=t)
        torch.testing.assert_close(outputs[t], memory.flatten(1), rtol=0, atol=1e-10)
    torch.testing.assert_close(final, memory, rtol=0, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_differs_from_the_paper_model(variant):
    """The comparison above would pass vacuously if the options changed nothing."""
    torch.manual_seed(4)
    paper = RelationalMemory(input_size=3, **SHAPES["one block"]).double()
    _randomise(paper)
    ablated = RelationalMemory(input_size=3, **SHAPES["one block"], **VARIANTS[variant]).double()
    ablated.load_state_dict(paper.state_dict())
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    assert (paper(x)[0] - ablated(x)[0]).abs().max() > 1e-3


@pytest.mark.parametrize("fast", [False, True], ids=["straightforward", "fast"])
@pytest.mark.parametrize("attention", ["input-only", "none"])
def test_no_slot_reads_another_slot(attention, fast):
    """Without slot-to-slot attention (and without gating, which is per slot anyway), changing
    slot 1 of the memory leaves slot 0's next memory exactly as it was; with full attention it does not."""
    torch.manual_seed(5)
    options = dict(mem_slots=3, head_size=4, num_heads=2, gate_style=None)
    memory = torch.randn(2, 3, 8, dtype=torch.float64)
    changed = memory.clone()
    changed[:, 1] += 1.0
    x = torch.randn(1, 2, 3, dtype=torch.float64)
    for mode, independent in ((attention, True), ("full", False)):
        rmc = RelationalMemory(input_size=3, fast=fast, attention=mode, **options).double()
        _randomise(rmc)
        slot0 = rmc(x, memory)[1][:, 0]
        slot0_changed = rmc(x, changed)[1][:, 0]
        assert torch.equal(slot0, slot0_changed) == independent, mode


@pytest.mark.parametrize("fast", [False, True], ids=["straightforward", "fast"])
def test_position_binding_writes_only_slot_t_mod_n(fast):
    torch.manual_seed(6)
    rmc = RelationalMemory(input_size=3, fast=fast, mem_slots=3, head_size=4, num_heads=2, slot_binding="position")
    _randomise(rmc)
    x = torch.randn(7, 2, 3)
    outputs, _ = rmc(x)
    previous = rmc.initial_state(2).flatten(1)
    for t in range(7):
        now = outputs[t].view(2, 3, 8)
        before = previous.view(2, 3, 8)
        for slot in range(3):
            assert torch.equal(now[:, slot], before[:, slot]) == (slot != t % 3), (t, slot)
        previous = outputs[t]


def test_the_cell_needs_the_step_index_for_position_binding():
    cell = RelationalMemoryCell(3, mem_slots=2, head_size=4, slot_binding="position")
    with pytest.raises(ValueError, match="step_index"):
        cell(torch.randn(2, 3))
    output, memory = cell(torch.randn(2, 3), step_index=1)
    assert torch.equal(memory[:, 0], cell.initial_state(2)[:, 0])


@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_path_hands_variants_to_the_fast_path_with_gradients(variant):
    rmc = RelationalMemory(input_size=3, **SHAPES["one block"], **VARIANTS[variant])
    assert not rmc.uses_fused_path
    assert RelationalMemory(input_size=3, **SHAPES["one block"]).uses_fused_path
    x = torch.randn(4, 2, 3, requires_grad=True)
    rmc(x)[0].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("option, value", [("attention", "partial"), ("attention", None), ("slot_binding", "random")])
def test_bad_ablation_values_are_clear_errors(option, value):
    with pytest.raises(ValueError, match=option):
        RelationalMemory(3, 2, 4, **{option: value})


def test_core_config_carries_the_options_to_the_module():
    core = build_core(CoreConfig(attention="none", slot_binding="position", mem_slots=2, head_size=4, num_heads=2), input_size=3)
    assert core.cell.attention == "none" and core.cell.slot_binding == "position"
    assert "attention='none'" in repr(core) and "slot_binding='position'" in repr(core)
    default = build_core(CoreConfig(mem_slots=2, head_size=4, num_heads=2), input_size=3)
    assert default.cell.attention == "full" and default.cell.slot_binding == "learned"
