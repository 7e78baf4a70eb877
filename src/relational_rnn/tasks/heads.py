"""Model pieces shared by several tasks."""

from __future__ import annotations

from torch import nn


def mlp_head(in_features: int, out_features: int, hidden: int = 256, layers: int = 4) -> nn.Sequential:
    """`layers` Linear(hidden) + ReLU (ReLU after every one), then a Linear to `out_features`.

    The paper's readout for N-th farthest and Learning to Execute (4 x 256); the final
    Linear gives raw logits for a cross-entropy that applies its own softmax.
    """
    modules: list[nn.Module] = []
    width = in_features
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    modules.append(nn.Linear(width, out_features))
    return nn.Sequential(*modules)
