"""Simulator audit of locomotion data (DESIGN §6): the ground truth that Γ only approximates.

For each transition (s, a, s′), real or generated: put the simulator in state s, take the
environment's step with a, and measure the distance from the simulated observation to s′
(Euclidean over the observation), and the simulated reward and termination against the row's.

Which state is s: a real row's `infos/qpos`, `infos/qvel` (float64, the simulator state the
collector stored) when the file has them and they reproduce the row's observation; otherwise
the observation itself: qpos = (x, observation[:nq−1]) with any x, because hopper, walker2d and
halfcheetah leave the root's x out of the observation and their dynamics and rewards do not
depend on it; qvel = observation[nq−1:]. Hopper's and walker2d's observations clip velocities at
±10, so a state with a faster joint is not restorable from its observation alone (the infos are).
Real rows come back at float32 precision (≈ 1e-7); a generated row gets its true error.

`relabel_locomotion_file` writes the audit's answer back, as a diagnostic: the generated rows keep
their states and actions but take the simulator's next state, reward and termination, so a
learner trained on them separates the model's errors from where its rows are.
"""
from __future__ import annotations

import json

import numpy as np
from rtaug.progress import progress_bar

from rtaug.envs.registry import get_task

__all__ = ["audit_locomotion_dataset", "audit_locomotion_file", "audit_locomotion_transitions",
           "relabel_locomotion_file"]

_STATE_TOLERANCE = 1e-4  # stored state vs the row's float32 observation (as the maze audit's)
REWARD_TOLERANCE = 0.01  # per-step rewards are O(1); real rows agree to float32 precision


def audit_locomotion_transitions(task, observations, actions, next_observations, qpos=None, qvel=None,
                                 use_state=None, progress: bool = False, source: str = "<input>") -> dict:
    """Per-transition arrays: `error` (N,), `reward` and `terminated` (the simulator's),
    `from_state` (the stored qpos/qvel restored s, not the observation), `at_velocity_clip` (s came
    from an observation with a velocity at hopper's / walker2d's ±10 clip), `predicted_next` (N, obs_dim).

    `qpos`/`qvel` (N, nq) / (N, nv): the stored simulator state; `use_state` (N,) bool: the rows
    where it may be used (default: all); it is used only where it reproduces the observation.
    """
    from rtaug.envs.locomotion import VELOCITY_CLIP, make_sim

    task = get_task(task, "mujoco", "the locomotion audit")
    obs = np.asarray(observations, np.float64)
    nxt = np.asarray(next_observations, np.float64)
    act = np.asarray(actions, np.float32)
    for key, arr, dim in (("observations", obs, task.obs_dim), ("next_observations", nxt, task.obs_dim),
                          ("actions", act, task.act_dim)):
        if arr.ndim != 2 or arr.shape[1] != dim:
            raise ValueError(f"{source}: key '{key}': task {task.name!r} has {dim} values per row, "
                             f"got shape {arr.shape}")
    n = len(obs)
    if not (len(act) == len(nxt) == n):
        raise ValueError(f"{source}: lengths differ: observations {n}, actions {len(act)}, "
                         f"next_observations {len(nxt)}")
    sim = make_sim(task.recipe.env_id)
    nq, nv = sim.model.nq, sim.model.nv
    have_state = qpos is not None and qvel is not None
    if have_state:
        qpos = np.asarray(qpos, np.float64).reshape(n, -1)
        qvel = np.asarray(qvel, np.float64).reshape(n, -1)
        if qpos.shape[1] != nq or qvel.shape[1] != nv:
            have_state = False  # another simulator's state: audit from the observations
    use = np.ones(n, bool) if use_state is None else np.asarray(use_state, bool)

    pred = np.zeros_like(nxt)
    reward, terminated, from_state = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
    for i in progress_bar(iterable=range(n), desc=f"audit {task.name}", unit="row", progress=progress):
        if have_state and use[i]:
            sim.set_state(qpos[i], qvel[i])
            from_state[i] = np.abs(sim._get_obs() - obs[i]).max() < _STATE_TOLERANCE
        if not from_state[i]:
            sim.set_state(np.concatenate([[0.0], obs[i, :nq - 1]]), obs[i, nq - 1:])
        pred[i], reward[i], terminated[i], _, _ = sim.step(act[i])
    clip = VELOCITY_CLIP[task.recipe.env_id]
    at_clip = (~from_state & (np.abs(obs[:, nq - 1:]) >= clip - 1e-6).any(axis=1) if clip is not None
               else np.zeros(n, bool))
    return {"error": np.linalg.norm(pred - nxt, axis=1), "reward": reward, "terminated": terminated,
            "from_state": from_state, "at_velocity_clip": at_clip, "predicted_next": pred}


def _summary(res: dict, data, mask, penalised: bool) -> dict:
    from rtaug.envs.audit import reward_check

    err = res["error"][mask]
    n = len(err)
    if n == 0:
        return {"transitions": 0}
    return {
        "transitions": n,
        "mean_error": float(err.mean()), "median_error": float(np.median(err)), "max_error": float(err.max()),
        "restored_from_state": float(res["from_state"][mask].mean()),  # the rest from the observation
        # restored from an observation whose velocity sits at the clip: the true state is unknown
        "at_velocity_clip": float(res["at_velocity_clip"][mask].mean()),
        "terminal_agreement": float(np.mean(res["terminated"][mask] == data.terminals[mask])),
        # The row's reward against the simulator's reward of (s, a); a generated row's RT penalty is
        # undone first. Agreement: within REWARD_TOLERANCE.
        **reward_check(data, mask, lambda _: res["reward"][mask], REWARD_TOLERANCE, penalised),
    }


def audit_locomotion_dataset(dataset, task, progress: bool = False) -> dict:
    """Summary (`mean_error`, `max_error`, rewards, terminations) over a dataset, and the same split
    by `generated` under "real" / "generated" when the dataset has that key."""
    task = get_task(task, "mujoco", "the locomotion audit")
    task.check_dataset(dataset)
    real = np.ones(len(dataset), bool) if dataset.generated is None else ~dataset.generated
    res = audit_locomotion_transitions(task, dataset.observations, dataset.actions, dataset.next_observations,
                                       qpos=dataset.infos.get("qpos"), qvel=dataset.infos.get("qvel"),
                                       use_state=real, progress=progress, source=dataset.source)
    out = {"task": task.name, "source": dataset.source,
           **_summary(res, dataset, np.ones(len(dataset), bool), penalised=False)}
    if dataset.generated is not None:
        out["real"] = _summary(res, dataset, real, penalised=False)
        out["generated"] = _summary(res, dataset, dataset.generated, penalised=True)
    return out


def audit_locomotion_file(path, task, json_out=None, progress: bool = True, real_rows: int | None = None) -> dict:
    """`rtaug audit FILE --task TASK --json OUT`: audit a dataset file, optionally write the summary."""
    from rtaug.envs.audit import audit_dataset_file

    return audit_dataset_file(path, audit_locomotion_dataset, task, json_out=json_out, progress=progress,
                              real_rows=real_rows)


def relabel_locomotion_file(path, out_path, task, progress: bool = True) -> dict:
    """Copy an augmented file to `out_path` with every generated row's `next_observations`,
    `rewards` and `terminals` replaced by what the simulator does from the row's (s, a).

    RT's penalty stays (reward = true reward − β·s·Γ/α with the file's own Γ, β, s, α), so the
    only change is the model's error: states, actions, Γ and every real row are the input's. A
    trajectory of several generated steps no longer chains exactly (step k's true next state is
    not step k+1's generated state); each row is a correct transition on its own, which is what
    a learner samples. Rows restored from observations alone (generated rows have no simulator
    state) carry hopper's and walker2d's velocity clip as the audit does (`at_velocity_clip`).
    The input is never written; the output appears complete or not at all.
    """
    import shutil
    from pathlib import Path

    import h5py

    from rtaug.data.hdf5 import METADATA_ATTR, load_hdf5
    from rtaug.envs.audit import penalty_scale
    from rtaug.fileio import replacing

    task = get_task(task, "mujoco", "relabelling generated rows by the simulator")
    path, out_path = Path(path), Path(out_path)
    if path.resolve() == out_path.resolve():
        raise ValueError(f"{path}: the relabelled file must be another file (the input is never written)")
    data = load_hdf5(path)
    task.check_dataset(data)
    if data.generated is None or not data.generated.any():
        raise ValueError(f"{path}: key 'generated': the file marks no generated rows to relabel")
    scale = penalty_scale(data)
    if scale is None:
        raise ValueError(f"{path}: key '{METADATA_ATTR}': records no β / α of its generator, so RT's "
                         "penalty cannot be kept")
    rows = np.flatnonzero(data.generated)
    res = audit_locomotion_transitions(task, data.observations[rows], data.actions[rows],
                                       data.next_observations[rows], progress=progress, source=str(path))
    new = {"next_observations": res["predicted_next"],
           "rewards": res["reward"] - scale * data.reliability[rows].astype(np.float64),
           "terminals": res["terminated"]}
    with replacing(out_path) as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as f:
            for key, values in new.items():
                if key not in f:
                    raise ValueError(f"{path}: key '{key}': missing from the file")
                column = f[key][()]
                column.reshape(len(column), -1)[rows] = np.asarray(values).reshape(len(rows), -1)
                f[key][...] = column
            meta = data.metadata
            meta["relabelled"] = {"by": "simulator", "rows": len(rows), "keys": sorted(new),
                                  "mean_error_before": float(res["error"].mean())}
            f.attrs[METADATA_ATTR] = json.dumps(meta)
    return {"relabelled_rows": len(rows), "mean_error_before": float(res["error"].mean()),
            "at_velocity_clip": float(res["at_velocity_clip"].mean()),
            "terminals": int(res["terminated"].sum())}
