"""Minari, offline: DataCollector data around PointMaze loads through our reader; our export loads
with minari.load_dataset."""

import numpy as np
import pytest

minari = pytest.importorskip("minari")
pytest.importorskip("gymnasium_robotics")

from rtaug.collect.waypoint import collect_maze2d  # noqa: E402
from rtaug.data import DatasetError  # noqa: E402
from rtaug.data.minari_io import load_minari, save_minari  # noqa: E402
from rtaug.envs.frames import as_task  # noqa: E402
from rtaug.envs.maze_audit import audit_maze_dataset  # noqa: E402

from conftest import record_pointmaze  # noqa: E402

TASK = "maze2d-umaze-sparse"


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def test_datacollector_pointmaze_loads_through_our_reader(root):
    record_pointmaze("pointmaze/umaze-random-v0")
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


def _augmented(steps=300):
    """Collected umaze rows, the first five of each 100 flagged as generated with a reliability: the
    columns of an augmented file (test_interop.py exports one that RT generated)."""
    d = collect_maze2d(TASK, steps=steps, seed=0, progress=False)
    d.generated = (np.arange(steps) % 100) < 5
    d.reliability = np.where(d.generated, np.linspace(0.1, 2.0, steps), 0.0).astype(np.float32)
    return d


def test_export_for_a_task_carries_its_env_spec_references_and_columns(root):
    from rtaug.envs.registry import get_task

    task = get_task(TASK)
    d = _augmented()
    md = save_minari(d, "rtaug/aug-v0", task=TASK)
    md = minari.load_dataset("rtaug/aug-v0")
    assert md.env_spec.id == task.gym_id == "rtaug/maze2d-umaze-sparse-v0" and md.env_spec.max_episode_steps == 300
    meta = md.storage.metadata
    assert (meta["ref_min_score"], meta["ref_max_score"]) == (task.references.random, task.references.expert)
    np.testing.assert_allclose(minari.get_normalized_score(md, np.array([task.references.expert])), [1.0])
    assert meta["description"].startswith("exported by rtaug from") and task.gym_id in meta["description"]
    # Step infos as DataCollector records them: entry 0 the reset's (step 0's repeated), entry t+1 step t's.
    ep = md[0]  # 300 rows: one episode
    assert len(ep.infos["generated"]) == len(ep.infos["reliability"]) == 301
    np.testing.assert_array_equal(ep.infos["generated"][1:], d.generated)
    np.testing.assert_array_equal(ep.infos["reliability"][1:], d.reliability)
    assert ep.infos["generated"][0] and ep.infos["reliability"][0] == d.reliability[0] > 0
    # The env is the task's, from the dataset alone (eval env too), and steps.
    for env in (md.recover_environment(), md.recover_environment(eval_env=True)):
        assert env.spec.id == task.gym_id
        obs, _ = env.reset(seed=0)
        obs, _, term, trunc, info = env.step(env.action_space.sample())
        assert obs.shape == (4,) and not term and not trunc and info["goal"].tolist() == [1.0, 1.0]
        env.close()
    back = load_minari("rtaug/aug-v0")
    np.testing.assert_array_equal(back.generated, d.generated)
    np.testing.assert_array_equal(back.reliability, d.reliability)
    assert back.metadata["minari"]["env_id"] == task.gym_id


def test_export_without_a_task_has_no_env_spec(root):
    d = collect_maze2d(TASK, steps=50, seed=0, progress=False)
    md = save_minari(d, "rtaug/plain-v0")
    assert md.env_spec is None and "ref_max_score" not in md.storage.metadata
    assert "generated" not in (md[0].infos or {})


def _pointmaze_spec(env_id, **kwargs):
    import gymnasium as gym

    import rtaug.envs.maze2d as m

    m._point_maze_class()  # imports gymnasium_robotics (muted), which registers PointMaze
    spec = gym.spec(env_id)
    return spec if not kwargs else gym.envs.registration.EnvSpec(
        id=spec.id, entry_point=spec.entry_point, kwargs={**spec.kwargs, **kwargs})


@pytest.mark.parametrize("env_id, kwargs, task", [
    ("PointMaze_UMaze-v3", {}, "maze2d-umaze-sparse"),
    ("PointMaze_UMazeDense-v3", {}, "maze2d-umaze-dense"),
    ("PointMaze_Medium_Diverse_GR-v3", {}, "maze2d-medium-sparse"),  # 'c' cells are free cells
    ("PointMaze_LargeDense-v3", {}, "maze2d-large-dense"),
    ("PointMaze_Open-v3", {}, None),  # no D4RL maze
    ("PointMaze_UMaze-v3", {"maze_size_scaling": 2}, None),
])
def test_source_of_a_pointmaze_env_spec(env_id, kwargs, task):
    from rtaug.envs.frames import source_of

    src = source_of(_pointmaze_spec(env_id, **kwargs))
    assert (src.task, src.env) == (task, env_id)
    assert src.frame == ("gymnasium-robotics" if task else None)
    if task is None:
        assert src.why.startswith(f"env_spec {env_id}: ")


def test_source_of_our_specs_and_of_none():
    from rtaug.envs.frames import source_of
    from rtaug.envs.registration import task_spec

    ours = source_of(task_spec("boxball"))
    assert (ours.task, ours.frame, ours.basis) == ("boxball", "d4rl", "env_spec rtaug/boxball-v0")
    assert (source_of(None, exported_by_rtaug=True).frame, source_of(None).frame) == ("d4rl", None)
    assert source_of(None).why == "the dataset has no env_spec"
