"""The forward-dynamics ensemble: its DIST must tell real transitions from corrupted ones.

Tiny ensembles (3 members, one hidden layer of 32, 200 updates) trained once per module: the
dynamics here are deterministic and simple, so a well-fitted model separates them almost
perfectly, and a detector that does not is broken, not merely weak.
"""

import json
import re

import jax
import numpy as np
import pytest

from rtaug.data import Dataset
from rtaug.generate.dynamics import DynamicsConfig, TrainedDynamics, load_dynamics, save_dynamics, train_dynamics
from rtaug.generate.spec import Spec

CFG = DynamicsConfig(members=3, hidden=(32,), batch_size=128, steps=200, lr=3e-3, seed=0)
TWO_MOVES = np.array([(0, 2), (0, -2), (2, 0), (-2, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)])


def roc_auc(negatives, positives) -> float:
    """P(a positive scores above a negative), by the rank-sum (Mann-Whitney) formula, ties averaged."""
    x = np.concatenate([negatives, positives])
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inverse, ranks) / counts)[inverse]  # average rank within each tie
    n_pos, n_neg = len(positives), len(negatives)
    return float((ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_roc_auc_helper():
    assert roc_auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert roc_auc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5


def linear_walks(n_episodes=12, ep_len=50, seed=0) -> Dataset:
    """s' = s + 0.1·[a, a]: a deterministic 4-d state moved by a 2-d action."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (n_episodes, ep_len, 2))
    s0 = rng.normal(0, 1, (n_episodes, 1, 4))
    traj = s0 + np.concatenate([np.zeros((n_episodes, 1, 4)), np.cumsum(0.1 * np.concatenate([a, a], -1), 1)], 1)
    timeouts = np.zeros((n_episodes, ep_len), bool)
    timeouts[:, -1] = True
    n = n_episodes * ep_len
    return Dataset(
        observations=traj[:, :-1].reshape(n, 4).astype(np.float32), actions=a.reshape(n, 2).astype(np.float32),
        rewards=np.zeros(n, np.float32), terminals=np.zeros(n, bool), timeouts=timeouts.reshape(n),
        next_observations=traj[:, 1:].reshape(n, 4).astype(np.float32),
    )


@pytest.fixture(scope="module")
def linear():
    data = linear_walks()
    spec = Spec.fit(data)
    return data, train_dynamics(data, spec, CFG, progress=False)


@pytest.fixture(scope="module")
def grid(grid_data):
    return grid_data, train_dynamics(grid_data, Spec.fit(grid_data), CFG, progress=False)


def test_forward_dist_separates_perturbed_continuous_transitions(linear):
    data, dyn = linear
    rng = np.random.default_rng(1)
    # one genuine step's worth of error per dimension
    fake = data.next_observations + np.asarray(dyn.spec.delta_std, np.float32) * rng.normal(size=data.next_observations.shape).astype(np.float32)
    real_d = np.asarray(dyn.dist(data.observations, data.actions, data.next_observations))
    fake_d = np.asarray(dyn.dist(data.observations, data.actions, fake))
    ratio, auc = fake_d.mean() / real_d.mean(), roc_auc(real_d, fake_d)
    print(f"continuous forward DIST: real {real_d.mean():.4f}, perturbed {fake_d.mean():.4f}, ratio {ratio:.1f}, AUC {auc:.4f}")
    assert ratio > 3
    assert auc > 0.9


def test_forward_dist_separates_two_moves_away_on_the_grid(grid):
    data, dyn = grid
    rng = np.random.default_rng(1)
    fake = []
    for s_next in data.next_observations.astype(int):
        cells = [c for c in s_next + TWO_MOVES if ((c >= 0) & (c <= 9)).all()]
        fake.append(cells[rng.integers(len(cells))])
    fake = np.array(fake, np.float32)
    real_d = np.asarray(dyn.dist(data.observations, data.actions, data.next_observations))
    fake_d = np.asarray(dyn.dist(data.observations, data.actions, fake))
    auc = roc_auc(real_d, fake_d)
    print(f"grid forward DIST: real {real_d.mean():.4f}, two moves away {fake_d.mean():.4f}, AUC {auc:.4f}")
    assert real_d.mean() < fake_d.mean()
    assert auc > 0.9


@pytest.mark.parametrize("which", ["linear", "grid"])
def test_dist_kinds_are_nonnegative_finite_per_transition(which, request):
    data, dyn = request.getfixturevalue(which)
    s, a, s_next = data.observations, data.actions, data.next_observations
    for kind in ("forward", "disagreement"):
        d = dyn.dist(s, a, s_next, kind=kind)
        assert d.shape == (len(data),) and d.dtype == np.float32
        assert np.all(np.isfinite(d)) and np.all(np.asarray(d) >= 0)
        # the discrete forward DIST is a total-variation distance, so at most 1
        if dyn.spec.obs_kind == "discrete":
            assert np.all(np.asarray(d) <= 1 + 1e-6)
    with pytest.raises(ValueError, match="kind"):
        dyn.dist(s, a, s_next, kind="vae")


def test_off_grid_next_state_is_fully_unreliable(grid):
    data, dyn = grid
    # (0, 10) would flatten to the index of (1, 0), (-1, 5) to a negative one; all rows are
    # scored so the shapes match the other tests' (eager ops are compiled once per shape)
    s_next = data.next_observations.copy()
    s_next[:3] = [[0, 10], [-1, 5], [10, 10]]
    d = np.asarray(dyn.dist(data.observations, data.actions, s_next))
    np.testing.assert_array_equal(d[:3], [1.0, 1.0, 1.0])
    assert d[3:].mean() < 0.5


def test_predict_shapes(linear, grid):
    (data, dyn), (gdata, gdyn) = linear, grid
    mean, log_std = dyn.predict(data.observations, data.actions)
    assert mean.shape == log_std.shape == (3, len(data), 4)
    logp = gdyn.predict(gdata.observations, gdata.actions)
    assert logp.shape == (3, len(gdata), 100)
    np.testing.assert_allclose(np.exp(logp).sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("which", ["linear", "grid"])
def test_save_load_roundtrip(which, request, tmp_path):
    data, dyn = request.getfixturevalue(which)
    save_dynamics(tmp_path, dyn)
    assert json.loads((tmp_path / "dynamics.json").read_text())["config"]["hidden"] == [32]
    loaded = load_dynamics(tmp_path, dyn.spec)
    assert isinstance(loaded, TrainedDynamics) and loaded.config == dyn.config
    same = jax.tree_util.tree_map(lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)), dyn.params, loaded.params)
    assert all(jax.tree_util.tree_leaves(same))
    s, a, s_next = data.observations, data.actions, data.next_observations
    for kind in ("forward", "disagreement"):
        np.testing.assert_array_equal(loaded.dist(s, a, s_next, kind=kind), dyn.dist(s, a, s_next, kind=kind))
    # jit-friendly: inside a caller's jit, the loaded ensemble gives the same DIST
    jitted = jax.jit(lambda s, a, s_next: loaded.dist(s, a, s_next) + 0.0)
    np.testing.assert_allclose(jitted(s, a, s_next), dyn.dist(s, a, s_next), rtol=1e-5, atol=1e-6)


def test_load_absent_and_corrupt(linear, tmp_path):
    _, dyn = linear
    assert load_dynamics(tmp_path, dyn.spec) is None
    save_dynamics(tmp_path, dyn)
    weights = tmp_path / "dynamics.msgpack"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match=re.escape(str(weights))):
        load_dynamics(tmp_path, dyn.spec)


def test_load_rejects_weights_of_another_spec(linear, tmp_path):
    save_dynamics(tmp_path, linear[1])
    other = Spec.fit(linear_walks(n_episodes=2))
    other.obs_dim = 3  # a state space of another size
    other.obs_mean, other.obs_std, other.delta_std = other.obs_mean[:3], other.obs_std[:3], other.delta_std[:3]
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "dynamics.msgpack"))):
        load_dynamics(tmp_path, other)


def test_same_seed_same_params_and_members_differ(linear):
    data, dyn = linear
    again = train_dynamics(data, dyn.spec, CFG, progress=False)
    same = jax.tree_util.tree_map(lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)), dyn.params, again.params)
    assert all(jax.tree_util.tree_leaves(same))
    mean, _ = dyn.predict(data.observations, data.actions)
    mean = np.asarray(mean)
    for e in range(1, CFG.members):
        assert not np.allclose(mean[0], mean[e])
    # the members still agree on the dynamics they were all fitted to
    assert np.asarray(dyn.dist(data.observations, data.actions, data.next_observations, "disagreement")).mean() < 1.0
