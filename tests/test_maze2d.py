"""Maze2D on gymnasium-robotics PointMaze in D4RL's frame: layouts, frame mapping, physics, rewards, walls."""

import os

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

from rtaug.envs.maze2d import (  # noqa: E402
    MAX_EPISODE_STEPS, Maze2DEnv, Maze2DError, MazeLayout, check_observations, get_layout, maze_reward,
)

# D4RL's maze specs as written in d4rl/pointmaze/maze_model.py: rows joined by a backslash.
D4RL_SPECS = {
    "umaze": "#####\\#GOO#\\###O#\\#OOO#\\#####",
    "medium": "########\\#OO##OO#\\#OO#OOO#\\##OOO###\\#OO#OOO#\\#O#OO#O#\\#OOO#OG#\\########",
    "large": ("############\\#OOOO#OOOOO#\\#O##O#O#O#O#\\#OOOOOO#OOO#\\#O####O###O#\\#OO#O#OOOOO#\\"
              "##O#O#O#O###\\#OO#OOO#OGO#\\############"),
}
GOAL_CELLS = {"umaze": (1, 1), "medium": (6, 6), "large": (7, 9)}


@pytest.fixture(scope="module")
def umaze_env():
    env = Maze2DEnv("umaze", "sparse")
    yield env
    env.close()


@pytest.mark.parametrize("maze", ["umaze", "medium", "large"])
def test_layouts_match_d4rl_strings(maze):
    layout = get_layout(maze)
    rows = D4RL_SPECS[maze].split("\\")
    assert layout.rows == tuple(rows)
    assert layout.walls.tolist() == [[ch == "#" for ch in r] for r in rows]
    assert layout.goal_cell == GOAL_CELLS[maze]
    np.testing.assert_array_equal(layout.eval_goal, GOAL_CELLS[maze])
    # D4RL's reset cells: the empty cells in sorted order, then the goal cell.
    empty = sorted((i, j) for i, r in enumerate(rows) for j, ch in enumerate(r) if ch == "O")
    assert [tuple(c) for c in layout.free_cells] == empty + [GOAL_CELLS[maze]]
    assert MAX_EPISODE_STEPS[maze] == {"umaze": 300, "medium": 600, "large": 800}[maze]


@pytest.mark.parametrize("maze, name", [("umaze", "U_MAZE"), ("medium", "MEDIUM_MAZE"), ("large", "LARGE_MAZE")])
def test_walls_match_gymnasium_robotics_maps(maze, name):
    from gymnasium_robotics.envs.maze import maps

    gr = np.array([[c == 1 for c in row] for row in getattr(maps, name)])
    np.testing.assert_array_equal(get_layout(maze).walls, gr)


def test_bad_layouts_and_unknown_maze():
    with pytest.raises(Maze2DError, match="unknown maze 'tiny'.*umaze, medium, large"):
        get_layout("tiny")
    with pytest.raises(Maze2DError, match="unknown tile"):
        MazeLayout.from_rows("x", ["###", "#X#", "###"])
    with pytest.raises(Maze2DError, match="exactly one 'G'"):
        MazeLayout.from_rows("x", ["###", "#O#", "###"])


@pytest.mark.parametrize("maze", ["umaze", "medium", "large"])
def test_frame_mapping_round_trip(maze):
    layout = get_layout(maze)
    rng = np.random.default_rng(0)
    p = rng.uniform(-1, 10, size=(50, 2))
    np.testing.assert_allclose(layout.from_sim_pos(layout.to_sim_pos(p)), p, atol=1e-12)
    np.testing.assert_allclose(layout.to_sim_pos(layout.from_sim_pos(p)), p, atol=1e-12)
    np.testing.assert_allclose(layout.from_sim_vec(layout.to_sim_vec(p)), p, atol=1e-12)
    # A rotation: lengths are preserved, so speeds and action norms mean the same in both frames.
    np.testing.assert_allclose(np.linalg.norm(layout.to_sim_vec(p), axis=1), np.linalg.norm(p, axis=1))


@pytest.mark.parametrize("maze", ["umaze", "medium", "large"])
def test_cell_positions_match_gymnasium_robotics_cells(maze):
    """qpos (i, j) sits 0.2 past cell (i, j)'s centre on both D4RL axes, as D4RL's body does."""
    env = Maze2DEnv(maze)
    try:
        for i, j in env.layout.free_cells:
            centre = env._gr.maze.cell_rowcol_to_xy(np.array([i, j]))
            np.testing.assert_allclose(env.layout.to_sim_pos([i - 0.2, j - 0.2]), centre, atol=1e-12)
            env.set_state([i, j], [0, 0])
            np.testing.assert_allclose(env.get_qpos(), [i, j], atol=1e-12)
            np.testing.assert_allclose(env.data.qpos[:2], centre + env.layout.to_sim_vec([0.2, 0.2]), atol=1e-12)
    finally:
        env.close()


def test_step_equals_gymnasium_robotics_step(umaze_env):
    """Our step in D4RL's frame is PointMaze's own step, seen through the frame mapping."""
    from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv

    env = umaze_env
    gr = PointMazeEnv(maze_map=env.layout.to_gr_map(), continuing_task=True, reset_target=False)
    os.unlink(gr.tmp_xml_file_path)  # gymnasium-robotics leaves its generated model file behind
    gr.reset(seed=0)
    rng = np.random.default_rng(1)
    env.set_state([3.0, 1.0], [0.3, -0.2])
    gr.point_env.set_state(env.layout.to_sim_pos([3.0, 1.0]), env.layout.to_sim_vec([0.3, -0.2]))
    for _ in range(200):
        a = rng.uniform(-1.5, 1.5, 2)  # includes out-of-range actions: both clip
        ours = env.sim_step(a)
        theirs, *_ = gr.step(env.layout.to_sim_vec(a))
        np.testing.assert_allclose(env.layout.to_sim_pos(ours[:2]), theirs["observation"][:2], atol=1e-12)
        np.testing.assert_allclose(env.layout.to_sim_vec(ours[2:]), theirs["observation"][2:], atol=1e-12)
    gr.close()


def test_walls_stop_the_point_where_d4rl_walls_are(umaze_env):
    env = umaze_env
    env.set_state([3.0, 1.0], [0.0, 0.0])
    for _ in range(200):
        obs = env.sim_step([1.0, 0.0])   # +x: towards row 4, a wall; its face at r = 3.5
    assert 3.18 < obs[0] < 3.2 + 1e-9   # centre stops ~radius (0.1) before the face: x = 3.5 - 0.1 - 0.2
    for _ in range(200):
        obs = env.sim_step([0.0, -1.0])  # -y: towards column 0, a wall; its face at c = 0.5
    assert 0.4 - 1e-9 < obs[1] < 0.42
    assert abs(obs[0] - 3.2) < 0.03


def test_velocity_is_clipped_before_each_step(umaze_env):
    env = umaze_env
    env.set_state([3.0, 2.0], [0.0, 50.0])
    obs = env.sim_step([0.0, 0.0])
    assert obs[3] <= 5.0 and obs[3] > 4.5


def test_rewards():
    goal = np.array([1.0, 1.0])
    xy = np.array([[1.0, 1.0], [1.5, 1.0], [1.0, 1.51], [4.0, 5.0]])
    np.testing.assert_array_equal(maze_reward(xy, goal, "sparse"), [1, 1, 0, 0])
    np.testing.assert_allclose(maze_reward(xy, goal, "dense"), np.exp(-np.array([0, 0.5, 0.51, 5.0])), rtol=1e-6)
    with pytest.raises(Maze2DError, match="unknown reward type"):
        maze_reward(xy, goal, "shaped")


@pytest.mark.parametrize("reward_type", ["sparse", "dense"])
def test_env_step_reward_no_termination_and_time_limit(reward_type):
    env = Maze2DEnv("umaze", reward_type)
    try:
        obs, info = env.reset(seed=0, options={"qpos": [1.0, 1.0], "qvel": [0.0, 0.0]})
        np.testing.assert_array_equal(info["goal"], [1.0, 1.0])
        for t in range(300):
            obs, r, term, trunc, _ = env.step(np.zeros(2))
            assert r == pytest.approx(float(maze_reward(obs[:2], [1.0, 1.0], reward_type)))
            assert not term  # sitting on the goal never ends the episode
            assert trunc == (t == 299)
        if reward_type == "sparse":
            assert r == 1.0
    finally:
        env.close()


def test_reset_draws_a_free_cell_within_noise(umaze_env):
    env = umaze_env
    cells = {tuple(c) for c in env.layout.free_cells}
    seen = set()
    for seed in range(60):
        obs, _ = env.reset(seed=seed)
        cell = tuple(int(v) for v in np.round(obs[:2]))
        assert cell in cells and np.all(np.abs(obs[:2] - cell) <= 0.1)
        assert np.all(np.abs(obs[2:]) < 0.6)
        seen.add(cell)
    assert seen == cells
    a, _ = env.reset(seed=3)
    b, _ = env.reset(seed=3)
    np.testing.assert_array_equal(a, b)


def test_set_state_from_obs_and_bad_sizes(umaze_env):
    env = umaze_env
    env.set_state_from_obs([3.0, 3.0, 0.5, -0.5])
    np.testing.assert_allclose(env.get_obs(), [3.0, 3.0, 0.5, -0.5], atol=1e-12)
    with pytest.raises(Maze2DError, match=r"\[x, y, vx, vy\].*shape \(3,\)"):
        env.set_state_from_obs([1.0, 2.0, 3.0])
    with pytest.raises(Maze2DError, match="'next_observations'.*shape \\(5, 6\\)"):
        check_observations(np.zeros((5, 6)), "next_observations")


def test_wall_test():
    layout = get_layout("umaze")
    # Free cell positions (qpos = cell index) are clear of walls by 0.3 on the near sides.
    assert not layout.in_wall(layout.free_cells.astype(float)).any()
    assert not layout.in_wall(layout.free_cells.astype(float), radius=0.1).any()
    # Cell (2, 1) is a wall: its centre is qpos (1.8, 0.8).
    assert layout.in_wall([1.8, 0.8])
    assert layout.wall_distance([1.8, 0.8]) == pytest.approx(-0.5)
    # Near a wall face: within the ball's radius but not inside the box.
    p = [3.25, 1.0]  # centre at r = 3.45, the face of row 4 at 3.5
    assert not layout.in_wall(p) and layout.in_wall(p, radius=0.1)
    assert layout.wall_distance(p) == pytest.approx(0.05)
    # Outside the map counts as inside a wall; batches keep their shape.
    assert layout.in_wall([-3.0, 1.0])
    assert layout.in_wall(np.zeros((3, 4, 2))).shape == (3, 4)


def test_batch_simulation_equals_the_env_step():
    from rtaug.envs.maze2d import Maze2DBatch

    rng = np.random.default_rng(0)
    batch = Maze2DBatch("medium", 4)
    envs = [Maze2DEnv("medium") for _ in range(4)]
    q = batch.layout.free_cells[rng.integers(len(batch.layout.free_cells), size=4)] + rng.uniform(-0.1, 0.1, (4, 2))
    v = rng.normal(0, 0.1, (4, 2))
    np.testing.assert_array_equal(batch.set_states(q, v), np.stack(
        [e.reset(options={"qpos": a, "qvel": b})[0] for e, a, b in zip(envs, q, v)]))
    for _ in range(300):  # long enough to hit walls
        a = rng.uniform(-1.3, 1.3, (4, 2))
        np.testing.assert_array_equal(batch.step(a), np.stack([e.sim_step(x) for e, x in zip(envs, a)]))
    batch.close()
    for e in envs:
        e.close()
