"""Environments with known true dynamics (BoxBall, the mazes) and audits of data against them.

Importing this package registers every task as a Gymnasium id (`rtaug.envs.registration`):
`gymnasium.make("rtaug.envs:rtaug/boxball-v0")` needs no other import."""

from rtaug.envs.audit import audit_boxball_trajectories, audit_boxball_transitions
from rtaug.envs.boxball import (
    ACTIONS, GOAL, GRID, MAX_EPISODE_STEPS, WALL,
    BoxBallEnv, crosses_wall, in_grid, make_boxball, render_grid, true_step,
)
from rtaug.envs.registration import register_tasks

register_tasks()

__all__ = [
    "ACTIONS", "GOAL", "GRID", "MAX_EPISODE_STEPS", "WALL",
    "BoxBallEnv", "crosses_wall", "in_grid", "make_boxball", "render_grid", "true_step",
    "audit_boxball_transitions", "audit_boxball_trajectories", "register_tasks",
]
