"""The DQN collector: a short run yields a valid, legal, episode-delimited, reproducible dataset."""

import numpy as np
import pytest

from rtaug.collect import DQNConfig, collect_boxball
from rtaug.data import Dataset
from rtaug.envs import audit_boxball_transitions

CONFIG = DQNConfig(total_steps=2000, learning_starts=200, seed=7)


@pytest.fixture(scope="module")
def data():
    return collect_boxball(CONFIG, progress=False)


def test_returns_valid_dataset(data):
    assert isinstance(data, Dataset)
    data.validate()
    assert len(data) == CONFIG.total_steps
    assert data.observations.dtype == np.float32 and data.actions.dtype == np.int64
    assert data.metadata["env"] == "boxball"
    assert data.metadata["spaces"]["action"] == {"type": "discrete", "n": 4}
    assert data.metadata["collector"]["algo"] == "dqn"
    assert data.metadata["collector"]["total_steps"] == CONFIG.total_steps
    assert data.metadata["episodes_reaching_goal"] == int(data.terminals.sum())


def test_every_transition_obeys_true_dynamics(data):
    res = audit_boxball_transitions(data.observations, data.actions, data.next_observations)
    assert res["valid"].all()
    assert not res["wall_crossing"].any()
    assert not res["off_grid"].any()
    # rewards are exactly the goal indicator, and the goal always ends the episode
    at_goal = (data.next_observations == [5, 9]).all(axis=1)
    np.testing.assert_array_equal(data.rewards, at_goal.astype(np.float32))
    np.testing.assert_array_equal(data.terminals, at_goal)


def test_episodes_delimited(data):
    done = data.terminals | data.timeouts
    assert not (data.terminals & data.timeouts).any()
    bounds = data.episodes()
    assert data.metadata["episodes"] == len(bounds)
    lengths = bounds[:, 1] - bounds[:, 0]
    assert (lengths[:-1] <= 50).all() and lengths[-1] <= 50
    # every episode but possibly the last ends in a terminal or a timeout
    assert done[bounds[:-1, 1] - 1].all()
    # timeouts only at the 50-step limit
    np.testing.assert_array_equal(lengths[data.timeouts[bounds[:, 1] - 1]], 50)
    # consecutive rows chain within an episode, and each episode starts on the bottom row
    cont = ~done[:-1]
    np.testing.assert_array_equal(data.next_observations[:-1][cont], data.observations[1:][cont])
    assert (data.observations[bounds[:, 0], 1] == 0).all()


@pytest.mark.slow
def test_same_seed_same_data(data):
    again = collect_boxball(CONFIG, progress=False)
    for key in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations"):
        np.testing.assert_array_equal(getattr(data, key), getattr(again, key), err_msg=key)
    other = collect_boxball(DQNConfig(total_steps=300, learning_starts=200, seed=8), progress=False)
    assert not np.array_equal(other.actions, data.actions[:300])
