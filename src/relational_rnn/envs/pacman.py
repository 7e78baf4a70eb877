"""Mini Pac-Man: a small, fast, pure-numpy ``gymnasium.Env``.

Written from the published description of the MiniPacman environment of the
Imagination-Augmented Agents paper (Weber et al. 2017, arXiv:1707.06203,
appendix), as used by the Relational Memory Core paper (Santoro et al. 2018,
section 5.3: full observation and a 5x5 viewport). No code was taken from
other implementations.

Where each rule comes from
--------------------------
From the I2A description (as recalled; see the caveat below the list):

* a 15x19 grid maze, food on every free cell, 2 power pills, ghosts chasing
  the player, 5 actions (stay, right, up, left, down), the player eats what
  is on the cell it moves to;
* the player and a ghost *meet* if they end the step on the same cell or
  swap cells in that step; meeting a normal ghost kills the player (episode
  ends), meeting an edible ghost eats it;
* the five reward modes (reward per event)::

      mode      step   food   power pill   eat ghost   killed by ghost
      regular    0      1        2            5              0
      avoid      0.1   -0.1     -5          -10            -20
      hunt       0      0        1           10            -20
      ambush     0     -0.1      0           10            -20
      rush       0     -0.1     10            0              0

* random placement of the player, ghosts and pills at the start of each
  level, and 1 + (level - 1) // 2 ghosts on level ``level``.

The reward table and the ghost-count rule are quoted from memory of the I2A
appendix and should be checked against the paper when it is at hand.

Chosen here (the description is silent, differs, or the brief fixed it):

* the maze layout (``MAZE`` below; left-right and top-bottom symmetric,
  corridors one cell wide, no dead ends) is our own;
* a power pill makes *all* ghosts edible for exactly ``POWER_STEPS = 20``
  steps, counting the step it is eaten (I2A, as recalled: 19 steps, with a
  double-speed player while powered, which is not implemented here); ``info["power_steps_left"]`` is 20
  right after the pill and 0 once the effect is over; eating a second pill
  restarts the count;
* ghosts move one cell per step (never stay) simultaneously with the player;
  with probability ``ghost_epsilon`` (0.2) a ghost takes a uniformly random
  legal move, otherwise it moves to a neighbour that minimises (normal) or
  maximises (edible) the maze (shortest-path) distance to the player's cell
  at the start of the step, ties broken at random; edible ghosts move only on
  every other step (half speed), so they can be caught;
* an eaten ghost is sent back to its start cell (where it was placed at the
  start of the level); it stays edible while the power timer runs;
* ghosts are placed at least ``MIN_GHOST_DISTANCE`` maze steps from the
  player; at most ``MAX_GHOSTS = 4`` ghosts;
* the pill cells hold no food, and the player's start cell holds no food;
* order within a step: the power timer counts down, the player moves and
  eats (food / pill), the ghosts move, meetings are resolved (ghost eaten or
  death), then the level is checked; all the events' rewards are summed with
  the per-step reward;
* level advance (a new level re-places everything, restores the food and both
  pills, resets the power timer, and may add a ghost):

      regular, avoid: all food eaten
      hunt, ambush:   all food eaten, or as many ghost meals this level as
                      there are ghosts on the level
      rush:           both power pills eaten

* the episode ends (``terminated``) when the player dies and is truncated
  after ``max_steps`` steps (default 1000). The RMC paper's returns above 1000
  in regular mode suggest a longer episode or a double-speed player there.

Randomness: everything random (placement, ghost moves, tie breaks) comes
from ``self.np_random`` (drawn in blocks of 1024 uniforms), so the same seed
and the same actions give the same trajectory.

Observations
------------
``obs="full"``: float32 array (6, 15, 19), channels
``[walls, food, player, ghost, edible ghost, power pill]`` (``CHANNELS``);
``obs="viewport"``: (6, 5, 5) window centred on the player, where cells
beyond the maze border read as walls and nothing else. ``render()`` (with
``render_mode="rgb_array"``) gives an RGB uint8 frame of the whole maze
(``CELL_PIXELS`` pixels a cell), with the viewport outlined in viewport mode.

Test helpers
------------
``env.set_state(player=..., ghosts=..., food=..., pills=..., power_steps=...)``
places things directly (positions are ``(row, col)``); ``env.freeze_ghosts =
True`` stops ghost movement; ``env.ghost_epsilon`` sets ghost randomness.
Read-only views: ``player_pos``, ``ghost_positions``, ``ghost_starts``,
``food_grid``, ``pill_positions``. ``snapshot()`` / ``restore(snapshot)`` save
and restore the whole state, random generator included (for exact resume).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterable, Sequence

import gymnasium
import numpy as np
from gymnasium import spaces

__all__ = ["MiniPacman", "MAZE", "REWARDS", "MODES", "OBS_TYPES", "CHANNELS"]

MAZE = """\
###################
#........#........#
#.##.###.#.###.##.#
#.................#
#.##.#.#####.#.##.#
#....#...#...#....#
####.###.#.###.####
####...........####
####.###.#.###.####
#....#...#...#....#
#.##.#.#####.#.##.#
#.................#
#.##.###.#.###.##.#
#........#........#
###################"""

# (step, food, power pill, eat ghost, killed by ghost)
REWARDS: dict[str, tuple[float, float, float, float, float]] = {
    "regular": (0.0, 1.0, 2.0, 5.0, 0.0),
    "avoid": (0.1, -0.1, -5.0, -10.0, -20.0),
    "hunt": (0.0, 0.0, 1.0, 10.0, -20.0),
    "ambush": (0.0, -0.1, 0.0, 10.0, -20.0),
    "rush": (0.0, -0.1, 10.0, 0.0, 0.0),
}
MODES = tuple(REWARDS)
OBS_TYPES = ("full", "viewport")
CHANNELS = ("walls", "food", "player", "ghost", "edible_ghost", "power_pill")
WALL, FOOD, PLAYER, GHOST, EDIBLE, PILL = range(6)

POWER_STEPS = 20
N_PILLS = 2
MAX_GHOSTS = 4
MIN_GHOST_DISTANCE = 6
VIEW = 5
PAD = VIEW // 2
CELL_PIXELS = 8

# action -> (d_row, d_col): 0 stay, 1 right, 2 up, 3 left, 4 down
ACTIONS = ((0, 0), (0, 1), (-1, 0), (0, -1), (1, 0))
ACTION_NAMES = ("stay", "right", "up", "left", "down")

COLOURS = {
    "background": (0, 0, 0),
    "wall": (33, 33, 222),
    "food": (255, 255, 255),
    "pill": (255, 140, 0),
    "player": (255, 230, 0),
    "ghost": (230, 0, 0),
    "edible": (120, 200, 255),
    "viewport": (0, 230, 0),
}


def _parse_maze(text: str) -> np.ndarray:
    rows = text.split("\n")
    walls = np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)
    if walls.shape != (15, 19):
        raise AssertionError(f"maze must be 15x19, got {walls.shape}")
    return walls


class _Layout:
    """Everything derived from the fixed maze, computed once."""

    def __init__(self, text: str) -> None:
        self.walls = _parse_maze(text)
        self.shape = self.walls.shape
        h, w = self.shape
        n = h * w
        self.free = np.flatnonzero(~self.walls.ravel())
        self.rows, self.cols = np.divmod(np.arange(n), w)
        # move[cell, action] -> cell after the move (a wall means stay)
        move = np.repeat(np.arange(n)[:, None], len(ACTIONS), axis=1)
        for a, (dr, dc) in enumerate(ACTIONS):
            r, c = self.rows + dr, self.cols + dc
            ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            tgt = np.where(ok, r.clip(0, h - 1) * w + c.clip(0, w - 1), 0)
            ok &= ~self.walls.ravel()[tgt]
            move[:, a] = np.where(ok, tgt, np.arange(n))
        move[self.walls.ravel()] = np.arange(n)[self.walls.ravel(), None]
        self.move = move
        # legal neighbour cells of every free cell (ghosts never stay)
        self.neighbours: list[np.ndarray] = [
            np.array(sorted({int(x) for x in move[i, 1:]} - {i}), dtype=np.intp)
            for i in range(n)
        ]
        # all-pairs maze distance (BFS from every free cell); walls: large
        big = np.iinfo(np.int16).max
        dist = np.full((n, n), big, dtype=np.int16)
        for s in self.free:
            dist[s, s] = 0
            queue = deque([s])
            while queue:
                u = queue.popleft()
                for v in self.neighbours[u]:
                    if dist[s, v] == big:
                        dist[s, v] = dist[s, u] + 1
                        queue.append(v)
        if (dist[np.ix_(self.free, self.free)] == big).any():
            raise AssertionError("maze is not connected")
        self.dist = dist
        # plain Python copies for the per-step hot path (a handful of lookups)
        self.move_list = move.tolist()
        self.neighbour_list = [nb.tolist() for nb in self.neighbours]
        self.dist_list = dist.tolist()
        self.free_list = self.free.tolist()
        self.food_template = (~self.walls).astype(np.float32)
        # ghost start candidates for each player cell
        self.far_list: list[list[int]] = [[] for _ in range(n)]
        for c in self.free_list:
            self.far_list[c] = self.free[dist[c, self.free] >= MIN_GHOST_DISTANCE].tolist()


_LAYOUT: _Layout | None = None


def _layout() -> _Layout:
    global _LAYOUT
    if _LAYOUT is None:
        _LAYOUT = _Layout(MAZE)
    return _LAYOUT


class MiniPacman(gymnasium.Env):
    """Mini Pac-Man (see the module docstring for the rules).

    Args:
        mode: reward mode, one of ``MODES``.
        obs: ``"full"`` (6, 15, 19) or ``"viewport"`` (6, 5, 5).
        max_steps: episode step cap (truncation).
        render_mode: ``None`` or ``"rgb_array"``.
        ghost_epsilon: probability of a random ghost move.

    Actions: 0 stay, 1 right, 2 up, 3 left, 4 down (into a wall = stay).
    ``info``: ``level``, ``food_left``, ``pills_left``, ``power_steps_left``,
    ``n_ghosts``, ``ghosts_eaten`` (this level), ``steps``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(
        self,
        mode: str = "regular",
        obs: str = "full",
        max_steps: int = 1000,
        render_mode: str | None = None,
        ghost_epsilon: float = 0.2,
    ) -> None:
        if mode not in REWARDS:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if obs not in OBS_TYPES:
            raise ValueError(f"obs must be one of {', '.join(OBS_TYPES)}; got {obs!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array'; got {render_mode!r}")
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1; got {max_steps}")
        self.mode = mode
        self.obs_type = obs
        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self.ghost_epsilon = float(ghost_epsilon)
        self.freeze_ghosts = False
        (self._r_step, self._r_food, self._r_pill, self._r_ghost, self._r_death) = REWARDS[mode]

        self._lay = _layout()
        h, w = self._lay.shape
        self.shape = (h, w)
        obs_shape = (len(CHANNELS), h, w) if obs == "full" else (len(CHANNELS), VIEW, VIEW)
        self.observation_space = spaces.Box(0.0, 1.0, shape=obs_shape, dtype=np.float32)
        self.action_space = spaces.Discrete(len(ACTIONS))

        # padded channel grid: the 2-cell border is wall and nothing else
        self._grid = np.zeros((len(CHANNELS), h + 2 * PAD, w + 2 * PAD), dtype=np.float32)
        self._grid[WALL] = 1.0
        self._grid[WALL, PAD:PAD + h, PAD:PAD + w] = self._lay.walls
        self._inner = self._grid[:, PAD:PAD + h, PAD:PAD + w]  # view
        self._food = self._inner[FOOD]  # view, (h, w)
        self._pill = self._inner[PILL]  # view, (h, w)

        self._player = 0
        self._ghosts: list[int] = []
        self._ghost_starts: list[int] = []
        self._gflat = self._grid.reshape(-1)  # view
        plane = (h + 2 * PAD) * (w + 2 * PAD)
        cells = np.arange(h * w)
        padded = (cells // w + PAD) * (w + 2 * PAD) + cells % w + PAD
        self._padded = padded.tolist()  # cell -> flat index in one padded plane
        self._plane = plane
        self._drawn: list[int] = []  # flat indices of set entity pixels
        self._rand = np.zeros(0)
        self._rand_i = 0
        self._level = 1
        self._power = 0
        self._steps = 0
        self._food_left = 0
        self._pills_left = 0
        self._ghosts_eaten = 0
        self._done = True
        self._started = False

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rand_i = self._rand.size  # restart the random block from the new seed
        self._level = 1
        self._steps = 0
        self._new_level()
        self._done = False
        self._started = True
        return self._observation(), self._info()

    def step(self, action):
        if self._done:
            raise RuntimeError("episode is over (or reset() was not called); call reset()")
        action = int(action)
        if not 0 <= action < 5:
            raise ValueError(f"action must be in 0..{len(ACTIONS) - 1}; got {action}")
        self._steps += 1
        reward = self._r_step
        if self._power > 0:
            self._power -= 1

        # the player moves and eats
        old_player = self._player
        player = self._lay.move_list[old_player][action]
        self._player = player
        gflat, k = self._gflat, self._padded[player]
        if gflat[FOOD * self._plane + k]:
            gflat[FOOD * self._plane + k] = 0.0
            self._food_left -= 1
            reward += self._r_food
        if gflat[PILL * self._plane + k]:
            gflat[PILL * self._plane + k] = 0.0
            self._pills_left -= 1
            self._power = POWER_STEPS
            reward += self._r_pill

        # the ghosts move (from the state at the start of the step)
        old_ghosts = self._ghosts
        new_ghosts = self._move_ghosts(old_ghosts, old_player)
        self._ghosts = new_ghosts

        # meetings: same cell, or swapped cells
        terminated = False
        hit = [
            i
            for i, (old, new) in enumerate(zip(old_ghosts, new_ghosts))
            if new == player or (new == old_player and old == player)
        ]
        if hit:
            if self._power > 0:
                reward += self._r_ghost * len(hit)
                self._ghosts_eaten += len(hit)
                for i in hit:
                    new_ghosts[i] = self._ghost_starts[i]
            else:
                reward += self._r_death
                terminated = True

        if not terminated and self._level_cleared():
            self._level += 1
            self._new_level()

        truncated = (not terminated) and self._steps >= self.max_steps
        self._done = terminated or truncated
        return self._observation(), float(reward), terminated, truncated, self._info()

    def render(self):
        if self.render_mode != "rgb_array":
            gymnasium.logger.warn(
                "render() needs render_mode='rgb_array' (got %r); returning None" % (self.render_mode,)
            )
            return None
        return self._render_rgb()

    # -------------------------------------------------------- test helpers
    def set_state(
        self,
        player: tuple[int, int] | None = None,
        ghosts: Sequence[tuple[int, int]] | None = None,
        food: np.ndarray | Iterable[tuple[int, int]] | None = None,
        pills: Sequence[tuple[int, int]] | None = None,
        power_steps: int | None = None,
        ghost_starts: Sequence[tuple[int, int]] | None = None,
    ) -> np.ndarray:
        """Place things directly (for tests and debugging); returns the observation.

        ``player``, ``ghosts`` and ``pills`` are ``(row, col)`` cells (free, not
        walls). ``ghosts`` also resets the ghosts' start cells to the given
        cells unless ``ghost_starts`` is given. ``food`` is either a boolean
        (15, 19) array or a list of cells holding food (every other cell is
        emptied); ``pills`` replaces both pills (their cells lose their food).
        Arguments left ``None`` keep the current state. Call after
        ``reset()``.
        """
        if not self._started:
            raise RuntimeError("call reset() before set_state()")
        if player is not None:
            self._player = self._cell(player)
        if ghosts is not None:
            self._ghosts = [self._cell(g) for g in ghosts]
            self._ghost_starts = list(self._ghosts)
        if ghost_starts is not None:
            starts = [self._cell(g) for g in ghost_starts]
            if len(starts) != len(self._ghosts):
                raise ValueError("ghost_starts needs one cell per ghost")
            self._ghost_starts = starts
        if food is not None:
            arr = np.asarray(food)
            grid = np.zeros(self.shape, dtype=bool)
            if arr.shape == self.shape and arr.dtype == bool:
                grid[:] = arr
            else:
                for cell in food:  # type: ignore[union-attr]
                    grid.flat[self._cell(cell)] = True
            grid &= ~self._lay.walls
            self._food[:] = grid
            self._food_left = int(grid.sum())
        if pills is not None:
            self._pill[:] = 0.0
            for p in pills:
                cell = divmod(self._cell(p), self.shape[1])
                self._pill[cell] = 1.0
                self._food[cell] = 0.0  # a pill cell holds no food
            self._pills_left = int(self._pill.sum())
            self._food_left = int(self._food.sum())
        if power_steps is not None:
            self._power = int(power_steps)
        return self._observation()

    def snapshot(self) -> dict[str, Any]:
        """Everything the next steps depend on, as plain Python values and numpy arrays.

        ``restore(snapshot())`` on an env built with the same arguments continues
        exactly as this one would (same observations, rewards and random draws);
        the RL task stores it in checkpoints for exact resume. The generator's
        128-bit integers are kept as strings.
        """
        rng = self.np_random.bit_generator.state
        return {
            "grid": self._grid.copy(),
            "rand": self._rand.copy(),
            "ints": [self._player, self._rand_i, self._level, self._power, self._steps,
                     self._food_left, self._pills_left, self._ghosts_eaten, int(self._done), int(self._started)],
            "ghosts": list(self._ghosts),
            "ghost_starts": list(self._ghost_starts),
            "drawn": list(self._drawn),
            "rng": {"bit_generator": rng["bit_generator"], "state": str(rng["state"]["state"]),
                    "inc": str(rng["state"]["inc"]), "has_uint32": int(rng["has_uint32"]),
                    "uinteger": int(rng["uinteger"])},
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Return to the state captured by ``snapshot()`` (see there)."""
        grid = np.asarray(snapshot["grid"], dtype=np.float32)
        if grid.shape != self._grid.shape:
            raise ValueError(f"snapshot grid has shape {grid.shape}, expected {self._grid.shape}")
        self._grid[...] = grid  # in place: _inner, _food, _pill and _gflat are views of it
        self._rand = np.asarray(snapshot["rand"], dtype=np.float64).copy()
        (self._player, self._rand_i, self._level, self._power, self._steps,
         self._food_left, self._pills_left, self._ghosts_eaten, done, started) = (int(x) for x in snapshot["ints"])
        self._done, self._started = bool(done), bool(started)
        self._ghosts = [int(g) for g in snapshot["ghosts"]]
        self._ghost_starts = [int(g) for g in snapshot["ghost_starts"]]
        self._drawn = [int(k) for k in snapshot["drawn"]]
        rng = snapshot["rng"]
        generator = np.random.Generator(getattr(np.random, rng["bit_generator"])())
        generator.bit_generator.state = {
            "bit_generator": rng["bit_generator"],
            "state": {"state": int(rng["state"]), "inc": int(rng["inc"])},
            "has_uint32": int(rng["has_uint32"]),
            "uinteger": int(rng["uinteger"]),
        }
        self._np_random = generator

    @property
    def player_pos(self) -> tuple[int, int]:
        return divmod(int(self._player), self.shape[1])

    @property
    def ghost_positions(self) -> list[tuple[int, int]]:
        return [divmod(int(g), self.shape[1]) for g in self._ghosts]

    @property
    def ghost_starts(self) -> list[tuple[int, int]]:
        return [divmod(int(g), self.shape[1]) for g in self._ghost_starts]

    @property
    def pill_positions(self) -> list[tuple[int, int]]:
        return [tuple(int(x) for x in rc) for rc in np.argwhere(self._pill > 0)]

    @property
    def food_grid(self) -> np.ndarray:
        return self._food > 0

    @property
    def walls(self) -> np.ndarray:
        return self._lay.walls.copy()

    @property
    def level(self) -> int:
        return self._level

    # ------------------------------------------------------------ internals
    def _cell(self, rc) -> int:
        r, c = (int(x) for x in rc)
        h, w = self.shape
        if not (0 <= r < h and 0 <= c < w) or self._lay.walls[r, c]:
            raise ValueError(f"cell {(r, c)} is not a free maze cell")
        return r * w + c

    def maze_distance(self, a: tuple[int, int], b: tuple[int, int]) -> int:
        """Shortest-path length (in moves) between two free cells."""
        return int(self._lay.dist[self._cell(a), self._cell(b)])

    @staticmethod
    def n_ghosts_for_level(level: int) -> int:
        return min(MAX_GHOSTS, 1 + (level - 1) // 2)

    def _sample(self, cells: list[int], k: int, exclude: tuple[int, ...] = ()) -> list[int]:
        """``k`` distinct cells from ``cells`` (none in ``exclude``), uniformly."""
        out: list[int] = []
        while len(out) < k:
            c = cells[int(self._uniform() * len(cells))]
            if c not in out and c not in exclude:
                out.append(c)
        return out

    def _new_level(self) -> None:
        lay = self._lay
        (player,) = self._sample(lay.free_list, 1)
        pills = self._sample(lay.free_list, N_PILLS, exclude=(player,))
        ghosts = self._sample(lay.far_list[player], self.n_ghosts_for_level(self._level))

        self._player = player
        self._ghosts = ghosts
        self._ghost_starts = list(ghosts)
        self._food[:] = lay.food_template
        self._pill[:] = 0.0
        w = self.shape[1]
        self._food[divmod(player, w)] = 0.0
        for p in pills:
            self._food[divmod(p, w)] = 0.0
            self._pill[divmod(p, w)] = 1.0
        self._food_left = len(lay.free_list) - 1 - N_PILLS
        self._pills_left = N_PILLS
        self._power = 0
        self._ghosts_eaten = 0

    def _level_cleared(self) -> bool:
        if self.mode == "rush":
            return self._pills_left == 0
        if self._food_left == 0:
            return True
        if self.mode in ("hunt", "ambush"):
            return self._ghosts_eaten >= len(self._ghosts)
        return False

    def _uniform(self) -> float:
        """Next U[0, 1) number of a block drawn from ``self.np_random`` (faster than one draw a call)."""
        if self._rand_i >= self._rand.size:
            self._rand = self.np_random.random(1024)
            self._rand_i = 0
        u = self._rand[self._rand_i]
        self._rand_i += 1
        return float(u)

    def _move_ghosts(self, ghosts: list[int], target: int) -> list[int]:
        if self.freeze_ghosts or not ghosts:
            return list(ghosts)
        edible = self._power > 0
        if edible and self._steps % 2:
            return list(ghosts)  # edible ghosts move at half speed
        neighbour_list = self._lay.neighbour_list
        dist = self._lay.dist_list[target]
        eps = self.ghost_epsilon
        new = []
        for g in ghosts:
            nb = neighbour_list[g]
            if self._uniform() < eps:
                new.append(nb[int(self._uniform() * len(nb))])
                continue
            d = [dist[c] for c in nb]
            goal = max(d) if edible else min(d)
            best = [c for c, dc in zip(nb, d) if dc == goal]
            new.append(best[0] if len(best) == 1 else best[int(self._uniform() * len(best))])
        return new

    def _observation(self) -> np.ndarray:
        gflat, padded, plane = self._gflat, self._padded, self._plane
        for k in self._drawn:
            gflat[k] = 0.0
        p = padded[self._player]
        drawn = [PLAYER * plane + p]
        offset = (EDIBLE if self._power > 0 else GHOST) * plane
        drawn += [offset + padded[g] for g in self._ghosts]
        for k in drawn:
            gflat[k] = 1.0
        self._drawn = drawn
        if self.obs_type == "full":
            return self._inner.copy()
        pr, pc = divmod(self._player, self.shape[1])
        return self._grid[:, pr:pr + VIEW, pc:pc + VIEW].copy()

    def _info(self) -> dict[str, Any]:
        return {
            "level": self._level,
            "food_left": self._food_left,
            "pills_left": self._pills_left,
            "power_steps_left": self._power,
            "n_ghosts": len(self._ghosts),
            "ghosts_eaten": self._ghosts_eaten,
            "steps": self._steps,
        }

    def _render_rgb(self) -> np.ndarray:
        s = CELL_PIXELS
        h, w = self.shape
        frame = np.zeros((h * s, w * s, 3), dtype=np.uint8)
        frame[np.kron(self._lay.walls, np.ones((s, s), dtype=bool))] = COLOURS["wall"]

        def tile(margin: int) -> np.ndarray:
            t = np.zeros((s, s), dtype=bool)
            t[margin:s - margin, margin:s - margin] = True
            return t

        frame[np.kron(self._food > 0, tile(3))] = COLOURS["food"]
        frame[np.kron(self._pill > 0, tile(2))] = COLOURS["pill"]
        ghost_colour = COLOURS["edible"] if self._power > 0 else COLOURS["ghost"]
        for g in self._ghosts:
            r, c = divmod(g, w)
            frame[r * s + 1:(r + 1) * s - 1, c * s + 1:(c + 1) * s - 1] = ghost_colour
        r, c = divmod(int(self._player), w)
        frame[r * s + 1:(r + 1) * s - 1, c * s + 1:(c + 1) * s - 1] = COLOURS["player"]
        if self.obs_type == "viewport":
            top, left = (r - PAD) * s, (c - PAD) * s
            bottom, right = top + VIEW * s - 1, left + VIEW * s - 1
            t, b = max(top, 0), min(bottom, h * s - 1)
            lft, rgt = max(left, 0), min(right, w * s - 1)
            colour = COLOURS["viewport"]
            if top >= 0:
                frame[top, lft:rgt + 1] = colour
            if bottom < h * s:
                frame[bottom, lft:rgt + 1] = colour
            if left >= 0:
                frame[t:b + 1, left] = colour
            if right < w * s:
                frame[t:b + 1, right] = colour
        return frame
