"""The windowed Transformer core: the same numbers as plain banded causal attention written out by
hand, the window's reach, and its state checks (the rest: tests/test_core_contract.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

from relational_rnn.cores import CoreConfig, TransformerCore, build_core


def _rotary(x, position):
    """Rotary embedding of one vector [..., d] at an integer position, written with complex numbers."""
    half = x.shape[-1] // 2
    frequencies = 10_000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
    turned = torch.complex(x[..., :half], x[..., half:]) * torch.exp(1j * position * frequencies)
    return torch.cat([turned.real, turned.imag], dim=-1)


def _by_hand(core, x):
    """x [B, T, I] from an empty cache: each step t attends to steps max(0, t - window) .. t."""
    h = core.input_projection(x)
    batch, steps, width = h.shape
    heads, size = core.num_heads, core.head_size
    for layer in core.layers:
        q, k, v = layer.qkv(layer.attention_norm(h)).view(batch, steps, 3, heads, size).unbind(2)
        rows = []
        for t in range(steps):
            seen = range(max(0, t - core.window), t + 1)
            query = _rotary(q[:, t], t)
            keys = torch.stack([_rotary(k[:, s], s) for s in seen], dim=2)  # [B, heads, S, size]
            scores = torch.einsum("bhd,bhsd->bhs", query, keys) / math.sqrt(size)
            values = torch.stack([v[:, s] for s in seen], dim=2)
            rows.append(torch.einsum("bhs,bhsd->bhd", scores.softmax(-1), values).reshape(batch, width))
        h = h + layer.out(torch.stack(rows, dim=1))
        h = h + layer.mlp(layer.mlp_norm(h))
    return core.final_norm(h)


@pytest.mark.parametrize("window", [1, 3, 20])
def test_equals_banded_causal_attention_with_rotary_positions_by_hand(window):
    torch.manual_seed(0)
    core = TransformerCore(3, 8, num_layers=2, num_heads=2, window=window, batch_first=True).double()
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    torch.testing.assert_close(core(x)[0], _by_hand(core, x), rtol=0, atol=1e-10)
    pieces, state = [], None  # one step at a time, as in RL
    for t in range(9):
        piece, state = core(x[:, t : t + 1], state)
        pieces.append(piece)
    torch.testing.assert_close(torch.cat(pieces, dim=1), _by_hand(core, x), rtol=0, atol=1e-10)


def test_one_layer_sees_exactly_the_window_before_each_step():
    torch.manual_seed(0)
    core = TransformerCore(3, 8, num_layers=1, num_heads=2, window=3, batch_first=True).double()
    x = torch.randn(1, 10, 3, dtype=torch.float64)
    base = core(x)[0][0, 8]
    for step, reaches in ((4, False), (5, True), (8, True)):  # step 8 sees steps 5..8
        changed = x.clone()
        changed[0, step] += 1.0
        assert (not torch.allclose(core(changed)[0][0, 8], base)) == reaches, step


def test_the_state_is_the_last_window_of_keys_and_values():
    core = TransformerCore(3, 8, num_layers=2, num_heads=2, window=4)
    keys, values, filled = core(torch.randn(2, 5, 3))[1]  # two steps: two of four slots filled
    assert keys.shape == values.shape == (2, 5, 2, 4, 4)
    assert filled.tolist() == [[False, False, True, True]] * 5
    assert core(torch.randn(7, 5, 3))[1][2].all()


def test_sdpa_does_the_attention(monkeypatch):
    calls = []
    original = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or original(*a, **k))
    TransformerCore(3, 8, num_layers=3, num_heads=2, window=2)(torch.randn(4, 2, 3))
    assert len(calls) == 3


def test_config_fields_set_the_shape():
    core = build_core(CoreConfig(core="transformer", transformer_size=16, transformer_layers=3, transformer_heads=2,
                                 transformer_window=5, transformer_mlp_size=10), 4)  # fmt: skip
    assert (core.model_size, core.num_layers, core.num_heads, core.window, core.mlp_size) == (16, 3, 2, 5, 10)
    assert core.output_size == 16


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="multiple of 2 \\* num_heads"):
        TransformerCore(3, 6, num_heads=2)
    with pytest.raises(ValueError, match="window"):
        TransformerCore(3, 8, num_heads=2, window=0)
    core = TransformerCore(3, 8, num_heads=2, window=4)
    with pytest.raises(ValueError, match="keys, values, filled"):
        core(torch.randn(2, 1, 3), torch.zeros(1))
    keys, values, filled = core.initial_state(2)
    with pytest.raises(ValueError, match="filled"):
        core(torch.randn(2, 2, 3), (keys, values, filled.float()))
