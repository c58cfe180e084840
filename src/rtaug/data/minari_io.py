"""Minari datasets, offline: read a local Minari dataset into our Dataset, export ours as one.

Nothing here downloads: `load_minari` opens a dataset already on disk (a MinariDataset, a dataset
id under the Minari root, or a dataset directory), and `save_minari` writes under a root of the
caller's choosing (default: Minari's own root, `MINARI_DATASETS_PATH` or ~/.minari/datasets).

Minari stores episodes: T+1 observations (the last one is the final next observation), T actions,
rewards, terminations, truncations. Our rows are transitions, so an episode becomes T rows with
next_observations = observations[1:], terminals = terminations and timeouts = truncations; an
episode whose last step is neither keeps its boundary as a timeout. Dict observations (PointMaze's
{observation, achieved_goal, desired_goal}) contribute their `observation` entry; the goal is kept
as infos/goal.

The data is returned as stored. Fitting it to one of our tasks (a size check, Minari's PointMaze
data mapped from gymnasium-robotics' frame into D4RL's, rewards relabelled) is the task's
business: `rtaug.envs.frames.as_task`.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from rtaug.data.dataset import Dataset, DatasetError

__all__ = ["load_minari", "save_minari", "dataset_root", "local_dataset_ids"]


def _require_minari():
    try:
        import minari  # noqa: F401
    except ImportError as exc:  # pragma: no cover - minari is a dependency
        raise DatasetError("minari: the 'minari' package is not installed (pip install 'minari[hdf5]')") from exc
    return minari


@contextlib.contextmanager
def _minari_root(root):
    """Point Minari at `root` for the duration (it reads MINARI_DATASETS_PATH on every call)."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    if root is None and not old:
        yield
        return
    # absolute: Minari joins a relative root onto paths that already contain it (root/id/data/root/id/...)
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root if root is not None else old).absolute())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def dataset_root(root=None) -> Path:
    """Where Minari keeps datasets: `root`, else MINARI_DATASETS_PATH, else ~/.minari/datasets
    (Minari's own rule; computed here because Minari's helper creates the directory as it looks)."""
    chosen = root if root is not None else os.environ.get("MINARI_DATASETS_PATH")
    return Path(chosen) if chosen else Path.home() / ".minari" / "datasets"


def local_dataset_ids(root=None, limit: int = 10) -> str:
    """The dataset ids under the root, for error messages ("none", or up to `limit` and a count)."""
    import warnings

    try:
        minari = _require_minari()
        with _minari_root(root), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Minari warns about every misconfigured directory it meets
            ids = sorted(minari.list_local_datasets())
    except Exception:  # a damaged root must not hide the error being reported
        return "(could not be listed)"
    if not ids:
        return "none"
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _open(source, root):
    minari = _require_minari()
    from minari import MinariDataset

    if isinstance(source, MinariDataset):
        return source, str(source.spec.dataset_id)
    path = Path(str(source))
    if path.exists():
        data = path / "data" if (path / "data").is_dir() else path
        if not (data / "metadata.json").exists():
            raise DatasetError(f"{source}: not a Minari dataset directory (no data/metadata.json)")
        return MinariDataset(data), str(path)
    with _minari_root(root):
        try:
            return minari.load_dataset(str(source), download=False), str(source)
        except FileNotFoundError as exc:
            raise DatasetError(f"{source}: Minari dataset not found locally ({exc}); "
                               "rtaug never downloads") from exc


def _obs_array(obs, source, ep_id):
    if isinstance(obs, dict):
        if "observation" not in obs:
            raise DatasetError(f"{source}: episode {ep_id}: dict observations without an 'observation' key "
                               f"(keys: {sorted(obs)})")
        return np.asarray(obs["observation"]), (np.asarray(obs["desired_goal"]) if "desired_goal" in obs else None)
    return np.asarray(obs), None


def load_minari(source, root=None) -> Dataset:
    """Read a local Minari dataset into a Dataset, as stored (see the module docstring)."""
    md, name = _open(source, root)
    cols = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts",
                            "goal")}
    for ep in md.iterate_episodes():
        obs, goal = _obs_array(ep.observations, name, ep.id)
        T = len(ep.rewards)
        if obs.shape[0] != T + 1:
            raise DatasetError(f"{name}: episode {ep.id}: {obs.shape[0]} observations for {T} steps "
                               "(Minari stores T+1)")
        if T == 0:
            continue
        act = ep.actions
        if isinstance(act, dict):
            raise DatasetError(f"{name}: episode {ep.id}: dict actions are not supported")
        cols["observations"].append(obs[:-1].reshape(T, -1))
        cols["next_observations"].append(obs[1:].reshape(T, -1))
        cols["actions"].append(np.asarray(act))
        cols["rewards"].append(np.asarray(ep.rewards, np.float32).reshape(T))
        term = np.asarray(ep.terminations, bool).reshape(T)
        trunc = np.asarray(ep.truncations, bool).reshape(T).copy()
        if not (term[-1] or trunc[-1]):
            trunc[-1] = True  # keep the episode boundary
        cols["terminals"].append(term)
        cols["timeouts"].append(trunc)
        if goal is not None:
            cols["goal"].append(goal[:-1].reshape(T, -1))
    if not cols["observations"]:
        raise DatasetError(f"{name}: key 'observations': empty dataset (no steps in any episode)")
    arrays = {k: np.concatenate(v) for k, v in cols.items() if k != "goal"}
    infos = {}
    if len(cols["goal"]) == len(cols["observations"]):
        infos["goal"] = np.concatenate(cols["goal"]).astype(np.float32)

    meta = {"minari": {"dataset_id": str(md.spec.dataset_id), "total_episodes": int(md.total_episodes),
                       "frame": "as stored"}}
    return Dataset.from_arrays({**arrays, **{f"infos/{k}": v for k, v in infos.items()}}, metadata=meta,
                               source=f"minari:{name}")


def save_minari(dataset: Dataset, dataset_id: str, root=None, task=None, description: str | None = None):
    """Export `dataset` as the Minari dataset `dataset_id` under `root`; returns the MinariDataset.

    Episodes are split at `terminals | timeouts` and also wherever a next observation is not the
    following row's observation (Minari episodes are contiguous trajectories; a split gets a
    truncation). `task` (optional) gives the action space bounds and is stored in the description.
    """
    _require_minari()
    import gymnasium as gym
    from minari import create_dataset_from_buffers
    from minari.data_collector import EpisodeBuffer

    n = len(dataset)
    obs, nxt = dataset.observations, dataset.next_observations
    ends = dataset.terminals | dataset.timeouts
    breaks = np.zeros(n, bool)
    breaks[:-1] = np.any(nxt[:-1] != obs[1:], axis=1)
    cut = ends | breaks
    cut[-1] = True
    stops = np.flatnonzero(cut) + 1
    starts = np.concatenate([[0], stops[:-1]])
    buffers = []
    for i, (s, e) in enumerate(zip(starts, stops)):
        term = dataset.terminals[s:e].copy()
        trunc = dataset.timeouts[s:e].copy()
        if not (term[-1] or trunc[-1]):
            trunc[-1] = True
        buffers.append(EpisodeBuffer(
            id=i, observations=np.concatenate([obs[s:e], nxt[e - 1:e]]), actions=dataset.actions[s:e],
            rewards=dataset.rewards[s:e].astype(np.float64).tolist(), terminations=term.tolist(),
            truncations=trunc.tolist(), infos={}))
    if dataset.discrete_actions:
        action_space = gym.spaces.Discrete(dataset.num_actions)
    else:
        action_space = gym.spaces.Box(-1.0, 1.0, (dataset.act_dim,), np.float32)
        if np.abs(dataset.actions).max() > 1.0:
            action_space = gym.spaces.Box(-np.inf, np.inf, (dataset.act_dim,), np.float32)
    observation_space = gym.spaces.Box(-np.inf, np.inf, (dataset.obs_dim,), np.float32)
    desc = description or f"exported by rtaug from {dataset.source}" + (f" (task {task})" if task else "")
    with _minari_root(root):
        if root is not None:
            Path(root).mkdir(parents=True, exist_ok=True)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Minari nags about missing author / permalink
            return create_dataset_from_buffers(
                dataset_id, buffers, observation_space=observation_space, action_space=action_space,
                algorithm_name=str(dataset.metadata.get("collector", {}).get("algo", "unknown"))
                if isinstance(dataset.metadata.get("collector"), dict) else "unknown",
                description=desc, data_format="hdf5")
