"""Tests for the Learning to Execute vocabulary, batch encoding and metrics."""

import random

import pytest
import torch

from relational_rnn.tasks.lte.encoding import (
    CHAR_TO_ID,
    EOS_ID,
    PAD_ID,
    VOCAB,
    decode,
    encode,
    encode_batch,
    vocab_size,
)
from relational_rnn.tasks.lte.metrics import accuracy_counts, char_accuracy, sequence_accuracy
from relational_rnn.tasks.lte.programs import TASKS, generate


def test_vocabulary_is_fixed_and_covers_all_tasks():
    assert PAD_ID == 0 and VOCAB[EOS_ID] == "."
    assert vocab_size == len(VOCAB) == len(set(VOCAB)) == 30
    assert VOCAB[2:12] == tuple("0123456789")
    rng = random.Random(0)
    used = set()
    for task in TASKS:
        for _ in range(300):
            p, t = generate(task, 3, 3, rng)
            used |= set(p) | set(t)
    assert used <= set(CHAR_TO_ID)
    assert used | {"."} == set(CHAR_TO_ID)  # every character is used by some task


def test_round_trip_padding_and_masks():
    rng = random.Random(1)
    pairs = [generate("program", rng.randint(1, 4), rng.randint(1, 3), rng) for _ in range(64)]
    b = encode_batch(pairs)
    assert b.inputs.dtype == b.targets.dtype == b.input_lengths.dtype == torch.long
    assert b.target_mask.dtype == torch.bool
    B = len(pairs)
    assert b.inputs.shape == (B, max(len(p) for p, _ in pairs))
    assert b.targets.shape == (B, max(len(t) for _, t in pairs))
    assert b.input_lengths.tolist() == [len(p) for p, _ in pairs]
    assert b.target_lengths.tolist() == [len(t) for _, t in pairs]
    assert len(set(b.input_lengths.tolist())) > 1 and len(set(b.target_lengths.tolist())) > 1
    for i, (p, t) in enumerate(pairs):
        assert decode(b.inputs[i]) == p
        assert decode(b.targets[i]) == t
        assert b.inputs[i, : len(p)].tolist() == encode(p)
        assert (b.inputs[i, len(p) :] == PAD_ID).all()
        assert (b.targets[i, len(t) :] == PAD_ID).all()
        assert b.target_mask[i].tolist() == [j < len(t) for j in range(b.targets.shape[1])]
        assert (b.inputs[i, : len(p)] != PAD_ID).all()
    assert decode(b.targets) == [t for _, t in pairs]
    assert decode(torch.tensor([5, 0, 0]), keep_pad=True) == "3__"


def test_eos_option():
    b = encode_batch([("12+3", "15"), ("1", "1")], eos=True)
    assert decode(b.inputs) == ["12+3.", "1."]
    assert decode(b.targets) == ["15.", "1."]
    assert b.input_lengths.tolist() == [5, 2]
    assert b.target_mask.tolist() == [[True, True, True], [True, True, False]]


def test_bad_characters_are_named():
    with pytest.raises(ValueError, match="'a'"):
        encode_batch([("12+3", "15"), ("1a", "1")])
    with pytest.raises(ValueError, match="' '"):
        encode_batch([("12 + 3", "15")])
    with pytest.raises(ValueError, match="'é'"):
        encode_batch([("12", "1é")])
    with pytest.raises(ValueError, match="'#'"):
        encode("1#")
    with pytest.raises(ValueError):
        encode_batch([])
    with pytest.raises(ValueError):
        decode([3, 99])


def test_batch_to_device():
    b = encode_batch([("1+2", "3")]).to("cpu")
    assert b.batch_size == len(b) == 1


# ---- metrics


def _targets():
    b = encode_batch([("1", "123"), ("1", "4"), ("1", "56")])
    return b.targets, b.target_mask


def test_metrics_ignore_padding():
    targets, mask = _targets()
    pred = targets.clone()
    pred[~mask] = 7  # every padded position wrong, every real one right
    assert char_accuracy(pred, targets, mask) == 1.0
    assert sequence_accuracy(pred, targets, mask) == 1.0
    logits = torch.nn.functional.one_hot(pred, vocab_size).float() * 5.0
    assert char_accuracy(logits, targets, mask) == 1.0
    assert sequence_accuracy(logits, targets, mask) == 1.0


def test_metrics_count_real_errors():
    targets, mask = _targets()
    pred = targets.clone()
    pred[0, 2] = PAD_ID  # one wrong character in sample 0 (of 6 real characters)
    assert char_accuracy(pred, targets, mask) == pytest.approx(5 / 6)
    assert sequence_accuracy(pred, targets, mask) == pytest.approx(2 / 3)
    assert accuracy_counts(pred, targets, mask) == {
        "char_correct": 5,
        "char_total": 6,
        "seq_correct": 2,
        "seq_total": 3,
    }
    with pytest.raises(ValueError):
        char_accuracy(pred[:, :2], targets, mask)
