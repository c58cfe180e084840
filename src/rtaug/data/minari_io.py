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

The `generated` and `reliability` columns of an augmented file travel as step infos, as Minari's
DataCollector records infos: T+1 entries per episode, entry 0 from the reset and entry t+1 from step
t (here: row t); the reset's entry repeats step 0's. An export for a task carries the task's
`env_spec` (and as its evaluation env too), so `recover_environment()` makes the task's env, and the
task's measured reference returns as `ref_min_score` / `ref_max_score`.

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

__all__ = ["load_minari", "save_minari", "minari_info", "dataset_root", "local_dataset_ids", "EXPORT_MARK",
           "STEP_INFOS"]

EXPORT_MARK = "exported by rtaug"  # how every description save_minari writes begins
STEP_INFOS = ("generated", "reliability")  # the Dataset columns written as step infos


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


def minari_info(source, root=None) -> dict:
    """What a local Minari dataset says about itself, read without its episodes: `dataset_id`,
    `env_spec` (an EnvSpec or None), `description`, `total_steps`, `dict_observations`."""
    import gymnasium as gym

    md, name = _open(source, root)
    return {"name": name, "dataset_id": str(md.spec.dataset_id), "env_spec": md.env_spec,
            "description": md.storage.metadata.get("description") or "", "total_steps": int(md.total_steps),
            "dict_observations": isinstance(md.observation_space, gym.spaces.Dict)}


def _step_info(infos, key, T, name, ep_id):
    """Step info `key` of an episode as T values (one per step), or None when it is not there."""
    if not infos or key not in infos:
        return None
    v = np.asarray(infos[key])
    if len(v) not in (T, T + 1):
        raise DatasetError(f"{name}: episode {ep_id}: step info '{key}' has {len(v)} entries for {T} steps")
    return v[len(v) - T:]


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
                            "goal", *STEP_INFOS)}
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
        for key in STEP_INFOS:
            v = _step_info(ep.infos, key, T, name, ep.id)
            if v is not None:
                cols[key].append(v.reshape(T))
    if not cols["observations"]:
        raise DatasetError(f"{name}: key 'observations': empty dataset (no steps in any episode)")
    arrays = {k: np.concatenate(cols[k]) for k in ("observations", "next_observations", "actions", "rewards",
                                                  "terminals", "timeouts")}
    for key in STEP_INFOS:  # a column only when every episode has it
        if len(cols[key]) == len(cols["observations"]):
            arrays[key] = np.concatenate(cols[key])
    infos = {}
    if len(cols["goal"]) == len(cols["observations"]):
        infos["goal"] = np.concatenate(cols["goal"]).astype(np.float32)

    meta = {"minari": {"dataset_id": str(md.spec.dataset_id), "total_episodes": int(md.total_episodes),
                       "env_id": md.env_spec.id if md.env_spec is not None else None, "frame": "as stored"}}
    return Dataset.from_arrays({**arrays, **{f"infos/{k}": v for k, v in infos.items()}}, metadata=meta,
                               source=f"minari:{name}")


def save_minari(dataset: Dataset, dataset_id: str, root=None, task=None, description: str | None = None):
    """Export `dataset` as the Minari dataset `dataset_id` under `root`; returns the MinariDataset.

    Episodes are split at `terminals | timeouts` and also wherever a next observation is not the
    following row's observation (Minari episodes are contiguous trajectories; a split gets a
    truncation). With `task` (a name or a Task) the dataset carries the task's `env_spec` (also as
    its evaluation env) and its measured reference returns; without, no env can be recovered from it.
    `description` is added to the one written (which names the source and the task).
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
    columns = {k: getattr(dataset, k) for k in STEP_INFOS if getattr(dataset, k) is not None}
    buffers = []
    for i, (s, e) in enumerate(zip(starts, stops)):
        term = dataset.terminals[s:e].copy()
        trunc = dataset.timeouts[s:e].copy()
        if not (term[-1] or trunc[-1]):
            trunc[-1] = True
        buffers.append(EpisodeBuffer(
            id=i, observations=np.concatenate([obs[s:e], nxt[e - 1:e]]), actions=dataset.actions[s:e],
            rewards=dataset.rewards[s:e].astype(np.float64).tolist(), terminations=term.tolist(),
            truncations=trunc.tolist(),
            infos={k: np.concatenate([v[s:s + 1], v[s:e]]) for k, v in columns.items()}))  # entry 0: the reset's
    if dataset.discrete_actions:
        action_space = gym.spaces.Discrete(dataset.num_actions)
    else:
        action_space = gym.spaces.Box(-1.0, 1.0, (dataset.act_dim,), np.float32)
        if np.abs(dataset.actions).max() > 1.0:
            action_space = gym.spaces.Box(-np.inf, np.inf, (dataset.act_dim,), np.float32)
    observation_space = gym.spaces.Box(-np.inf, np.inf, (dataset.obs_dim,), np.float32)
    env = {}
    if task is not None:
        from rtaug.envs.registration import task_spec
        from rtaug.envs.registry import get_task

        task = get_task(task)
        spec = task_spec(task)
        env = {"env": spec, "eval_env": spec}
        ref = task.references
        if ref.random is not None and ref.expert is not None:
            env.update(ref_min_score=ref.random, ref_max_score=ref.expert,
                       num_episodes_average_score=(ref.episodes or (100, 100))[1])
    desc = (f"{EXPORT_MARK} from {dataset.source}" + (f" (task {task.name}, {task.gym_id})" if task else "")
            + (f": {description}" if description else ""))
    collector = dataset.metadata.get("collector")
    with _minari_root(root):
        if root is not None:
            Path(root).mkdir(parents=True, exist_ok=True)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Minari nags about missing author / permalink
            return create_dataset_from_buffers(
                dataset_id, buffers, observation_space=observation_space, action_space=action_space,
                algorithm_name=str(collector.get("algo", "unknown")) if isinstance(collector, dict) else "unknown",
                description=desc, data_format="hdf5", **env)
