"""The Mini Pac-Man actor-critic task: agent, the rollout helper, state resets, A2C and PPO (GAE, the clipped losses,
the replay from the stored state, the update schedule), training + exact resume for both, A2C's numbers kept, eval,
play, baselines, errors, and runs of the old environment."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from relational_rnn.cli import main
from relational_rnn.cores import CORES
from relational_rnn.envs import MiniPacman
from relational_rnn.runs import build_run_config, evaluate_run, train_run
from relational_rnn.tasks import get_task
from relational_rnn.tasks.pacman import PacmanTask, baseline_returns
from relational_rnn.train import read_metrics
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


PPO = {"algo": "ppo", "num_minibatches": 3, "update_epochs": 2}  # with TINY's 3 envs: minibatches of one env


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


@pytest.mark.parametrize("algo", [{}, PPO], ids=["a2c", "ppo"])
def test_train_and_resume_through_the_loop_is_exact(tmp_path, algo):
    """6 steps straight equal 4 steps, then --resume to 6: the same metrics, weights and optimiser state, bit for bit."""
    whole = train_run(_run(steps=6, eval_every=2, **algo), tmp_path / "whole")
    train_run(_run(steps=4, eval_every=2, **algo), tmp_path / "part")
    state = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert state["task_state"]["env_steps"] == 4 * 15
    resumed = train_run(_run(steps=6, eval_every=2, **algo), tmp_path / "part", resume=True)
    assert _without_time([resumed]) == _without_time([whole])
    records = _without_time(read_metrics(tmp_path / "part" / "metrics.jsonl"))
    assert records == _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl"))
    assert [r["env_steps"] for r in records] == [30, 60, 90]
    assert {"episode_return", "episode_return_std", "loss", "train_entropy"} <= set(records[-1])
    ends = [load_checkpoint(tmp_path / name / "checkpoint.pt") for name in ("whole", "part")]
    for name, weights in ends[0]["model"].items():
        assert torch.equal(weights, ends[1]["model"][name]), name
    moments = [[s["exp_avg_sq"] for s in end["optimizer"]["state"].values()] for end in ends]
    assert all(torch.equal(a, b) for a, b in zip(*moments)) and len(moments[0]) == len(ends[0]["model"])


# A2C's numbers as the code gave them before PPO and the loop's train_step hook were added (recorded
# with torch 2.13.0+cpu on this project's machines; another build may round differently): per
# evaluation (train_loss, eval loss) of `_run(core="lstm", steps=3, eval_every=1)`, and the sum of its
# final weights. The LSTM (torch's own nn.LSTM) keeps the record about the task's code: the A2C path is
# the same for every core, and the RMC's fused path rounds differently whenever it is optimised.
A2C_BEFORE_PPO = {
    "lstm": ([(1.4155515432357788, 10.498545559405462), (0.8841497302055359, 10.46647175253406),
              (0.6791581511497498, 10.437253163413867)], -14.02871754404623),
}


@pytest.mark.skipif(torch.__version__ != "2.13.0+cpu", reason="the numbers were recorded with torch 2.13.0+cpu")
@pytest.mark.parametrize("core", sorted(A2C_BEFORE_PPO))
def test_a2c_numbers_are_those_from_before_ppo(tmp_path, core):
    """The default algorithm is untouched by the PPO work: the same losses and weights, bit for bit."""
    train_run(_run(core=core, steps=3, eval_every=1), tmp_path / "run")
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    weights = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    losses, weight_sum = A2C_BEFORE_PPO[core]
    assert [(r["train_loss"], r["loss"]) for r in records] == losses
    assert float(sum(w.double().sum() for w in weights.values())) == weight_sum


def test_generalized_advantages_on_a_hand_computed_example():
    """Two envs, three steps, an episode end after env 0's second step; discount 0.5, lambda 0.5.

    env 0: delta_2 = 3 + 0.5 * 4 - 2 = 3, A_2 = 3; step 1 ended the episode: delta_1 = 0 - 1 = -1, A_1 = -1;
           delta_0 = 1 + 0.5 * 1 - 0.5 = 1, A_0 = 1 + 0.25 * (-1) = 0.75.
    env 1: delta_2 = 1 + 0.5 * 2 - 1 = 1, A_2 = 1; delta_1 = 2 + 0.5 * 1 - 0.5 = 2, A_1 = 2 + 0.25 * 1 = 2.25;
           delta_0 = 0 + 0.5 * 0.5 - 1 = -0.75, A_0 = -0.75 + 0.25 * 2.25 = -0.1875."""
    from relational_rnn.tasks.pacman import generalized_advantages

    rewards = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    values = torch.tensor([[0.5, 1.0], [1.0, 0.5], [2.0, 1.0]])
    dones = torch.tensor([[False, False], [True, False], [False, False]])
    advantages, returns = generalized_advantages(rewards, values, dones, torch.tensor([4.0, 2.0]), 0.5, 0.5)
    assert torch.equal(advantages, torch.tensor([[0.75, -0.1875], [-1.0, 2.25], [3.0, 1.0]]))
    assert torch.equal(returns, advantages + values)


def test_generalized_advantages_with_lambda_one_are_the_n_step_advantages():
    """lambda = 1: the targets are A2C's n-step returns (and lambda = 0: one-step TD errors)."""
    from relational_rnn.tasks.pacman import discounted_returns, generalized_advantages

    generator = torch.Generator().manual_seed(0)
    rewards, values = torch.rand(7, 4, generator=generator), torch.rand(7, 4, generator=generator)
    dones, bootstrap = torch.rand(7, 4, generator=generator) < 0.3, torch.rand(4, generator=generator)
    _, returns = generalized_advantages(rewards, values, dones, bootstrap, 0.9, 1.0)
    assert torch.allclose(returns, discounted_returns(rewards, dones, bootstrap, 0.9), atol=1e-6)
    advantages, _ = generalized_advantages(rewards, values, dones, bootstrap, 0.9, 0.0)
    next_values = torch.cat([values[1:], bootstrap[None]])
    assert torch.allclose(advantages, rewards + 0.9 * (~dones).float() * next_values - values, atol=1e-6)


def test_the_clipped_policy_loss_on_a_hand_computed_example():
    """Ratios 0.5, 1, 1.5, 1.5 with advantages 1, 1, 1, -1 and clip 0.2: per entry max(-A r, -A clip(r, 0.8, 1.2))
    = -0.5 (below the range with A > 0: unclipped), -1, -1.2 (clipped: no gradient), 1.5 (A < 0: unclipped)."""
    from relational_rnn.tasks.pacman import clipped_policy_loss

    log_probs = torch.log(torch.tensor([0.5, 1.0, 1.5, 1.5])).requires_grad_()
    loss = clipped_policy_loss(log_probs, torch.zeros(4), torch.tensor([1.0, 1.0, 1.0, -1.0]), 0.2)
    assert loss.item() == pytest.approx((-0.5 - 1.0 - 1.2 + 1.5) / 4)
    loss.backward()  # d/d log_prob of -A r / 4 is -A r / 4 where unclipped, 0 where the clipped term is the max
    assert log_probs.grad.tolist() == pytest.approx([-0.125, -0.25, 0.0, 0.375])


def test_the_value_loss_clipped_and_not():
    """Values 1 and 3 around old values 2, targets 0, clip 0.5: held values 1.5 and 2.5; per entry the larger
    squared error: max(1, 2.25) and max(9, 6.25); half their mean 2.8125 (unclipped: half of (1 + 9) / 2)."""
    from relational_rnn.tasks.pacman import value_loss

    values, returns, old = torch.tensor([1.0, 3.0]), torch.zeros(2), torch.tensor([2.0, 2.0])
    assert value_loss(values, returns).item() == 2.5
    assert value_loss(values, returns, old, 0.5).item() == 2.8125


@pytest.mark.parametrize("core", list(CORES))
def test_ppo_replay_from_the_stored_state_gives_the_rollout_again(core):
    """A minibatch of envs replayed from the unroll's start state (select_state, reset_state on the stored
    flags, episodes ending inside the unroll) gives the collected logits and values: PPO's first ratios are 1."""
    task, model = _task(_run(core=core, max_steps=4, unroll_length=10, **PPO))
    task._unroll(model, grad=False)  # a first unroll, so the second starts from a carried, non-initial state
    steps, start = task._unroll(model, grad=False)
    resets = torch.stack([taken.resets for taken in steps])
    assert resets.any() and not resets.all()
    envs = torch.tensor([2, 0])
    with torch.no_grad():
        obs = torch.stack([taken.obs for taken in steps])[:, envs]
        logits, values = model.replay(obs, resets[:, envs], model.core.select_state(start, envs))
    assert torch.allclose(logits, torch.stack([taken.logits for taken in steps])[:, envs], atol=1e-5)
    assert torch.allclose(values, torch.stack([taken.values for taken in steps])[:, envs], atol=1e-5)


def test_a_ppo_step_is_epochs_times_minibatches_optimiser_steps_over_whole_environments(monkeypatch):
    """One training step: one unroll, then update_epochs passes, each splitting the envs into num_minibatches
    (shuffled) groups that cover every env once, each replayed over the whole unroll and stepped once."""
    task, model = _task(_run(num_envs="4", num_minibatches=2, update_epochs=3, algo="ppo"))
    replayed, selected = [], []
    replay, select_state = type(model).replay, type(model.core).select_state

    def spy_replay(self, obs, resets, state):
        replayed.append((obs.shape[0], resets.shape[1]))
        return replay(self, obs, resets, state)

    def spy_select(self, state, index):
        selected.append(sorted(index.tolist()))
        return select_state(self, state, index)

    monkeypatch.setattr(type(model), "replay", spy_replay)
    monkeypatch.setattr(type(model.core), "select_state", spy_select)
    optimizer = task.build_optimizer(model, 1e-3)
    assert optimizer.defaults["eps"] == 1e-5  # cleanrl's Adam
    loss, info = task.train_step(model, optimizer, 0, clip_norm=0.5)
    assert replayed == [(5, 2)] * 6 and task.env_steps == 4 * 5  # the whole unroll of 5 steps, 2 envs each time
    assert all(sorted(selected[i] + selected[i + 1]) == [0, 1, 2, 3] for i in (0, 2, 4))  # each pass: every env once
    assert len({tuple(envs) for envs in selected}) > 2  # shuffled from pass to pass
    assert {int(s["step"]) for s in optimizer.state.values()} == {6}
    assert torch.isfinite(loss) and not loss.requires_grad
    assert {"policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"} <= set(info)


def test_eval_and_play_on_a_tiny_run(tmp_path, capsys):
    train_run(_run(steps=2, eval_every=2, max_steps=12), tmp_path / "run")
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

    train_run(_run(steps=1, eval_every=1, max_steps=5), tmp_path / "run")
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
        (["--algo", "sac"], "algo must be one of a2c, ppo, got 'sac'"),
        (["--algo", "ppo", "--num-minibatches", "5"], "num_minibatches (5) must divide num_envs (32)"),
        (["--gae-lambda", "1.5"], "gae_lambda must lie in [0, 1], got 1.5"),
        (["--clip-coef", "0"], "clip_coef must be > 0, got 0.0"),
        (["--update-epochs", "0"], "update_epochs must be >= 1"),
    ],
)
def test_bad_options_give_one_line_errors(tmp_path, capsys, argv, expected):
    assert main(["train", "pacman", "--out", str(tmp_path / "run"), "--steps", "1", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rrnn: error:") and expected in err and "\n" not in err


def test_bad_eval_options_and_play_on_other_tasks(tmp_path, capsys):
    train_run(_run(steps=1, eval_every=1, max_steps=5), tmp_path / "run")
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

    train_run(_run(steps=1, eval_every=1, max_steps=5), tmp_path / "run")
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
