"""Truncated-BPTT batching for word-level language modelling.

A split's token ids (1-D) are cut into ``B`` contiguous *streams*
(``batchify``): stream ``b`` is tokens ``[b*L, (b+1)*L)`` with
``L = len(ids) // B``; the remainder is dropped. Streams are read left to right
in *windows* of ``bptt`` tokens (``bptt_windows``): window ``k`` has inputs
``streams[:, k*bptt : k*bptt+T]`` and targets shifted by one token, with
``T = bptt`` except possibly for the last window, which is shorter. Every
token but each stream's first is a target exactly once, so a model that
carries (and detaches) its memory from window to window sees each stream as
one unbroken sequence. ``window(streams, k, bptt)`` gives window ``k`` directly
so a resumed run can start there.

Under data parallelism the global batch of ``B`` streams stays fixed and each
of the ``world_size`` processes takes a contiguous share of
``B / world_size`` streams (``shard_streams``); averaged over the ranks, the
per-token loss and its gradient equal those of one process with all ``B``.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

DEFAULT_CUTOFF_FRACTIONS: tuple[float, ...] = (0.9, 0.98)


def batchify(ids: torch.Tensor | np.ndarray | Sequence[int], num_streams: int) -> torch.Tensor:
    """Cut 1-D ``ids`` into ``num_streams`` contiguous streams: a LongTensor ``[num_streams, L]``.

    ``L = len(ids) // num_streams`` (the last ``len(ids) % num_streams`` tokens
    are dropped) and must be at least 2 (one input and its target). When
    ``ids`` is already int64 the result is a view of it.
    """
    if isinstance(num_streams, bool) or not isinstance(num_streams, int) or num_streams < 1:
        raise ValueError(f"num_streams must be a positive integer, got {num_streams!r}")
    ids = torch.as_tensor(ids)
    if ids.dim() != 1:
        raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"ids must be integers, got {ids.dtype}")
    length = ids.numel() // num_streams
    if length < 2:
        raise ValueError(f"{ids.numel()} tokens cannot fill {num_streams} streams of at least 2 tokens")
    return ids[: num_streams * length].to(torch.long).view(num_streams, length)


def _check(streams: torch.Tensor, bptt: int) -> None:
    if not isinstance(streams, torch.Tensor) or streams.dim() != 2:
        raise ValueError(f"streams must be a 2-D tensor [num_streams, length], got {getattr(streams, 'shape', type(streams))}")
    if streams.size(1) < 2:
        raise ValueError(f"streams need at least 2 tokens each, got {streams.size(1)}")
    if isinstance(bptt, bool) or not isinstance(bptt, int) or bptt < 1:
        raise ValueError(f"bptt must be a positive integer, got {bptt!r}")


def num_windows(streams: torch.Tensor, bptt: int) -> int:
    """Number of windows of ``streams`` at ``bptt``: ``ceil((L - 1) / bptt)``."""
    _check(streams, bptt)
    return (streams.size(1) - 2) // bptt + 1


def window(streams: torch.Tensor, index: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Window ``index`` (negative counts from the end): ``(inputs, targets)``, each ``[B, T]``, contiguous.

    ``T = min(bptt, L - 1 - index * bptt)``; ``targets[:, t] == inputs[:, t + 1]``
    for ``t < T - 1`` and the last target is the next window's first input.
    Raises IndexError outside ``range(-n, n)``, ``n = num_windows(streams, bptt)``.
    """
    n = num_windows(streams, bptt)
    if not -n <= index < n:
        raise IndexError(f"window {index} out of range: {n} windows of bptt {bptt}")
    if index < 0:
        index += n
    start = index * bptt
    size = min(bptt, streams.size(1) - 1 - start)
    return (streams[:, start:start + size].contiguous(), streams[:, start + 1:start + 1 + size].contiguous())


def bptt_windows(streams: torch.Tensor, bptt: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield windows ``start, start + 1, ...`` of ``streams`` (see ``window``) in order."""
    n = num_windows(streams, bptt)
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= n:
        raise ValueError(f"start must be in 0..{n} (number of windows), got {start!r}")
    for k in range(start, n):
        yield window(streams, k, bptt)


def shard_streams(streams: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Process ``rank``'s contiguous share of the streams: rows ``[rank*b, (rank+1)*b)``, ``b = B / world_size``.

    The global batch ``B`` is fixed whatever ``world_size``; it must divide by
    ``world_size`` (ValueError otherwise). Returns a view.
    """
    if not isinstance(streams, torch.Tensor) or streams.dim() != 2:
        raise ValueError("streams must be a 2-D tensor [num_streams, length]")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank!r}")
    total = streams.size(0)
    if total % world_size:
        raise ValueError(
            f"the global batch of {total} streams does not divide by {world_size} processes; "
            f"choose a batch size that is a multiple of the world size"
        )
    per = total // world_size
    return streams[rank * per:(rank + 1) * per]


def adaptive_cutoffs(counts: torch.Tensor | np.ndarray | Sequence[int],
                     fractions: Sequence[float] = DEFAULT_CUTOFF_FRACTIONS) -> list[int]:
    """Adaptive-softmax cut-offs from word frequencies.

    ``counts[i]`` is the training frequency of id ``i``, and ids must be in
    descending frequency (as ``Vocabulary`` numbers them). The rule: cut-off
    ``k`` is the smallest ``n`` such that the ``n`` most frequent words cover at
    least ``fractions[k]`` of the training tokens. With the default (0.9, 0.98)
    the head holds the words that make up 90% of the tokens, the first tail
    cluster the next 8%, the last tail the rest (on WikiText-2: 7045 and
    21738 of 33278 words). Duplicates and cut-offs that would leave an empty
    last cluster are dropped, so the result is strictly ascending in
    ``1 .. len(counts) - 1``, as ``torch.nn.AdaptiveLogSoftmaxWithLoss``
    requires; it may be empty (tiny vocabularies), meaning "use a full softmax".
    """
    c = torch.as_tensor(counts).reshape(-1).to(torch.float64)
    if c.numel() == 0 or (c < 0).any() or c.sum() <= 0:
        raise ValueError("counts must be non-negative with a positive total")
    if (c[1:] > c[:-1]).any():
        raise ValueError("counts must be in descending order (ids sorted by frequency, as Vocabulary numbers them)")
    fr = [float(f) for f in fractions]
    if any(not 0.0 < f < 1.0 for f in fr) or any(b <= a for a, b in zip(fr, fr[1:])):
        raise ValueError(f"fractions must be strictly increasing within (0, 1), got {tuple(fractions)}")
    coverage = torch.cumsum(c, 0) / c.sum()
    cutoffs: list[int] = []
    for f in fr:
        # smallest n with coverage[n - 1] >= f (small tolerance for rounding in the cumulative sum)
        n = int(torch.searchsorted(coverage, torch.tensor([f - 1e-12], dtype=torch.float64)).item()) + 1
        if n < c.numel() and (not cutoffs or n > cutoffs[-1]):
            cutoffs.append(n)
    return cutoffs
