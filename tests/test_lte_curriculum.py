"""Tests for the Learning to Execute curricula and data source."""

import copy
import random
from collections import Counter

import numpy as np
import pytest
import torch

from relational_rnn.tasks.lte.curriculum import (
    CURRICULA,
    CombinedCurriculum,
    LTEData,
    NaiveCurriculum,
    make_curriculum,
)
from relational_rnn.tasks.lte.encoding import decode
from relational_rnn.tasks.lte.programs import parse


def test_make_curriculum_and_unknown_name():
    for name in CURRICULA:
        c = make_curriculum(name, 5, 2)
        assert c.name == name and name in c.describe()
    with pytest.raises(ValueError, match="unknown curriculum 'fancy'"):
        make_curriculum("fancy", 5, 2)
    with pytest.raises(ValueError):
        make_curriculum("mix", 0, 2)


def test_baseline_is_constant():
    c = make_curriculum("baseline", 5, 2)
    rng = random.Random(0)
    assert {c.sample(rng) for _ in range(50)} == {(5, 2)}
    assert c.update(1.0) is False


@pytest.mark.parametrize("rng", [random.Random(0), np.random.default_rng(0)], ids=["random", "numpy"])
def test_mix_covers_the_ranges_uniformly(rng):
    c = make_curriculum("mix", 5, 3)
    counts = Counter(c.sample(rng) for _ in range(6000))
    assert set(counts) == {(l, n) for l in range(1, 6) for n in range(1, 4)}
    assert min(counts.values()) > 6000 / 15 * 0.7
    assert c.update(1.0) is False


def test_naive_advances_on_the_signal():
    c = make_curriculum("naive", 3, 2, threshold=0.9)
    rng = random.Random(0)
    assert c.sample(rng) == (1, 1)
    assert c.update(0.5) is False and c.level == (1, 1)
    levels = []
    for _ in range(10):
        if c.update(0.95):
            levels.append(c.level)
    assert levels == [(2, 1), (3, 1), (3, 2)]
    assert c.finished and c.update(1.0) is False
    assert {c.sample(rng) for _ in range(10)} == {(3, 2)}


def test_naive_patience_and_state_round_trip():
    c = NaiveCurriculum(4, 2, threshold=0.8, patience=2)
    assert c.update(0.9) is False
    assert c.update(0.7) is False  # streak broken
    assert c.update(0.9) is False
    state = copy.deepcopy(c.state_dict())
    assert c.update(0.9) is True and c.level == (2, 1)

    d = make_curriculum("naive", 4, 2, threshold=0.8, patience=2)
    d.load_state_dict(state)  # mid-streak: the next success advances, exactly as in c
    assert d.level == (1, 1) and d.update(0.9) is True and d.state_dict() == c.state_dict()
    assert d.describe() == c.describe()

    with pytest.raises(ValueError):
        make_curriculum("naive", 5, 2).load_state_dict(state)  # other maxima
    with pytest.raises(ValueError):
        make_curriculum("combined", 4, 2).load_state_dict(state)  # other curriculum


def test_combined_mixes_naive_level_and_mix():
    c = CombinedCurriculum(5, 2, threshold=0.9, mix_prob=0.5)
    rng = random.Random(3)
    draws = [c.sample(rng) for _ in range(4000)]
    at_level = sum(d == (1, 1) for d in draws) / len(draws)
    assert 0.5 < at_level < 0.6  # 0.5 naive + 0.5 * 1/10 from mix
    assert set(draws) == {(l, n) for l in range(1, 6) for n in (1, 2)}
    assert c.update(0.95) is True and c.level == (2, 1)
    e = make_curriculum("combined", 5, 2)
    e.load_state_dict(c.state_dict())
    assert e.state_dict() == c.state_dict()
    assert CombinedCurriculum(5, 2, mix_prob=0.0).sample(rng) == (1, 1)


def test_train_batches_are_a_pure_function_of_seed_step_and_state():
    data = LTEData("program", 4, 2, "mix", batch_size=16)
    a = data.train_batch(step=10, seed=1)
    b = data.train_batch(step=10, seed=1)
    for name in ("inputs", "input_lengths", "targets", "target_mask"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert data.train_pairs(11, 1) != data.train_pairs(10, 1)
    assert data.train_pairs(10, 2) != data.train_pairs(10, 1)
    # a "resumed" data source with the same curriculum state gives the same batch
    naive = LTEData("addition", 4, 2, "naive", batch_size=8)
    naive.curriculum.update(1.0)
    resumed = LTEData("addition", 4, 2, "naive", batch_size=8)
    resumed.load_state_dict(naive.state_dict())
    assert resumed.train_pairs(5, 0) == naive.train_pairs(5, 0)
    assert all(len(parse(p)[1][1]) == 2 for p, _ in naive.train_pairs(5, 0))  # level (2, 1)


def test_eval_set_is_fixed_and_at_full_difficulty():
    data = LTEData("control", 3, 2, "naive", batch_size=32)
    batches = data.eval_set(100, seed=0)
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    again = data.eval_set(100, seed=0, batch_size=50)
    programs = [p for b in batches for p in decode(b.inputs)]
    assert programs == [p for b in again for p in decode(b.inputs)]
    assert programs == [p for p, _ in data.eval_pairs(100, 0)]
    assert programs != [p for b in data.eval_set(100, seed=1) for p in decode(b.inputs)]
    for p in programs:
        tree = parse(p)
        assert tree[0] in ("if", "for") and tree[1][0] in ("if", "for")  # nesting 2
    # the training curriculum (naive, at (1, 1)) does not change the evaluation set
    assert data.curriculum.level == (1, 1)


def test_data_source_validation():
    with pytest.raises(ValueError):
        LTEData("sorting", 3, 2, "mix", 8)
    with pytest.raises(ValueError):
        LTEData("copy", 3, 2, "mixed", 8)
    with pytest.raises(ValueError):
        LTEData("copy", 3, 2, make_curriculum("mix", 4, 2), 8)
    d = LTEData("double", 3, 1, "baseline", 4)
    assert decode(d.train_batch(0, 0).targets) == [t for _, t in d.train_pairs(0, 0)]
    assert "double" in d.describe()
