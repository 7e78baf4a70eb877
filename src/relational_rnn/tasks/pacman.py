"""Mini Pac-Man (paper section 5.3): a recurrent actor-critic agent, any registered core, trained by A2C or PPO.

The environment is `relational_rnn.envs.MiniPacman`, under the published rules of the I2A
paper's `PillEater` (full 15x19 view or a 5x5 viewport; RGB observation by default).
The agent (`PacmanAgent`): the observation's channels, two 2x2 convolutions (12 and 24
channels, stride 1, ReLU), two x/y coordinate channels appended to the feature map, a
Linear + ReLU embedding, the core, and linear policy (5 logits) and value heads.

Two algorithms (`algo`), both on unrolls of `unroll_length` steps in `num_envs` environments.

A2C (the default), synchronous advantage actor-critic with n-step returns: one training
step = one unroll followed by ONE gradient step; it is the on-policy special case of the
paper's IMPALA (no actor lag, so no V-trace needed). Per unroll:

    for t in 0..T-1:   state = core.reset_state(state, done[t-1])   # fresh memory after an episode end
                       logits, value = agent(obs_t, state); a_t ~ softmax(logits); step every env
    R_T = V(obs_T) (no gradient);  R_t = r_t + discount * (1 - done_t) * R_{t+1}
    loss = mean[-log pi(a_t) * (R_t - V_t)] + value_cost * mean[(R_t - V_t)^2] / 2 - entropy_cost * mean[H(pi)]

PPO (`algo="ppo"`), recurrent proximal policy optimisation in the manner of cleanrl's
`ppo_atari_lstm.py`: one training step = one unroll collected without gradients (keeping
the core's state at its start, and each step's observation, reset flags, action, log-prob
and value), then `update_epochs` passes over it; each pass shuffles the environments and
splits them into `num_minibatches` minibatches of whole environments, and each minibatch
replays its environments' whole unroll from the stored start state (`select_state`, then
`reset_state` on the stored flags: `PacmanAgent.replay`) and takes one optimiser step on

    ratio = exp(log pi(a_t) - log pi_old(a_t));  A = GAE(discount, gae_lambda), normalised per minibatch
    loss = mean[max(-A ratio, -A clip(ratio, 1 - clip_coef, 1 + clip_coef))]
           + value_cost * value loss (clipped around the old values with clip_vloss) - entropy_cost * mean[H(pi)]

with the gradient norm clipped at the loop's `clip_norm`, and Adam with eps 1e-5 (cleanrl's).
This is `train_step` (the shared loop's hook for several optimiser steps per training step);
the loss it logs is the mean over the minibatch steps.

In both, the core's state is carried from one unroll to the next, detached (truncated
backpropagation through time), and truncation at `max_steps` is treated like termination
(no bootstrap): the agent does not observe the step count, so this is the usual
simplification. Exact resume needs nothing beyond what A2C already checkpoints (the envs,
the carried core state, the sampling generator, which also shuffles PPO's minibatches):
a PPO step starts and ends within one loop step.

One episode loop (`rollout`) serves training, evaluation, `rrnn play`, `rrnn inspect` and
the random/stay baselines: an `EnvBatch` (a plain list of `MiniPacman`, reset on done in
training, narrowed to the running episodes otherwise) stepped by a policy (`AgentPolicy`,
which carries the core's state through the core contract's `reset_state` / `select_state`,
or a fixed `RandomPolicy` / `StayPolicy`). The list, not `gymnasium.vector.SyncVectorEnv`:
its reset-on-done is explicit, evaluation can drop the envs whose episode ended (a vector env
cannot), each env's `snapshot()` goes into the checkpoint, so a resumed run continues bit for
bit, and it steps 32 envs about 1.7x as fast as SyncVectorEnv with same-step autoreset (which
merges every env's info dict each step; docs/pacman.md).

Evaluation (`main_metric = "episode_return"`): `eval_episodes` episodes on the fixed seeds
`eval_seed + i`, the same for every run, with actions SAMPLED from the policy by a
generator seeded with `eval_seed`. Sampled, not greedy: the paper reports the returns of
its (sampling) behaviour policy, and an argmax policy with a partial view can walk back
and forth forever. "loss" is the value head's mean squared error against the discounted
returns actually obtained in those episodes.

Runs trained before the environment followed the published rules have no `rules` field in
their config.json; they read as `rules="from-memory"`, are listed by `rrnn report` in their
own group ("full, rules=from-memory"; this version's runs are "full, rules=published"), and cannot be resumed, evaluated or played (the old
environment is gone): one clear error says so.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical

from ..cores import CoreConfig, build_core
from ..cores.base import map_state
from ..envs.pacman import ENCODINGS, MAX_STEPS, MODES, OBS_TYPES, MiniPacman
from ..config import ConfigError, TrainConfig
from .base import Preset, Task, optimizer_step

NUM_ACTIONS = 5
ALGOS = ("a2c", "ppo")

RULES = "published"  # the environment's rules; a config without the field predates them


@dataclass
class PacmanConfig:
    obs: str = "full"  # "full" (15x19) or "viewport" (5x5 around Pac-Man)
    mode: str = "regular"  # reward mode: regular, avoid, hunt, ambush, rush
    num_envs: int = 16  # environments stepped together (the batch)
    unroll_length: int = 20  # steps per environment per training step
    discount: float = 0.99  # gamma, the discount of future rewards (both algorithms; PPO's GAE too)
    entropy_cost: float = 0.005  # weight of the policy's entropy bonus in the loss (both algorithms)
    value_cost: float = 0.5  # weight of the value loss (half the squared error) in the loss (both algorithms)
    algo: str = "a2c"  # "a2c" (one gradient step per unroll) or "ppo" (recurrent PPO: epochs of minibatch steps per unroll)
    gae_lambda: float = 0.95  # ppo: lambda of generalized advantage estimation, in [0, 1] (1: n-step returns, as A2C)
    update_epochs: int = 4  # ppo: passes over each unroll, each over every environment once
    num_minibatches: int = 4  # ppo: minibatches per pass, each whole environments (num_envs / num_minibatches of
    # them, so it must divide num_envs) replayed over the whole unroll from their stored start state
    clip_coef: float = 0.1  # ppo: the surrogate keeps the probability ratio within [1 - clip_coef, 1 + clip_coef]
    clip_vloss: bool = True  # ppo: clip the value loss too (the new value within clip_coef of the collected one)
    normalize_advantages: bool = True  # ppo: advantages to mean 0 and std 1 within each minibatch
    max_steps: int = MAX_STEPS  # episode step cap (3000, as published)
    conv_channels: tuple[int, ...] = (12, 24)  # 2x2 convolutions, stride 1, ReLU
    embed_size: int = 256  # Linear + ReLU between the flattened feature map and the core
    eval_episodes: int = 16
    eval_seed: int = 10_000  # evaluation episodes use env seeds eval_seed + i, for every run
    encoding: str = "rgb"  # observation: "rgb" (3 channels, as published) or "planes" (the 6 planes)
    # which environment the run used: "published" (this version); a config.json written before the
    # field existed reads as "from-memory" (the old environment, gone: such runs are for the record)
    rules: str = "from-memory"

    def __post_init__(self) -> None:
        self.conv_channels = tuple(int(c) for c in self.conv_channels)  # config.json stores a list

    def validate(self) -> None:
        if self.rules != RULES:
            raise ConfigError(f"this run used the Mini Pac-Man environment with rules={self.rules!r}, which this version "
                              f"no longer has (it follows the published rules, rules={RULES!r}); train a new run")
        if self.obs not in OBS_TYPES:
            raise ConfigError(f"obs must be one of {', '.join(OBS_TYPES)}, got {self.obs!r}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        for name in ("num_envs", "unroll_length", "max_steps", "embed_size", "eval_episodes", "update_epochs", "num_minibatches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.discount <= 1:
            raise ConfigError(f"discount must lie in [0, 1], got {self.discount}")
        if self.entropy_cost < 0 or self.value_cost < 0:
            raise ConfigError("entropy_cost and value_cost must be >= 0")
        if not self.conv_channels or min(self.conv_channels) < 1:
            raise ConfigError(f"conv_channels must be positive channel counts, got {self.conv_channels}")
        if self.algo not in ALGOS:
            raise ConfigError(f"algo must be one of {', '.join(ALGOS)}, got {self.algo!r}")
        if not 0 <= self.gae_lambda <= 1:
            raise ConfigError(f"gae_lambda must lie in [0, 1], got {self.gae_lambda}")
        if not self.clip_coef > 0:
            raise ConfigError(f"clip_coef must be > 0, got {self.clip_coef}")
        if self.algo == "ppo" and self.num_envs % self.num_minibatches:
            raise ConfigError(f"num_minibatches ({self.num_minibatches}) must divide num_envs ({self.num_envs}): "
                              "a PPO minibatch holds whole environments")
        if self.algo == "ppo" and self.normalize_advantages and self.unroll_length * self.num_envs < 2 * self.num_minibatches:
            raise ConfigError("normalize_advantages needs at least 2 steps per minibatch "
                              "(unroll_length * num_envs / num_minibatches >= 2)")

    def make_env(self, render_mode: Optional[str] = None) -> MiniPacman:
        return MiniPacman(mode=self.mode, obs=self.obs, encoding=self.encoding, max_steps=self.max_steps,
                          render_mode=render_mode)


class PacmanAgent(nn.Module):
    """Convolutional encoder, recurrent core, policy and value heads; one environment step per call."""

    def __init__(self, obs_shape: Sequence[int], core_config: CoreConfig, conv_channels: Sequence[int], embed_size: int) -> None:
        super().__init__()
        channels, height, width = obs_shape
        layers: list[nn.Module] = []
        for out_channels in conv_channels:
            layers += [nn.Conv2d(channels, out_channels, kernel_size=2, stride=1), nn.ReLU()]
            channels, height, width = out_channels, height - 1, width - 1
        self.conv = nn.Sequential(*layers)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("coordinates", torch.stack([xs, ys]), persistent=False)  # [2, H', W']
        self.embed = nn.Linear((channels + 2) * height * width, embed_size)
        self.core = build_core(core_config, embed_size)
        self.policy = nn.Linear(self.core.output_size, NUM_ACTIONS)
        self.value = nn.Linear(self.core.output_size, 1)

    def initial_state(self, batch_size: int) -> Any:
        return self.core.initial_state(batch_size)

    def encode(self, obs: Tensor) -> Tensor:
        """obs [B, C, H, W] -> the core's input [B, embed_size]."""
        features = self.conv(obs)
        coordinates = self.coordinates.expand(obs.shape[0], -1, -1, -1)
        features = torch.cat([features, coordinates], dim=1).flatten(1)
        return F.relu(self.embed(features))

    def heads(self, output: Tensor) -> tuple[Tensor, Tensor]:
        """Core outputs [..., output_size] -> (logits [..., 5], value [...])."""
        return self.policy(output), self.value(output).squeeze(-1)

    def forward(self, obs: Tensor, state: Any) -> tuple[Tensor, Tensor, Any]:
        """obs [B, C, H, W], core state -> (logits [B, 5], value [B], next state)."""
        output, state = self.core(self.encode(obs).unsqueeze(0), state)  # a sequence of one step
        return (*self.heads(output[0]), state)

    def replay(self, obs: Tensor, resets: Tensor, state: Any) -> tuple[Tensor, Tensor]:
        """A stored unroll again: obs [T, B, C, H, W], resets [T, B] (reset the state before step t
        where true), the state at its start -> (logits [T, B, 5], values [T, B]).

        What `AgentPolicy` computes step by step, with the encoder and heads run once over all T
        steps (PPO's minibatches replay their environments' unroll through this)."""
        steps, batch = resets.shape
        embeddings = self.encode(obs.flatten(0, 1)).view(steps, batch, -1)
        outputs = []
        for t in range(steps):
            state = self.core.reset_state(state, resets[t])
            output, state = self.core(embeddings[t : t + 1], state)
            outputs.append(output[0])
        return self.heads(torch.stack(outputs))


def _snapshot_to_checkpoint(snapshot: dict[str, Any]) -> dict[str, Any]:
    """numpy arrays -> tensors, so `torch.load(weights_only=True)` accepts the checkpoint."""
    return {k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v for k, v in snapshot.items()}


def _snapshot_from_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.numpy() if isinstance(v, Tensor) else v for k, v in state.items()}


# ---------------------------------------------------------------------- the one episode loop


@dataclass
class Step:
    """One step of `rollout`: what the policy saw, what it did and what the environments answered.

    `rows` are the env indices of this step's batch rows; `obs` (the observations the policy
    acted on, [n, C, H, W]), `resets` (true where the previous step ended the row's episode, so
    the policy reset its state first), `actions`, `logits`, `values`, `rewards` and `dones` are
    row-aligned ([n]; `logits` [n, 5] and `values` only from an `AgentPolicy`); `finished` lists
    (env index, return, length) of the episodes that ended."""

    rows: list[int]
    obs: Tensor
    resets: Tensor
    actions: Tensor
    logits: Optional[Tensor]
    values: Optional[Tensor]
    rewards: Tensor
    dones: Tensor
    finished: list[tuple[int, float, int]]


class EnvBatch:
    """Environments stepped together, with explicit episode ends.

    `autoreset=True` (training): an env whose episode ends is reset at once (continuing its own
    seeded random stream) and `done` marks it for the policy's next call; the batch never
    shrinks. `autoreset=False` (evaluation, play, baselines): an ended episode leaves the batch
    (`live` shrinks, and so do `obs` and `done`), so every env plays exactly one episode.
    """

    def __init__(self, envs: Sequence[MiniPacman], seeds: Sequence[int], autoreset: bool) -> None:
        self.envs = list(envs)
        self.autoreset = autoreset
        self.obs = torch.from_numpy(np.stack([env.reset(seed=int(s))[0] for env, s in zip(self.envs, seeds)]))
        self.done = torch.zeros(len(self.envs), dtype=torch.bool)  # did the previous step end an episode?
        self.live = list(range(len(self.envs)))  # env index of each batch row
        self.returns = [0.0] * len(self.envs)  # of the episodes now running
        self.lengths = [0] * len(self.envs)

    def step(self, actions: Sequence[int]) -> tuple[Tensor, Tensor, list[tuple[int, float, int]], Optional[Tensor]]:
        """Step every live env; returns rewards [n], dones [n], the finished episodes, and (without
        autoreset, when some ended) the rows kept, for the policy to narrow its state."""
        observations, rewards, dones, finished, kept = [], [], [], [], []
        for row, (i, action) in enumerate(zip(self.live, actions)):
            obs, reward, terminated, truncated, _ = self.envs[i].step(int(action))
            ended = terminated or truncated
            self.returns[i] += reward
            self.lengths[i] += 1
            if ended:
                finished.append((i, self.returns[i], self.lengths[i]))
                if self.autoreset:
                    self.returns[i], self.lengths[i] = 0.0, 0
                    obs, _ = self.envs[i].reset()
            if self.autoreset or not ended:
                observations.append(obs)
                kept.append(row)
            rewards.append(reward)
            dones.append(ended)
        rewards_t, dones_t = torch.tensor(rewards, dtype=torch.float32), torch.tensor(dones)
        keep = None
        if not self.autoreset and len(kept) < len(self.live):
            keep = torch.tensor(kept, dtype=torch.long)
            self.live = [self.live[row] for row in kept]
        if observations:
            self.obs = torch.from_numpy(np.stack(observations))
        self.done = dones_t if self.autoreset else torch.zeros(len(self.live), dtype=torch.bool)
        return rewards_t, dones_t, finished, keep

    def state_dict(self) -> dict[str, Any]:
        return {"envs": [_snapshot_to_checkpoint(env.snapshot()) for env in self.envs], "obs": self.obs.clone(),
                "done": self.done.clone(), "episode_returns": list(self.returns), "episode_lengths": list(self.lengths)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["envs"]) != len(self.envs):
            raise ConfigError(f"task state holds {len(state['envs'])} envs, the config {len(self.envs)}")
        for env, snapshot in zip(self.envs, state["envs"]):
            try:
                env.restore(_snapshot_from_checkpoint(snapshot))
            except ValueError as error:
                raise ConfigError(f"cannot restore the environment: {error}") from None
        self.obs, self.done = state["obs"].clone(), state["done"].clone()
        self.returns = [float(x) for x in state["episode_returns"]]
        self.lengths = [int(x) for x in state.get("episode_lengths", [0] * len(self.envs))]


class AgentPolicy:
    """The agent as a policy: samples (or argmaxes) actions and carries the core's state.

    Before each step the state of rows whose previous step ended an episode is reset
    (`core.reset_state`, training); when rows leave the batch it is narrowed
    (`core.select_state`, evaluation). Gradients flow unless the caller disables them."""

    def __init__(self, model: nn.Module, state: Any, generator: torch.Generator, device: torch.device,
                 greedy: bool = False) -> None:
        self.model, self.state, self.generator, self.device, self.greedy = model, state, generator, device, greedy

    def __call__(self, obs: Tensor, done: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.state = self.model.core.reset_state(self.state, done.to(self.device))
        logits, values, self.state = self.model(obs.to(self.device), self.state)
        if self.greedy:
            actions = logits.detach().argmax(-1).cpu()
        else:
            actions = torch.multinomial(F.softmax(logits.detach(), -1).cpu(), 1, generator=self.generator).squeeze(1)
        return actions, logits, values

    def keep(self, rows: Tensor) -> None:
        self.state = self.model.core.select_state(self.state, rows)


class RandomPolicy:
    """Uniformly random actions (a baseline), from a seeded generator."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, obs: Tensor, done: Tensor) -> tuple[Tensor, None, None]:
        return torch.randint(NUM_ACTIONS, (obs.shape[0],), generator=self.generator), None, None

    def keep(self, rows: Tensor) -> None:
        pass


class StayPolicy(RandomPolicy):
    """Always action 0, stay (a baseline: what standing still earns)."""

    def __init__(self) -> None:
        pass

    def __call__(self, obs: Tensor, done: Tensor) -> tuple[Tensor, None, None]:
        return torch.zeros(obs.shape[0], dtype=torch.long), None, None


def rollout(batch: EnvBatch, policy: Any, steps: Optional[int] = None) -> Iterator[Step]:
    """The episode loop: `steps` steps of `policy` in `batch` (None: until no episode is left)."""
    taken = 0
    while batch.live and (steps is None or taken < steps):
        rows, obs, resets = list(batch.live), batch.obs, batch.done
        actions, logits, values = policy(obs, resets)
        rewards, dones, finished, keep = batch.step(actions.tolist())
        if keep is not None and batch.live:
            policy.keep(keep)
        taken += 1
        yield Step(rows, obs, resets, actions, logits, values, rewards, dones, finished)


# ---------------------------------------------------------------------- returns and losses


def discounted_returns(rewards: Tensor, dones: Tensor, bootstrap: Tensor, discount: float) -> Tensor:
    """A2C's n-step returns [T, N] of an unroll: R_t = r_t + discount * (1 - done_t) * R_{t+1}, R_T = `bootstrap` [N].

    `rewards`, `dones` [T, N] (done_t: step t ended the episode, so nothing after it counts)."""
    next_return, returns = bootstrap, []
    for t in reversed(range(rewards.shape[0])):
        next_return = rewards[t] + discount * (~dones[t]).float() * next_return
        returns.append(next_return)
    return torch.stack(returns[::-1])


def generalized_advantages(rewards: Tensor, values: Tensor, dones: Tensor, bootstrap: Tensor, discount: float,
                           gae_lambda: float) -> tuple[Tensor, Tensor]:
    """PPO's advantages and value targets [T, N] of an unroll, by generalized advantage estimation (Schulman et al. 2016):

        delta_t = r_t + discount * (1 - done_t) * V_{t+1} - V_t             (V_T = `bootstrap` [N])
        A_t     = delta_t + discount * gae_lambda * (1 - done_t) * A_{t+1}   (A_T = 0)

    and the targets A + V. `rewards`, `values`, `dones` [T, N]; gae_lambda = 1 gives the n-step
    returns minus V (A2C's advantages), 0 the one-step TD errors."""
    not_done = (~dones).to(values.dtype)
    advantages = torch.empty_like(values)
    next_value, next_advantage = bootstrap, torch.zeros_like(bootstrap)
    for t in reversed(range(values.shape[0])):
        delta = rewards[t] + discount * not_done[t] * next_value - values[t]
        next_advantage = delta + discount * gae_lambda * not_done[t] * next_advantage
        advantages[t], next_value = next_advantage, values[t]
    return advantages, advantages + values


def clipped_policy_loss(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, clip_coef: float) -> Tensor:
    """PPO's clipped surrogate objective, negated to be a loss (Schulman et al. 2017, eq. 7):

        ratio = exp(log_probs - old_log_probs);  mean[max(-A ratio, -A clip(ratio, 1 - clip_coef, 1 + clip_coef))]

    so a step gains nothing from moving the ratio beyond the clip range in the advantage's direction."""
    ratio = (log_probs - old_log_probs).exp()
    return torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()


def value_loss(values: Tensor, returns: Tensor, old_values: Optional[Tensor] = None, clip_coef: float = 0.0) -> Tensor:
    """Half the mean squared error of `values` against `returns`; given `old_values` (PPO's clip_vloss),
    per entry the larger of that error and the error of the new value held within clip_coef of the old one."""
    squared = (values - returns).pow(2)
    if old_values is not None:
        held = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
        squared = torch.max(squared, (held - returns).pow(2))
    return 0.5 * squared.mean()


def _stack(steps: Sequence[Step], name: str, device: torch.device) -> Tensor:
    """One field of an unroll's steps as a [T, N, ...] tensor on `device`."""
    return torch.stack([getattr(taken, name) for taken in steps]).to(device)


class PacmanTask(Task):
    name = "pacman"
    config_type = PacmanConfig
    main_metric = "episode_return"
    dynamic_shapes_reason = ("a training step is a rollout of single environment steps, the policy's actions "
                             "sampled on the CPU between them")
    eval_options = {
        "--episodes N": "evaluation episodes (default: the run's eval_episodes)",
        "--seed S": "the first episode's environment seed (default: the run's eval_seed)",
        "--policy sample|greedy": "sample actions (default) or take the most likely one",
    }
    paper_results = (
        "Episode return, Mini Pac-Man, paper scale (IMPALA, many actors; Santoro et al. 2018, section 5.3):\n\n"
        "| observation | RMC | LSTM |\n|---|---|---|\n| viewport (5x5) | 677 | 550 |\n| full | 1159 | 598 |\n"
    )

    def __init__(self, config: PacmanConfig, core: CoreConfig, seed: int, device: torch.device) -> None:
        config.validate()
        super().__init__(config, core, seed, device)
        envs = [config.make_env() for _ in range(config.num_envs)]
        self.batch = EnvBatch(envs, [seed * 1_000_003 + i for i in range(config.num_envs)], autoreset=True)
        self.core_state: Any = None  # created from the model at the first unroll
        self.env_steps = 0
        self.episodes = 0
        self.generator = torch.Generator().manual_seed(seed)  # samples the training actions

    # the training batch's environments, next observation [N, C, H, W] and episode-end flags
    envs = property(lambda self: self.batch.envs)
    obs = property(lambda self: self.batch.obs)
    done = property(lambda self: self.batch.done, lambda self, value: setattr(self.batch, "done", value))

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        return {
            "paper": Preset(
                task=PacmanConfig(num_envs=32, unroll_length=40, discount=0.99, entropy_cost=0.005, embed_size=256,
                                  eval_episodes=100, rules=RULES),
                core=CoreConfig(mem_slots=4, head_size=64, num_heads=4, num_blocks=1, gate_style="memory"),
                train=TrainConfig(steps=200_000, lr=3e-4, clip_norm=40.0, eval_every=500),
                description="the paper's RL appendix: 2x2 convs of 12 and 24 channels, RMC 4 slots x 4 heads x 64 "
                "(1024 units), 'memory' gating, discount 0.99, entropy 0.005, unroll 40; A2C with 32 envs and "
                "Adam 3e-4 (ours; the paper used IMPALA); for GPUs",
            ),
            "cpu": Preset(
                task=PacmanConfig(num_envs=32, unroll_length=20, discount=0.99, entropy_cost=0.01, embed_size=64,
                                  eval_episodes=32, rules=RULES),
                core=CoreConfig(mem_slots=2, head_size=16, num_heads=2, num_blocks=1, gate_style="memory"),
                train=TrainConfig(steps=1000, lr=1e-3, clip_norm=40.0, eval_every=50, threads=1),
                description="the paper's encoder, a small RMC (2 slots x 2 heads x 16, 'memory' gating), 32 envs, "
                "unroll 20, entropy 0.01, Adam 1e-3: 640k env steps (timed on the environment written from memory: "
                "5 to 11 minutes on one thread; to be re-timed on the published rules)",
            ),
        }

    @classmethod
    def results_group(cls, config: Any) -> str:
        """The observation and the environment's rules ("full, rules=published"): runs of the old environment
        (no `rules` in their config.json) and their baselines never share a table row with runs of this one."""
        get = config.get if isinstance(config, dict) else lambda name, default=None: getattr(config, name, default)
        return f"{get('obs')}, rules={get('rules', 'from-memory')}"

    def build_model(self) -> nn.Module:
        return PacmanAgent(self.envs[0].observation_space.shape, self.core_config,
                           self.config.conv_channels, self.config.embed_size)

    # ------------------------------------------------------------------ training

    def build_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """A2C: the loop's Adam. PPO: Adam with eps 1e-5, as cleanrl's PPO."""
        if self.config.algo == "ppo":
            return torch.optim.Adam(model.parameters(), lr=lr, eps=1e-5)
        return super().build_optimizer(model, lr)

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                   clip_norm: Optional[float]) -> tuple[Tensor, dict[str, float]]:
        """A2C: one optimiser step on `training_loss`. PPO: one unroll, then every epoch's minibatch steps (`_ppo_step`)."""
        if self.config.algo == "ppo":
            return self._ppo_step(model, optimizer, clip_norm)
        return super().train_step(model, optimizer, step, clip_norm)

    def _unroll(self, model: nn.Module, grad: bool) -> tuple[list[Step], Any]:
        """`unroll_length` steps of the training envs, from the core state carried from the last unroll
        (the initial state at first): the steps, and the state they started from. The state at the
        end is carried to the next unroll, detached (truncated backpropagation through time)."""
        config = self.config
        if self.core_state is None:
            self.core_state = model.initial_state(config.num_envs)
        start = model.core.detach_state(self.core_state)
        policy = AgentPolicy(model, start, self.generator, self.device)
        with nullcontext() if grad else torch.no_grad():
            steps = list(rollout(self.batch, policy, config.unroll_length))
        self.core_state = model.core.detach_state(policy.state)
        self.env_steps += config.num_envs * config.unroll_length
        self.episodes += sum(len(taken.finished) for taken in steps)
        return steps, start

    @torch.no_grad()
    def _bootstrap_value(self, model: nn.Module) -> Tensor:
        """The value [N] of the observation after the unroll (the state reset where an episode just ended)."""
        state = model.core.reset_state(self.core_state, self.done.to(self.device))
        _, value, _ = model(self.obs.to(self.device), state)
        return value

    @staticmethod
    def _episode_info(steps: Sequence[Step]) -> dict[str, float]:
        """The mean return of the training episodes that ended in the unroll, if any (the loop
        averages it over the unrolls that ended episodes)."""
        finished = [episode_return for taken in steps for _, episode_return, _ in taken.finished]
        return {"episode_return": sum(finished) / len(finished)} if finished else {}

    def training_loss(self, model: nn.Module, step: int) -> tuple[Tensor, dict[str, float]]:
        """A2C's loss on one unroll (see the module's docstring)."""
        config, device = self.config, self.device
        if config.algo != "a2c":
            raise RuntimeError(f"training_loss is A2C's; algo={config.algo!r} trains through train_step")
        steps, _ = self._unroll(model, grad=True)
        distributions = [Categorical(logits=taken.logits) for taken in steps]
        log_probs = torch.stack([d.log_prob(taken.actions.to(device)) for d, taken in zip(distributions, steps)])
        entropy = torch.stack([d.entropy() for d in distributions]).mean()
        values = _stack(steps, "values", device)
        returns = discounted_returns(_stack(steps, "rewards", device), _stack(steps, "dones", device),
                                     self._bootstrap_value(model), config.discount)  # [T, N]
        policy_loss = -(log_probs * (returns - values).detach()).mean()
        value_error = value_loss(values, returns)
        loss = policy_loss + config.value_cost * value_error - config.entropy_cost * entropy
        info = {"policy_loss": policy_loss.item(), "value_loss": value_error.item(), "entropy": entropy.item()}
        return loss, info | self._episode_info(steps)

    def _ppo_step(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                  clip_norm: Optional[float]) -> tuple[Tensor, dict[str, float]]:
        """PPO's training step (see the module's docstring): collect one unroll without gradients, then
        `update_epochs` passes of `num_minibatches` optimiser steps, each on whole environments replayed
        from the unroll's start state. Returns the mean minibatch loss and the means of its parts, the
        approximate KL divergence from the collecting policy and the fraction of clipped ratios."""
        config, device = self.config, self.device
        steps, start = self._unroll(model, grad=False)
        collected = {name: _stack(steps, name, device) for name in ("obs", "resets", "actions", "values")}
        collected["log_probs"] = Categorical(logits=_stack(steps, "logits", device)).log_prob(collected["actions"])
        collected["advantages"], collected["returns"] = generalized_advantages(
            _stack(steps, "rewards", device), collected["values"], _stack(steps, "dones", device),
            self._bootstrap_value(model), config.discount, config.gae_lambda)
        logged: dict[str, list[Tensor]] = {}
        for _ in range(config.update_epochs):
            order = torch.randperm(config.num_envs, generator=self.generator)
            for envs in order.split(config.num_envs // config.num_minibatches):
                envs = envs.to(device)
                minibatch = {name: value[:, envs] for name, value in collected.items()}
                loss, parts = self._ppo_loss(model, minibatch, model.core.select_state(start, envs))
                optimizer_step(model, optimizer, loss, clip_norm)
                for name, value in parts.items():
                    logged.setdefault(name, []).append(value)
        means = {name: torch.stack(values).mean() for name, values in logged.items()}
        loss = means.pop("loss")
        return loss, {name: value.item() for name, value in means.items()} | self._episode_info(steps)

    def _ppo_loss(self, model: nn.Module, minibatch: dict[str, Tensor], start: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """PPO's loss on a minibatch of environments (what `_ppo_step` collected, [T, n, ...] each), their
        unroll replayed from their `start` state; and its parts, detached, for the log."""
        config = self.config
        logits, values = model.replay(minibatch["obs"], minibatch["resets"], start)
        distribution = Categorical(logits=logits)
        log_probs = distribution.log_prob(minibatch["actions"])
        advantages = minibatch["advantages"]
        if config.normalize_advantages:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = clipped_policy_loss(log_probs, minibatch["log_probs"], advantages, config.clip_coef)
        old_values = minibatch["values"] if config.clip_vloss else None
        value_error = value_loss(values, minibatch["returns"], old_values, config.clip_coef)
        entropy = distribution.entropy().mean()
        loss = policy_loss + config.value_cost * value_error - config.entropy_cost * entropy
        with torch.no_grad():
            log_ratio = log_probs - minibatch["log_probs"]
            ratio = log_ratio.exp()
            parts = {"loss": loss, "policy_loss": policy_loss, "value_loss": value_error, "entropy": entropy,
                     "approx_kl": ((ratio - 1) - log_ratio).mean(),  # the k3 estimate: http://joschu.net/blog/kl-approx.html
                     "clip_fraction": ((ratio - 1).abs() > config.clip_coef).float().mean()}
        return loss, {name: value.detach() for name, value in parts.items()}

    # ------------------------------------------------------------------ evaluation

    def _episodes(self, seeds: Sequence[int], render_mode: Optional[str] = None) -> EnvBatch:
        """One fresh env per seed, each to play one episode."""
        return EnvBatch([self.config.make_env(render_mode) for _ in seeds], seeds, autoreset=False)

    def _policy(self, model: nn.Module, batch_size: int, seed: int, greedy: bool = False) -> AgentPolicy:
        generator = torch.Generator().manual_seed(int(seed))
        return AgentPolicy(model, model.initial_state(batch_size), generator, self.device, greedy)

    @torch.no_grad()
    def run_episodes(self, model: nn.Module, seeds: Sequence[int], sample_seed: int, greedy: bool = False) -> dict[str, Any]:
        """Play one episode per env seed, all at once; returns per-episode returns, lengths and value errors."""
        rewards: list[list[float]] = [[] for _ in seeds]
        values: list[list[float]] = [[] for _ in seeds]
        for taken in rollout(self._episodes(seeds), self._policy(model, len(seeds), sample_seed, greedy)):
            for row, i in enumerate(taken.rows):
                rewards[i].append(float(taken.rewards[row]))
                values[i].append(float(taken.values[row]))
        squared_errors = []
        for episode_rewards, episode_values in zip(rewards, values):
            discounted = 0.0
            for reward, value in zip(reversed(episode_rewards), reversed(episode_values)):
                discounted = reward + self.config.discount * discounted
                squared_errors.append((discounted - value) ** 2)
        return {"returns": [sum(r) for r in rewards], "lengths": [len(r) for r in rewards],
                "value_mse": sum(squared_errors) / len(squared_errors)}

    @torch.no_grad()
    def inspection_run(self, model: nn.Module, samples: int, steps: int = 12) -> tuple[list[str], Any]:
        """`samples` evaluation episodes side by side, greedy, for `steps` steps or until the first one ends."""
        seeds = [self.config.eval_seed + i for i in range(samples)]
        actions_taken: list[list[int]] = [[] for _ in seeds]
        returns = [0.0 for _ in seeds]
        for taken in rollout(self._episodes(seeds), self._policy(model, samples, 0, greedy=True), steps):
            for row, i in enumerate(taken.rows):
                actions_taken[i].append(int(taken.actions[row]))
                returns[i] += float(taken.rewards[row])
            if taken.finished:
                break
        titles = [f"episode seed {seed}, greedy actions {acts} (0 stay, 1 right, 2 up, 3 left, 4 down), return {ret:g}"
                  for seed, acts, ret in zip(seeds, actions_taken, returns)]
        return titles, None

    @torch.no_grad()
    def evaluate(self, model: nn.Module, **options: Any) -> dict[str, float]:
        """Mean and std of the return over the fixed evaluation episodes.

        Options (strings from `rrnn eval DIR --episodes N`): `episodes` (default
        `eval_episodes`), `seed` (default `eval_seed`), `policy` ("sample", the default, or "greedy").
        """
        unknown = set(options) - {"episodes", "seed", "policy"}
        if unknown:
            raise ConfigError(f"pacman evaluation options are episodes, seed and policy; got {', '.join(sorted(unknown))}")
        episodes = _positive_int(options.get("episodes", self.config.eval_episodes), "episodes")
        seed = _positive_int(options.get("seed", self.config.eval_seed), "seed", minimum=0)
        policy = str(options.get("policy", "sample"))
        if policy not in ("sample", "greedy"):
            raise ConfigError(f"policy must be 'sample' or 'greedy', got {policy!r}")
        played = self.run_episodes(model, [seed + i for i in range(episodes)], sample_seed=seed, greedy=policy == "greedy")
        returns = np.array(played["returns"])
        return {
            "loss": played["value_mse"],
            "episode_return": float(returns.mean()),
            "episode_return_std": float(returns.std()),
            "episode_length": float(np.mean(played["lengths"])),
            "env_steps": self.env_steps,
            "eval_episodes": episodes,
            "train_episodes_done": self.episodes,
        }

    @torch.no_grad()
    def play(self, model: nn.Module, out: Path, seed: Optional[int] = None, scale: int = 3, fps: int = 8) -> dict[str, Any]:
        """Render one sampled episode of `model` (env seed `seed`, default `eval_seed`) to an animated GIF."""
        from PIL import Image

        seed = self.config.eval_seed if seed is None else _positive_int(seed, "seed", minimum=0)  # gymnasium's rule
        batch = self._episodes([seed], render_mode="rgb_array")
        env, frames, total = batch.envs[0], [batch.envs[0].render()], 0.0
        for step in rollout(batch, self._policy(model, 1, seed)):
            total += float(step.rewards[0])
            frames.append(env.render())
        images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames]
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        images[0].save(out, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        return {"out": str(out), "frames": len(images), "episode_return": total, "seed": seed}

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.batch.state_dict(),
            "core_state": None if self.core_state is None else map_state(lambda part: part.detach().cpu().clone(), self.core_state),
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch.load_state_dict(state)
        saved = state["core_state"]
        if "core_state_is_tuple" in state and saved is not None:  # checkpoints before the core contract: a list of parts
            saved = tuple(saved) if state["core_state_is_tuple"] else saved[0]
        self.core_state = None if saved is None else map_state(lambda part: part.to(self.device), saved)
        self.env_steps, self.episodes = int(state["env_steps"]), int(state["episodes"])
        self.generator.set_state(state["generator"])


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if number != int(number) or number < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(number)


def baseline_returns(config: PacmanConfig, policy: str, episodes: Optional[int] = None, seed: Optional[int] = None) -> dict[str, Any]:
    """Returns of a fixed policy ("random": uniform actions; "stay": always action 0) on the evaluation episodes."""
    if policy not in ("random", "stay"):
        raise ConfigError(f"baseline policy must be 'random' or 'stay', got {policy!r}")
    config.validate()
    episodes = config.eval_episodes if episodes is None else episodes
    seed = config.eval_seed if seed is None else seed
    seeds = [seed + i for i in range(episodes)]
    returns, lengths = [0.0] * episodes, [0] * episodes
    batch = EnvBatch([config.make_env() for _ in seeds], seeds, autoreset=False)
    for step in rollout(batch, RandomPolicy(seed) if policy == "random" else StayPolicy()):
        for i, episode_return, length in step.finished:
            returns[i], lengths[i] = episode_return, length
    return {"policy": policy, "episodes": episodes, "eval_seed": seed, "episode_return": float(np.mean(returns)),
            "episode_return_std": float(np.std(returns)), "episode_length": float(np.mean(lengths)), "returns": returns}
