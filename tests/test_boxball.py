"""BoxBall dynamics, wall geometry, env wrapper and the audit against true dynamics."""

import gymnasium as gym
import numpy as np
import pytest

from rtaug.envs import (
    GOAL, WALL, BoxBallEnv, audit_boxball_trajectories, audit_boxball_transitions,
    crosses_wall, in_grid, true_step,
)
from rtaug.envs.registry import get_task

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3


@pytest.mark.parametrize("a, expected", [(UP, (4, 5)), (DOWN, (4, 3)), (LEFT, (3, 4)), (RIGHT, (5, 4))])
def test_moves(a, expected):
    s2, r, term = true_step(np.array([4, 4]), a)
    assert tuple(s2) == expected and r == 0.0 and not term


@pytest.mark.parametrize("s, a", [((0, 3), LEFT), ((9, 3), RIGHT), ((4, 0), DOWN), ((0, 9), UP), ((9, 0), DOWN)])
def test_grid_edges_block(s, a):
    s2, _, _ = true_step(np.array(s), a)
    assert tuple(s2) == s


def test_wall_blocks_beneath_goal_only():
    xs = np.arange(10)
    below = np.stack([xs, np.full(10, 8)], 1)
    above = np.stack([xs, np.full(10, 9)], 1)
    up, _, _ = true_step(below, np.full(10, UP))
    down, _, _ = true_step(above, np.full(10, DOWN))
    blocked = (xs >= 3) & (xs <= 7)
    np.testing.assert_array_equal(up, np.where(blocked[:, None], below, above))
    np.testing.assert_array_equal(down, np.where(blocked[:, None], above, below))
    assert WALL == ((2.5, 8.5), (7.5, 8.5))


def test_goal_reward_and_termination():
    s = np.array([[4, 9], [6, 9], [5, 8], [5, 9]])
    a = np.array([RIGHT, LEFT, UP, LEFT])
    s2, r, term = true_step(s, a)
    np.testing.assert_array_equal(s2, [GOAL, GOAL, [5, 8], [4, 9]])
    np.testing.assert_array_equal(r, [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(term, [True, True, False, False])
    assert r.dtype == np.float32 and term.dtype == bool


def test_true_step_rejects_bad_actions():
    with pytest.raises(ValueError):
        true_step(np.array([1, 1]), -1)
    with pytest.raises(ValueError):
        true_step(np.array([1, 1]), 4)


@pytest.mark.parametrize("s, s2, expected", [
    ((4, 8), (4, 9), True),          # adjacent through the wall
    ((4, 9), (4, 8), True),          # and back
    ((4, 6), (4, 9), True),          # long jump through it
    ((2, 8), (2, 9), False),         # around its left end
    ((8, 8), (8, 9), False),         # around its right end
    ((3, 8), (7, 8), False),         # along it, below
    ((0, 9), (9, 9), False),         # along it, above
    ((2, 7), (6, 9), True),          # diagonal through it
    ((0, 7), (2, 9), False),         # diagonal passing left of it
    ((5, 0), (5, 7), False),         # far below
    ((2.0, 8.0), (3.0, 9.0), True),  # grazing its end counts
    ((3.0, 8.5), (4.0, 8.5), True),  # lying on it
])
def test_crosses_wall(s, s2, expected):
    assert bool(crosses_wall(np.array(s, float), np.array(s2, float))) is expected


def test_crosses_wall_vectorised():
    s = np.array([[4, 8], [2, 8], [4, 6]], float)
    s2 = np.array([[4, 9], [2, 9], [4, 9]], float)
    np.testing.assert_array_equal(crosses_wall(s, s2), [True, False, True])


def test_in_grid():
    s = np.array([[0, 0], [9, 9], [10, 0], [-1, 3], [2.5, 3], [3, 4.0]])
    np.testing.assert_array_equal(in_grid(s), [True, True, False, False, False, True])


def test_env_reset_step_and_time_limit():
    env = BoxBallEnv()
    assert env.observation_space == gym.spaces.MultiDiscrete([10, 10])
    assert env.action_space == gym.spaces.Discrete(4)
    s, _ = env.reset(seed=3)
    s_again, _ = BoxBallEnv().reset(seed=3)
    np.testing.assert_array_equal(s, s_again)
    assert s.dtype == np.int64 and s[1] == 0 and 0 <= s[0] <= 9
    starts = {int(BoxBallEnv().reset(seed=k)[0][0]) for k in range(60)}
    assert len(starts) >= 8  # x is drawn, not fixed
    for t in range(1, 51):
        s2, r, term, trunc, _ = env.step(DOWN)  # pinned at the bottom edge: never reaches the goal
        np.testing.assert_array_equal(s2, s)
        assert not term and r == 0.0
        assert trunc == (t == 50)


def test_env_reaches_goal_by_detour():
    env = BoxBallEnv()
    env.reset(seed=0)
    env._state = np.array([2, 0])
    path = [UP] * 9 + [RIGHT] * 3
    for i, a in enumerate(path):
        s, r, term, trunc, _ = env.step(a)
        assert term == (i == len(path) - 1)
    assert tuple(s) == GOAL and r == 1.0 and not trunc


def test_registered_with_gymnasium():
    env = gym.make(get_task("boxball").gym_id)
    s, _ = env.reset(seed=0)
    assert env.observation_space.contains(s)
    env.close()


def test_audit_transitions():
    obs = np.array([[4, 4], [4, 8], [4, 8], [9, 5], [3, 3]], np.float32)
    act = np.array([UP, UP, UP, RIGHT, UP])
    nxt = np.array([[4, 5], [4, 8], [4, 9], [10, 5], [3, 5]], np.float32)
    res = audit_boxball_transitions(obs, act, nxt)
    # valid move; blocked by the wall (valid: it stays); through the wall; off the grid; 2-cell jump
    np.testing.assert_array_equal(res["valid"], [True, True, False, False, False])
    np.testing.assert_array_equal(res["wall_crossing"], [False, False, True, False, False])
    np.testing.assert_array_equal(res["off_grid"], [False, False, False, True, False])


def test_audit_transitions_rejects_malformed_rows():
    obs = np.array([[4.5, 4], [4, 4]], np.float32)
    res = audit_boxball_transitions(obs, np.array([UP, 7]), np.array([[4.5, 5], [4, 5]], np.float32))
    np.testing.assert_array_equal(res["valid"], [False, False])
    np.testing.assert_array_equal(res["off_grid"], [True, False])


def test_audit_trajectories():
    good = {  # (3,8) -> (2,8) -> (2,9) -> (3,9) -> (4,9) -> (5,9): legal and reaches the goal
        "observations": np.array([[3, 8], [2, 8], [2, 9], [3, 9], [4, 9]], np.float32),
        "actions": np.array([LEFT, UP, RIGHT, RIGHT, RIGHT]),
        "rewards": np.array([0, 0, 0, 0, 1], np.float32),
        "next_observations": np.array([[2, 8], [2, 9], [3, 9], [4, 9], [5, 9]], np.float32),
    }
    bad = {  # a wall crossing into the goal, then an off-grid jump
        "observations": np.array([[5, 8], [5, 9]], np.float32),
        "actions": np.array([UP, UP]),
        "rewards": np.array([1, 0], np.float32),
        "next_observations": np.array([[5, 9], [5, 11]], np.float32),
    }
    short = {  # a 2-cell jump, no goal
        "observations": np.array([[0, 0]], np.float32),
        "actions": np.array([UP]),
        "rewards": np.array([0], np.float32),
        "next_observations": np.array([[0, 2]], np.float32),
    }
    res = audit_boxball_trajectories([good, bad, short])
    np.testing.assert_array_equal(res["length"], [5, 2, 1])
    np.testing.assert_allclose(res["return"], [1, 1, 0])
    np.testing.assert_array_equal(res["reaches_goal"], [True, True, False])
    assert res["transitions"] == 8
    assert res["invalid"] == 3
    assert res["invalid_rate"] == pytest.approx(3 / 8)
    assert res["wall_crossings"] == 1
    assert res["off_grid"] == 1
    assert res["mean_length"] == pytest.approx(8 / 3)
    assert res["mean_return"] == pytest.approx(2 / 3)
    assert res["goal_rate"] == pytest.approx(2 / 3)


def test_audit_trajectories_empty():
    res = audit_boxball_trajectories([])
    assert res["transitions"] == 0 and res["wall_crossings"] == 0 and np.isnan(res["invalid_rate"])


def test_render_grid_draws_wall_and_goal():
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    from rtaug.envs import render_grid

    fig, ax = plt.subplots()
    render_grid(ax)
    wall_lines = [ln for ln in ax.lines if ln.get_color() == "saddlebrown"]
    assert len(wall_lines) == 1
    np.testing.assert_allclose(wall_lines[0].get_xydata(), [[2.5, 8.5], [7.5, 8.5]])
    assert len(ax.patches) == 1
    plt.close(fig)
