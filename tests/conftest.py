"""Shared small datasets (deterministic, built in memory, no dependence on ../shared), one
tiny maze experiment whose trained model the tests that need one share, and the check that a
refused command said one line and changed nothing."""

from pathlib import Path

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


def record_pointmaze(dataset_id, episodes=3, steps=60, env_id="PointMaze_UMaze-v3"):
    """A Minari dataset recorded by `minari.DataCollector` around gymnasium-robotics' PointMaze (random
    actions, `episodes` x `steps`), under the current MINARI_DATASETS_PATH: data made elsewhere."""
    import os

    import gymnasium as gym
    import gymnasium_robotics
    from minari import DataCollector

    gym.register_envs(gymnasium_robotics)
    env = DataCollector(gym.make(env_id, max_episode_steps=steps))
    os.unlink(env.unwrapped.tmp_xml_file_path)  # gymnasium-robotics leaves its generated model file behind
    rng = np.random.default_rng(0)
    for ep in range(episodes):
        env.reset(seed=ep)
        for _ in range(steps):
            _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
            if term or trunc:
                break
    md = env.create_dataset(dataset_id=dataset_id, algorithm_name="random", description="test", author="rtaug tests",
                            author_email="tests@rtaug.invalid", code_permalink="tests/conftest.py", eval_env=env_id)
    env.close()
    return md


@pytest.fixture(scope="session")
def grid_data():
    return grid_walks()


@pytest.fixture(scope="session")
def continuous_data():
    return continuous_walks()


# One tiny experiment on maze2d-umaze-sparse: 1,500 collected rows, RT's model (sequence model,
# VAE, dynamics ensemble, reward model: 20 updates each), its generated data and two BC
# policies. Built once per session: the experiment system's tests run it, the Maze2D pipeline
# tests read its data and model from the stage cache.
TINY_EXPERIMENT = {
    "task": "maze2d-umaze-sparse", "seeds": [0, 1], "protocol": "test",
    "data": {"steps": 1500},
    "generator": {
        "kind": "rt",
        "model": {"sequence": {"context_steps": 8, "n_layer": 1, "n_head": 2, "d_model": 16, "batch_size": 8,
                               "steps": 20, "rtg_bins": 8},
                  "vae": {"steps": 20}, "dynamics": {"members": 2, "steps": 20}, "reward": {"steps": 20}},
        "generation": {"num_trajectories": 16, "max_length": 4, "alpha_trajectories": 16}},
    "learner": {"algo": "bc", "steps": 30, "eval_every": 15, "eval_episodes": 2, "chunk": 15, "hidden": [16, 16]},
    "evaluation": {"episodes": 2},
}


@pytest.fixture(scope="session")
def tiny_experiment(tmp_path_factory):
    """(directory, result, log lines) of `TINY_EXPERIMENT` run with its cache in directory/cache."""
    pytest.importorskip("gymnasium_robotics")
    from rtaug.experiments.config import build
    from rtaug.experiments.run import run_experiment

    d = tmp_path_factory.mktemp("experiment")
    lines = []
    result = run_experiment(build(TINY_EXPERIMENT), d / "run", cache=d / "cache", progress=False,
                            printer=lines.append)
    return d, result, lines


def with_references(monkeypatch, env: str, random, expert) -> None:
    """Every registry task of locomotion environment `env` with these measured references (None,
    None: not measured), whatever the registry stores, for the paths that depend on them."""
    from dataclasses import replace

    from rtaug.envs.registry import TASKS

    for name, task in list(TASKS.items()):
        if getattr(task, "env", None) == env:
            refs = replace(task.references, random=random, expert=expert)
            monkeypatch.setitem(TASKS, name, replace(task, references=refs))


def file_bytes(*paths) -> dict:
    """Every file's bytes under each path (a file, or a directory's tree)."""
    found = {}
    for p in map(Path, paths):
        for f in ([p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())):
            found[str(f)] = f.read_bytes()
    return found


def refused(argv, message, capsys, keep=(), whole=True):
    """Run `rtaug argv`: it must exit 2 with exactly one line, `rtaug CMD: error: <message>` (with
    `whole` false, a line that begins so), and leave the paths in `keep` (those that exist) byte
    for byte as they were."""
    from rtaug.cli import main

    kept = [k for k in keep if Path(k).exists()]
    before = file_bytes(*kept)
    assert main(argv) == 2
    err = capsys.readouterr().err
    command = " ".join(argv[:2]) if argv[0] == "minari" else argv[0]
    assert err.count("\n") == 1 and err.endswith("\n")
    assert err == f"rtaug {command}: error: {message}\n" if whole else err.startswith(f"rtaug {command}: error: {message}")
    assert file_bytes(*kept) == before
