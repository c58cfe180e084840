"""Every task of the registry as a Gymnasium environment, `Task.gym_id` (rtaug/<task>-v<version>).

Importing `rtaug.envs` registers them all, so with nothing but Gymnasium imported

    gymnasium.make("rtaug.envs:rtaug/maze2d-umaze-sparse-v0")

imports rtaug.envs, then makes the env (Gymnasium 1.x's "module:id" form; Gymnasium 1.0 removed
the plugin entry points through which older versions found other packages' ids unasked). A
spec is written out (a Minari dataset's `env_spec`) as this module's `make` with the task's name,
so `gymnasium.make(spec)` and Minari's `recover_environment()` need no registration at all.

The time limit is the task's evaluation length, applied by Gymnasium's TimeLimit wrapper from
`spec.max_episode_steps` (gymnasium-robotics' PointMaze does the same); the env made here keeps no
limit of its own, so `gymnasium.make(id, max_episode_steps=N)` means N.
"""
from __future__ import annotations

import sys

import gymnasium as gym

from rtaug.envs.registry import TASKS, get_task

__all__ = ["ENTRY_POINT", "make", "register_tasks", "task_spec"]

ENTRY_POINT = "rtaug.envs.registration:make"


def make(task: str, **kwargs) -> gym.Env:
    """The env of `task` (a registry name) without a time limit of its own (see the module docstring)."""
    kwargs.setdefault("max_episode_steps", sys.maxsize)
    return get_task(task).make_env(**kwargs)


def register_tasks() -> None:
    """Register every task's id with Gymnasium (an id already registered is left as it is)."""
    for name, task in TASKS.items():
        if task.gym_id not in gym.registry:
            gym.register(id=task.gym_id, entry_point=ENTRY_POINT, kwargs={"task": name},
                         max_episode_steps=task.evaluation.max_episode_steps)


def task_spec(task) -> gym.envs.registration.EnvSpec:
    """The registered EnvSpec of `task` (a name or a Task)."""
    register_tasks()
    return gym.spec(get_task(task).gym_id)
