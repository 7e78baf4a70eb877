"""Accuracy metrics for Learning to Execute, over real (unpadded) target characters only.

Each function takes ``logits_or_predictions``: logits [B, T, V] (floating
point; the arg-max is taken) or predicted ids [B, T] (integer), plus
``targets`` [B, T] and ``mask`` [B, T] (True on real target characters).
Padded positions never count, whatever is predicted there.
"""

from __future__ import annotations

import torch


def _predictions(logits_or_predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    x = logits_or_predictions
    if x.is_floating_point():
        if x.dim() != targets.dim() + 1:
            raise ValueError(
                f"logits must have shape [B, T, V] for targets {tuple(targets.shape)}, got {tuple(x.shape)}"
            )
        x = x.argmax(dim=-1)
    if x.shape != targets.shape:
        raise ValueError(f"predictions {tuple(x.shape)} and targets {tuple(targets.shape)} differ in shape")
    return x


def accuracy_counts(
    logits_or_predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> dict[str, int]:
    """Integer counts for accumulating over many batches:
    ``char_correct``, ``char_total`` (real characters), ``seq_correct``,
    ``seq_total`` (samples with at least one real character)."""
    pred = _predictions(logits_or_predictions, targets)
    mask = mask.to(torch.bool)
    if mask.shape != targets.shape:
        raise ValueError(f"mask {tuple(mask.shape)} and targets {tuple(targets.shape)} differ in shape")
    right = (pred == targets) & mask
    real = mask.any(dim=-1)
    seq_right = ((pred == targets) | ~mask).all(dim=-1) & real
    return {
        "char_correct": int(right.sum()),
        "char_total": int(mask.sum()),
        "seq_correct": int(seq_right.sum()),
        "seq_total": int(real.sum()),
    }


def char_accuracy(logits_or_predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of real target characters predicted right (nan when there are none)."""
    c = accuracy_counts(logits_or_predictions, targets, mask)
    return c["char_correct"] / c["char_total"] if c["char_total"] else float("nan")


def sequence_accuracy(logits_or_predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of samples whose real target characters are all right (nan when there are none)."""
    c = accuracy_counts(logits_or_predictions, targets, mask)
    return c["seq_correct"] / c["seq_total"] if c["seq_total"] else float("nan")
