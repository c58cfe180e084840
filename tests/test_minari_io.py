"""Minari, offline: DataCollector data around PointMaze loads through our reader; our export loads
with minari.load_dataset."""

import os

import numpy as np
import pytest

minari = pytest.importorskip("minari")
pytest.importorskip("gymnasium_robotics")

from rtaug.collect.waypoint import collect_maze2d  # noqa: E402
from rtaug.data import DatasetError  # noqa: E402
from rtaug.data.minari_io import load_minari, save_minari  # noqa: E402
from rtaug.envs.frames import as_task  # noqa: E402
from rtaug.envs.maze_audit import audit_maze_dataset  # noqa: E402

TASK = "maze2d-umaze-sparse"


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def _collector_dataset(dataset_id):
    import gymnasium as gym
    import gymnasium_robotics
    from minari import DataCollector

    gym.register_envs(gymnasium_robotics)
    env = DataCollector(gym.make("PointMaze_UMaze-v3", max_episode_steps=60))
    os.unlink(env.unwrapped.tmp_xml_file_path)  # gymnasium-robotics leaves its generated model file behind
    rng = np.random.default_rng(0)
    for ep in range(3):
        env.reset(seed=ep)
        for _ in range(60):
            _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
            if term or trunc:
                break
    md = env.create_dataset(dataset_id=dataset_id, algorithm_name="random", description="test", author="rtaug tests",
                            author_email="tests@rtaug.invalid", code_permalink="tests/test_minari_io.py",
                            eval_env="PointMaze_UMaze-v3")
    env.close()
    return md


def test_datacollector_pointmaze_loads_through_our_reader(root):
    _collector_dataset("pointmaze/umaze-random-v0")
    d = as_task(load_minari("pointmaze/umaze-random-v0"), TASK, frame="gymnasium-robotics", relabel=True)
    assert len(d) == 180 and d.observations.shape == (180, 4) and d.actions.shape == (180, 2)
    assert d.timeouts.sum() == 3 and not d.terminals.any()
    assert d.infos["goal"].shape == (180, 2)
    np.testing.assert_array_equal(d.next_observations[:59], d.observations[1:60])
    # Mapped into D4RL's frame, gymnasium-robotics' own transitions replay exactly in our task.
    s = audit_maze_dataset(d, TASK)
    assert s["max_error"] <= 1e-5 and s["wall_rate"] == 0.0
    goal = np.array([1.0, 1.0])
    np.testing.assert_array_equal(d.rewards, (np.linalg.norm(d.next_observations[:, :2] - goal, axis=1) <= 0.5))
    # Read as stored (no task): gymnasium-robotics' frame and rewards, untouched.
    raw = load_minari("pointmaze/umaze-random-v0")
    assert not np.allclose(raw.observations, d.observations)


def test_our_export_loads_with_minari(root):
    d = collect_maze2d(TASK, steps=700, seed=0, progress=False)
    save_minari(d, "rtaug/umaze-sparse-v0", task=TASK)
    md = minari.load_dataset("rtaug/umaze-sparse-v0")
    assert md.total_steps == 700 and md.total_episodes == 3  # 300 + 300 + 100
    ep = md[0]
    np.testing.assert_array_equal(ep.observations[:300], d.observations[:300])
    np.testing.assert_array_equal(ep.observations[300], d.next_observations[299])
    np.testing.assert_array_equal(ep.actions, d.actions[:300])
    np.testing.assert_allclose(ep.rewards, d.rewards[:300])
    back = as_task(load_minari("rtaug/umaze-sparse-v0"), TASK)
    np.testing.assert_array_equal(back.observations, d.observations)
    np.testing.assert_array_equal(back.next_observations, d.next_observations)
    np.testing.assert_array_equal(back.timeouts, d.timeouts)


def test_export_splits_non_contiguous_rows(root):
    d = collect_maze2d(TASK, steps=100, seed=0, progress=False)
    shuffled = d.subset(np.r_[50:100, 0:50])  # row 49 no longer leads into row 50
    shuffled.timeouts[:] = False
    md = save_minari(shuffled, "rtaug/split-v0", root=root)
    assert md.total_episodes == 2 and md.total_steps == 100


def test_missing_dataset_is_a_clear_error(root, tmp_path):
    with pytest.raises(DatasetError, match="not found locally.*never downloads"):
        load_minari("D4RL/pointmaze/umaze-v2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a Minari dataset directory"):
        load_minari(tmp_path / "empty")


def test_wrong_observation_size_for_the_task(root):
    d = collect_maze2d(TASK, steps=50, seed=0, progress=False)
    save_minari(d, "rtaug/small-v0")
    with pytest.raises(ValueError, match="frame must be one of 'd4rl', 'gymnasium-robotics', got 'mujoco'"):
        as_task(load_minari("rtaug/small-v0"), TASK, frame="mujoco")
    from rtaug.data import Dataset

    wide = Dataset(observations=np.zeros((10, 6), np.float32), actions=np.zeros((10, 2), np.float32),
                   rewards=np.zeros(10, np.float32), terminals=np.zeros(10, bool), timeouts=np.zeros(10, bool),
                   next_observations=np.zeros((10, 6), np.float32))
    save_minari(wide, "rtaug/wide-v0")
    with pytest.raises(DatasetError, match="4-dimensional observations.*has 6"):
        as_task(load_minari("rtaug/wide-v0"), TASK)
