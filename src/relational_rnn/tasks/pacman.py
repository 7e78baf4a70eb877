"""Mini Pac-Man (paper section 5.3): a recurrent advantage actor-critic agent, any registered core.

The environment is `relational_rnn.envs.MiniPacman`, under the published rules of the I2A
paper's `PillEater` (full 15x19 view or a 5x5 viewport; RGB observation by default).
The agent (`PacmanAgent`): the observation's channels, two 2x2 convolutions (12 and 24
channels, stride 1, ReLU), two x/y coordinate channels appended to the feature map, a
Linear + ReLU embedding, the core, and linear policy (5 logits) and value heads.

The algorithm is A2C, synchronous advantage actor-critic with n-step returns: one training
step = one unroll of `unroll_length` steps in `num_envs` environments followed by ONE
gradient step; it is the on-policy special case of the paper's IMPALA (no actor lag, so
no V-trace needed). Per unroll:

    for t in 0..T-1:   state = core.reset_state(state, done[t-1])   # fresh memory after an episode end
                       logits, value = agent(obs_t, state); a_t ~ softmax(logits); step every env
    R_T = V(obs_T) (no gradient);  R_t = r_t + discount * (1 - done_t) * R_{t+1}
    loss = mean[-log pi(a_t) * (R_t - V_t)] + value_cost * mean[(R_t - V_t)^2] / 2 - entropy_cost * mean[H(pi)]

The core's state is carried from one unroll to the next, detached (truncated
backpropagation through time). Truncation at `max_steps` is treated like termination
(no bootstrap): the agent does not observe the step count, so this is the usual
simplification.

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

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cores import CoreConfig, build_core
from ..cores.base import map_state
from ..envs.pacman import ENCODINGS, MAX_STEPS, MODES, OBS_TYPES, MiniPacman
from ..train.config import ConfigError, TrainConfig
from .base import Preset, Task

NUM_ACTIONS = 5

RULES = "published"  # the environment's rules; a config without the field predates them


@dataclass
class PacmanConfig:
    obs: str = "full"  # "full" (15x19) or "viewport" (5x5 around Pac-Man)
    mode: str = "regular"  # reward mode: regular, avoid, hunt, ambush, rush
    num_envs: int = 16  # environments stepped together (the batch)
    unroll_length: int = 20  # steps per environment per training step
    discount: float = 0.99
    entropy_cost: float = 0.005
    value_cost: float = 0.5
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
        for name in ("num_envs", "unroll_length", "max_steps", "embed_size", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.discount <= 1:
            raise ConfigError(f"discount must lie in [0, 1], got {self.discount}")
        if self.entropy_cost < 0 or self.value_cost < 0:
            raise ConfigError("entropy_cost and value_cost must be >= 0")
        if not self.conv_channels or min(self.conv_channels) < 1:
            raise ConfigError(f"conv_channels must be positive channel counts, got {self.conv_channels}")

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

    def forward(self, obs: Tensor, state: Any) -> tuple[Tensor, Tensor, Any]:
        """obs [B, C, H, W], core state -> (logits [B, 5], value [B], next state)."""
        features = self.conv(obs)
        coordinates = self.coordinates.expand(obs.shape[0], -1, -1, -1)
        features = torch.cat([features, coordinates], dim=1).flatten(1)
        embedding = F.relu(self.embed(features))
        output, state = self.core(embedding.unsqueeze(0), state)  # a sequence of one step
        output = output[0]
        return self.policy(output), self.value(output).squeeze(-1), state


def _snapshot_to_checkpoint(snapshot: dict[str, Any]) -> dict[str, Any]:
    """numpy arrays -> tensors, so `torch.load(weights_only=True)` accepts the checkpoint."""
    return {k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v for k, v in snapshot.items()}


def _snapshot_from_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.numpy() if isinstance(v, Tensor) else v for k, v in state.items()}


# ---------------------------------------------------------------------- the one episode loop


@dataclass
class Step:
    """One step of `rollout`: what the policy did and what the environments answered.

    `rows` are the env indices of this step's batch rows; `actions`, `logits`, `values`,
    `rewards` and `dones` are row-aligned ([n]; `logits` [n, 5] and `values` only from an
    `AgentPolicy`); `finished` lists (env index, return, length) of the episodes that ended."""

    rows: list[int]
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
        rows = list(batch.live)
        actions, logits, values = policy(batch.obs, batch.done)
        rewards, dones, finished, keep = batch.step(actions.tolist())
        if keep is not None and batch.live:
            policy.keep(keep)
        taken += 1
        yield Step(rows, actions, logits, values, rewards, dones, finished)


class PacmanTask(Task):
    name = "pacman"
    config_type = PacmanConfig
    main_metric = "episode_return"
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

    def training_loss(self, model: nn.Module, step: int) -> tuple[Tensor, dict[str, float]]:
        config, device = self.config, self.device
        if self.core_state is None:
            self.core_state = model.initial_state(config.num_envs)
        policy = AgentPolicy(model, model.core.detach_state(self.core_state), self.generator, device)
        log_probs, values, entropies, rewards, dones, finished = [], [], [], [], [], []
        for taken in rollout(self.batch, policy, config.unroll_length):
            distribution = torch.distributions.Categorical(logits=taken.logits)
            log_probs.append(distribution.log_prob(taken.actions.to(device)))
            entropies.append(distribution.entropy())
            values.append(taken.values)
            rewards.append(taken.rewards.to(device))
            dones.append(taken.dones.to(device))
            finished += [episode_return for _, episode_return, _ in taken.finished]
        self.core_state = model.core.detach_state(policy.state)
        self.env_steps += config.num_envs * config.unroll_length
        self.episodes += len(finished)

        with torch.no_grad():  # bootstrap from the value of the observation after the unroll
            bootstrap_state = model.core.reset_state(self.core_state, self.done.to(device))
            _, next_return, _ = model(self.obs.to(device), bootstrap_state)
        returns = []
        for reward, done in zip(reversed(rewards), reversed(dones)):
            next_return = reward + config.discount * (~done).float() * next_return
            returns.append(next_return)
        returns = torch.stack(returns[::-1])  # [T, N]
        values, log_probs, entropy = torch.stack(values), torch.stack(log_probs), torch.stack(entropies).mean()
        advantages = returns - values
        policy_loss = -(log_probs * advantages.detach()).mean()
        value_loss = 0.5 * advantages.pow(2).mean()
        loss = policy_loss + config.value_cost * value_loss - config.entropy_cost * entropy
        info = {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(), "entropy": entropy.item()}
        if finished:  # averaged by the loop over the unrolls that ended episodes
            info["episode_return"] = sum(finished) / len(finished)
        return loss, info

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
