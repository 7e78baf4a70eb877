"""Truncated-BPTT batching: streams, windows, sharding across processes, adaptive-softmax cut-offs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relational_rnn.tasks.lm import (
    Vocabulary,
    adaptive_cutoffs,
    batchify,
    bptt_windows,
    num_windows,
    shard_streams,
    window,
)


def test_batchify_cuts_contiguous_streams_and_drops_the_remainder():
    ids = torch.arange(103, dtype=torch.int32)
    s = batchify(ids, 4)
    assert s.shape == (4, 25) and s.dtype == torch.long
    for b in range(4):
        assert torch.equal(s[b], torch.arange(25 * b, 25 * (b + 1)))
    assert torch.equal(batchify(np.arange(10), 2), torch.arange(10).view(2, 5))
    assert torch.equal(batchify(list(range(10)), 1), torch.arange(10).view(1, 10))


@pytest.mark.parametrize("ids,b,match", [
    (torch.arange(7), 4, "cannot fill 4 streams"),
    (torch.arange(10), 0, "positive integer"),
    (torch.arange(10).view(2, 5), 2, "1-D"),
    (torch.rand(10), 2, "integers"),
])
def test_batchify_errors(ids, b, match):
    with pytest.raises(ValueError, match=match):
        batchify(ids, b)


@pytest.mark.parametrize("length,bptt", [(25, 5), (26, 5), (21, 5), (2, 7), (50, 1), (10, 100)])
def test_windows_shapes_and_concatenation_reproduces_each_stream(length, bptt):
    streams = batchify(torch.arange(3 * length) * 7 % 101, 3)
    wins = list(bptt_windows(streams, bptt))
    n = num_windows(streams, bptt)
    assert len(wins) == n == -(-(length - 1) // bptt)
    for k, (x, y) in enumerate(wins):
        assert x.shape == y.shape and x.shape[0] == 3 and x.is_contiguous() and y.is_contiguous()
        assert x.shape[1] == (bptt if k < n - 1 else length - 1 - (n - 1) * bptt)
        assert 1 <= x.shape[1] <= bptt
        assert torch.equal(y[:, :-1], x[:, 1:])
        wx, wy = window(streams, k, bptt)
        assert torch.equal(wx, x) and torch.equal(wy, y)
    assert torch.equal(torch.cat([x for x, _ in wins], 1), streams[:, :-1])
    assert torch.equal(torch.cat([y for _, y in wins], 1), streams[:, 1:])


def test_random_access_and_resume():
    streams = batchify(torch.arange(200), 4)  # 50 per stream -> 10 windows of 5 (49 targets)
    n = num_windows(streams, 5)
    assert n == 10
    assert torch.equal(window(streams, -1, 5)[0], window(streams, n - 1, 5)[0])
    resumed = list(bptt_windows(streams, 5, start=7))
    assert len(resumed) == 3 and torch.equal(resumed[0][0], window(streams, 7, 5)[0])
    assert list(bptt_windows(streams, 5, start=n)) == []
    with pytest.raises(IndexError, match="out of range"):
        window(streams, n, 5)
    with pytest.raises(IndexError):
        window(streams, -n - 1, 5)
    with pytest.raises(ValueError, match="start"):
        list(bptt_windows(streams, 5, start=n + 1))
    with pytest.raises(ValueError, match="bptt"):
        num_windows(streams, 0)


@pytest.mark.parametrize("world", [1, 2, 3, 6])
def test_shard_streams_covers_every_stream_exactly_once(world):
    streams = batchify(torch.arange(6 * 9), 6)
    shards = [shard_streams(streams, r, world) for r in range(world)]
    assert all(s.shape == (6 // world, 9) for s in shards)
    assert torch.equal(torch.cat(shards, 0), streams)
    # the per-token mean over equal shards equals the global mean (global batch fixed)
    per_rank = torch.stack([s.float().mean() for s in shards]).mean()
    assert torch.isclose(per_rank, streams.float().mean())


def test_shard_streams_errors():
    streams = batchify(torch.arange(60), 6)
    with pytest.raises(ValueError, match="6 streams does not divide by 4 processes"):
        shard_streams(streams, 0, 4)
    with pytest.raises(ValueError, match="rank"):
        shard_streams(streams, 2, 2)
    with pytest.raises(ValueError, match="world_size"):
        shard_streams(streams, 0, 0)


def test_adaptive_cutoffs_rule_and_validity():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(2000)]
    p = 1.0 / np.arange(1, 2001)
    text = rng.choice(words, size=(400, 50), p=p / p.sum())
    vocab = Vocabulary.build(" ".join(row) for row in text)
    counts = vocab.counts
    cut = adaptive_cutoffs(counts)
    assert cut == sorted(set(cut)) and all(1 <= c <= len(vocab) - 1 for c in cut) and len(cut) == 2
    coverage = (counts.cumsum(0).double() / counts.sum()).tolist()
    for c, f in zip(cut, (0.9, 0.98)):
        assert coverage[c - 1] >= f > (coverage[c - 2] if c >= 2 else 0.0)  # smallest such head
    torch.nn.AdaptiveLogSoftmaxWithLoss(64, len(vocab), cut)  # accepted as is
    assert adaptive_cutoffs(counts.numpy(), fractions=(0.5,)) == adaptive_cutoffs(counts.tolist(), fractions=(0.5,))


def test_adaptive_cutoffs_edge_cases():
    assert adaptive_cutoffs([10, 1, 1]) == [2]  # 0.98 would need all 3 words: an empty last cluster, dropped
    assert adaptive_cutoffs([5]) == []
    assert adaptive_cutoffs([100, 1, 1, 1], fractions=(0.5, 0.9)) == [1]  # duplicates removed
    with pytest.raises(ValueError, match="descending"):
        adaptive_cutoffs([1, 2, 3])
    with pytest.raises(ValueError, match="fractions"):
        adaptive_cutoffs([3, 2, 1], fractions=(0.9, 0.5))
    with pytest.raises(ValueError, match="positive total"):
        adaptive_cutoffs([0, 0])
