"""Each learner, on a one-step task whose best action is known, moves its policy towards it.

The data mixes a good controller (30%, near the best action) with uniform random actions, so
behaviour cloning lands between the two while the value-based learners should find the best
action. Networks and step counts are tiny so the whole file runs in seconds.
"""

from dataclasses import replace

import numpy as np
import pytest

from rtaug import algos
from rtaug.data import Dataset
from rtaug.train import train

pytestmark = pytest.mark.slow  # trains every learner: outside the fast subset (-m "not slow")


def best_action(obs):
    return np.stack([0.6 * np.tanh(obs[:, 0]), np.full(len(obs), -0.5)], 1).astype(np.float32)


def bandit(n=2000, seed=0, good=0.3):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    target = best_action(obs)
    noisy_good = np.clip(target + 0.05 * rng.normal(size=(n, 2)), -1, 1)
    act = np.where((rng.random(n) < good)[:, None], noisy_good, rng.uniform(-1, 1, (n, 2)))
    act = act.astype(np.float32)
    rewards = (1.0 - np.sum((act - target) ** 2, 1)).astype(np.float32)
    return Dataset(observations=obs, actions=act, rewards=rewards, terminals=np.ones(n, bool),
                   timeouts=np.zeros(n, bool), next_observations=obs)


SMALL = {
    "bc": dict(hidden=(64, 64)),
    "td3bc": dict(hidden=(64, 64)),
    "iql": dict(hidden=(64, 64)),
    # Lagrangian-free CQL with a short BC warm-up and a smaller batch keeps the test quick.
    "cql": dict(hidden=(64, 64), bc_steps=200, batch_size=128, policy_lr=1e-3),
    "bcq": dict(vae_hidden=(64, 64), actor_hidden=(64, 64), critic_hidden=(64, 64)),
}
STEPS = {"bc": 1500, "td3bc": 1500, "iql": 1500, "cql": 1000, "bcq": 1000}


@pytest.fixture(scope="module")
def data():
    return bandit()


@pytest.fixture(scope="module")
def test_obs():
    return np.random.default_rng(1).normal(size=(500, 3)).astype(np.float32)


def _error(data, test_obs, name):
    module = algos.get(name)
    config = replace(module.Config(), **SMALL[name])
    result = train(data, name, config, steps=STEPS[name], chunk=500, progress=False)
    actions = result.policy()(test_obs)
    assert actions.shape == (len(test_obs), 2) and np.all(np.abs(actions) <= 1.0)
    return float(np.sqrt(np.mean(np.sum((actions - best_action(test_obs)) ** 2, 1))))


@pytest.fixture(scope="module")
def bc_error(data, test_obs):
    return _error(data, test_obs, "bc")


def test_bc_imitates_the_average_behaviour(bc_error, data, test_obs):
    # The mean of the data's actions is ≈ 0.3·best: BC's error is about 0.7× that of zero actions.
    zero_error = float(np.sqrt(np.mean(np.sum(best_action(test_obs) ** 2, 1))))
    assert 0.5 * zero_error < bc_error < 0.9 * zero_error


@pytest.mark.parametrize("name", ["td3bc", "iql", "cql", "bcq"])
def test_offline_rl_finds_the_best_action(name, bc_error, data, test_obs):
    error = _error(data, test_obs, name)
    assert error < 0.3, f"{name}: RMSE to the best action {error:.3f}"
    assert error < 0.7 * bc_error, f"{name}: {error:.3f} not clearly better than BC's {bc_error:.3f}"
