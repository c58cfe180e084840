"""D4RL-protocol Maze2D collection: planner, controller, dataset layout and consistency."""

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

from rtaug.collect.waypoint import (WaypointController, collect_maze2d, plan_cells, relabel_rewards,  # noqa: E402
                                   with_reward_type)
from rtaug.data import load_hdf5, save_hdf5  # noqa: E402
from rtaug.envs.maze2d import Maze2DEnv, get_layout, maze_reward  # noqa: E402
from rtaug.evaluate import ControllerPolicy, rollout  # noqa: E402

STEPS = 3000


@pytest.fixture(scope="module")
def umaze_data():
    return collect_maze2d("maze2d-umaze-sparse", steps=STEPS, seed=0, progress=False)


def test_planner_shortest_paths():
    u = get_layout("umaze")
    assert plan_cells(u, (3, 1), (1, 1)) == [(3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]
    assert plan_cells(u, (1, 1), (1, 1)) == [(1, 1)]
    assert plan_cells(u, (2, 1), (1, 1)) == [(1, 1)]  # a start rounded into a wall steps out first
    large = get_layout("large")
    for start in map(tuple, large.free_cells):
        if start == (7, 9):
            continue
        path = plan_cells(large, start, (7, 9))
        assert path[-1] == (7, 9)
        cells = [start] + path
        assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(cells, cells[1:]))
        assert not any(large.walls[c] for c in path)


def test_controller_reaches_the_goal_in_umaze_within_the_time_limit():
    """Noise-free controller from the far end of the U: at the goal and resting there by step 300."""
    env = Maze2DEnv("umaze", "sparse")
    ctrl = WaypointController(env.layout, rng=np.random.default_rng(0))
    obs, _ = env.reset(options={"qpos": [3.0, 1.0], "qvel": [0.0, 0.0]})
    first = None
    for t in range(300):
        a, reached = ctrl.act(obs[:2], obs[2:], env.goal)
        obs, r, *_ = env.step(a)
        if reached and first is None:
            first = t
    env.close()
    assert first is not None and first < 200
    assert np.linalg.norm(obs[:2] - env.goal) < 0.1


def test_controller_policy_succeeds_from_random_starts():
    res = rollout("maze2d-umaze-sparse", ControllerPolicy("maze2d-umaze-sparse"), episodes=8, seed=3, batch_size=8)
    assert res["success"].all()
    assert (res["sparse"] > 50).all()


def test_collected_data_layout(umaze_data):
    d = umaze_data
    assert len(d) == STEPS
    assert d.observations.shape == (STEPS, 4) and d.actions.shape == (STEPS, 2)
    assert not d.terminals.any()
    assert np.flatnonzero(d.timeouts).tolist() == list(range(299, STEPS, 300))
    assert np.abs(d.actions).max() <= 1.0
    assert set(d.infos) >= {"goal", "qpos", "qvel", "reward_sparse", "reward_dense"}
    md = d.metadata
    assert md["task"] == "maze2d-umaze-sparse" and md["collector"]["algo"] == "waypoint"
    assert md["collector"]["episode_length"] == 300 and md["collector"]["noise_std"] == 0.5
    assert md["goals_reached"] > 10  # the noisy controller keeps arriving at random goals
    # Goals are drawn like resets: a free cell ± 0.1.
    goals = d.infos["goal"]
    assert np.all(np.abs(goals - np.round(goals)) <= 0.1 + 1e-6)
    assert not get_layout("umaze").walls[tuple(np.round(goals).astype(int).T)].any()


def test_transitions_are_consistent(umaze_data):
    d = umaze_data
    # One continuous stream: every next observation is the following row (no D4RL repeat quirk).
    np.testing.assert_array_equal(d.next_observations[:-1], d.observations[1:])
    np.testing.assert_allclose(d.infos["qpos"], d.observations[:, :2], atol=1e-5)
    np.testing.assert_allclose(d.infos["qvel"], d.observations[:, 2:], atol=1e-5)
    # Positions move by at most |v|·dt with |v| <= 5 (plus the step's own acceleration).
    assert np.abs(d.next_observations[:, :2] - d.observations[:, :2]).max() < 0.07


def test_sparse_and_dense_rewards_from_the_same_trajectories(umaze_data):
    d = umaze_data
    goal = np.array([1.0, 1.0])
    np.testing.assert_array_equal(d.rewards, maze_reward(d.next_observations[:, :2], goal, "sparse"))
    np.testing.assert_array_equal(d.infos["reward_sparse"], d.rewards)
    np.testing.assert_allclose(d.infos["reward_dense"], np.exp(-np.linalg.norm(d.next_observations[:, :2] - goal, axis=1)),
                               rtol=1e-5)
    assert 0 < d.rewards.mean() < 1
    # D4RL's relabelling judged the current observation instead.
    cur = relabel_rewards(d.observations, d.next_observations, goal, "sparse", reward_on="current")
    np.testing.assert_array_equal(cur, maze_reward(d.observations[:, :2], goal, "sparse"))
    dense = collect_maze2d("maze2d-umaze-dense", steps=500, seed=0, progress=False)
    np.testing.assert_array_equal(dense.rewards, umaze_data.infos["reward_dense"][:500])
    # so the experiment system collects a maze once and relabels it for the other reward type
    as_dense = with_reward_type(umaze_data, "maze2d-umaze-dense")
    np.testing.assert_array_equal(as_dense.rewards[:500], dense.rewards)
    np.testing.assert_array_equal(as_dense.observations[:500], dense.observations)
    assert as_dense.metadata["task"] == dense.metadata["task"] == "maze2d-umaze-dense"
    np.testing.assert_array_equal(with_reward_type(as_dense, "maze2d-umaze-sparse").rewards, d.rewards)
    with pytest.raises(ValueError, match="collected in maze 'umaze', cannot serve maze2d-medium-dense"):
        with_reward_type(umaze_data, "maze2d-medium-dense")


def test_collection_is_deterministic_and_round_trips_hdf5(umaze_data, tmp_path):
    again = collect_maze2d("maze2d-umaze-sparse", steps=STEPS, seed=0, progress=False)
    np.testing.assert_array_equal(again.observations, umaze_data.observations)
    other = collect_maze2d("maze2d-umaze-sparse", steps=200, seed=1, progress=False)
    assert not np.array_equal(other.observations, umaze_data.observations[:200])
    path = tmp_path / "umaze.hdf5"
    save_hdf5(umaze_data, path)
    back = load_hdf5(path)
    np.testing.assert_array_equal(back.next_observations, umaze_data.next_observations)
    np.testing.assert_array_equal(back.infos["qpos"], umaze_data.infos["qpos"])
    assert back.metadata["collector"] == umaze_data.metadata["collector"]


def test_goal_timeouts_reproduce_d4rl_marking():
    d = collect_maze2d("maze2d-umaze-sparse", steps=1000, seed=0, progress=False, timeouts="goal")
    assert d.timeouts.sum() == d.metadata["goals_drawn"]  # each switch, plus the stream's end
    # The goal changes right after each marked row.
    marks = np.flatnonzero(d.timeouts[:-1])
    assert np.all(np.any(d.infos["goal"][marks] != d.infos["goal"][marks + 1], axis=1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="steps must be positive"):
        collect_maze2d("maze2d-umaze-sparse", steps=0, progress=False)
    with pytest.raises(ValueError, match="timeouts"):
        collect_maze2d("maze2d-umaze-sparse", steps=10, progress=False, timeouts="sometimes")
    from rtaug.envs.registry import TaskError

    with pytest.raises(TaskError, match="known tasks"):
        collect_maze2d("maze2d-tiny-sparse", steps=10, progress=False)


def test_episode_collection_mixes_goal_chasing_and_random_goal_episodes():
    from rtaug.algos.common import episode_returns
    from rtaug.collect.waypoint import collect_maze2d_episodes
    from rtaug.envs.registry import get_task

    task = get_task("maze2d-umaze-dense")
    data = collect_maze2d_episodes(task, 12, expert_fraction=0.5, seed=3, batch_size=5, progress=False)
    T = task.recipe.episode_length
    assert len(data) == 12 * T
    assert np.flatnonzero(data.timeouts).tolist() == list(range(T - 1, 12 * T, T))
    assert not data.terminals.any()
    # Rows are true, contiguous transitions within an episode.
    inner = ~data.timeouts[:-1]
    np.testing.assert_array_equal(data.next_observations[:-1][inner], data.observations[1:][inner])
    np.testing.assert_allclose(data.rewards, maze_reward(data.next_observations[:, :2], task.layout.eval_goal, "dense"),
                               rtol=1e-6)
    expert = data.infos["expert"][::T]
    assert 0 < expert.sum() < 12 and np.all(data.infos["expert"] == np.repeat(expert, T))
    # The goal-chasing episodes are the good behaviour under the task's reward.
    scores = task.normalize(episode_returns(data))
    assert scores[expert].min() > 60 and scores[expert].mean() > scores[~expert].mean() + 40
    again = collect_maze2d_episodes(task, 12, expert_fraction=0.5, seed=3, batch_size=12, progress=False)
    np.testing.assert_array_equal(again.infos["expert"], data.infos["expert"])
    with pytest.raises(ValueError, match="expert_fraction"):
        collect_maze2d_episodes(task, 2, expert_fraction=1.5, progress=False)
