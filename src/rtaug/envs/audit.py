"""Audits of (generated) data against true dynamics: the ground truth that Γ only approximates.

The paper judges reliability through a VAE proxy; where a task has a simulator we can say
exactly which generated transitions are impossible. Each audit takes plain arrays so it runs
unchanged on dataset rows, generated rows, or baseline generators' output.
"""
from __future__ import annotations

import numpy as np

from rtaug.envs import boxball as bb

__all__ = ["audit_boxball_transitions", "audit_boxball_trajectories", "reward_check", "penalty_scale", "boxball_reward",
           "audit_dataset_file"]


def audit_boxball_transitions(obs, actions, next_obs) -> dict[str, np.ndarray]:
    """Per-transition bool arrays (N,): `valid`, `wall_crossing`, `off_grid`.

    `valid`: both states are grid cells and the true dynamics take (s, a) to s'.
    `wall_crossing`: the segment s -> s' touches the wall, whatever its length.
    `off_grid`: s or s' is not a grid cell (outside 0..9 or not integer-valued).
    """
    s = np.asarray(obs, dtype=np.float64).reshape(-1, 2)
    s2 = np.asarray(next_obs, dtype=np.float64).reshape(-1, 2)
    a = np.asarray(actions).reshape(-1)
    if not (len(s) == len(s2) == len(a)):
        raise ValueError(f"audit_boxball_transitions: lengths differ: obs {len(s)}, actions {len(a)}, next_obs {len(s2)}")
    ok_s, ok_s2 = bb.in_grid(s), bb.in_grid(s2)
    ok_a = (a == np.round(a)) & (a >= 0) & (a < len(bb.ACTIONS))
    # Only well-formed rows go through true_step (it rejects bad actions); the rest are invalid anyway.
    safe = ok_s & ok_a
    pred, _, _ = bb.true_step(np.where(safe[:, None], s, 0).astype(np.int64), np.where(safe, a, 0).astype(np.int64))
    valid = safe & ok_s2 & (pred == s2).all(axis=1)
    return {
        "valid": valid,
        "wall_crossing": bb.crosses_wall(s, s2),
        "off_grid": ~(ok_s & ok_s2),
    }


def audit_boxball_trajectories(trajectories) -> dict:
    """Audit a list of trajectories (dicts of observations, actions, rewards, next_observations, in time order).

    Returns per-trajectory arrays `length`, `return`, `reaches_goal` (any visited state is
    GOAL) and the summary `transitions`, `invalid` and `invalid_rate`, `wall_crossings`,
    `off_grid` (counts of transitions), `mean_length`, `mean_return`, `goal_rate`.
    Means over zero trajectories or transitions are NaN rather than a misleading 0.
    """
    lengths, returns, reaches = [], [], []
    valid_all, wall_all, off_all = [], [], []
    goal = np.asarray(bb.GOAL, dtype=np.float64)
    for i, tr in enumerate(trajectories):
        o = np.asarray(tr["observations"], dtype=np.float64).reshape(-1, 2)
        no = np.asarray(tr["next_observations"], dtype=np.float64).reshape(-1, 2)
        r = np.asarray(tr["rewards"], dtype=np.float64).reshape(-1)
        if len(r) != len(o):
            raise ValueError(f"audit_boxball_trajectories: trajectory {i}: {len(o)} observations but {len(r)} rewards")
        res = audit_boxball_transitions(o, tr["actions"], no)
        valid_all.append(res["valid"]), wall_all.append(res["wall_crossing"]), off_all.append(res["off_grid"])
        lengths.append(len(o))
        returns.append(r.sum())
        reaches.append(bool((o == goal).all(axis=1).any() or (no == goal).all(axis=1).any()))

    def cat(xs):
        return np.concatenate(xs) if xs else np.zeros(0, bool)

    valid, wall, off = cat(valid_all), cat(wall_all), cat(off_all)
    n = len(valid)
    length = np.asarray(lengths, dtype=np.int64)
    ret = np.asarray(returns, dtype=np.float64)
    reach = np.asarray(reaches, dtype=bool)
    nan = float("nan")
    return {
        "length": length,
        "return": ret,
        "reaches_goal": reach,
        "transitions": int(n),
        "invalid": int((~valid).sum()),
        "invalid_rate": float((~valid).mean()) if n else nan,
        "wall_crossings": int(wall.sum()),
        "off_grid": int(off.sum()),
        "mean_length": float(length.mean()) if len(length) else nan,
        "mean_return": float(ret.mean()) if len(ret) else nan,
        "goal_rate": float(reach.mean()) if len(reach) else nan,
    }


def boxball_reward(next_obs) -> np.ndarray:
    """BoxBall's reward: 1 on entering the goal."""
    return np.all(np.round(np.asarray(next_obs, np.float64)) == np.asarray(bb.GOAL), axis=-1).astype(np.float64)


def penalty_scale(dataset) -> float | None:
    """β·s/α of the generator that wrote `dataset` (RT's penalty is this times Γ, Eq. 6), or None
    when its metadata does not record them."""
    gen = (dataset.metadata or {}).get("generator") or {}
    try:
        return float(gen["beta"]) * float(gen.get("reward_scale", 1.0)) / float(gen["alpha"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def reward_check(dataset, mask, true_reward, tol: float, penalised: bool) -> dict:
    """A file's rewards against the task's reward of each row's next state, where the task's
    reward is a function of it. Generated rows carry RT's penalty r̂ − β·s·Γ/α (Eq. 6); it is
    undone from the file's own `reliability` and recorded β, s and α, so what is checked is the
    model's reward r̂. A row agrees when it is within `tol` of the true reward."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return {}
    r = dataset.rewards[mask].astype(np.float64)
    if penalised:
        scale = penalty_scale(dataset)
        if scale is None:
            return {"reward_check": "skipped: the file records no β / α of its generator"}
        r = r + scale * dataset.reliability[mask].astype(np.float64)
    true = true_reward(dataset.next_observations[mask])
    return {"reward_agreement": float(np.mean(np.abs(r - true) < tol)),
            "reward_mean_abs_error": float(np.mean(np.abs(r - true))),
            "reward_mean": float(r.mean()), "true_reward_mean": float(true.mean())}


def real_sample(data, real_rows: int | None, seed: int = 0):
    """(data, about): every generated row and `real_rows` of the real ones drawn at random, when
    the file marks its generated rows and has more real ones; else the data whole and None.
    An augmented file is mostly real rows (the data, and Eq. 11's copies of them) that the
    collection was already audited on; the generated rows are the question."""
    if real_rows is None or data.generated is None:
        return data, None
    real = np.flatnonzero(~data.generated)
    if len(real) <= real_rows:
        return data, None
    drawn = np.random.default_rng(seed).choice(real, size=int(real_rows), replace=False)
    keep = np.sort(np.concatenate([np.flatnonzero(data.generated), drawn]))
    return data.subset(keep), {"real_rows": int(len(real)), "real_rows_audited": int(real_rows), "seed": seed}


def audit_dataset_file(path, audit_dataset, task, json_out=None, progress: bool = True,
                       real_rows: int | None = None) -> dict:
    """`rtaug audit FILE --task TASK --json OUT` for a simulator task: `audit_dataset(data, task,
    progress=...)` of the file's dataset (with `real_rows`, of its generated rows and that many real
    ones: `real_sample`), its summary also written as JSON when asked."""
    from rtaug.data.hdf5 import load_hdf5
    from rtaug.fileio import atomic_write_json

    data, sampled = real_sample(load_hdf5(path), real_rows)
    summary = audit_dataset(data, task, progress=progress)
    if sampled is not None:
        summary["real_sample"] = sampled
    if json_out is not None:
        atomic_write_json(json_out, summary)
    return summary


def audit_boxball_file(path, json_out=None) -> dict:
    """`rtaug audit FILE --task boxball`: invalid rate, wall crossings and off-grid moves of every
    transition, split into real and generated (with their rewards checked) when the file says."""
    from rtaug.data.hdf5 import load_hdf5
    from rtaug.fileio import atomic_write_json

    data = load_hdf5(path)
    res = audit_boxball_transitions(data.observations, data.actions, data.next_observations)

    def part(mask):
        n = int(mask.sum())
        return {"transitions": n, "invalid_rate": float(1 - res["valid"][mask].mean()) if n else float("nan"),
                "wall_crossings": int(res["wall_crossing"][mask].sum()), "off_grid": int(res["off_grid"][mask].sum())}

    summary = part(np.ones(len(data), bool))
    if data.generated is not None:
        summary["generated"] = part(data.generated)
        summary["real"] = part(~data.generated)
        summary["generated"].update(reward_check(data, data.generated, boxball_reward, 0.5, penalised=True))
        summary["real"].update(reward_check(data, ~data.generated, boxball_reward, 0.5, penalised=False))
    if json_out is not None:
        atomic_write_json(json_out, summary)
    return summary
