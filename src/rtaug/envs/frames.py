"""Data made elsewhere, as one of our tasks sees it.

Maze tasks speak D4RL's frame (`rtaug.envs.maze2d`); Minari's PointMaze datasets were recorded in
gymnasium-robotics' frame, with gymnasium-robotics' goals and rewards. `as_task` checks a dataset
against a task's sizes, maps its states, actions and goals into D4RL's frame when asked, and can
recompute the task's rewards (D4RL's evaluation goal, judged on the next state).
"""
from __future__ import annotations

import numpy as np

from rtaug.data.dataset import Dataset, DatasetError

FRAMES = ("d4rl", "gymnasium-robotics")

__all__ = ["FRAMES", "as_task"]


def as_task(data: Dataset, task, frame: str = "d4rl", relabel: bool = False) -> Dataset:
    """`data` fitted to `task` (a name or a Task): its frame mapped to D4RL's, rewards relabelled if
    asked, the task recorded in the metadata. A size that does not fit is a DatasetError."""
    from rtaug.envs.maze2d import maze_reward
    from rtaug.envs.registry import get_task

    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {', '.join(repr(f) for f in FRAMES)}, got {frame!r}")
    task = get_task(task, "maze2d", "fitting data to a task")
    if data.obs_dim != task.obs_dim:
        raise DatasetError(f"{data.source}: key 'observations': task {task.name!r} has {task.obs_dim}-dimensional "
                           f"observations, the dataset has {data.obs_dim}")
    arrays = data.to_arrays()
    meta = {**data.metadata, "task": task.name}
    layout = task.layout
    if frame == "gymnasium-robotics":
        for k in ("observations", "next_observations"):
            o = arrays[k].astype(np.float64)
            arrays[k] = np.concatenate([layout.from_sim_pos(o[:, :2]), layout.from_sim_vec(o[:, 2:])], axis=1)
        arrays["actions"] = layout.from_sim_vec(arrays["actions"]).astype(np.float32)
        if "infos/goal" in arrays:
            arrays["infos/goal"] = layout.from_sim_pos(arrays["infos/goal"]).astype(np.float32)
    if "minari" in meta:
        meta["minari"] = {**meta["minari"], "frame": frame, **({"mapped_to": "d4rl"} if frame != "d4rl" else {})}
    if relabel:
        arrays["rewards"] = maze_reward(arrays["next_observations"][:, :2], layout.eval_goal, task.reward_type)
        meta["rewards"] = f"relabelled: {task.reward_type}, D4RL's evaluation goal, next state"
    return Dataset.from_arrays(arrays, metadata=meta, source=data.source)
