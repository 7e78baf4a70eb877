"""The DeltaNet core: the delta rule by hand, the chunked form equal to the per-step one (float64,
1e-10, values and gradients), and its own checks (the rest: tests/test_core_contract.py)."""

import pytest
import torch
import torch.nn.functional as F

from relational_rnn.cores import CoreConfig, DeltaNetCore, build_core, deltanet
from relational_rnn.cores.deltanet import delta_rule_chunked, delta_rule_steps


def _inputs(batch=2, heads=3, steps=13, size=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    q, k = F.normalize(randn(batch, heads, steps, size), dim=-1), F.normalize(randn(batch, heads, steps, size), dim=-1)
    v = randn(batch, heads, steps, size)
    beta = torch.rand(batch, heads, steps, generator=generator, dtype=torch.float64)
    return q, k, v, beta, randn(batch, heads, size, size)


def test_the_per_step_form_is_the_delta_rule_written_out():
    q, k, v, beta, memory = _inputs(batch=1, heads=1, steps=5)
    outputs, final = delta_rule_steps(q, k, v, beta, memory)
    W = memory[0, 0].clone()
    for t in range(5):
        k_t, v_t = k[0, 0, t], v[0, 0, t]
        W = W + beta[0, 0, t] * torch.outer(v_t - W @ k_t, k_t)
        torch.testing.assert_close(outputs[0, 0, t], W @ q[0, 0, t], rtol=0, atol=1e-12)
    torch.testing.assert_close(final[0, 0], W, rtol=0, atol=1e-12)


def test_a_full_write_makes_the_key_read_back_its_value():
    """beta = 1 with a unit key: afterwards W k = v exactly (the rule replaces, not adds)."""
    q, k, v, beta, memory = _inputs(steps=1)
    _, final = delta_rule_steps(q, k, v, torch.ones_like(beta), memory)
    torch.testing.assert_close(torch.einsum("bhvk,bhk->bhv", final, k[:, :, 0]), v[:, :, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 13, 64])
def test_the_chunked_form_equals_the_per_step_form_values_and_gradients(chunk_size):
    inputs = [t.requires_grad_() for t in _inputs()]
    outputs, final = delta_rule_steps(*inputs)
    chunked_outputs, chunked_final = delta_rule_chunked(*inputs, chunk_size=chunk_size)
    torch.testing.assert_close(chunked_outputs, outputs, rtol=0, atol=1e-10)
    torch.testing.assert_close(chunked_final, final, rtol=0, atol=1e-10)
    weights = torch.randn_like(outputs)
    grads = torch.autograd.grad((outputs * weights).sum() + final.sum(), inputs)
    chunked_grads = torch.autograd.grad((chunked_outputs * weights).sum() + chunked_final.sum(), inputs)
    for a, b in zip(chunked_grads, grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_the_core_gives_the_same_numbers_chunked_or_step_by_step_with_lengths():
    torch.manual_seed(0)
    chunked = DeltaNetCore(3, 8, num_layers=2, num_heads=2, chunk_size=4).double()
    stepwise = DeltaNetCore(3, 8, num_layers=2, num_heads=2, chunk_size=None).double()
    stepwise.load_state_dict(chunked.state_dict())
    x, lengths = torch.randn(10, 3, 3, dtype=torch.float64), torch.tensor([10, 6, 1])
    state = torch.randn(2, 3, 2, 4, 4, dtype=torch.float64)
    for a, b in zip(chunked(x, state, lengths), stepwise(x, state, lengths)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_beta_lies_in_zero_one_and_keys_and_queries_are_unit_vectors(monkeypatch):
    seen = {}

    def spy(q, k, v, beta, memory, chunk_size):
        seen.update(q=q, k=k, beta=beta)
        return delta_rule_chunked(q, k, v, beta, memory, chunk_size)

    monkeypatch.setattr(deltanet, "delta_rule_chunked", spy)
    DeltaNetCore(3, 8, num_layers=1, num_heads=2)(torch.randn(5, 4, 3))
    assert ((seen["beta"] > 0) & (seen["beta"] < 1)).all()
    for name in ("q", "k"):
        torch.testing.assert_close(seen[name].norm(dim=-1), torch.ones(seen[name].shape[:-1]))


def test_config_fields_set_the_shape():
    core = build_core(CoreConfig(core="deltanet", deltanet_size=12, deltanet_layers=3, deltanet_heads=3, deltanet_mlp_size=7), 4)
    assert (core.model_size, core.num_layers, core.num_heads, core.head_size, core.mlp_size) == (12, 3, 3, 4, 7)
    assert core.initial_state(2).shape == (3, 2, 3, 4, 4)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        DeltaNetCore(3, 7, num_heads=2)
    with pytest.raises(ValueError, match="chunk_size"):
        DeltaNetCore(3, 8, num_heads=2, chunk_size=0)
    with pytest.raises(ValueError, match=r"\(2, 2, 2, 4, 4\)"):
        DeltaNetCore(3, 8, num_heads=2)(torch.randn(1, 2, 3), torch.zeros(2, 2, 2, 4))
