"""Mini Pac-Man: the published rules of the I2A paper's environment, as a fast pure-Python ``gymnasium.Env``.

The Mini Pac-Man of the Imagination-Augmented Agents paper (Weber et al. 2017), used by the
Relational Memory Core paper (Santoro et al. 2018, section 5.3, full view and a 5x5
viewport), was released by its authors as a small NumPy class, ``PillEater``. This module
follows its rules; the code is our own (a flat-index maze, precomputed move and exit
tables, one block of uniforms drawn at a time), written for speed and for exact resume.
``docs/pacman.md`` lists every rule with the test that pins it.

Rules (published)
-----------------
* The maze: the published 15x19 map (``MAZE``, 138 free cells, no dead ends).
* Actions: 0 stay, 1 right, 2 up, 3 left, 4 down; a move into a wall is a stay.
* A level: food on every free cell (pill cells and Pac-Man's start cell included), two
  pills on free cells drawn independently (they may share a cell), Pac-Man on a uniformly
  drawn free cell, then ``1 + (level - 1) // 2`` ghosts (no cap), each on a free cell drawn
  uniformly outside the box of rows ``[r - 5, r + 5)`` x columns ``[c - 5, c + 5)`` around
  Pac-Man at ``(r, c)`` (the published half-open box), facing a uniformly drawn direction.
  The power is 0, the level timer 0, and the ghosts' speed ``0.5 + 0.1 (level - 1)``.
* One step, in this order: the frame count and the level timer go up by one; the power
  goes down by one (not below 0); Pac-Man moves; if his cell holds food he eats it (food
  reward); then if it holds a pill he eats one (pill reward, power = ``POWER_STEPS`` = 20);
  then each ghost in turn: if it is on Pac-Man's cell it meets him; otherwise (and also
  after such a meeting with a normal ghost) it moves with probability ``speed`` (halved
  while the power is on), and meets him if it lands on his cell. Meeting a ghost while
  the power is 0 kills Pac-Man (death reward; the episode ends, and the remaining ghosts
  still take their turn, so two ghosts can add the death reward twice); meeting it while
  the power is on eats it: it is gone for the rest of the level (ghost reward), and the
  ghosts after it do not move this step ("one ghost per step").
* A ghost move: its exits are the directions (right, up, left, down, in that order) that
  do not hit a wall. One exit: it takes it. Two (a corridor or a corner): it keeps its
  direction if that is an exit, otherwise takes the exit that is not the reverse of it
  (it follows the corridor). Three or more (a junction): the reverse is dropped; with the
  power off it takes, with probability ``GHOST_RANDOM`` = 0.05, a uniformly drawn exit,
  otherwise the exit whose direction has the largest dot product with the vector to
  Pac-Man (the first on ties); with the power on, the exit with the smallest (flees). If
  the ghost is on Pac-Man's cell it keeps its direction. A ghost never reverses except in
  a corridor it entered facing a wall (only at the start of a level).
* A new level (``level + 1``, everything re-placed) starts: in regular and avoid when the
  last food is eaten; in rush when the last pill is eaten; in hunt and ambush when the
  last ghost is eaten; in avoid also when the level timer reaches 128. The food and pill
  checks happen the moment they are eaten (the pill check after a food-triggered new
  level looks at the new level).
* Rewards (step, food, pill, ghost, death)::

      regular    0     1     2     5     0
      avoid      0.1  -0.1  -5   -10   -20
      hunt       0     0     1    10   -20
      ambush     0    -0.1   0    10   -20
      rush       0    -0.1  10     0     0

* The episode ends at death (``terminated``) or after ``max_steps`` = 3000 steps
  (``truncated``).

Ours (the published code is silent or has an artefact here)
------------------------------------------------------------
* The observation is drawn after the level timer's new level (the published class draws
  the image before that check, so its frame after a timer reset still shows the old
  level for one step).
* Randomness comes from ``self.np_random`` (gymnasium's seeding), drawn in blocks of 1024
  uniforms, so a seed fixes the episode and ``snapshot()`` / ``restore()`` resume exactly.

Observations
------------
``encoding="rgb"`` (the published one): float32 ``(3, H, W)`` in [0, 1] (the published
RGB image, channels first), each cell coloured by its top-most content: Pac-Man (0, 1, 0);
a ghost (1, power / 20, 0), so the agent sees how much power is left; a pill (0, 1, 1);
food (0, 0, 1); a wall (1, 1, 1); else black. ``encoding="planes"``: float32 ``(6, H, W)``,
the published planes ``[walls, food, pacman, ghost (1 - power/20), edible ghost (power/20),
pill]`` (``CHANNELS``), for analysis. ``obs="full"`` is the whole 15x19 maze;
``obs="viewport"`` the 5x5 window centred on Pac-Man, cells beyond the map reading as
walls. ``render()`` (``render_mode="rgb_array"``) draws the full RGB image as uint8,
``CELL_PIXELS`` pixels a cell, with the viewport outlined in viewport mode.

Speed: ``python benchmarks/bench_pacman_env.py`` (env steps per second, random policy).

Test helpers: ``set_state(...)`` places things directly; ``freeze_ghosts = True`` stops
ghost movement; ``ghost_random`` and ``ghost_speed`` may be overridden; read-only views
``player_pos``, ``ghost_positions``, ``ghost_directions``, ``food_grid``,
``pill_positions``, ``walls``, ``level``.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import gymnasium
import numpy as np
from gymnasium import spaces

__all__ = ["MiniPacman", "MAZE", "REWARDS", "MODES", "OBS_TYPES", "ENCODINGS", "CHANNELS"]

MAZE = """\
###################
#...#.........#...#
#.#.#.#######.#.#.#
#.................#
#.#.#.#######.#.#.#
#.#.............#.#
#.####.#####.####.#
#......#####......#
#.####.#####.####.#
#.#.............#.#
#.#.#.#######.#.#.#
#.................#
#.#.#.#######.#.#.#
#...#.........#...#
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
ENCODINGS = ("rgb", "planes")
CHANNELS = ("walls", "food", "pacman", "ghost", "edible_ghost", "pill")  # encoding="planes"
WALL, FOOD, PLAYER, GHOST, EDIBLE, PILL = range(6)

MAX_STEPS = 3000
POWER_STEPS = 20
N_PILLS = 2
GHOST_SPEED = 0.5  # on level 1; + GHOST_SPEED_INCREASE per level
GHOST_SPEED_INCREASE = 0.1
GHOST_RANDOM = 0.05  # probability of a random exit at a junction (power off)
SAFE_DISTANCE = 5  # ghosts start outside rows [r-5, r+5) x columns [c-5, c+5) around Pac-Man
AVOID_LEVEL_STEPS = 128  # avoid mode: a new level every 128 steps
VIEW = 5
PAD = VIEW // 2
CELL_PIXELS = 8

# action -> (d_row, d_col): 0 stay, 1 right, 2 up, 3 left, 4 down
ACTIONS = ((0, 0), (0, 1), (-1, 0), (0, -1), (1, 0))
ACTION_NAMES = ("stay", "right", "up", "left", "down")
REVERSE = (0, 3, 4, 1, 2)  # of a direction (an action 1..4)

# the published RGB colours, in [0, 1]
COLOURS = {
    "empty": (0.0, 0.0, 0.0),
    "wall": (1.0, 1.0, 1.0),
    "food": (0.0, 0.0, 1.0),
    "pill": (0.0, 1.0, 1.0),
    "pacman": (0.0, 1.0, 0.0),
    "ghost": (1.0, 0.0, 0.0),  # (1, power / 20, 0) while the power lasts
}
VIEWPORT_OUTLINE = (255, 0, 255)  # render() only


class _Layout:
    """Everything derived from the fixed maze, computed once (flat cell index = row * W + col)."""

    def __init__(self, text: str) -> None:
        rows = text.split("\n")
        self.walls = np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)
        if self.walls.shape != (15, 19):
            raise AssertionError(f"maze must be 15x19, got {self.walls.shape}")
        h, w = self.shape = self.walls.shape
        wall_list = self.walls.ravel().tolist()
        self.free_list = [i for i in range(h * w) if not wall_list[i]]
        self.rc = [divmod(i, w) for i in range(h * w)]
        move = []
        for i in range(h * w):
            r, c = self.rc[i]
            targets = []
            for dr, dc in ACTIONS:
                rr, cc = r + dr, c + dc
                ok = not wall_list[i] and 0 <= rr < h and 0 <= cc < w and not wall_list[rr * w + cc]
                targets.append(rr * w + cc if ok else i)
            move.append(targets)
        self.move = move  # move[cell][action] -> cell
        self.exits = [[d for d in (1, 2, 3, 4) if move[i][d] != i] for i in self.free_list]
        self.exits_of = {cell: exits for cell, exits in zip(self.free_list, self.exits)}
        if min(len(e) for e in self.exits) < 1:
            raise AssertionError("maze has an isolated cell")


_LAYOUT: _Layout | None = None


def _layout() -> _Layout:
    global _LAYOUT
    if _LAYOUT is None:
        _LAYOUT = _Layout(MAZE)
    return _LAYOUT


class MiniPacman(gymnasium.Env):
    """Mini Pac-Man under the published rules (see the module docstring).

    Args:
        mode: reward mode, one of ``MODES``.
        obs: ``"full"`` (15x19) or ``"viewport"`` (5x5 around Pac-Man).
        encoding: ``"rgb"`` (3 channels, the published observation) or ``"planes"`` (6).
        max_steps: episode step cap (truncation), 3000 as published.
        render_mode: ``None`` or ``"rgb_array"``.

    ``info``: ``level``, ``food_left``, ``pills_left``, ``power_steps_left``, ``n_ghosts``,
    ``ghosts_eaten`` (this level), ``steps``, ``level_steps``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, mode: str = "regular", obs: str = "full", encoding: str = "rgb",
                 max_steps: int = MAX_STEPS, render_mode: str | None = None) -> None:
        if mode not in REWARDS:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if obs not in OBS_TYPES:
            raise ValueError(f"obs must be one of {', '.join(OBS_TYPES)}; got {obs!r}")
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}; got {encoding!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array'; got {render_mode!r}")
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1; got {max_steps}")
        self.mode, self.obs_type, self.encoding = mode, obs, encoding
        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self.freeze_ghosts = False
        self.ghost_random = GHOST_RANDOM
        self.ghost_speed: float | None = None  # None: the level's speed
        self._r_step, self._r_food, self._r_pill, self._r_ghost, self._r_death = REWARDS[mode]
        self._food_ends_level = mode in ("regular", "avoid")
        self._pills_end_level = mode == "rush"
        self._ghosts_end_level = mode in ("hunt", "ambush")
        self._level_steps = AVOID_LEVEL_STEPS if mode == "avoid" else -1

        self._lay = _layout()
        h, w = self.shape = self._lay.shape
        channels = 3 if encoding == "rgb" else len(CHANNELS)
        view = (h, w) if obs == "full" else (VIEW, VIEW)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(channels, *view), dtype=np.float32)
        self.action_space = spaces.Discrete(len(ACTIONS))
        # the static picture (walls, food, pills), padded by PAD cells of wall; entities are drawn on a copy
        self._base = np.zeros((channels, h + 2 * PAD, w + 2 * PAD), dtype=np.float32)
        self._padded = [(r + PAD, c + PAD) for r, c in self._lay.rc]

        self._player = 0
        self._ghosts: list[int] = []
        self._dirs: list[int] = []
        self._food = [False] * (h * w)
        self._pills: list[int] = []
        self._rand = np.zeros(0)
        self._rand_i = 0
        self._level = self._power = self._steps = self._timer = self._food_left = self._ghosts_eaten = 0
        self._done, self._started = True, False

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rand_i = self._rand.size  # the next draw starts a block from the new seed
        self._steps = 0
        self._new_level(1)
        self._done, self._started = False, True
        return self._observation(), self._info()

    def step(self, action):
        if self._done:
            raise RuntimeError("episode is over (or reset() was not called); call reset()")
        action = int(action)
        if not 0 <= action < len(ACTIONS):
            raise ValueError(f"action must be in 0..{len(ACTIONS) - 1}; got {action}")
        self._steps += 1
        self._timer += 1
        reward = self._r_step
        if self._power > 0:
            self._power -= 1

        player = self._player = self._lay.move[self._player][action]
        if self._food[player]:
            self._set_food(player, False)
            self._food_left -= 1
            reward += self._r_food
            if self._food_left == 0 and self._food_ends_level:
                self._new_level(self._level + 1)
        player = self._player  # a new level re-placed him
        if player in self._pills:
            self._pills.remove(player)
            self._draw_cell(player)
            reward += self._r_pill
            self._power = POWER_STEPS
            if not self._pills and self._pills_end_level:
                self._new_level(self._level + 1)

        terminated = False
        speed = 0.0 if self.freeze_ghosts else self._speed() * (0.5 if self._power else 1.0)
        i = 0
        eaten = False
        while i < len(self._ghosts) and not eaten:
            # Ghost i meets Pac-Man if he walked onto it, then again if it moves (maybe) onto him.
            for moves in (False, True):
                if moves:
                    if self.freeze_ghosts or not self._uniform() < speed:
                        break
                    self._move_ghost(i)
                if self._ghosts[i] == self._player:
                    if self._power == 0:
                        reward += self._r_death
                        terminated = True
                    else:
                        reward += self._eat_ghost(i)
                        eaten = True  # the ghosts after it do not move this step
                        break
            i += 1

        if self._timer == self._level_steps:
            self._new_level(self._level + 1)
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        return self._observation(), float(reward), terminated, truncated, self._info()

    def render(self):
        if self.render_mode != "rgb_array":
            gymnasium.logger.warn(f"render() needs render_mode='rgb_array' (got {self.render_mode!r}); returning None")
            return None
        image = self._rgb_full()
        s = CELL_PIXELS
        frame = np.kron((image.transpose(1, 2, 0) * 255).round().astype(np.uint8), np.ones((s, s, 1), dtype=np.uint8))
        if self.obs_type == "viewport":
            h, w = self.shape
            r, c = self._lay.rc[self._player]
            top, left = max((r - PAD) * s, 0), max((c - PAD) * s, 0)
            bottom, right = min((r + PAD + 1) * s, h * s) - 1, min((c + PAD + 1) * s, w * s) - 1
            frame[top, left:right + 1] = frame[bottom, left:right + 1] = VIEWPORT_OUTLINE
            frame[top:bottom + 1, left] = frame[top:bottom + 1, right] = VIEWPORT_OUTLINE
        return frame

    # -------------------------------------------------------- test helpers
    def set_state(self, player: tuple[int, int] | None = None, ghosts: Sequence[tuple[int, int]] | None = None,
                  ghost_dirs: Sequence[int] | None = None, food: np.ndarray | Iterable[tuple[int, int]] | None = None,
                  pills: Sequence[tuple[int, int]] | None = None, power_steps: int | None = None,
                  level: int | None = None, level_steps: int | None = None) -> np.ndarray:
        """Place things directly (tests, debugging), after ``reset()``; returns the observation.

        Cells are ``(row, col)`` on free cells; ``ghost_dirs`` are directions 1..4 (right, up,
        left, down; default: all right); ``food`` is a boolean (15, 19) array or a list of
        cells (all others emptied). ``None`` keeps the current value.
        """
        if not self._started:
            raise RuntimeError("call reset() before set_state()")
        if player is not None:
            self._player = self._cell(player)
        if ghosts is not None:
            self._ghosts = [self._cell(g) for g in ghosts]
            self._dirs = [1] * len(self._ghosts)
        if ghost_dirs is not None:
            if len(ghost_dirs) != len(self._ghosts) or not all(d in (1, 2, 3, 4) for d in ghost_dirs):
                raise ValueError("ghost_dirs needs one direction in 1..4 per ghost")
            self._dirs = [int(d) for d in ghost_dirs]
        if food is not None:
            arr = np.asarray(food)
            if arr.shape == self.shape and arr.dtype == bool:
                cells = np.flatnonzero(arr & ~self._lay.walls).tolist()
            else:
                cells = [self._cell(cell) for cell in food]  # type: ignore[union-attr]
            self._food = [False] * len(self._food)
            for cell in cells:
                self._food[cell] = True
            self._food_left = sum(self._food)
        if pills is not None:
            self._pills = [self._cell(p) for p in pills]
        if power_steps is not None:
            self._power = int(power_steps)
        if level is not None:
            self._level = int(level)
        if level_steps is not None:
            self._timer = int(level_steps)
        self._draw_base()
        return self._observation()

    def snapshot(self) -> dict[str, Any]:
        """Everything the next steps depend on, as plain values and numpy arrays.

        ``restore(snapshot())`` on an env built with the same arguments continues exactly as
        this one would (same observations, rewards and random draws): the RL task stores it in
        checkpoints for exact resume. The generator's 128-bit integers are kept as strings.
        """
        rng = self.np_random.bit_generator.state
        return {
            "food": np.array(self._food, dtype=bool),
            "rand": self._rand.copy(),
            "ints": [self._player, self._rand_i, self._level, self._power, self._steps, self._timer,
                     self._food_left, self._ghosts_eaten, int(self._done), int(self._started)],
            "ghosts": list(self._ghosts),
            "dirs": list(self._dirs),
            "pills": list(self._pills),
            "rng": {"bit_generator": rng["bit_generator"], "state": str(rng["state"]["state"]),
                    "inc": str(rng["state"]["inc"]), "has_uint32": int(rng["has_uint32"]),
                    "uinteger": int(rng["uinteger"])},
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Return to the state captured by ``snapshot()`` (see there)."""
        if "food" not in snapshot or "dirs" not in snapshot:
            raise ValueError("not a snapshot of this environment (written before the published rules?)")
        food = np.asarray(snapshot["food"], dtype=bool)
        if food.shape != (len(self._food),):
            raise ValueError(f"snapshot food has shape {food.shape}, expected {(len(self._food),)}")
        self._food = food.tolist()
        self._rand = np.asarray(snapshot["rand"], dtype=np.float64).copy()
        (self._player, self._rand_i, self._level, self._power, self._steps, self._timer,
         self._food_left, self._ghosts_eaten, done, started) = (int(x) for x in snapshot["ints"])
        self._done, self._started = bool(done), bool(started)
        self._ghosts = [int(g) for g in snapshot["ghosts"]]
        self._dirs = [int(d) for d in snapshot["dirs"]]
        self._pills = [int(p) for p in snapshot["pills"]]
        rng = snapshot["rng"]
        generator = np.random.Generator(getattr(np.random, rng["bit_generator"])())
        generator.bit_generator.state = {
            "bit_generator": rng["bit_generator"], "state": {"state": int(rng["state"]), "inc": int(rng["inc"])},
            "has_uint32": int(rng["has_uint32"]), "uinteger": int(rng["uinteger"]),
        }
        self._np_random = generator
        self._draw_base()

    @property
    def player_pos(self) -> tuple[int, int]:
        return self._lay.rc[self._player]

    @property
    def ghost_positions(self) -> list[tuple[int, int]]:
        return [self._lay.rc[g] for g in self._ghosts]

    @property
    def ghost_directions(self) -> list[int]:
        return list(self._dirs)

    @property
    def pill_positions(self) -> list[tuple[int, int]]:
        return [self._lay.rc[p] for p in self._pills]

    @property
    def food_grid(self) -> np.ndarray:
        return np.array(self._food, dtype=bool).reshape(self.shape)

    @property
    def walls(self) -> np.ndarray:
        return self._lay.walls.copy()

    @property
    def level(self) -> int:
        return self._level

    @staticmethod
    def n_ghosts_for_level(level: int) -> int:
        return 1 + (level - 1) // 2

    # ------------------------------------------------------------ internals
    def _cell(self, rc) -> int:
        r, c = (int(x) for x in rc)
        h, w = self.shape
        if not (0 <= r < h and 0 <= c < w) or self._lay.walls[r, c]:
            raise ValueError(f"cell {(r, c)} is not a free maze cell")
        return r * w + c

    def _speed(self) -> float:
        if self.ghost_speed is not None:
            return self.ghost_speed
        return GHOST_SPEED + GHOST_SPEED_INCREASE * (self._level - 1)

    def _uniform(self) -> float:
        """The next U[0, 1) number of a block drawn from ``self.np_random`` (faster than one draw a call)."""
        if self._rand_i >= self._rand.size:
            self._rand = self.np_random.random(1024)
            self._rand_i = 0
        self._rand_i += 1
        return float(self._rand[self._rand_i - 1])

    def _free_cell(self) -> int:
        free = self._lay.free_list
        return free[int(self._uniform() * len(free))]

    def _new_level(self, level: int) -> None:
        lay = self._lay
        self._level = level
        self._food = [False] * len(self._food)
        for cell in lay.free_list:
            self._food[cell] = True
        self._food_left = len(lay.free_list)
        self._pills = [self._free_cell() for _ in range(N_PILLS)]
        self._player = self._free_cell()
        pr, pc = lay.rc[self._player]
        self._ghosts, self._dirs = [], []
        for _ in range(self.n_ghosts_for_level(level)):
            while True:  # uniform over the free cells outside the box (rejection, as published)
                cell = self._free_cell()
                r, c = lay.rc[cell]
                if not (pr - SAFE_DISTANCE <= r < pr + SAFE_DISTANCE and pc - SAFE_DISTANCE <= c < pc + SAFE_DISTANCE):
                    break
            self._ghosts.append(cell)
            self._dirs.append(1 + int(self._uniform() * 4))
        self._power = 0
        self._timer = 0
        self._ghosts_eaten = 0
        self._draw_base()

    def _eat_ghost(self, i: int) -> float:
        del self._ghosts[i], self._dirs[i]
        self._ghosts_eaten += 1
        if not self._ghosts and self._ghosts_end_level:
            self._new_level(self._level + 1)
        return self._r_ghost

    def _move_ghost(self, i: int) -> None:
        cell, direction = self._ghosts[i], self._dirs[i]
        exits = self._lay.exits_of[cell]
        if len(exits) == 1:
            direction = exits[0]
        elif len(exits) == 2:
            if direction not in exits:
                direction = exits[1] if REVERSE[direction] == exits[0] else exits[0]
        else:
            options = [d for d in exits if d != REVERSE[direction]]
            gr, gc = self._lay.rc[cell]
            pr, pc = self._lay.rc[self._player]
            dr, dc = pr - gr, pc - gc
            if dr or dc:
                # dot product of (dr, dc) with right (0, 1), up (-1, 0), left (0, -1), down (1, 0)
                products = [(0, dc, -dr, -dc, dr)[d] for d in options]
                if self._power:
                    direction = options[products.index(min(products))]  # flee
                elif self._uniform() < self.ghost_random:
                    direction = options[int(self._uniform() * len(options))]
                else:
                    direction = options[products.index(max(products))]  # chase
        self._dirs[i] = direction
        self._ghosts[i] = self._lay.move[cell][direction]

    def _set_food(self, cell: int, value: bool) -> None:
        self._food[cell] = value
        self._draw_cell(cell)

    def _cell_colour(self, cell: int) -> tuple[float, ...]:
        """The static content of a free cell: pill over food over empty (RGB) or its plane values."""
        pill, food = cell in self._pills, self._food[cell]
        if self.encoding == "rgb":
            return COLOURS["pill"] if pill else COLOURS["food"] if food else COLOURS["empty"]
        return (0.0, float(food), 0.0, 0.0, 0.0, float(pill))

    def _draw_cell(self, cell: int) -> None:
        r, c = self._padded[cell]
        self._base[:, r, c] = self._cell_colour(cell)

    def _draw_base(self) -> None:
        base, h, w = self._base, *self.shape
        base.fill(0.0)
        if self.encoding == "rgb":
            base[:] = 1.0  # walls (and the padding) are white
            base[:, PAD:PAD + h, PAD:PAD + w][:, ~self._lay.walls] = 0.0
        else:
            base[WALL] = 1.0
            base[WALL, PAD:PAD + h, PAD:PAD + w] = self._lay.walls
        for cell in self._lay.free_list:
            if self._food[cell] or cell in self._pills:
                self._draw_cell(cell)

    def _paint(self, image: np.ndarray, offset_r: int, offset_c: int) -> np.ndarray:
        """Ghosts, then Pac-Man on top, onto `image` (a copy of a window of the base whose top-left is at offset)."""
        size_r, size_c = image.shape[1:]
        edibility = self._power / POWER_STEPS
        rgb = self.encoding == "rgb"
        for g in self._ghosts:
            r, c = self._padded[g]
            r, c = r - offset_r, c - offset_c
            if 0 <= r < size_r and 0 <= c < size_c:
                if rgb:
                    image[0, r, c], image[1, r, c], image[2, r, c] = 1.0, edibility, 0.0
                else:
                    image[GHOST, r, c], image[EDIBLE, r, c] = 1.0 - edibility, edibility
        r, c = self._padded[self._player]
        r, c = r - offset_r, c - offset_c
        if rgb:
            image[0, r, c], image[1, r, c], image[2, r, c] = 0.0, 1.0, 0.0
        else:
            image[PLAYER, r, c] = 1.0
        return image

    def _rgb_full(self) -> np.ndarray:
        if self.encoding == "rgb":
            h, w = self.shape
            return self._paint(self._base[:, PAD:PAD + h, PAD:PAD + w].copy(), PAD, PAD)
        planes = self._observation_full()
        return _planes_to_rgb(planes)

    def _observation_full(self) -> np.ndarray:
        h, w = self.shape
        return self._paint(self._base[:, PAD:PAD + h, PAD:PAD + w].copy(), PAD, PAD)

    def _observation(self) -> np.ndarray:
        if self.obs_type == "full":
            return self._observation_full()
        r, c = self._lay.rc[self._player]  # the window's top-left in padded coordinates is (r, c)
        return self._paint(self._base[:, r:r + VIEW, c:c + VIEW].copy(), r, c)

    def _info(self) -> dict[str, Any]:
        return {"level": self._level, "food_left": self._food_left, "pills_left": len(self._pills),
                "power_steps_left": self._power, "n_ghosts": len(self._ghosts), "ghosts_eaten": self._ghosts_eaten,
                "steps": self._steps, "level_steps": self._timer}


def _planes_to_rgb(planes: np.ndarray) -> np.ndarray:
    """The published reduction of the 6 planes to RGB (top-most content of each cell)."""
    rgb = np.zeros((3, *planes.shape[1:]), dtype=np.float32)
    layers = [(planes[WALL] == 1, COLOURS["wall"]), (planes[FOOD] == 1, COLOURS["food"]),
              (planes[PILL] == 1, COLOURS["pill"])]
    for mask, colour in layers:
        rgb[:, mask] = np.array(colour, dtype=np.float32)[:, None]
    ghost = (planes[GHOST] > 0) | (planes[EDIBLE] > 0)
    rgb[0][ghost], rgb[1][ghost], rgb[2][ghost] = planes[GHOST][ghost] + planes[EDIBLE][ghost], planes[EDIBLE][ghost], 0.0
    player = planes[PLAYER] == 1
    rgb[0][player], rgb[1][player], rgb[2][player] = 0.0, 1.0, 0.0
    return rgb
