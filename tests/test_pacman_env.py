"""Rule tests for the Mini Pac-Man environment (relational_rnn.envs.pacman)."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from relational_rnn.envs import PACMAN_ENV_ID, MiniPacman
from relational_rnn.envs.pacman import (
    CELL_PIXELS,
    COLOURS,
    EDIBLE,
    FOOD,
    GHOST,
    MODES,
    PILL,
    PLAYER,
    POWER_STEPS,
    REWARDS,
    WALL,
)

STEP, FOOD_R, PILL_R, GHOST_R, DEATH_R = range(5)
RIGHT, UP, LEFT, DOWN, STAY = 1, 2, 3, 4, 0


def make(mode="regular", obs="full", **kw):
    env = MiniPacman(mode=mode, obs=obs, **kw)
    env.reset(seed=0)
    return env


# ----------------------------------------------------------------- API


@pytest.mark.parametrize("obs", ["full", "viewport"])
def test_check_env_passes(obs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # only the "no spec" render-mode note
        check_env(MiniPacman(obs=obs, render_mode="rgb_array"), skip_render_check=False)


def test_spaces_and_registration():
    full, view = MiniPacman(obs="full"), MiniPacman(obs="viewport")
    assert full.observation_space.shape == (6, 15, 19)
    assert view.observation_space.shape == (6, 5, 5)
    assert full.observation_space.dtype == np.float32
    assert full.action_space == gymnasium.spaces.Discrete(5)
    env = gymnasium.make(PACMAN_ENV_ID, mode="rush", obs="viewport")
    obs, info = env.reset(seed=1)
    assert obs.shape == (6, 5, 5) and obs.dtype == np.float32
    assert {"level", "food_left", "power_steps_left"} <= set(info)
    assert env.unwrapped.mode == "rush"
    import importlib

    import relational_rnn.envs as envs_pkg

    importlib.reload(envs_pkg)  # re-registration must not fail


@pytest.mark.parametrize(
    "kwargs, words",
    [({"mode": "easy"}, MODES), ({"obs": "rgb"}, ("full", "viewport"))],
)
def test_invalid_arguments_raise(kwargs, words):
    with pytest.raises(ValueError) as err:
        MiniPacman(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_maze_shape_symmetry_and_corridors():
    walls = make().walls
    assert walls.shape == (15, 19)
    assert walls[0].all() and walls[-1].all() and walls[:, 0].all() and walls[:, -1].all()
    assert (walls == walls[:, ::-1]).all()
    free = ~walls
    # corridors one cell wide: no 2x2 open block; no dead ends
    assert not (free[:-1, :-1] & free[1:, :-1] & free[:-1, 1:] & free[1:, 1:]).any()
    p = np.pad(free, 1)
    degree = p[:-2, 1:-1].astype(int) + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]
    assert (degree[free] >= 2).all()


def test_reset_layout_food_pills_ghosts():
    env = MiniPacman()
    obs, info = env.reset(seed=5)
    free = ~env.walls
    n_free = int(free.sum())
    assert (obs[WALL] == env.walls).all()
    assert info["food_left"] == n_free - 3 == int(obs[FOOD].sum())  # minus player, 2 pills
    assert obs[PILL].sum() == 2 and info["pills_left"] == 2
    assert obs[PLAYER].sum() == 1 and obs[FOOD][env.player_pos] == 0
    assert info["level"] == 1 and info["n_ghosts"] == 1 and obs[GHOST].sum() == 1
    assert info["power_steps_left"] == 0 and obs[EDIBLE].sum() == 0


# --------------------------------------------------------------- rules


@pytest.mark.parametrize("mode", MODES)
def test_eating_food_gives_reward_and_removes_it(mode):
    env = make(mode)
    env.set_state(player=(3, 3), ghosts=[(13, 17)], food=[(3, 4), (13, 1)], pills=[(13, 2)])
    obs, reward, term, trunc, info = env.step(RIGHT)
    assert env.player_pos == (3, 4)
    assert reward == pytest.approx(REWARDS[mode][STEP] + REWARDS[mode][FOOD_R])
    assert obs[FOOD][3, 4] == 0 and obs[PLAYER][3, 4] == 1
    assert info["food_left"] == 1 and not term and not trunc
    # walking onto an empty cell gives only the step reward
    _, reward, *_ = env.step(LEFT)
    assert reward == pytest.approx(REWARDS[mode][STEP])


def test_moving_into_wall_is_stay():
    env = make()
    env.set_state(player=(1, 1), ghosts=[(13, 17)])
    env.freeze_ghosts = True
    for action in (UP, LEFT, STAY):
        env.step(action)
        assert env.player_pos == (1, 1)
    env.step(DOWN)
    assert env.player_pos == (2, 1)


@pytest.mark.parametrize("mode", ["regular", "avoid"])
def test_power_pill_makes_ghosts_edible_for_exactly_20_steps(mode):
    env = make(mode)
    env.set_state(player=(1, 1), ghosts=[(13, 17)], food=[(13, 1)], pills=[(1, 2), (13, 2)])
    obs, reward, _, _, info = env.step(RIGHT)
    assert reward == pytest.approx(REWARDS[mode][STEP] + REWARDS[mode][PILL_R])
    assert obs[PILL][1, 2] == 0 and info["pills_left"] == 1
    edible_obs = 1
    assert obs[EDIBLE].sum() == 1 and obs[GHOST].sum() == 0
    assert info["power_steps_left"] == POWER_STEPS
    timer = [info["power_steps_left"]]
    while True:
        obs, _, term, _, info = env.step(STAY)
        assert not term
        timer.append(info["power_steps_left"])
        if obs[EDIBLE].sum() == 0:
            break
        edible_obs += 1
        assert obs[GHOST].sum() == 0
    assert edible_obs == POWER_STEPS == 20
    assert timer == list(range(20, -1, -1))
    assert obs[GHOST].sum() == 1  # dangerous again


def test_edible_ghost_flees_and_normal_ghost_chases():
    env = make(ghost_epsilon=0.0)
    player = (7, 9)
    env.set_state(player=player, ghosts=[(3, 9)], power_steps=0)
    d0 = env.maze_distance((3, 9), player)
    env.step(STAY)
    ghost = env.ghost_positions[0]
    assert env.maze_distance(ghost, player) == d0 - 1  # chases
    env.set_state(power_steps=10)
    moved = []
    for _ in range(2):  # edible ghosts move on every other step (half speed)
        env.step(STAY)
        moved.append(env.ghost_positions[0])
    assert moved[0] == ghost or moved[1] == moved[0]  # one of the two steps is still
    assert env.maze_distance(moved[1], player) == env.maze_distance(ghost, player) + 1  # flees


@pytest.mark.parametrize("mode", MODES)
def test_eating_edible_ghost_rewards_and_respawns_it(mode):
    env = make(mode)
    # two ghosts, so that hunt/ambush do not clear the level on the first meal
    env.set_state(player=(1, 1), ghosts=[(1, 2), (9, 17)], ghost_starts=[(13, 17), (9, 17)],
                  food=[(13, 1)], pills=[(13, 2)], power_steps=10)
    env.freeze_ghosts = True
    obs, reward, term, _, info = env.step(RIGHT)
    assert not term and info["level"] == 1
    assert reward == pytest.approx(REWARDS[mode][STEP] + REWARDS[mode][GHOST_R])
    assert env.ghost_positions == [(13, 17), (9, 17)]
    assert obs[EDIBLE][13, 17] == 1 and obs[EDIBLE][1, 2] == 0
    assert info["ghosts_eaten"] == 1


def test_swapping_cells_with_edible_ghost_eats_it():
    # (1,2) has two neighbours, (1,1) and (1,3); a random ghost move takes it
    # onto the player's old cell about half the time: try seeds until it does
    env = MiniPacman(ghost_epsilon=1.0)
    for seed in range(30):
        env.reset(seed=seed)
        env.set_state(player=(1, 1), ghosts=[(1, 2)], ghost_starts=[(13, 1)], food=[(13, 2)],
                      power_steps=10)
        env.freeze_ghosts = True
        env.step(STAY)  # the next step is one where edible ghosts move
        env.freeze_ghosts = False
        _, reward, term, _, info = env.step(RIGHT)
        if info["ghosts_eaten"]:
            assert env.ghost_positions == [(13, 1)] and env.player_pos == (1, 2)
            assert reward == pytest.approx(REWARDS["regular"][GHOST_R]) and not term
            return
        assert env.ghost_positions == [(1, 3)]  # it moved away: no meeting
    pytest.fail("no swap in 30 seeds")


@pytest.mark.parametrize("mode", MODES)
def test_touching_normal_ghost_kills(mode):
    env = make(mode)
    env.set_state(player=(1, 1), ghosts=[(1, 2)], food=[(13, 1)], pills=[(13, 2)])
    env.freeze_ghosts = True
    obs, reward, term, trunc, _ = env.step(RIGHT)
    assert term and not trunc
    assert reward == pytest.approx(REWARDS[mode][STEP] + REWARDS[mode][DEATH_R])
    with pytest.raises(RuntimeError):
        env.step(STAY)


def test_swapping_cells_with_chasing_ghost_kills():
    env = make(mode="avoid", ghost_epsilon=0.0)
    env.set_state(player=(1, 1), ghosts=[(1, 2)], food=[(13, 1)])
    _, reward, term, _, _ = env.step(RIGHT)  # ghost chases onto (1,1): cells swap
    assert env.player_pos == (1, 2) and env.ghost_positions == [(1, 1)]
    assert term and reward == pytest.approx(0.1 - 20)


@pytest.mark.parametrize("mode", ["regular", "avoid", "hunt", "ambush"])
def test_level_advances_when_food_is_gone(mode):
    env = make(mode)
    env.set_state(player=(3, 3), ghosts=[(13, 17)], food=[(3, 4)], pills=[(13, 2)])
    obs, reward, term, _, info = env.step(RIGHT)
    assert reward == pytest.approx(REWARDS[mode][STEP] + REWARDS[mode][FOOD_R])
    assert not term and info["level"] == 2
    assert info["food_left"] == int((~env.walls).sum()) - 3 == int(obs[FOOD].sum())
    assert info["pills_left"] == 2 and obs[PILL].sum() == 2
    assert info["n_ghosts"] == 1  # level k has 1 + (k - 1) // 2 ghosts
    assert [MiniPacman.n_ghosts_for_level(k) for k in range(1, 10)] == [1, 1, 2, 2, 3, 3, 4, 4, 4]


def test_regular_level_does_not_advance_with_food_left():
    env = make("regular")
    env.set_state(player=(3, 3), ghosts=[(13, 17)], food=[(3, 4), (13, 1)], pills=[(3, 5)])
    env.freeze_ghosts = True
    env.step(RIGHT)
    _, _, _, _, info = env.step(RIGHT)  # no pill left is not enough in regular
    assert info["level"] == 1 and info["food_left"] == 1


def test_rush_level_advances_when_pills_are_gone():
    env = make("rush")
    env.set_state(player=(3, 3), ghosts=[(13, 17)], food=[(13, 1)], pills=[(3, 4), (3, 5)])
    env.freeze_ghosts = True
    _, r1, _, _, info = env.step(RIGHT)
    assert info["level"] == 1 and info["pills_left"] == 1 and r1 == pytest.approx(10.0)
    _, r2, _, _, info = env.step(RIGHT)
    assert r2 == pytest.approx(10.0) and info["level"] == 2 and info["pills_left"] == 2
    assert info["food_left"] == int((~env.walls).sum()) - 3  # food restored


@pytest.mark.parametrize("mode", ["hunt", "ambush"])
def test_hunt_level_advances_when_every_ghost_eaten(mode):
    env = make(mode)
    env.set_state(player=(1, 1), ghosts=[(1, 2), (13, 17)], food=[(13, 1)], power_steps=10)
    env.freeze_ghosts = True
    _, _, _, _, info = env.step(RIGHT)
    assert info["level"] == 1 and info["ghosts_eaten"] == 1
    env.set_state(player=(13, 16))
    _, reward, _, _, info = env.step(RIGHT)
    assert reward == pytest.approx(10.0)
    assert info["level"] == 2 and info["ghosts_eaten"] == 0 and info["power_steps_left"] == 0


def test_truncation_at_step_cap():
    env = make(max_steps=7)
    env.set_state(player=(1, 1), ghosts=[(13, 17)])
    env.freeze_ghosts = True
    for t in range(7):
        _, _, term, trunc, info = env.step(STAY)
        assert not term and trunc == (t == 6)
    assert info["steps"] == 7


# -------------------------------------------------------- observations


def test_viewport_at_the_maze_corner_reads_walls_outside():
    env = make(obs="viewport")
    obs = env.set_state(player=(1, 1), ghosts=[(2, 1)], food=[(1, 2)], pills=[(3, 1)])
    assert obs.shape == (6, 5, 5)
    expected_walls = np.ones((5, 5), dtype=np.float32)  # rows/cols -1 and 0 are wall
    expected_walls[2:, 2:] = env.walls[1:4, 1:4]
    assert (obs[WALL] == expected_walls).all()
    assert obs[PLAYER][2, 2] == 1 and obs[PLAYER].sum() == 1
    assert obs[GHOST][3, 2] == 1 and obs[FOOD][2, 3] == 1 and obs[PILL][4, 2] == 1
    # outside the maze: walls and nothing else
    assert (obs[1:, :2, :] == 0).all() and (obs[1:, :, :2] == 0).all()


def test_viewport_matches_full_observation_inside():
    full, view = make(obs="full"), make(obs="viewport")
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = int(rng.integers(5))
        of, *_ = full.step(a)
        ov, _, term, trunc, _ = view.step(a)
        r, c = view.player_pos
        padded = np.pad(of, ((0, 0), (2, 2), (2, 2)))
        padded[WALL] = np.pad(of[WALL], 2, constant_values=1)
        assert (ov == padded[:, r:r + 5, c:c + 5]).all()
        if term or trunc:
            break


def test_food_count_matches_observation_on_random_play():
    env = make()
    rng = np.random.default_rng(1)
    for _ in range(300):
        obs, _, term, trunc, info = env.step(int(rng.integers(5)))
        assert info["food_left"] == int(obs[FOOD].sum())
        assert obs[PLAYER].sum() == 1
        assert obs[GHOST].sum() + obs[EDIBLE].sum() >= 1
        assert env.observation_space.contains(obs)
        if term or trunc:
            obs, info = env.reset()


def test_determinism_for_a_seed():
    def rollout(seed):
        env = MiniPacman(obs="full")
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(123)
        out = [obs]
        for _ in range(200):
            obs, reward, term, trunc, _ = env.step(int(rng.integers(5)))
            out += [obs, np.float32(reward)]
            if term or trunc:
                obs, _ = env.reset()
                out.append(obs)
        return out

    a, b, c = rollout(7), rollout(7), rollout(8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_render_rgb_frame():
    env = MiniPacman(obs="viewport", render_mode="rgb_array")
    env.reset(seed=0)
    env.set_state(player=(7, 9), ghosts=[(1, 1)])
    frame = env.render()
    s = CELL_PIXELS
    assert frame.shape == (15 * s, 19 * s, 3) and frame.dtype == np.uint8
    assert (frame[7 * s + s // 2, 9 * s + s // 2] == COLOURS["player"]).all()
    assert (frame[1 * s + s // 2, 1 * s + s // 2] == COLOURS["ghost"]).all()
    assert (frame[0, 0] == COLOURS["wall"]).all()
    # the viewport outline: rows 5..9, cols 7..11
    assert (frame[5 * s, 7 * s:12 * s] == COLOURS["viewport"]).all()
    assert (frame[5 * s:10 * s, 12 * s - 1] == COLOURS["viewport"]).all()
    env.set_state(power_steps=5)
    assert (env.render()[1 * s + s // 2, 1 * s + s // 2] == COLOURS["edible"]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert MiniPacman().render() is None
