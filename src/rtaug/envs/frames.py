"""Data made elsewhere, as one of our tasks sees it.

Maze tasks speak D4RL's frame (`rtaug.envs.maze2d`); Minari's PointMaze datasets were recorded in
gymnasium-robotics' frame, with gymnasium-robotics' goals and rewards. `as_task` checks a dataset
against a task's sizes, maps its states, actions and goals into D4RL's frame when asked, and can
recompute the task's rewards (D4RL's evaluation goal, judged on the next state). `source_of` reads
off a Minari dataset's `env_spec` which of our tasks its data belong to and in which frame.
"""
from __future__ import annotations

import numpy as np

from rtaug.data.dataset import Dataset, DatasetError

from dataclasses import dataclass

FRAMES = ("d4rl", "gymnasium-robotics")
_POINT_MAZE = "gymnasium_robotics.envs.maze.point_maze:PointMazeEnv"

__all__ = ["FRAMES", "Source", "as_task", "source_of"]


@dataclass(frozen=True)
class Source:
    """What a dataset's `env_spec` says: the task its data belong to and the frame of its
    observations (None: it cannot tell, `why` says why), and the env id it names (None: no env_spec)."""

    task: str | None
    frame: str | None
    env: str | None
    why: str = ""

    @property
    def basis(self) -> str:
        """What the answer rests on, for messages."""
        if self.env is not None:
            return f"env_spec {self.env}"
        return "written by rtaug, no env_spec" if self.frame else "no env_spec"


def source_of(env_spec, exported_by_rtaug: bool = False) -> Source:
    """The task and frame of data recorded in `env_spec` (a gymnasium EnvSpec or None):

    - one of rtaug's ids (`rtaug.envs.registration`): that task, D4RL's frame (every task speaks it);
    - gymnasium-robotics' PointMaze on one of our mazes' walls, at its default scale: maze2d-<maze>-
      <its reward type>, gymnasium-robotics' frame;
    - no env_spec, but written by rtaug (`exported_by_rtaug`, from its description): no task, D4RL's frame;
    - anything else: neither (the frame of a 4-number observation cannot be told from the numbers).
    """
    from rtaug.envs.maze2d import MAZES, get_layout
    from rtaug.envs.registration import ENTRY_POINT
    from rtaug.envs.registry import TASKS

    if env_spec is None:
        if exported_by_rtaug:
            return Source(None, "d4rl", None, "written by rtaug without a task")
        return Source(None, None, None, "the dataset has no env_spec")
    env, kwargs = env_spec.id, dict(env_spec.kwargs or {})

    def unknown(why):
        return Source(None, None, env, f"env_spec {env}: {why}")

    if env_spec.entry_point == ENTRY_POINT:
        name = kwargs.get("task")
        return Source(name, "d4rl", env) if name in TASKS else unknown(f"task {name!r} is not one of this rtaug's")
    if env_spec.entry_point != _POINT_MAZE:
        return unknown("neither an rtaug task nor gymnasium-robotics' PointMaze")
    walls = np.asarray([[cell == 1 for cell in row] for row in kwargs.get("maze_map", [])], bool)
    maze = next((m for m in MAZES if np.array_equal(get_layout(m).walls, walls)), None)
    if maze is None:
        return unknown(f"its maze_map is none of {', '.join(MAZES)} (D4RL's mazes)")
    if kwargs.get("maze_size_scaling", 1) != 1:
        return unknown(f"maze_size_scaling {kwargs['maze_size_scaling']}; the mapping into D4RL's frame is for 1")
    name = f"maze2d-{maze}-{kwargs.get('reward_type', 'sparse')}"  # PointMazeEnv's default reward
    if name not in TASKS:
        return unknown(f"reward_type {kwargs['reward_type']!r} is neither sparse nor dense")
    return Source(name, "gymnasium-robotics", env)


def as_task(data: Dataset, task, frame: str = "d4rl", relabel: bool = False) -> Dataset:
    """`data` fitted to `task` (a name or a Task): its frame mapped to D4RL's, rewards relabelled if
    asked (maze tasks), the task recorded in the metadata. A size that does not fit is an error."""
    from rtaug.envs.maze2d import maze_reward
    from rtaug.envs.registry import get_task

    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {', '.join(repr(f) for f in FRAMES)}, got {frame!r}")
    task = get_task(task)
    if task.family != "maze2d":  # no other frame, no reward to relabel: a size check, and the task recorded
        if frame != "d4rl" or relabel:
            task.require("maze2d", "mapping a frame or relabelling rewards")
        task.check_dataset(data)
        return Dataset.from_arrays(data.to_arrays(), metadata={**data.metadata, "task": task.name},
                                   source=data.source)
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
