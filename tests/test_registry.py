"""The task registry: names, recipes, evaluation protocol, references and bad input."""

from dataclasses import replace

import numpy as np
import pytest

from rtaug.data import Dataset
from rtaug.envs.registry import TASKS, References, TaskError, get_task, normalized_score, task_names

MAZE_TASKS = [f"maze2d-{m}-{r}" for m in ("umaze", "medium", "large") for r in ("sparse", "dense")]


def test_all_maze_tasks_are_registered():
    assert set(MAZE_TASKS) <= set(task_names())


@pytest.mark.parametrize("name", MAZE_TASKS)
def test_recipe_and_protocol(name):
    task = get_task(name)
    maze = name.split("-")[1]
    length = {"umaze": 300, "medium": 600, "large": 800}[maze]
    assert task.maze == maze and task.reward_type == name.split("-")[2]
    assert task.recipe.episode_length == length
    assert task.recipe.default_steps == {"umaze": 1_000_000, "medium": 2_000_000, "large": 4_000_000}[maze]
    assert (task.recipe.p_gain, task.recipe.d_gain, task.recipe.noise_std) == (10.0, -1.0, 0.5)
    assert task.evaluation.max_episode_steps == length and task.evaluation.episodes == 100
    assert (task.obs_dim, task.act_dim) == (4, 2)
    assert f"measure_references('maze2d-{maze}-sparse', seed=0)" in task.references.command
    assert task.describe()["name"] == name


def test_unknown_task_lists_known_ones():
    with pytest.raises(TaskError) as info:
        get_task("maze2d-umaze-v1")
    msg = str(info.value)
    assert "unknown task 'maze2d-umaze-v1'" in msg
    for name in MAZE_TASKS:
        assert name in msg


def test_get_task_passes_a_task_through():
    task = get_task("maze2d-medium-dense")
    assert get_task(task) is task


def test_normalized_score():
    assert normalized_score(10.0, 10.0, 110.0) == 0.0
    assert normalized_score(110.0, 10.0, 110.0) == 100.0
    np.testing.assert_allclose(normalized_score([60.0, 35.0], 10.0, 110.0), [50.0, 25.0])


def test_unmeasured_references_give_a_clear_error():
    task = replace(get_task("maze2d-umaze-sparse"), references=References(command="rtaug reference X"))
    with pytest.raises(TaskError, match="not been measured.*rtaug reference X"):
        task.normalize(100.0)


def test_all_maze_references_are_measured():
    for name in MAZE_TASKS:
        assert get_task(name).references.random is not None


def test_measured_references_are_complete_and_ordered():
    for task in TASKS.values():
        ref = task.references
        assert (ref.random is None) == (ref.expert is None)
        if ref.random is not None:
            assert ref.expert > ref.random and min(ref.episodes) >= 100
            assert max(ref.random_se, ref.expert_se) < 0.01 * (ref.expert - ref.random)
            assert task.normalize(ref.random) == pytest.approx(0.0)
            assert task.normalize(ref.expert) == pytest.approx(100.0)
        # D4RL's published references are kept for comparison only (BoxBall is not D4RL's).
        if task.family in ("maze2d", "mujoco"):
            assert task.normalize_d4rl(ref.d4rl_expert) == pytest.approx(100.0)
        else:
            with pytest.raises(TaskError, match="D4RL publishes no reference scores"):
                task.normalize_d4rl(1.0)


def test_boxball_is_a_task_like_the_others(tmp_path):
    task = get_task("boxball")
    assert (task.family, task.obs_dim, task.act_dim, task.discrete_actions) == ("boxball", 2, 4, True)
    env = task.make_env()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2,) and env.max_episode_steps == task.evaluation.max_episode_steps
    with pytest.raises(TaskError, match="reference scores have not been measured"):
        task.normalize(1.0)
    grid = Dataset(observations=np.zeros((5, 2), np.int64), actions=np.array([0, 1, 2, 3, 0]),
                   rewards=np.zeros(5, np.float32), terminals=np.zeros(5, bool), timeouts=np.ones(5, bool),
                   next_observations=np.zeros((5, 2), np.int64))
    task.check_dataset(grid)
    with pytest.raises(TaskError, match="discrete actions"):
        task.check_dataset(_dataset(2, 2))
    with pytest.raises(TaskError, match="task 'boxball': rtaug run supports maze2d tasks only"):
        get_task("boxball", "maze2d", "rtaug run")
    assert get_task("maze2d-umaze-sparse", "maze2d", "x").family == "maze2d"


def _dataset(obs_dim, act_dim):
    n = 5
    return Dataset(observations=np.zeros((n, obs_dim), np.float32), actions=np.zeros((n, act_dim), np.float32),
                   rewards=np.zeros(n, np.float32), terminals=np.zeros(n, bool), timeouts=np.zeros(n, bool),
                   next_observations=np.zeros((n, obs_dim), np.float32), source="x.hdf5")


def test_dataset_with_wrong_observation_size_is_refused():
    task = get_task("maze2d-umaze-sparse")
    task.check_dataset(_dataset(4, 2))
    with pytest.raises(TaskError, match=r"x.hdf5: key 'observations'.*4-dimensional.*\(5, 17\)"):
        task.check_dataset(_dataset(17, 2))
    with pytest.raises(TaskError, match=r"x.hdf5: key 'actions'.*2-dimensional"):
        task.check_dataset(_dataset(4, 6))
