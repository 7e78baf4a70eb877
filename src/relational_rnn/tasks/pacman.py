"""Mini Pac-Man (paper section 5.3): a recurrent advantage actor-critic agent, RMC or LSTM core.

The environment is `relational_rnn.envs.MiniPacman` (full 15x19 view or a 5x5 viewport).
The agent (`PacmanAgent`): the observation's 6 channels, two 2x2 convolutions (12 and 24
channels, stride 1, ReLU), two x/y coordinate channels appended to the feature map, a
Linear + ReLU embedding, the core, and linear policy (5 logits) and value heads.

The algorithm is A2C, synchronous advantage actor-critic with n-step returns, chosen over
PPO because it fits the shared training loop exactly: one training step = one unroll of
`unroll_length` steps in `num_envs` environments followed by ONE gradient step, and it
is the on-policy special case of the paper's IMPALA (no actor lag, so no V-trace needed).
PPO would need several optimiser steps per batch, which the loop does not do. Per unroll:

    for t in 0..T-1:   state = core.reset_state(state, done[t-1])   # fresh memory after an episode end
                       logits, value = agent(obs_t, state); a_t ~ softmax(logits); step every env
    R_T = V(obs_T) (no gradient);  R_t = r_t + discount * (1 - done_t) * R_{t+1}
    loss = mean[-log pi(a_t) * (R_t - V_t)] + value_cost * mean[(R_t - V_t)^2] / 2 - entropy_cost * mean[H(pi)]

The core's state is carried from one unroll to the next, detached (truncated
backpropagation through time). Truncation at `max_steps` is treated like termination
(no bootstrap): the agent does not observe the step count, so this is the usual
simplification.

The environments are a plain list of `MiniPacman` (not `gymnasium.vector.SyncVectorEnv`):
the list is as fast, its reset-on-done is explicit in `_step_envs` (gymnasium 1.x's vector
autoreset delays the reset by one step), and each env's `snapshot()` goes into the
checkpoint, so a resumed run continues bit for bit.

Evaluation (`main_metric = "episode_return"`): `eval_episodes` episodes on the fixed seeds
`eval_seed + i`, the same for every run, with actions SAMPLED from the policy by a
generator seeded with `eval_seed`. Sampled, not greedy: the paper reports the returns of
its (sampling) behaviour policy, and an argmax policy with a partial view can walk back
and forth forever. "loss" is the value head's mean squared error against the discounted
returns actually obtained in those episodes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cores import CoreConfig, build_core
from ..envs.pacman import MODES, OBS_TYPES, MiniPacman
from ..train.config import ConfigError, TrainConfig
from .base import Preset, Task

NUM_ACTIONS = 5


@dataclass
class PacmanConfig:
    obs: str = "full"  # "full" (6x15x19) or "viewport" (6x5x5 around the player)
    mode: str = "regular"  # reward mode: regular, avoid, hunt, ambush, rush
    num_envs: int = 16  # environments stepped together (the batch)
    unroll_length: int = 20  # steps per environment per training step
    discount: float = 0.99
    entropy_cost: float = 0.005
    value_cost: float = 0.5
    max_steps: int = 1000  # episode step cap
    conv_channels: tuple[int, ...] = (12, 24)  # 2x2 convolutions, stride 1, ReLU
    embed_size: int = 256  # Linear + ReLU between the flattened feature map and the core
    eval_episodes: int = 16
    eval_seed: int = 10_000  # evaluation episodes use env seeds eval_seed + i, for every run

    def __post_init__(self) -> None:
        self.conv_channels = tuple(int(c) for c in self.conv_channels)  # config.json stores a list

    def validate(self) -> None:
        if self.obs not in OBS_TYPES:
            raise ConfigError(f"obs must be one of {', '.join(OBS_TYPES)}, got {self.obs!r}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
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
        return MiniPacman(mode=self.mode, obs=self.obs, max_steps=self.max_steps, render_mode=render_mode)


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


def _detach(state: Any) -> Any:
    return tuple(part.detach() for part in state) if isinstance(state, (tuple, list)) else state.detach()


def _state_to_list(state: Any) -> list[Tensor]:
    return [t.detach().cpu().clone() for t in (state if isinstance(state, (tuple, list)) else (state,))]


def _snapshot_to_checkpoint(snapshot: dict[str, Any]) -> dict[str, Any]:
    """numpy arrays -> tensors, so `torch.load(weights_only=True)` accepts the checkpoint."""
    return {k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v for k, v in snapshot.items()}


def _snapshot_from_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.numpy() if isinstance(v, Tensor) else v for k, v in state.items()}


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
        self.envs = [config.make_env() for _ in range(config.num_envs)]
        first = [env.reset(seed=seed * 1_000_003 + i)[0] for i, env in enumerate(self.envs)]
        self.obs = torch.from_numpy(np.stack(first))  # [N, C, H, W], the observation to act on next
        self.done = torch.zeros(config.num_envs, dtype=torch.bool)  # did the previous step end an episode?
        self.episode_returns = [0.0] * config.num_envs  # of the episodes now running
        self.core_state: Any = None  # created from the model at the first unroll
        self.env_steps = 0
        self.episodes = 0
        self.generator = torch.Generator().manual_seed(seed)  # samples the training actions

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        return {
            "paper": Preset(
                task=PacmanConfig(num_envs=32, unroll_length=40, discount=0.99, entropy_cost=0.005, embed_size=256,
                                  eval_episodes=100),
                core=CoreConfig(mem_slots=4, head_size=64, num_heads=4, num_blocks=1, gate_style="memory"),
                train=TrainConfig(steps=200_000, lr=3e-4, clip_norm=40.0, eval_every=500),
                description="the paper's RL appendix: 2x2 convs of 12 and 24 channels, RMC 4 slots x 4 heads x 64 "
                "(1024 units), 'memory' gating, discount 0.99, entropy 0.005, unroll 40; A2C with 32 envs and "
                "Adam 3e-4 (ours; the paper used IMPALA); for GPUs",
            ),
            "cpu": Preset(
                task=PacmanConfig(num_envs=32, unroll_length=20, discount=0.99, entropy_cost=0.01, embed_size=64,
                                  eval_episodes=32),
                core=CoreConfig(mem_slots=2, head_size=16, num_heads=2, num_blocks=1, gate_style="memory"),
                train=TrainConfig(steps=1000, lr=1e-3, clip_norm=40.0, eval_every=50, threads=1),
                description="the paper's encoder, a small RMC (2 slots x 2 heads x 16, 'memory' gating), 32 envs, "
                "unroll 20, entropy 0.01, Adam 1e-3: 640k env steps, 5 (viewport) to 11 (full) minutes on one thread "
                "of a loaded 2-core machine",
            ),
        }

    @classmethod
    def results_group(cls, config: Any) -> str:
        obs = config["obs"] if isinstance(config, dict) else config.obs
        return str(obs)

    def build_model(self) -> nn.Module:
        return PacmanAgent(self.envs[0].observation_space.shape, self.core_config,
                           self.config.conv_channels, self.config.embed_size)

    # ------------------------------------------------------------------ training

    def _step_envs(self, actions: list[int]) -> tuple[Tensor, Tensor, Tensor, list[float]]:
        """Step every env; an env whose episode ends is reset. Returns next obs, rewards, dones, finished returns."""
        observations, rewards, dones, finished = [], [], [], []
        for i, (env, action) in enumerate(zip(self.envs, actions)):
            obs, reward, terminated, truncated, _ = env.step(action)
            self.episode_returns[i] += reward
            if terminated or truncated:
                finished.append(self.episode_returns[i])
                self.episode_returns[i] = 0.0
                obs, _ = env.reset()  # continues the env's own seeded random stream
            observations.append(obs)
            rewards.append(reward)
            dones.append(terminated or truncated)
        return (torch.from_numpy(np.stack(observations)), torch.tensor(rewards, dtype=torch.float32),
                torch.tensor(dones), finished)

    def training_loss(self, model: nn.Module, step: int) -> tuple[Tensor, dict[str, float]]:
        config, device = self.config, self.device
        if self.core_state is None:
            self.core_state = model.initial_state(config.num_envs)
        state = _detach(self.core_state)
        log_probs, values, entropies, rewards, dones, finished = [], [], [], [], [], []
        for _ in range(config.unroll_length):
            state = model.core.reset_state(state, self.done.to(device))
            logits, value, state = model(self.obs.to(device), state)
            distribution = torch.distributions.Categorical(logits=logits)
            action = torch.multinomial(distribution.probs.detach().cpu(), 1, generator=self.generator).squeeze(1)
            log_probs.append(distribution.log_prob(action.to(device)))
            entropies.append(distribution.entropy())
            values.append(value)
            self.obs, reward, self.done, ended = self._step_envs(action.tolist())
            rewards.append(reward.to(device))
            dones.append(self.done.to(device))
            finished += ended
        self.core_state = _detach(state)
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

    @torch.no_grad()
    def run_episodes(self, model: nn.Module, seeds: Sequence[int], sample_seed: int, greedy: bool = False) -> dict[str, Any]:
        """Play one episode per env seed, all at once; returns per-episode returns, lengths and value errors."""
        config, device = self.config, self.device
        envs = [config.make_env() for _ in seeds]
        obs = torch.from_numpy(np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]))
        generator = torch.Generator().manual_seed(sample_seed)
        state = model.initial_state(len(envs))
        rewards: list[list[float]] = [[] for _ in envs]
        values: list[list[float]] = [[] for _ in envs]
        running = list(range(len(envs)))
        while running:
            logits, value, state = model(obs.to(device), state)
            if greedy:
                actions = logits.argmax(-1).cpu()
            else:
                actions = torch.multinomial(F.softmax(logits, -1).cpu(), 1, generator=generator).squeeze(1)
            still, next_obs = [], []
            for row, i in enumerate(running):
                observation, reward, terminated, truncated, _ = envs[i].step(int(actions[row]))
                rewards[i].append(reward)
                values[i].append(float(value[row]))
                if not (terminated or truncated):
                    still.append(row)
                    next_obs.append(observation)
            if not still:
                break
            keep = torch.tensor(still)
            running = [running[row] for row in still]
            obs = torch.from_numpy(np.stack(next_obs))
            state = tuple(s[:, keep] for s in state) if isinstance(state, tuple) else state[keep]
        squared_errors = []
        for episode_rewards, episode_values in zip(rewards, values):
            discounted = 0.0
            for reward, value in zip(reversed(episode_rewards), reversed(episode_values)):
                discounted = reward + config.discount * discounted
                squared_errors.append((discounted - value) ** 2)
        return {"returns": [sum(r) for r in rewards], "lengths": [len(r) for r in rewards],
                "value_mse": sum(squared_errors) / len(squared_errors)}

    @torch.no_grad()
    def inspection_run(self, model: nn.Module, samples: int, steps: int = 12) -> tuple[list[str], Any]:
        """`samples` evaluation episodes side by side, greedy, for `steps` steps or until the first one ends."""
        envs = [self.config.make_env() for _ in range(samples)]
        seeds = [self.config.eval_seed + i for i in range(samples)]
        obs = torch.from_numpy(np.stack([env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)]))
        state = model.initial_state(samples)
        actions_taken: list[list[int]] = [[] for _ in envs]
        returns = [0.0 for _ in envs]
        for _ in range(steps):
            logits, _, state = model(obs.to(self.device), state)
            actions = logits.argmax(-1).cpu().tolist()
            results = [env.step(action) for env, action in zip(envs, actions)]
            for i, (action, result) in enumerate(zip(actions, results)):
                actions_taken[i].append(action)
                returns[i] += result[1]
            if any(result[2] or result[3] for result in results):
                break
            obs = torch.from_numpy(np.stack([result[0] for result in results]))
        titles = [f"episode seed {seed}, greedy actions {taken} (0 stay, 1 right, 2 up, 3 left, 4 down), return {ret:g}"
                  for seed, taken, ret in zip(seeds, actions_taken, returns)]
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

        seed = self.config.eval_seed if seed is None else int(seed)
        env = self.config.make_env(render_mode="rgb_array")
        obs, _ = env.reset(seed=seed)
        generator = torch.Generator().manual_seed(seed)
        state = model.initial_state(1)
        frames, total, done = [env.render()], 0.0, False
        while not done:
            logits, _, state = model(torch.from_numpy(obs).unsqueeze(0).to(self.device), state)
            action = int(torch.multinomial(F.softmax(logits, -1).cpu(), 1, generator=generator))
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
            frames.append(env.render())
        images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames]
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        images[0].save(out, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        return {"out": str(out), "frames": len(images), "episode_return": total, "seed": seed}

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict[str, Any]:
        return {
            "envs": [_snapshot_to_checkpoint(env.snapshot()) for env in self.envs],
            "obs": self.obs.clone(),
            "done": self.done.clone(),
            "episode_returns": list(self.episode_returns),
            "core_state": None if self.core_state is None else _state_to_list(self.core_state),
            "core_state_is_tuple": isinstance(self.core_state, tuple),
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["envs"]) != len(self.envs):
            raise ConfigError(f"task state holds {len(state['envs'])} envs, the config {len(self.envs)}")
        for env, snapshot in zip(self.envs, state["envs"]):
            env.restore(_snapshot_from_checkpoint(snapshot))
        self.obs, self.done = state["obs"].clone(), state["done"].clone()
        self.episode_returns = [float(x) for x in state["episode_returns"]]
        parts = state["core_state"]
        if parts is None:
            self.core_state = None
        else:
            parts = [t.to(self.device) for t in parts]
            self.core_state = tuple(parts) if state["core_state_is_tuple"] else parts[0]
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
    episodes = config.eval_episodes if episodes is None else episodes
    seed = config.eval_seed if seed is None else seed
    rng = np.random.default_rng(seed)
    returns, lengths = [], []
    for i in range(episodes):
        env = config.make_env()
        env.reset(seed=seed + i)
        total, steps, done = 0.0, 0, False
        while not done:
            action = int(rng.integers(NUM_ACTIONS)) if policy == "random" else 0
            _, reward, terminated, truncated, _ = env.step(action)
            total, steps, done = total + reward, steps + 1, terminated or truncated
        returns.append(total)
        lengths.append(steps)
    return {"policy": policy, "episodes": episodes, "eval_seed": seed, "episode_return": float(np.mean(returns)),
            "episode_return_std": float(np.std(returns)), "episode_length": float(np.mean(lengths)), "returns": returns}
