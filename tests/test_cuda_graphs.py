"""CUDA graphs in `rrnn train` (`--cuda-graphs auto|on|off`): the decision, the wrapper's cache and
fallbacks (on the CPU, with a fake capture), the command line; and, on a GPU, graphed training
against eager training: outputs, gradients, metrics and resume."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from torch import nn

from relational_rnn.cli import main
from relational_rnn.config import ConfigError, RunConfig, TrainConfig
from relational_rnn.runs import build_run_config, train_run
from relational_rnn.tasks import get_task
from relational_rnn.tasks.lm.task import LMConfig
from relational_rnn.tasks.nth_farthest import NthFarthestConfig
from relational_rnn.train import read_metrics
from relational_rnn.train.cuda_graphs import GraphedModel, signature, use_cuda_graphs
from relational_rnn.train.distributed import unwrap

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
NTH, LTE, LM = get_task("nth-farthest"), get_task("lte"), get_task("lm")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

TINY = [("mem_slots", "2"), ("head_size", "4"), ("num_heads", "2"), ("num_vectors", "3"), ("vector_dim", "2"),
        ("batch_size", "16"), ("eval_samples", "64"), ("mlp_hidden", "16"), ("threads", "1"), ("progress", "false")]
TINY_CLI = ["--mem-slots", "2", "--head-size", "4", "--num-heads", "2", "--num-vectors", "3", "--vector-dim", "2",
            "--batch-size", "8", "--eval-samples", "32", "--mlp-hidden", "8", "--threads", "1"]


# -- the decision --------------------------------------------------------------------------------


@pytest.mark.parametrize("device", [CPU, CUDA])
def test_off_is_always_eager_and_silent(device):
    assert use_cuda_graphs("off", device, NTH, NthFarthestConfig(), False) == (False, None)
    assert use_cuda_graphs("off", device, LTE, LTE.config_type(), True) == (False, None)


def test_auto_captures_a_static_task_on_cuda_in_one_process():
    assert use_cuda_graphs("auto", CUDA, NTH, NthFarthestConfig(), False) == (True, None)
    assert use_cuda_graphs("auto", CUDA, LM, LMConfig(), False) == (True, None)
    assert use_cuda_graphs("on", CUDA, NTH, NthFarthestConfig(), False) == (True, None)


@pytest.mark.parametrize("task, config", [(NTH, NthFarthestConfig()), (LTE, LTE.config_type())])
def test_auto_on_the_cpu_is_eager_and_silent(task, config):
    assert use_cuda_graphs("auto", CPU, task, config, False) == (False, None)
    assert use_cuda_graphs("auto", CPU, task, config, True) == (False, None)


@pytest.mark.parametrize("task, config, reason", [
    (LTE, LTE.config_type(), "padded to its own longest program"),
    (LM, LMConfig(adaptive_softmax=True), "adaptive softmax"),
    (NTH, NthFarthestConfig(), "torchrun"),
])
def test_auto_on_cuda_says_in_one_line_why_it_stays_eager(task, config, reason):
    graphed, message = use_cuda_graphs("auto", CUDA, task, config, task is NTH)
    assert not graphed and reason in message and message.startswith("cuda graphs: off") and "\n" not in message


@pytest.mark.parametrize("device, task, config, distributed, reason", [
    (CPU, NTH, NthFarthestConfig(), False, "not CUDA"),
    (CUDA, LTE, LTE.config_type(), False, "the lte task cannot be captured"),
    (CUDA, LM, LMConfig(adaptive_softmax=True), False, "adaptive softmax"),
    (CUDA, NTH, NthFarthestConfig(), True, "torchrun"),
])
def test_on_where_it_is_impossible_is_a_config_error(device, task, config, distributed, reason):
    with pytest.raises(ConfigError, match=reason):
        use_cuda_graphs("on", device, task, config, distributed)


def test_every_task_declares_its_shapes():
    assert NTH.static_shapes and LM.static_shapes and not LTE.static_shapes
    assert LM.why_not_graphable(LMConfig()) is None and NTH.why_not_graphable(NthFarthestConfig()) is None
    try:
        pacman = get_task("pacman")
    except Exception:  # its extra is not installed
        return
    assert not pacman.static_shapes and "rollout" in pacman.why_not_graphable(pacman.config_type())


# -- the config ------------------------------------------------------------------------------------


def test_the_setting_is_validated():
    for value in ("auto", "on", "off"):
        TrainConfig(cuda_graphs=value).validate()
    with pytest.raises(ConfigError, match="cuda_graphs must be 'auto', 'on' or 'off'"):
        TrainConfig(cuda_graphs="yes").validate()
    assert build_run_config("nth-farthest", "cpu", [("cuda_graphs", "off")]).train.cuda_graphs == "off"
    assert TrainConfig().cuda_graphs == "auto"


def test_a_saved_config_from_before_the_setting_loads_with_auto():
    data = build_run_config("nth-farthest", "cpu", []).to_dict()
    del data["train"]["cuda_graphs"]
    assert RunConfig.from_dict(data, NthFarthestConfig).train.cuda_graphs == "auto"


def test_a_resume_may_change_the_setting_and_the_config_records_the_choice(tmp_path):
    def run(steps, graphs):
        return build_run_config("nth-farthest", "cpu", TINY + [("steps", str(steps)), ("eval_every", "2"), ("cuda_graphs", graphs)])

    train_run(run(4, "auto"), tmp_path / "whole")
    train_run(run(2, "off"), tmp_path / "parts")
    train_run(run(4, "auto"), tmp_path / "parts", resume=True)
    strip = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert strip(read_metrics(tmp_path / "parts" / "metrics.jsonl")) == strip(read_metrics(tmp_path / "whole" / "metrics.jsonl"))
    config = json.loads((tmp_path / "parts" / "config.json").read_text())
    assert config["train"]["cuda_graphs"] == "auto" and config["machine"]["cuda_graphs"] is False


# -- the wrapper, with a fake capture on the CPU ----------------------------------------------------


class FakeCapture:
    """Stands in for make_graphed_callables: records each capture; its callables count replays
    and run the module (so outputs and gradients are the eager ones)."""

    def __init__(self, fail: bool = False, draws: bool = False) -> None:
        self.captures, self.replays, self.fail, self.draws = [], 0, fail, draws

    def __call__(self, module, sample_args):
        if self.draws:
            torch.rand(3)  # as a capture's warm-up dropout would
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.captures.append(sample_args)

        def replay(*args):
            self.replays += 1
            return module(*args)

        return replay


class Carry(nn.Module):
    """An LM-like call: (inputs, a nested state) -> (output, new state)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, x, state):
        h, c = state
        return self.linear(x) + h, (h * 2, c + 1)


def test_one_capture_per_signature_then_replays():
    model, fake = nn.Linear(3, 2), FakeCapture()
    graphed = GraphedModel(model, build=fake)
    for _ in range(3):
        graphed(torch.randn(4, 3))
    graphed(torch.randn(5, 3))
    graphed(torch.randn(4, 3, requires_grad=True))
    graphed(torch.randn(4, 3, dtype=torch.float64).float())  # the same signature as the first
    assert len(fake.captures) == 3 and fake.replays == 6 and len(graphed.graphs) == 3


def test_nested_arguments_are_one_signature_and_outputs_are_copies():
    model, fake = Carry(), FakeCapture()
    graphed = GraphedModel(model, build=fake)
    state = (torch.zeros(2, 3), torch.zeros(2, 3))
    for _ in range(3):
        out, state = graphed(torch.randn(2, 3), state)
    assert len(fake.captures) == 1 and fake.replays == 3
    assert torch.equal(state[1], torch.full((2, 3), 3.0))
    x = torch.randn(2, 3)
    out = graphed(x, state)[0]
    assert torch.equal(out, model(x, state)[0])
    sample_x, sample_state = fake.captures[0]
    assert sample_x is not x and isinstance(sample_state, tuple) and len(sample_state) == 2


def test_sample_arguments_are_copies_with_the_calls_requires_grad():
    fake = FakeCapture()
    graphed = GraphedModel(nn.Linear(3, 2), build=fake)
    x = torch.randn(4, 3, requires_grad=True)
    graphed(x)
    (sample,) = fake.captures[0]
    assert sample is not x and torch.equal(sample, x) and sample.requires_grad and sample.grad_fn is None


def test_outputs_and_gradients_are_the_models():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    twin = copy.deepcopy(model)
    graphed = GraphedModel(model, build=FakeCapture())
    x = torch.randn(5, 3)
    graphed(x).pow(2).sum().backward()
    twin(x).pow(2).sum().backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad), name


def test_eval_mode_no_grad_keywords_and_non_tensors_run_eagerly(capsys):
    fake = FakeCapture()
    model = Carry()
    graphed = GraphedModel(model, build=fake)
    model.eval()  # the loop switches the model itself, not the wrapper
    graphed(torch.randn(2, 3), (torch.zeros(2, 3), torch.zeros(2, 3)))
    model.train()
    with torch.no_grad():
        graphed(torch.randn(2, 3), (torch.zeros(2, 3), torch.zeros(2, 3)))
    graphed(torch.randn(2, 3), state=(torch.zeros(2, 3), torch.zeros(2, 3)))
    graphed(torch.randn(2, 3), (torch.zeros(2, 3), 1.0))
    graphed(torch.randn(2, 3), (torch.zeros(2, 3), 1.0))
    assert fake.captures == [] and fake.replays == 0 and graphed.graphs == {}
    assert capsys.readouterr().err.count("non-tensor argument runs eagerly") == 1


def test_beyond_the_bound_eager_said_once(capsys):
    fake = FakeCapture()
    graphed = GraphedModel(nn.Linear(3, 2), build=fake, max_graphs=2)
    for rows in (1, 2, 3, 4, 3, 1):
        graphed(torch.randn(rows, 3))
    assert len(fake.captures) == 2 and fake.replays == 3  # rows 1, 2, then 1 again
    err = capsys.readouterr().err
    assert err.count("more than 2 input shapes") == 1 and len(err.strip().splitlines()) == 1


def test_a_failed_capture_runs_eagerly_or_raises_when_strict(capsys):
    model = nn.Linear(3, 2)
    graphed = GraphedModel(model, build=FakeCapture(fail=True))
    x = torch.randn(4, 3)
    assert torch.equal(graphed(x), model(x)) and torch.equal(graphed(x), model(x))
    err = capsys.readouterr().err
    assert err.count("capture failed") == 1 and "not permitted" in err
    with pytest.raises(RuntimeError, match="capturing the training step failed"):
        GraphedModel(model, build=FakeCapture(fail=True), strict=True)(x)


def test_a_capture_leaves_the_random_state_as_it_was():
    graphed = GraphedModel(nn.Linear(3, 2), build=FakeCapture(draws=True))
    x = torch.randn(4, 3)
    before = torch.get_rng_state()
    graphed(x)
    assert torch.equal(torch.get_rng_state(), before)


def test_state_dict_is_the_bare_models():
    model = Carry()
    graphed = GraphedModel(model, build=FakeCapture())
    assert list(graphed.state_dict()) == list(model.state_dict()) == ["linear.weight", "linear.bias"]
    other = Carry()
    graphed.load_state_dict(other.state_dict())
    assert torch.equal(model.linear.weight, other.linear.weight)
    assert list(graphed.parameters()) == list(model.parameters()) and unwrap(graphed) is model


def test_signature():
    a = torch.zeros(2, 3)
    assert signature((a, (a, a))) == signature((torch.ones(2, 3), (a, a))) != signature((a, [a, a]))
    assert signature((a, None)) is None and signature((a, 3)) is None


def test_the_loop_trains_through_the_wrapper_with_the_same_numbers_and_checkpoint(tmp_path, monkeypatch):
    """On the CPU, with the decision forced and a fake capture: the loop's wiring (the training
    steps call the wrapper, the rest the model), not the graphs themselves."""
    from relational_rnn.train import cuda_graphs, load_checkpoint, loop

    run = build_run_config("nth-farthest", "cpu", TINY + [("steps", "4"), ("eval_every", "2")])
    train_run(run, tmp_path / "eager")
    fake = FakeCapture()
    monkeypatch.setattr(loop, "use_cuda_graphs", lambda *args: (True, None))
    monkeypatch.setattr(cuda_graphs, "default_build", fake)
    train_run(run, tmp_path / "graphed")
    assert len(fake.captures) == 1 and fake.replays == 4
    assert _records(tmp_path / "graphed") == _records(tmp_path / "eager")
    eager, graphed = (load_checkpoint(tmp_path / name / "checkpoint.pt")["model"] for name in ("eager", "graphed"))
    assert list(graphed) == list(eager) and all(torch.equal(graphed[k], eager[k]) for k in eager)
    assert json.loads((tmp_path / "graphed" / "config.json").read_text())["machine"]["cuda_graphs"] is True


# -- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("value, message", [("on", "cuda_graphs 'on' is impossible here: the run is on cpu"),
                                            ("bad", "cuda_graphs must be 'auto', 'on' or 'off'")])
def test_impossible_or_unknown_settings_are_one_line_and_write_nothing(tmp_path, capsys, value, message):
    out = tmp_path / "run"
    code = main(["train", "nth-farthest", "--out", str(out), "--steps", "2", "--device", "cpu", "--cuda-graphs", value, *TINY_CLI])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


# -- on a GPU: graphed against eager ------------------------------------------------------------------


def _nth_task(device, **options):
    run = build_run_config("nth-farthest", "cpu", TINY + [(k, str(v)) for k, v in options.items()])
    return NTH(run.task, run.core, seed=0, device=device)


def _assert_steps_equal(tasks, models, steps, step_loss):
    """`steps` optimiser steps of each (task, model) pair; loss, every gradient and every weight equal."""
    optimizers = [torch.optim.Adam(model.parameters(), lr=1e-3) for model in models]
    for step in range(steps):
        losses = []
        for task, model, optimizer in zip(tasks, models, optimizers):
            optimizer.zero_grad(set_to_none=True)
            loss = step_loss(task, model, step)
            loss.backward()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
        plain, graphed = (unwrap(model) for model in models)
        for (name, p), q in zip(plain.named_parameters(), graphed.parameters()):
            assert (p.grad is None) == (q.grad is None), name
            if p.grad is not None:
                torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=f"step {step}: {name}")
        for optimizer in optimizers:
            optimizer.step()
    for p, q in zip(unwrap(models[0]).parameters(), unwrap(models[1]).parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


@needs_cuda
@pytest.mark.parametrize("core", ["rmc", "lstm"])
def test_graphed_nth_farthest_equals_eager_on_cuda(core):
    tasks = [_nth_task(CUDA, core=core, batch_size=64, num_vectors=4, vector_dim=4) for _ in range(2)]
    torch.manual_seed(0)
    eager = tasks[0].build_model().to(CUDA)
    torch.manual_seed(0)
    graphed = GraphedModel(tasks[1].build_model().to(CUDA), strict=True)  # (a deepcopy would unflatten cuDNN's weights)
    _assert_steps_equal(tasks, [eager, graphed], 5, lambda task, model, step: task.training_loss(model, step)[0])
    assert len(graphed.graphs) == 1


@pytest.fixture
def corpus_dir(tmp_path, monkeypatch):
    """A small corpus whose 4 training streams make 3 windows of 10 tokens and a shorter last one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "corpus"
    root.mkdir()
    rng = random.Random(0)
    words = "the of and a in to is was cat dog sat on mat ran far home".split()
    for split, lines in (("train", 30), ("valid", 10), ("test", 10)):
        (root / f"{split}.txt").write_text("\n".join(" ".join(rng.choices(words, k=4)) for _ in range(lines)) + "\n")
    return root


def _lm_options(corpus_dir, **extra):
    options = dict(data_dir=corpus_dir, embed_size=8, mem_slots=1, head_size=4, num_heads=2, bptt=10, batch_size=4,
                   eval_batch_size=2, dropout=0.0, eval_tokens=None, threads=1, progress=False)
    options.update(extra)
    return [(name, str(value)) for name, value in options.items()]


@needs_cuda
@pytest.mark.parametrize("core", ["rmc", "lstm"])
def test_graphed_lm_equals_eager_on_cuda_with_the_memory_carried(corpus_dir, core):
    run = build_run_config("lm", "cpu", _lm_options(corpus_dir, core=core))
    tasks = [LM(run.task, run.core, seed=0, device=CUDA) for _ in range(2)]
    torch.manual_seed(0)
    eager = tasks[0].build_model().to(CUDA)
    torch.manual_seed(0)
    graphed = GraphedModel(tasks[1].build_model().to(CUDA), strict=True)  # (a deepcopy would unflatten cuDNN's weights)
    windows = 4  # 37 tokens per stream: windows of 10, 10, 10 and 6
    _assert_steps_equal(tasks, [eager, graphed], windows + 2, lambda task, model, step: task.training_loss(model, step)[0])
    assert len(graphed.graphs) == 2  # the full windows and the shorter last one
    for a, b in zip(tasks[0].state_dict()["memory"], tasks[1].state_dict()["memory"]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def _records(path):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in read_metrics(path / "metrics.jsonl")]


@needs_cuda
def test_training_with_cuda_graphs_on_equals_off(tmp_path):
    def run(graphs):
        return build_run_config("nth-farthest", "cpu", TINY + [("steps", "8"), ("eval_every", "4"), ("device", "cuda"), ("cuda_graphs", graphs)])

    train_run(run("off"), tmp_path / "off")
    train_run(run("on"), tmp_path / "on")
    off, on = _records(tmp_path / "off"), _records(tmp_path / "on")
    assert [r["step"] for r in on] == [r["step"] for r in off] == [4, 8]
    for a, b in zip(off, on):  # an accuracy may differ by a sample or two where a logit's last bits do
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], abs=0.05 if "accuracy" in key else 1e-6, rel=0 if "accuracy" in key else 1e-4), key
    assert json.loads((tmp_path / "on" / "config.json").read_text())["machine"]["cuda_graphs"] is True
    assert json.loads((tmp_path / "off" / "config.json").read_text())["machine"]["cuda_graphs"] is False


@needs_cuda
def test_nth_farthest_resumed_with_cuda_graphs_equals_uninterrupted(tmp_path):
    def run(steps):
        return build_run_config("nth-farthest", "cpu", TINY + [("steps", str(steps)), ("eval_every", "2"), ("device", "cuda"), ("cuda_graphs", "on")])

    train_run(run(8), tmp_path / "whole")
    train_run(run(4), tmp_path / "parts")
    train_run(run(8), tmp_path / "parts", resume=True)
    assert _records(tmp_path / "parts") == _records(tmp_path / "whole")


@needs_cuda
def test_lm_with_dropout_resumed_with_cuda_graphs_equals_uninterrupted(corpus_dir, tmp_path):
    """Mid-pass (the memory comes from the checkpoint), with dropout: the resumed run captures
    again, and the capture's warm-up must not shift the random numbers the steps draw."""

    def run(steps):
        return build_run_config("lm", "cpu", _lm_options(corpus_dir, dropout=0.3, steps=steps, eval_every=3, device="cuda",
                                                         cuda_graphs="on"))

    train_run(run(6), tmp_path / "whole")
    train_run(run(3), tmp_path / "parts")
    train_run(run(6), tmp_path / "parts", resume=True)
    assert _records(tmp_path / "parts") == _records(tmp_path / "whole")
