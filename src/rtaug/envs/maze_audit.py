"""Simulator audit of Maze2D data (DESIGN §6): the ground truth that Γ only approximates.

For each transition (s, a, s′), real or generated: put the simulator in state s, apply a, and
measure the distance from the simulated successor to s′ (Euclidean over [x, y, vx, vy], D4RL's
frame). Real transitions come back at float32 precision (≈1e-6); a generated transition that the
simulator cannot produce comes back far above it. Separately, a transition is a *wall hit* when
s, s′ or a point between them puts the ball (radius 0.1) into a wall by more than
`wall_tolerance` (MuJoCo's soft contacts let a real ball sink a few mm into a wall).

Where the file carries the simulator state (`infos/qpos`, `infos/qvel`, as D4RL's and our
collector's files do) and a row is not generated, the state is restored from those (float64)
rather than from the float32 observation.
"""
from __future__ import annotations

import numpy as np
from rtaug.progress import progress_bar

from rtaug.envs.maze2d import POINT_RADIUS, check_observations
from rtaug.envs.registry import get_task

__all__ = ["WALL_TOLERANCE", "audit_maze_transitions", "audit_maze_dataset", "audit_maze_file"]

WALL_TOLERANCE = 0.07  # real contacts sank at most 0.041 into a wall in 5M collected steps (docs/maze2d.md)
_SEGMENT_POINTS = 5    # points checked along s -> s' (endpoints included)


def audit_maze_transitions(task, observations, actions, next_observations, qpos=None, qvel=None,
                           wall_tolerance: float = WALL_TOLERANCE, progress: bool = False,
                           source: str = "<input>") -> dict[str, np.ndarray]:
    """Per-transition arrays: `error` (N,) float64, `wall_hit` (N,) bool, `state_in_wall` (N,) bool.

    `qpos`/`qvel` (N, 2), when given, override the restored state of s (D4RL frame).
    """
    task = get_task(task, "maze2d", "the maze audit")
    obs = check_observations(observations, "observations", source)
    nxt = check_observations(next_observations, "next_observations", source)
    act = np.asarray(actions, np.float64)
    if act.ndim != 2 or act.shape[1] != task.act_dim:
        raise ValueError(f"{source}: key 'actions': task {task.name!r} has {task.act_dim}-dimensional actions, "
                         f"got shape {act.shape}")
    if not (len(obs) == len(act) == len(nxt)):
        raise ValueError(f"{source}: lengths differ: observations {len(obs)}, actions {len(act)}, "
                         f"next_observations {len(nxt)}")
    pos = obs[:, :2].copy() if qpos is None else np.asarray(qpos, np.float64).reshape(-1, 2)
    vel = obs[:, 2:].copy() if qvel is None else np.asarray(qvel, np.float64).reshape(-1, 2)

    env = task.make_env()
    pred = np.zeros_like(nxt)
    for i in progress_bar(iterable=range(len(obs)), desc=f"audit {task.name}", unit="row", progress=progress):
        env.set_state(pos[i], vel[i])
        pred[i] = env.sim_step(act[i])
    env.close()
    error = np.linalg.norm(pred - nxt, axis=1)

    layout = task.layout
    radius = POINT_RADIUS - wall_tolerance
    fractions = np.linspace(0.0, 1.0, _SEGMENT_POINTS)
    seg = pos[None, :, :] + fractions[:, None, None] * (nxt[None, :, :2] - pos[None, :, :])  # (K, N, 2)
    hit = layout.in_wall(seg, radius=radius)                                                  # (K, N)
    return {"error": error, "wall_hit": hit.any(axis=0), "state_in_wall": hit[0] | hit[-1],
            "predicted_next": pred}


def _summary(res: dict[str, np.ndarray], mask=None) -> dict:
    err = res["error"] if mask is None else res["error"][mask]
    hit = res["wall_hit"] if mask is None else res["wall_hit"][mask]
    inside = res["state_in_wall"] if mask is None else res["state_in_wall"][mask]
    n = int(len(err))
    nan = float("nan")
    return {
        "transitions": n,
        "mean_error": float(err.mean()) if n else nan,
        "median_error": float(np.median(err)) if n else nan,
        "max_error": float(err.max()) if n else nan,
        "wall_rate": float(hit.mean()) if n else nan,          # s, s' or a point between them in a wall
        "state_in_wall_rate": float(inside.mean()) if n else nan,  # s or s' in a wall
    }


def audit_maze_dataset(dataset, task, wall_tolerance: float = WALL_TOLERANCE, progress: bool = False) -> dict:
    """Summary (`mean_error`, `max_error`, `wall_rate`, ...) over a dataset, and the same split by
    `generated` under "real" / "generated" when the dataset has that key."""
    task = get_task(task, "maze2d", "the maze audit")
    task.check_dataset(dataset)
    obs = dataset.observations.astype(np.float64)
    qpos, qvel = obs[:, :2].copy(), obs[:, 2:].copy()
    if "qpos" in dataset.infos and "qvel" in dataset.infos:
        ip = np.asarray(dataset.infos["qpos"], np.float64).reshape(len(dataset), -1)
        iv = np.asarray(dataset.infos["qvel"], np.float64).reshape(len(dataset), -1)
        if ip.shape[1] == 2 and iv.shape[1] == 2:
            # Only rows whose stored simulator state agrees with the observation (real rows).
            use = (np.abs(ip - qpos).max(axis=1) < 1e-4) & (np.abs(iv - qvel).max(axis=1) < 1e-4)
            if dataset.generated is not None:
                use &= ~dataset.generated
            qpos[use], qvel[use] = ip[use], iv[use]
    res = audit_maze_transitions(task, obs, dataset.actions, dataset.next_observations, qpos=qpos, qvel=qvel,
                                 wall_tolerance=wall_tolerance, progress=progress, source=dataset.source)
    out = {"task": task.name, "source": dataset.source, "wall_tolerance": wall_tolerance, **_summary(res)}
    if dataset.generated is not None:
        out["real"] = _summary(res, ~dataset.generated)
        out["generated"] = _summary(res, dataset.generated)
        out["real"].update(_reward_check(task, dataset, ~dataset.generated, penalised=False))
        out["generated"].update(_reward_check(task, dataset, dataset.generated, penalised=True))
    else:
        out.update(_reward_check(task, dataset, np.ones(len(dataset), bool), penalised=False))
    return out


def _reward_check(task, dataset, mask, penalised: bool) -> dict:
    """The maze reward is a function of the position after the step, for D4RL's evaluation goal."""
    from rtaug.envs.audit import reward_check
    from rtaug.envs.maze2d import maze_reward

    def true_reward(next_obs):
        return np.asarray(maze_reward(next_obs[:, :2].astype(np.float64), task.layout.eval_goal,
                                      task.reward_type), np.float64)
    return reward_check(dataset, mask, true_reward, 0.5 if task.reward_type == "sparse" else 0.01, penalised)


def audit_maze_file(path, task, json_out=None, progress: bool = True, real_rows: int | None = None) -> dict:
    """`rtaug audit FILE --task TASK --json OUT`: audit a dataset file, optionally write the summary."""
    from rtaug.envs.audit import audit_dataset_file

    return audit_dataset_file(path, audit_maze_dataset, task, json_out=json_out, progress=progress,
                              real_rows=real_rows)
