"""The Mini Pac-Man actor-critic task: agent, the rollout helper, state resets, training + exact resume, eval, play,
baselines, errors, and runs of the old environment."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from relational_rnn.cli import build_run_config, main
from relational_rnn.cores import CORES
from relational_rnn.envs import MiniPacman
from relational_rnn.tasks import get_task
from relational_rnn.tasks.pacman import PacmanTask, baseline_returns
from relational_rnn.train import evaluate_run, read_metrics, train
from relational_rnn.train.checkpoint import load_checkpoint

TINY = [("mem_slots", "2"), ("head_size", "4"), ("num_heads", "2"), ("embed_size", "8"), ("num_envs", "3"),
        ("unroll_length", "5"), ("eval_episodes", "2"), ("max_steps", "30"), ("threads", "1")]


def _run(obs="viewport", core="rmc", steps=4, eval_every=2, **extra):
    overrides = TINY + [("obs", obs), ("core", core), ("steps", str(steps)), ("eval_every", str(eval_every))]
    return build_run_config("pacman", "cpu", overrides + [(k, str(v)) for k, v in extra.items()])


def _task(run):
    torch.manual_seed(0)
    task = get_task("pacman")(run.task, run.core, seed=0, device=torch.device("cpu"))
    return task, task.build_model()


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.mark.parametrize("obs", ["full", "viewport"])
@pytest.mark.parametrize("core", list(CORES))
def test_agent_runs_with_every_core_and_both_observations(obs, core):
    task, model = _task(_run(obs, core))
    shape = (3, 15, 19) if obs == "full" else (3, 5, 5)
    assert tuple(task.obs.shape) == (3, *shape)
    logits, value, state = model(task.obs, model.initial_state(3))
    assert logits.shape == (3, 5) and value.shape == (3,)
    loss, info = task.training_loss(model, 0)
    loss.backward()
    assert torch.isfinite(loss) and {"policy_loss", "value_loss", "entropy"} <= set(info)
    assert all(p.grad is not None for p in model.conv.parameters())
    assert task.env_steps == 15


def test_equal_parameter_counts_between_cores():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    rmc = count(_task(_run(core="rmc"))[1])
    for core in CORES:
        assert abs(count(_task(_run(core=core))[1]) - rmc) / rmc < 0.05, core


@pytest.mark.parametrize("core", list(CORES))
def test_core_state_reset_where_an_episode_ended(core, monkeypatch):
    """An entry whose episode ended enters its next step with the initial state; the others keep theirs."""
    task, model = _task(_run(core=core, unroll_length=1))
    task.training_loss(model, 0)  # one step: every entry's state moves away from the initial one
    task.done = torch.tensor([True, False, True])  # as if entries 0 and 2 had just ended an episode
    carried = task.core_state
    seen = []
    forward = type(model).forward

    def spy(self, obs, state):
        seen.append(state)
        return forward(self, obs, state)

    monkeypatch.setattr(type(model), "forward", spy)
    task.training_loss(model, 1)
    initial = model.initial_state(3)
    parts = model.core.state_parts
    for got, fresh, old, batch_dim in zip(parts(seen[0]), parts(initial), parts(carried), model.core.state_batch_dims()):
        for entry in range(3):
            expected = fresh if entry in (0, 2) else old
            assert torch.equal(got.select(batch_dim, entry), expected.select(batch_dim, entry))
        assert not torch.equal(old.select(batch_dim, 1), fresh.select(batch_dim, 1))


def test_envs_reset_on_episode_end_and_returns_are_logged():
    task, model = _task(_run(max_steps=4, unroll_length=6))
    _, info = task.training_loss(model, 0)
    assert task.episodes >= 3 and "episode_return" in info  # every env hits the 4-step cap
    assert all(env._steps <= 4 for env in task.envs)


def test_the_planes_encoding_feeds_the_agent():
    task, model = _task(_run("full", encoding="planes"))
    assert tuple(task.obs.shape) == (3, 6, 15, 19)
    loss, _ = task.training_loss(model, 0)
    assert torch.isfinite(loss)


def test_env_snapshot_restores_exactly():
    env, twin = MiniPacman(obs="full"), MiniPacman(obs="full")
    env.reset(seed=3)
    twin.reset(seed=99)
    rng = np.random.default_rng(0)
    for a in rng.integers(5, size=7):
        env.step(int(a))
    twin.restore(env.snapshot())
    for a in rng.integers(5, size=200):
        out_a, out_b = env.step(int(a)), twin.step(int(a))
        assert np.array_equal(out_a[0], out_b[0]) and out_a[1:4] == out_b[1:4]
        if out_a[2] or out_a[3]:
            assert np.array_equal(env.reset()[0], twin.reset()[0])


def test_train_and_resume_through_the_loop_is_exact(tmp_path):
    whole = train(_run(steps=6, eval_every=2), tmp_path / "whole")
    train(_run(steps=4, eval_every=2), tmp_path / "part")
    state = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert state["task_state"]["env_steps"] == 4 * 15
    resumed = train(_run(steps=6, eval_every=2), tmp_path / "part", resume=True)
    assert _without_time([resumed]) == _without_time([whole])
    records = _without_time(read_metrics(tmp_path / "part" / "metrics.jsonl"))
    assert records == _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl"))
    assert [r["env_steps"] for r in records] == [30, 60, 90]
    assert {"episode_return", "episode_return_std", "loss", "train_entropy"} <= set(records[-1])


def test_eval_and_play_on_a_tiny_run(tmp_path, capsys):
    train(_run(steps=2, eval_every=2, max_steps=12), tmp_path / "run")
    capsys.readouterr()  # the training log
    first = evaluate_run(tmp_path / "run", episodes="3")
    again = evaluate_run(tmp_path / "run", episodes="3")
    assert first == again and first["eval_episodes"] == 3 and first["episode_length"] <= 12
    assert main(["eval", str(tmp_path / "run"), "--episodes", "2", "--policy", "greedy"]) == 0
    assert json.loads(capsys.readouterr().out)["eval_episodes"] == 2

    gif = tmp_path / "episode.gif"
    assert main(["play", str(tmp_path / "run"), "--out", str(gif), "--seed", "5"]) == 0
    played = json.loads(capsys.readouterr().out)
    with Image.open(gif) as image:
        assert 2 <= image.n_frames <= played["frames"]  # pillow merges identical consecutive frames


def test_baselines_are_deterministic():
    config = _run().task
    stay = baseline_returns(config, "stay", episodes=2)
    assert stay == baseline_returns(config, "stay", episodes=2) and len(stay["returns"]) == 2
    random = baseline_returns(config, "random", episodes=3)
    assert random == baseline_returns(config, "random", episodes=3) and random["episode_length"] <= 30


def test_one_rollout_loop_plays_each_episode_once_and_matches_a_plain_loop():
    """The helper without autoreset: each env plays exactly one episode, finished returns are the
    sums of its rewards, and a fixed policy gives what a hand-written loop gives."""
    from relational_rnn.tasks.pacman import EnvBatch, StayPolicy, rollout

    config = _run(max_steps=40).task
    seeds = [3, 4, 5, 6]
    batch = EnvBatch([config.make_env() for _ in seeds], seeds, autoreset=False)
    totals, finished = [0.0] * 4, {}
    for step in rollout(batch, StayPolicy()):
        for row, i in enumerate(step.rows):
            totals[i] += float(step.rewards[row])
        finished.update({i: (ret, length) for i, ret, length in step.finished})
    assert sorted(finished) == [0, 1, 2, 3] and not batch.live
    for i, seed in enumerate(seeds):
        env = config.make_env()
        env.reset(seed=seed)
        total, length, done = 0.0, 0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(0)
            total, length, done = total + reward, length + 1, terminated or truncated
        assert finished[i] == (pytest.approx(total), length) and totals[i] == pytest.approx(total)


def test_runs_of_the_old_environment_are_a_group_of_their_own_and_refuse_to_run(tmp_path, capsys):
    """A config.json without `rules` (written before the published rules) reads as rules=from-memory."""
    from relational_rnn.tasks.pacman import PacmanConfig

    train(_run(steps=1, eval_every=1, max_steps=5), tmp_path / "run")
    capsys.readouterr()
    config_path = tmp_path / "run" / "config.json"
    config = json.loads(config_path.read_text())
    assert config["task"]["rules"] == "published" and PacmanTask.results_group(config["task"]) == "viewport, rules=published"
    del config["task"]["rules"], config["task"]["encoding"]
    config_path.write_text(json.dumps(config))
    assert PacmanTask.results_group(PacmanConfig(**config["task"])) == "viewport, rules=from-memory"
    assert main(["eval", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "rules='from-memory', which this version no longer has" in err and len(err.splitlines()) == 1
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "docs")]) == 0  # still listed
    assert "viewport, rules=from-memory" in (tmp_path / "docs" / "results.md").read_text()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--obs", "partial"], "obs must be one of full, viewport, got 'partial'"),
        (["--mode", "chase"], "mode must be one of regular, avoid, hunt, ambush, rush, got 'chase'"),
        (["--num-envs", "0"], "num_envs must be >= 1"),
        (["--encoding", "gray"], "encoding must be one of rgb, planes, got 'gray'"),
        (["--rules", "from-memory"], "rules='from-memory', which this version no longer has"),
    ],
)
def test_bad_options_give_one_line_errors(tmp_path, capsys, argv, expected):
    assert main(["train", "pacman", "--out", str(tmp_path / "run"), "--steps", "1", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rrnn: error:") and expected in err and "\n" not in err


def test_bad_eval_options_and_play_on_other_tasks(tmp_path, capsys):
    train(_run(steps=1, eval_every=1, max_steps=5), tmp_path / "run")
    assert main(["eval", str(tmp_path / "run"), "--episodes", "zero"]) == 2
    assert "episodes must be an integer >= 1" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "run"), "--speed", "2"]) == 2
    assert "options are episodes, seed and policy" in capsys.readouterr().err
    assert main(["play", str(tmp_path / "run"), "--seed", "-1", "--out", str(tmp_path / "x.gif")]) == 2
    assert capsys.readouterr().err == "rrnn: error: seed must be an integer >= 0, got -1\n"  # not gymnasium's traceback
    assert not (tmp_path / "x.gif").exists()


def test_a_checkpoint_without_pacman_state_is_one_line(tmp_path, capsys):
    """As if another task's checkpoint (written before checkpoints named their task) were copied in."""
    from relational_rnn.train.checkpoint import save_checkpoint

    train(_run(steps=1, eval_every=1, max_steps=5), tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    del state["task_name"], state["format"]
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", state | {"task_state": {"curriculum": {}}})
    for command in (["eval"], ["play", "--out", str(tmp_path / "x.gif")], ["inspect", "--out", str(tmp_path / "pictures")]):
        assert main([command[0], str(tmp_path / "run"), *command[1:]]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rrnn: error: cannot restore the task state from ") and "(KeyError: 'envs')" in err
        assert len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_results_group_is_the_observation_and_the_rules():
    assert PacmanTask.results_group(_run("full").task) == "full, rules=published"
    assert PacmanTask.results_group({"obs": "viewport", "rules": "published"}) == "viewport, rules=published"
    assert PacmanTask.results_group({"obs": "viewport"}) == "viewport, rules=from-memory"  # an old run's config.json


def test_a_checkpoint_from_before_the_core_contract_still_loads():
    """Task state written when the core state was saved as a list of parts and a tuple flag."""
    task, model = _task(_run(core="lstm"))
    task.training_loss(model, 0)
    state = task.state_dict()
    state["core_state"], state["core_state_is_tuple"] = list(state["core_state"]), True
    twin, _ = _task(_run(core="lstm"))
    twin.load_state_dict(state)
    assert isinstance(twin.core_state, tuple) and all(torch.equal(a, b) for a, b in zip(twin.core_state, task.core_state))
