"""Environments with known true dynamics (BoxBall) and audits of data against them."""

from rtaug.envs.audit import audit_boxball_trajectories, audit_boxball_transitions
from rtaug.envs.boxball import (
    ACTIONS, ENV_ID, GOAL, GRID, MAX_EPISODE_STEPS, WALL,
    BoxBallEnv, crosses_wall, in_grid, make_boxball, render_grid, true_step,
)

__all__ = [
    "ACTIONS", "ENV_ID", "GOAL", "GRID", "MAX_EPISODE_STEPS", "WALL",
    "BoxBallEnv", "crosses_wall", "in_grid", "make_boxball", "render_grid", "true_step",
    "audit_boxball_transitions", "audit_boxball_trajectories",
]
