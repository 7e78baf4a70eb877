"""A test per published rule of Mini Pac-Man (relational_rnn.envs.pacman), plus the gymnasium API and resume."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from relational_rnn.envs import PACMAN_ENV_ID, MiniPacman
from relational_rnn.envs.pacman import (
    CELL_PIXELS,
    EDIBLE,
    FOOD,
    GHOST,
    MAX_STEPS,
    MODES,
    PILL,
    PLAYER,
    POWER_STEPS,
    REWARDS,
    VIEWPORT_OUTLINE,
    WALL,
)

STEP, FOOD_R, PILL_R, GHOST_R, DEATH_R = range(5)
STAY, RIGHT, UP, LEFT, DOWN = range(5)
WHITE, BLUE, CYAN, GREEN, RED = (1, 1, 1), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 0, 0)

# the published map, written as its 0/1 rows
PUBLISHED = """\
1111111111111111111
1000100000000010001
1010101111111010101
1000000000000000001
1010101111111010101
1010000000000000101
1011110111110111101
1000000111110000001
1011110111110111101
1010000000000000101
1010101111111010101
1000000000000000001
1010101111111010101
1000100000000010001
1111111111111111111"""


def make(mode="regular", obs="full", seed=0, **kw):
    env = MiniPacman(mode=mode, obs=obs, **kw)
    env.reset(seed=seed)
    return env


def colour(obs, cell):
    return tuple(float(x) for x in obs[:, cell[0], cell[1]])


# ----------------------------------------------------------------- API


@pytest.mark.parametrize("encoding", ["rgb", "planes"])
@pytest.mark.parametrize("obs", ["full", "viewport"])
def test_check_env_passes(obs, encoding):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # only the "no spec" render-mode note
        check_env(MiniPacman(obs=obs, encoding=encoding, render_mode="rgb_array"), skip_render_check=False)


def test_spaces_and_registration():
    assert MiniPacman(obs="full").observation_space.shape == (3, 15, 19)
    assert MiniPacman(obs="viewport").observation_space.shape == (3, 5, 5)
    assert MiniPacman(obs="full", encoding="planes").observation_space.shape == (6, 15, 19)
    assert MiniPacman().observation_space.dtype == np.float32
    assert MiniPacman().action_space == gymnasium.spaces.Discrete(5)
    env = gymnasium.make(PACMAN_ENV_ID, mode="rush", obs="viewport")
    obs, info = env.reset(seed=1)
    assert obs.shape == (3, 5, 5) and {"level", "food_left", "power_steps_left", "level_steps"} <= set(info)
    import importlib

    import relational_rnn.envs as envs_pkg

    importlib.reload(envs_pkg)  # re-registration must not fail


@pytest.mark.parametrize("kwargs, words", [({"mode": "easy"}, MODES), ({"obs": "rgb"}, ("full", "viewport")),
                                           ({"encoding": "gray"}, ("rgb", "planes")), ({"max_steps": 0}, (">= 1",))])
def test_invalid_arguments_raise(kwargs, words):
    with pytest.raises(ValueError) as err:
        MiniPacman(**kwargs)
    for word in words:
        assert word in str(err.value)


# ----------------------------------------------------------- the level


def test_the_maze_is_the_published_map():
    walls = MiniPacman().walls
    assert (walls == np.array([[ch == "1" for ch in row] for row in PUBLISHED.split("\n")])).all()
    assert int((~walls).sum()) == 138


def test_a_level_starts_with_food_everywhere_two_pills_and_one_ghost():
    for seed in range(20):
        env = MiniPacman(encoding="planes")
        obs, info = env.reset(seed=seed)
        free = ~env.walls
        assert (env.food_grid == free).all() and info["food_left"] == 138  # start and pill cells included
        assert obs[FOOD].sum() == 138 and obs[FOOD][env.player_pos] == 1
        assert len(env.pill_positions) == 2 and info["pills_left"] == 2
        assert info["level"] == 1 and info["n_ghosts"] == 1 and info["power_steps_left"] == 0
        assert all(d in (1, 2, 3, 4) for d in env.ghost_directions)


def test_ghosts_start_outside_the_published_half_open_box():
    """Never in rows [r-5, r+5) x cols [c-5, c+5) around Pac-Man; row r+5 (outside that box) does occur."""
    env = MiniPacman()
    seen_edge = False
    for seed in range(1500):
        env.reset(seed=seed)
        (pr, pc), (gr, gc) = env.player_pos, env.ghost_positions[0]
        assert not (-5 <= gr - pr < 5 and -5 <= gc - pc < 5)
        seen_edge |= gr - pr == 5 and -5 <= gc - pc < 5
    assert seen_edge  # a symmetric +-5 box would forbid it


def test_placement_covers_every_free_cell_and_pills_may_share_a_cell():
    env = MiniPacman()
    players, pills_shared = set(), False
    for seed in range(3000):
        env.reset(seed=seed)
        players.add(env.player_pos)
        pills_shared |= len(set(env.pill_positions)) == 1
    assert len(players) == 138
    assert pills_shared  # drawn independently, as published


def test_ghost_count_grows_with_the_level_without_a_cap():
    assert [MiniPacman.n_ghosts_for_level(k) for k in range(1, 12)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6]


# ----------------------------------------------------------- Pac-Man


@pytest.mark.parametrize("mode", MODES)
def test_eating_food_gives_reward_and_removes_it(mode):
    env = make(mode)
    env.set_state(player=(3, 3), ghosts=[(13, 17)], food=[(3, 4), (13, 1)], pills=[(13, 2)])
    env.freeze_ghosts = True
    obs, reward, term, trunc, info = env.step(RIGHT)
    assert env.player_pos == (3, 4) and reward == pytest.approx(REWARDS[mode][STEP] + REWARDS[mode][FOOD_R])
    assert info["food_left"] == 1 and not env.food_grid[3, 4] and not term and not trunc
    _, reward, *_ = env.step(LEFT)
    assert reward == pytest.approx(REWARDS[mode][STEP])


def test_staying_eats_the_food_of_the_start_cell():
    env = make()
    env.freeze_ghosts = True
    ghost = env.ghost_positions
    _, reward, *_ = env.step(STAY)
    assert reward == 1.0 and not env.food_grid[env.player_pos] and env.ghost_positions == ghost


def test_moving_into_a_wall_is_a_stay():
    env = make()
    env.set_state(player=(1, 1), ghosts=[(13, 17)])
    env.freeze_ghosts = True
    for action in (UP, LEFT, STAY):
        env.step(action)
        assert env.player_pos == (1, 1)
    env.step(DOWN)
    assert env.player_pos == (2, 1)


@pytest.mark.parametrize("mode", MODES)
def test_a_pill_cell_gives_food_and_pill_and_20_steps_of_power(mode):
    env = make(mode)
    env.set_state(player=(1, 1), ghosts=[(13, 17)], food=[(1, 2), (13, 1)], pills=[(1, 2), (13, 2)])
    env.freeze_ghosts = True
    obs, reward, _, _, info = env.step(RIGHT)
    assert reward == pytest.approx(sum(REWARDS[mode][k] for k in (STEP, FOOD_R, PILL_R)))
    assert env.pill_positions == [(13, 2)] and info["power_steps_left"] == POWER_STEPS == 20
    timer, colours = [20], [colour(obs, (13, 17))]
    for _ in range(20):
        obs, _, term, _, info = env.step(STAY)
        timer.append(info["power_steps_left"])
        colours.append(colour(obs, (13, 17)))
    assert timer == list(range(20, -1, -1))
    # the ghost's colour is (1, power / 20, 0): the agent sees the power run out
    assert colours == [pytest.approx((1.0, p / 20, 0.0)) for p in range(20, -1, -1)]


# ------------------------------------------------------------- ghosts


def _move_frequency(level=1, power=0, trials=4000):
    """How often the ghost moves in a step, Pac-Man far away and the ghost put back each step."""
    env = make(seed=3, max_steps=10 * trials)
    moved = 0
    for _ in range(trials):
        env.set_state(player=(13, 17), ghosts=[(1, 6)], ghost_dirs=[RIGHT], level=level, power_steps=power,
                      food=[(7, 1)], level_steps=0)
        env.step(STAY)
        moved += env.ghost_positions[0] != (1, 6)
    return moved / trials


@pytest.mark.parametrize("level, power, expected", [(1, 0, 0.5), (3, 0, 0.7), (1, 10, 0.25), (5, 10, 0.45), (7, 0, 1.0)])
def test_ghost_speed_is_0_5_plus_0_1_per_level_halved_by_the_power(level, power, expected):
    assert _move_frequency(level, power) == pytest.approx(expected, abs=0.03)


def test_ghosts_never_reverse():
    env = make(seed=4)
    rng = np.random.default_rng(0)
    moves = reversals = 0
    for _ in range(20000):
        before = (env.level, env.ghost_positions, env.ghost_directions)
        _, _, term, trunc, _ = env.step(int(rng.integers(5)))
        if term or trunc:
            env.reset()
            continue
        after = (env.level, env.ghost_positions, env.ghost_directions)
        if before[0] != after[0] or len(before[1]) != len(after[1]):
            continue  # a new level or an eaten ghost
        for old_cell, old_dir, new_cell, new_dir in zip(before[1], before[2], after[1], after[2]):
            if old_cell != new_cell:
                moves += 1
                reversals += new_dir == (0, 3, 4, 1, 2)[old_dir]
    assert moves > 5000 and reversals == 0


def test_a_ghost_follows_its_corridor_round_a_corner():
    """At the corner (1, 1), facing left, it turns down, although Pac-Man lies to the right."""
    env = make()
    env.ghost_speed = 1.0
    env.set_state(player=(1, 17), ghosts=[(1, 2)], ghost_dirs=[LEFT], food=[(7, 1)])
    path = []
    for _ in range(3):
        env.step(STAY)
        path.append(env.ghost_positions[0])
    assert path == [(1, 1), (2, 1), (3, 1)] and env.ghost_directions == [DOWN]


def test_at_a_junction_a_ghost_takes_the_exit_best_aligned_with_pacman():
    env = make()
    env.ghost_speed, env.ghost_random = 1.0, 0.0
    # (3, 3) has four exits; facing right, left is dropped; Pac-Man below: down wins the dot product
    env.set_state(player=(13, 5), ghosts=[(3, 3)], ghost_dirs=[RIGHT], food=[(7, 1)])
    env.step(STAY)
    assert env.ghost_positions == [(4, 3)]
    # Pac-Man straight behind (to the left): the reverse is not allowed; up and down tie at 0, up comes first
    env.set_state(player=(3, 1), ghosts=[(3, 3)], ghost_dirs=[RIGHT])
    env.step(STAY)
    assert env.ghost_positions == [(2, 3)]


def test_a_ghost_picks_a_random_exit_at_a_junction_with_probability_0_05():
    trials, other = 6000, 0
    env = make(seed=5, max_steps=10 * trials)
    env.ghost_speed = 1.0
    for _ in range(trials):
        env.set_state(player=(13, 5), ghosts=[(3, 3)], ghost_dirs=[RIGHT], food=[(7, 1)], level_steps=0)
        env.step(STAY)
        other += env.ghost_positions != [(4, 3)]
    assert other / trials == pytest.approx(0.05 * 2 / 3, abs=0.008)  # 3 exits: 2 of them differ from the chase


def test_a_powered_ghost_flees_and_never_at_random():
    env = make()
    env.ghost_speed, env.ghost_random = 2.0, 1.0  # halved by the power: it moves every step
    for _ in range(50):
        env.set_state(player=(13, 5), ghosts=[(3, 3)], ghost_dirs=[RIGHT], food=[(7, 1)], power_steps=10)
        env.step(STAY)
        assert env.ghost_positions == [(2, 3)]  # up: the smallest dot product with the vector to Pac-Man


# ----------------------------------------------------------- meetings


@pytest.mark.parametrize("mode", MODES)
def test_an_eaten_ghost_is_gone_for_the_rest_of_the_level(mode):
    env = make(mode)
    env.set_state(player=(1, 1), ghosts=[(1, 2), (9, 17)], food=[(13, 1)], pills=[(13, 2)], power_steps=10)
    env.freeze_ghosts = True
    _, reward, term, _, info = env.step(RIGHT)
    assert not term and info["level"] == 1 and info["n_ghosts"] == 1 and env.ghost_positions == [(9, 17)]
    assert reward == pytest.approx(REWARDS[mode][STEP] + REWARDS[mode][GHOST_R]) and info["ghosts_eaten"] == 1
    env.freeze_ghosts = False
    for _ in range(30):
        *_, info = env.step(STAY)
        assert info["n_ghosts"] == 1 and info["level"] == 1


def test_one_ghost_eaten_per_step_and_the_later_ghosts_do_not_move():
    env = make()
    env.ghost_speed = 1.0
    env.set_state(player=(1, 1), ghosts=[(1, 2), (1, 2), (13, 17)], food=[(13, 1)], power_steps=10)
    _, reward, *_ = env.step(RIGHT)
    assert reward == 5.0 and env.ghost_positions == [(1, 2), (13, 17)]


@pytest.mark.parametrize("mode", MODES)
def test_meeting_a_normal_ghost_kills(mode):
    env = make(mode)
    env.set_state(player=(1, 1), ghosts=[(1, 2)], food=[(13, 1)], pills=[(13, 2)])
    env.freeze_ghosts = True
    _, reward, term, trunc, _ = env.step(RIGHT)  # Pac-Man walks onto it
    assert term and not trunc and reward == pytest.approx(REWARDS[mode][STEP] + REWARDS[mode][DEATH_R])
    with pytest.raises(RuntimeError):
        env.step(STAY)
    env = make(mode)
    env.ghost_speed = 1.0
    env.set_state(player=(1, 1), ghosts=[(1, 2)], ghost_dirs=[LEFT], food=[(13, 1)], pills=[(13, 2)])
    _, reward, term, *_ = env.step(STAY)  # it walks onto him
    assert term and reward == pytest.approx(REWARDS[mode][STEP] + REWARDS[mode][DEATH_R])


def test_two_ghosts_on_pacman_add_the_death_reward_twice():
    env = make("avoid")
    env.set_state(player=(1, 1), ghosts=[(1, 2), (1, 2)], food=[(13, 1)])
    env.freeze_ghosts = True
    _, reward, term, *_ = env.step(RIGHT)
    assert term and reward == pytest.approx(0.1 - 40)


# ------------------------------------------------------------- levels


@pytest.mark.parametrize("mode", ["regular", "avoid"])
def test_the_last_food_starts_a_new_level(mode):
    env = make(mode)
    env.set_state(player=(3, 3), ghosts=[(13, 17)], food=[(3, 4)], pills=[(13, 2)])
    env.freeze_ghosts = True
    _, _, term, _, info = env.step(RIGHT)
    assert not term and info["level"] == 2 and info["food_left"] == 138 and info["pills_left"] == 2
    assert info["n_ghosts"] == 1 and info["level_steps"] == 0


@pytest.mark.parametrize("mode", ["hunt", "ambush", "rush"])
def test_the_last_food_does_not_end_the_level_in_other_modes(mode):
    env = make(mode)
    env.set_state(player=(3, 3), ghosts=[(13, 17)], food=[(3, 4)], pills=[(13, 2)])
    env.freeze_ghosts = True
    *_, info = env.step(RIGHT)
    assert info["level"] == 1 and info["food_left"] == 0


def test_rush_the_last_pill_starts_a_new_level():
    env = make("rush")
    env.set_state(player=(3, 3), ghosts=[(13, 17)], food=[(13, 1)], pills=[(3, 4), (3, 5)])
    env.freeze_ghosts = True
    _, r1, *_, info = env.step(RIGHT)
    assert info["level"] == 1 and r1 == pytest.approx(10.0)
    _, r2, *_, info = env.step(RIGHT)
    assert r2 == pytest.approx(10.0) and info["level"] == 2 and info["food_left"] == 138


@pytest.mark.parametrize("mode", ["hunt", "ambush"])
def test_hunt_the_last_ghost_starts_a_new_level(mode):
    env = make(mode)
    env.set_state(player=(1, 1), ghosts=[(1, 2), (13, 17)], food=[(13, 1)], power_steps=10)
    env.freeze_ghosts = True
    *_, info = env.step(RIGHT)
    assert info["level"] == 1
    env.set_state(player=(13, 16))
    _, reward, *_, info = env.step(RIGHT)
    assert reward == pytest.approx(10.0) and info["level"] == 2 and info["power_steps_left"] == 0


@pytest.mark.parametrize("mode, new_level", [("avoid", True), ("regular", False), ("hunt", False)])
def test_avoid_starts_a_new_level_every_128_steps(mode, new_level):
    env = make(mode)
    env.freeze_ghosts = True
    env.set_state(ghosts=[(13, 17)], player=(1, 1), food=[(7, 1), (7, 2)], pills=[(7, 3)])
    for t in range(1, 129):
        *_, info = env.step(STAY)
        if t < 128:
            assert info["level"] == 1 and info["level_steps"] == t
    assert info["level"] == (2 if new_level else 1)
    assert info["level_steps"] == (0 if new_level else 128)


def test_the_episode_is_capped_at_3000_steps():
    assert MiniPacman().max_steps == MAX_STEPS == 3000
    env = make(max_steps=3000)
    env.freeze_ghosts = True
    env.set_state(player=(1, 1), ghosts=[(13, 17)])
    for t in range(3000):
        _, _, term, trunc, info = env.step(STAY)
        assert not term and trunc == (t == 2999)
    assert info["steps"] == 3000


# -------------------------------------------------------- observations


def test_rgb_colours_of_every_content():
    env = make()
    obs = env.set_state(player=(1, 1), ghosts=[(1, 3)], food=[(3, 1), (1, 2)], pills=[(5, 1)])
    assert colour(obs, (1, 1)) == GREEN and colour(obs, (1, 3)) == RED and colour(obs, (5, 1)) == CYAN
    assert colour(obs, (3, 1)) == BLUE and colour(obs, (0, 0)) == WHITE and colour(obs, (1, 5)) == (0, 0, 0)
    obs = env.set_state(ghosts=[(3, 1)], pills=[(3, 1)])  # a ghost is drawn over food and pill
    assert colour(obs, (3, 1)) == RED
    obs = env.set_state(ghosts=[(1, 1)])  # Pac-Man over a ghost
    assert colour(obs, (1, 1)) == GREEN


def test_planes_encoding():
    env = make(encoding="planes")
    obs = env.set_state(player=(1, 1), ghosts=[(1, 3)], food=[(3, 1)], pills=[(5, 1)], power_steps=5)
    assert obs.shape == (6, 15, 19) and (obs[WALL] == env.walls).all()
    assert obs[PLAYER][1, 1] == 1 and obs[PLAYER].sum() == 1 and obs[FOOD][3, 1] == 1 and obs[FOOD].sum() == 1
    assert obs[GHOST][1, 3] == pytest.approx(0.75) and obs[EDIBLE][1, 3] == pytest.approx(0.25)
    assert obs[PILL][5, 1] == 1 and obs[PILL].sum() == 1


@pytest.mark.parametrize("encoding", ["rgb", "planes"])
def test_viewport_matches_the_full_view_with_walls_beyond_the_map(encoding):
    full, view = make(encoding=encoding), make(obs="viewport", encoding=encoding)
    rng = np.random.default_rng(0)
    for _ in range(300):
        action = int(rng.integers(5))
        of, _, term, trunc, _ = full.step(action)
        ov, *_ = view.step(action)
        padded = np.pad(of, ((0, 0), (2, 2), (2, 2)))
        if encoding == "rgb":
            padded[:, :2], padded[:, -2:], padded[:, :, :2], padded[:, :, -2:] = 1, 1, 1, 1
        else:
            padded[WALL] = np.pad(of[WALL], 2, constant_values=1)
        r, c = view.player_pos
        assert ov.shape[1:] == (5, 5) and (ov == padded[:, r:r + 5, c:c + 5]).all()
        if term or trunc:
            full.reset(), view.reset()


def test_observation_matches_the_state_on_random_play():
    env = make(encoding="planes")
    rng = np.random.default_rng(1)
    for _ in range(2000):
        obs, _, term, trunc, info = env.step(int(rng.integers(5)))
        assert info["food_left"] == int(obs[FOOD].sum()) == int(env.food_grid.sum())
        assert obs[PLAYER].sum() == 1 and env.observation_space.contains(obs)
        if term or trunc:
            env.reset()


# ------------------------------------------------ determinism and resume


def _rollout(env, steps, rng):
    out = []
    for _ in range(steps):
        obs, reward, term, trunc, _ = env.step(int(rng.integers(5)))
        out += [obs, reward]
        if term or trunc:
            out.append(env.reset()[0])
    return out


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_the_same_seed_gives_the_same_episodes():
    def run(seed):
        env = MiniPacman()
        return [env.reset(seed=seed)[0]] + _rollout(env, 500, np.random.default_rng(123))

    assert _same(run(7), run(7)) and not _same(run(7), run(8))


@pytest.mark.parametrize("encoding", ["rgb", "planes"])
def test_snapshot_and_restore_resume_exactly(encoding):
    env = make(mode="avoid", encoding=encoding, seed=11)
    _rollout(env, 137, np.random.default_rng(0))
    snapshot = env.snapshot()
    expected = _rollout(env, 400, np.random.default_rng(1))
    twin = MiniPacman(mode="avoid", encoding=encoding)
    twin.restore(snapshot)
    assert _same(_rollout(twin, 400, np.random.default_rng(1)), expected)
    with pytest.raises(ValueError, match="not a snapshot"):
        twin.restore({"grid": np.zeros(3)})  # an old environment's snapshot


def test_render_rgb_frame():
    env = MiniPacman(obs="viewport", render_mode="rgb_array")
    env.reset(seed=0)
    env.set_state(player=(5, 9), ghosts=[(1, 1)])
    frame, s = env.render(), CELL_PIXELS
    assert frame.shape == (15 * s, 19 * s, 3) and frame.dtype == np.uint8
    assert tuple(frame[5 * s + s // 2, 9 * s + s // 2]) == (0, 255, 0)
    assert tuple(frame[1 * s + s // 2, 1 * s + s // 2]) == (255, 0, 0)
    assert tuple(frame[0, 0]) == (255, 255, 255)
    assert (frame[3 * s, 7 * s:12 * s] == VIEWPORT_OUTLINE).all()  # rows 3..7, cols 7..11
    assert (frame[3 * s:8 * s, 12 * s - 1] == VIEWPORT_OUTLINE).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert MiniPacman().render() is None


def test_render_is_the_same_picture_for_both_encodings():
    rgb, planes = (MiniPacman(encoding=e, render_mode="rgb_array") for e in ("rgb", "planes"))
    rgb.reset(seed=2), planes.reset(seed=2)
    for _ in range(40):
        rgb.step(1), planes.step(1)
        assert (rgb.render() == planes.render()).all()
        rgb.set_state(power_steps=7), planes.set_state(power_steps=7)
        assert (rgb.render() == planes.render()).all()
