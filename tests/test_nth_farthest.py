"""The N-th farthest task: data exactly as specified, model shape, fixed evaluation set."""

import itertools

import torch

from relational_rnn.cores import CoreConfig
from relational_rnn.tasks.nth_farthest import NthFarthestConfig, NthFarthestTask, make_batch


def _brute_force_answer(vectors, labels, n, m):
    reference = vectors[labels.tolist().index(m)]
    distances = [((vector - reference) ** 2).sum().sqrt().item() for vector in vectors]
    order = sorted(range(len(vectors)), key=lambda i: -distances[i])  # farthest first
    return labels[order[n]].item()


def test_answers_match_a_brute_force_ranking():
    K, d = 5, 3
    inputs, answers = make_batch(K, d, 300, torch.Generator().manual_seed(0))
    assert inputs.shape == (300, K, d + 3 * K)
    for b in range(300):
        vectors = inputs[b, :, :d]
        labels = inputs[b, :, d : d + K].argmax(-1)
        n = inputs[b, 0, d + K : d + 2 * K].argmax().item()
        m = inputs[b, 0, d + 2 * K :].argmax().item()
        assert answers[b].item() == _brute_force_answer(vectors, labels, n, m)


def test_input_layout():
    K, d = 4, 2
    inputs, _ = make_batch(K, d, 500, torch.Generator().manual_seed(1))
    vectors, labels, n, m = inputs.split([d, K, K, K], dim=-1)
    assert vectors.min() >= -1 and vectors.max() < 1
    # labels: a permutation per sample (one-hot rows, every label once), not the time positions.
    assert torch.all(labels.sum(-1) == 1) and torch.all(labels.sum(1) == 1)
    assert not torch.all(labels.argmax(-1) == torch.arange(K))
    # n and m: the same one-hot on every row; every value in 0..K-1 occurs.
    assert torch.all(n == n[:, :1]) and torch.all(m == m[:, :1])
    assert set(n[:, 0].argmax(-1).tolist()) == set(range(K)) == set(m[:, 0].argmax(-1).tolist())
    # n = K-1 (the nearest) is the reference vector itself.
    nearest = n[:, 0].argmax(-1) == K - 1
    _, answers = make_batch(K, d, 500, torch.Generator().manual_seed(1))
    assert torch.all(answers[nearest] == m[nearest, 0].argmax(-1))


def _task(seed=0, core="rmc"):
    config = NthFarthestConfig(num_vectors=3, vector_dim=2, batch_size=8, eval_samples=50)
    return NthFarthestTask(config, CoreConfig(core=core, mem_slots=2, head_size=4, num_heads=2), seed, torch.device("cpu"))


def test_training_data_is_fresh_each_step_and_reproducible():
    task = _task()
    first, again, second = task.training_batch(0), task.training_batch(0), task.training_batch(1)
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], second[0])
    assert not torch.equal(_task(seed=1).training_batch(0)[0], first[0])
    # The evaluation set is the same whatever the training seed, and no training step repeats it.
    assert torch.equal(_task(seed=1).eval_inputs, task.eval_inputs)
    eval_seed = task.config.eval_seed
    assert not torch.equal(task.training_batch(eval_seed)[0][:, :, :2], task.eval_inputs[:8, :, :2])


def test_model_gives_raw_logits_and_evaluates_for_both_cores():
    for core in ("rmc", "lstm"):
        torch.manual_seed(0)
        task = _task(core=core)
        model = task.build_model()
        head_linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
        assert len(head_linears) == 5 and isinstance(model.head[-1], torch.nn.Linear)
        loss, _ = task.training_loss(model, 0)
        assert loss.ndim == 0 and loss.item() > 0
        results = task.evaluate(model)
        assert set(results) == {"loss", "accuracy"} and 0 <= results["accuracy"] <= 1
