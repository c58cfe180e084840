"""Shared small datasets: deterministic, built in memory, no dependence on ../shared."""

import numpy as np
import pytest

from rtaug.data import Dataset

MOVES = np.array([[0, 1], [0, -1], [-1, 0], [1, 0]])
GRID_SPACES = {"observation": {"type": "multidiscrete", "nvec": [10, 10]}, "action": {"type": "discrete", "n": 4}}


def grid_walks(n_episodes=40, seed=0, max_len=30) -> Dataset:
    """Biased random walks on an open 10x10 grid, reward 1 on entering (5, 9)."""
    rng = np.random.default_rng(seed)
    O, A, R, T, TO, N = [], [], [], [], [], []
    for _ in range(n_episodes):
        s = np.array([rng.integers(0, 10), 0])
        for t in range(max_len):
            a = int(rng.integers(0, 4)) if rng.random() < 0.5 else 0
            s2 = np.clip(s + MOVES[a], 0, 9)
            r = float((s2 == [5, 9]).all())
            O.append(s.copy()), A.append(a), R.append(r), N.append(s2.copy())
            T.append(r > 0), TO.append(t == max_len - 1 and r == 0)
            s = s2
            if r > 0:
                break
    return Dataset(
        observations=np.array(O, np.float32), actions=np.array(A, np.int64), rewards=np.array(R, np.float32),
        terminals=np.array(T), timeouts=np.array(TO), next_observations=np.array(N, np.float32),
        metadata={"spaces": GRID_SPACES},
    )


def continuous_walks(n=600, ep_len=50, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    act = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    obs = np.cumsum(rng.normal(0, 0.1, (n, 4)), axis=0).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[ep_len - 1::ep_len] = True
    return Dataset(observations=obs, actions=act, rewards=rng.random(n).astype(np.float32),
                   terminals=np.zeros(n, bool), timeouts=timeouts,
                   next_observations=np.concatenate([obs[1:], obs[-1:]]))


@pytest.fixture(scope="session")
def grid_data():
    return grid_walks()


@pytest.fixture(scope="session")
def continuous_data():
    return continuous_walks()
