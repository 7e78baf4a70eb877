"""The N-th farthest task: data exactly as specified, model shape, fixed evaluation set, curriculum, resume, 2-process DDP."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from relational_rnn.cores import CoreConfig
from relational_rnn.tasks.nth_farthest import (
    QUESTIONS,
    NthFarthestConfig,
    NthFarthestTask,
    chance_and_plateau,
    make_batch,
    plateau_loss,
)
from relational_rnn.config import ConfigError
from relational_rnn.runs import build_run_config, train_run
from relational_rnn.train import read_metrics

from distributed_helpers import assert_same_training, default_dtype, train_in_two_processes


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


# --- question variants, checked against an independent NumPy computation ------------------------

def _numpy_answers(inputs, K, d, question):
    """Answers recomputed with NumPy from the inputs alone (vectors, labels, n, m)."""
    x = inputs.double().numpy()
    vectors, labels = x[:, :, :d], x[:, :, d : d + K].argmax(-1)
    n, m = x[:, 0, d + K : d + 2 * K].argmax(-1), x[:, 0, d + 2 * K :].argmax(-1)
    answers = []
    for b in range(len(x)):
        reference = vectors[b][list(labels[b]).index(m[b])]
        if question == "recall":
            answers.append(2 * int(reference[0] >= 0) + int(reference[1] >= 0))
            continue
        distances = np.sqrt(((vectors[b] - reference) ** 2).sum(-1))
        if question == "rank":  # Sonnet, June 2018: np.where(np.argsort(distances) == nth)[1][reference]
            answers.append(int(np.where(np.argsort(distances) == list(labels[b]).index(n[b]))[0][0]))
        else:
            answers.append(int(labels[b][np.argsort(-distances, kind="stable")[n[b]]]))
    return np.array(answers), n, m


@pytest.mark.parametrize("question", QUESTIONS)
@pytest.mark.parametrize("K, d", [(4, 4), (8, 16), (3, 2)])
def test_every_question_matches_numpy_on_thousands_of_samples(question, K, d):
    inputs, answers = make_batch(K, d, 3000, torch.Generator().manual_seed(7), question=question)
    expected, n, m = _numpy_answers(inputs, K, d, question)
    assert np.array_equal(answers.numpy(), expected)
    if question == "farthest":
        assert (n == 0).all()
    if question == "rank":
        assert (answers[torch.from_numpy(n == m)] == 0).all()  # the vector labelled m is rank 0 from itself
    classes = 4 if question == "recall" else K
    assert set(answers.tolist()) == set(range(classes))  # every answer occurs


def test_the_paper_question_is_the_default_and_unchanged():
    generator = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    default, explicit = make_batch(4, 4, 200, generator()), make_batch(4, 4, 200, generator(), question="paper")
    assert torch.equal(default[0], explicit[0]) and torch.equal(default[1], explicit[1])


@pytest.mark.parametrize("question", QUESTIONS)
def test_the_plateau_is_what_a_model_blind_to_the_vectors_reaches(question):
    """The best guess from n and m alone: measured on samples, against `chance_and_plateau`."""
    K = 4
    inputs, answers = make_batch(K, 4, 20000, torch.Generator().manual_seed(11), question=question)
    n, m = inputs[:, 0, 4 + K : 4 + 2 * K].argmax(-1), inputs[:, 0, 4 + 2 * K :].argmax(-1)
    correct = 0
    for key in set(zip(n.tolist(), m.tolist())):  # the most frequent answer per (n, m) is the best blind guess
        chosen = answers[(n == key[0]) & (m == key[1])]
        correct += torch.bincount(chosen).max().item()
    chance, plateau = chance_and_plateau(question, K)
    assert abs(correct / len(answers) - plateau) < 0.02
    assert chance <= plateau and plateau_loss(question, K) >= 0


def test_fewer_objects_keep_the_input_size():
    inputs, answers = make_batch(5, 3, 400, torch.Generator().manual_seed(2), objects=3)
    assert inputs.shape == (400, 3, 3 + 3 * 5)
    expected, _, _ = _numpy_answers(inputs, 5, 3, "paper")
    assert np.array_equal(answers.numpy(), expected) and answers.max() < 3


# --- curricula -----------------------------------------------------------------------------------

def test_curriculum_stages_and_validation():
    config = NthFarthestConfig(num_vectors=4, vector_dim=4, curriculum="objects")
    assert config.stages() == [(2, "paper"), (3, "paper"), (4, "paper")]
    config = NthFarthestConfig(num_vectors=3, vector_dim=2, curriculum="question")
    assert config.stages() == [(3, "recall"), (3, "farthest"), (3, "paper")] and config.num_classes == 4
    config = NthFarthestConfig(num_vectors=3, vector_dim=2, curriculum="farthest")
    assert config.stages() == [(3, "farthest"), (3, "paper")] and config.num_classes == 3
    for bad in (dict(question="nearest"), dict(curriculum="question", question="rank"), dict(curriculum="farthest", question="recall"), dict(question="recall", vector_dim=1),
                dict(curriculum="sometimes"), dict(curriculum_threshold=0.0), dict(curriculum="objects", curriculum_min_objects=9)):
        with pytest.raises(ConfigError):
            NthFarthestConfig(**bad).validate()


def test_curriculum_advances_on_the_training_accuracy_and_evaluates_the_final_question():
    config = NthFarthestConfig(num_vectors=4, vector_dim=2, batch_size=10, eval_samples=40, curriculum="question",
                               curriculum_every=2, curriculum_threshold=0.5)
    task = NthFarthestTask(config, CoreConfig(mem_slots=2, head_size=4, num_heads=2), 0, torch.device("cpu"))
    assert task.training_batch(0)[1].max() <= 3 and task.stage == 0
    task._update_curriculum(4, 10)  # half a check: nothing yet
    assert task.stage == 0
    task._update_curriculum(2, 10)  # 6/20 < 0.5: stays
    assert task.stage == 0
    task._update_curriculum(5, 10)
    task._update_curriculum(5, 10)  # 10/20: advances
    assert task.stage == 1 and (task.training_batch(0)[0][:, 0, 2 + 4 : 2 + 8].argmax(-1) == 0).all()  # farthest: n = 0
    assert torch.equal(task.eval_answers, make_batch(4, 2, 40, _eval_generator(config))[1])  # the test asks the paper question
    restored = NthFarthestTask(config, CoreConfig(mem_slots=2, head_size=4, num_heads=2), 0, torch.device("cpu"))
    restored.load_state_dict(task.state_dict())
    assert restored.stage == 1 and torch.equal(restored.training_batch(5)[0], task.training_batch(5)[0])
    with pytest.raises(ConfigError, match="curriculum stage"):
        restored.load_state_dict({"curriculum_stage": 7})


def _eval_generator(config):
    from relational_rnn.tasks.nth_farthest import stream_seed

    return torch.Generator().manual_seed(stream_seed("nth-farthest-eval", config.eval_seed))


def _curriculum_cli(out_dir, steps):
    options = {"steps": steps, "eval-every": 10, "checkpoint-every": 3, "mem-slots": 2, "head-size": 4, "num-heads": 2,
               "num-vectors": 3, "vector-dim": 2, "batch-size": 16, "eval-samples": 64, "mlp-hidden": 16, "threads": 1,
               "curriculum": "objects", "curriculum-every": 2, "curriculum-threshold": 0.3, "lr": 3e-3}
    args = [token for name, value in options.items() for token in (f"--{name}", str(value))]
    return [sys.executable, "-m", "relational_rnn.cli", "train", "nth-farthest", "--out", str(out_dir), *args]


def test_curriculum_run_killed_at_any_moment_resumes_exactly(tmp_path):
    steps = 80
    subprocess.run(_curriculum_cli(tmp_path / "whole", steps), check=True, capture_output=True)
    expected = [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(tmp_path / "whole" / "metrics.jsonl")]
    assert expected[-1]["curriculum_stage"] == 1 and expected[0]["curriculum_stage"] <= 1  # it advanced (K=3: 2 stages)

    victim = subprocess.Popen(_curriculum_cli(tmp_path / "killed", steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics_file = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and len(read_metrics(metrics_file)) < 2:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert read_metrics(metrics_file)[-1]["step"] < steps, "the run finished before it could be killed"
    subprocess.run(_curriculum_cli(tmp_path / "killed", steps) + ["--resume"], check=True, capture_output=True)
    resumed = [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(metrics_file)]
    assert resumed == expected


def test_two_processes_train_as_one_with_the_same_global_batch(tmp_path):
    """2 gloo processes, 8 of the 16 samples each, stopped after step 3 and resumed: the same
    evaluations, training accuracy, curriculum and weights as one process (float rounding aside).
    The curriculum's check at step 4 counts both ranks' answers, and the checkpoint at step 6 holds
    two steps of the next window: equal task states mean every rank counted the whole batch."""
    options = [(name, str(value)) for name, value in dict(
        steps=6, eval_every=3, mem_slots=2, head_size=4, num_heads=2, num_vectors=3, vector_dim=2, batch_size=16,
        eval_samples=64, mlp_hidden=16, curriculum="objects", curriculum_every=4, curriculum_threshold=0.3, lr=3e-3,
        threads=1, progress=False).items()]
    with default_dtype(torch.float64):  # float64: rounding noise stays far below Adam's eps (distributed_helpers)
        train_run(build_run_config("nth-farthest", "cpu", options), tmp_path / "single")
    train_in_two_processes("nth-farthest", options, tmp_path / "ddp", stop_at=3, dtype=torch.float64)
    keys = ("loss", "accuracy", "train_loss", "train_accuracy", "curriculum_stage")
    single, ddp = assert_same_training(tmp_path / "single", tmp_path / "ddp", keys, rel=1e-9, rtol=1e-9, atol=1e-9)
    assert ddp["task_state"] == single["task_state"] == {"curriculum_stage": 1, "curriculum_window": [single["task_state"]["curriculum_window"][0], 32]}
    # A checkpoint holds no per-rank state: the 2-process run continues in one process as the 1-process run does.
    longer = [*options, ("steps", "8")]
    with default_dtype(torch.float64):
        for run in ("single", "ddp"):
            assert train_run(build_run_config("nth-farthest", "cpu", longer), tmp_path / run, resume=True)["step"] == 8
    assert_same_training(tmp_path / "single", tmp_path / "ddp", keys, rel=1e-9, rtol=1e-9, atol=1e-9)


def test_a_global_batch_the_processes_cannot_share_is_one_clear_error(monkeypatch):
    from relational_rnn.train import distributed

    monkeypatch.setattr(distributed, "world", lambda: (1, 3))
    with pytest.raises(ConfigError, match="^the global batch_size 8 does not divide by the 3 processes; choose a multiple of 3$"):
        _task()
    assert distributed.shard_rows(9) == slice(3, 6)  # rank 1 of 3
