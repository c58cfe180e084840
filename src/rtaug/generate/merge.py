"""Writing generated data: D_model and the augmented dataset D = D_env ∪ D_model (Alg. 1 line 20).

Eq. 11 joins each generated trajectory to real data, τ' = τ̂ + τ_suffix. With merge="suffix"
(the paper's, the default) every trajectory with at least one kept step becomes one episode:

  backward  the kept generated steps in time order, then the real rows from the start state to
            the end of its episode, copied with their own terminals/timeouts, so the episode ends
            as the real one did. There is no episode end at the join: the last generated step's
            transition leads into the copied start row, and readers that follow D4RL's
            convention (a `timeouts` row's transition is dropped) keep it.
  forward   the real rows from the start of the start state's episode up to the start state,
            then the generated steps; the last one ends the episode as a terminal where
            `Generated.terminals` says the model predicted an end, else as a timeout (so, as for
            every timed-out real episode, D4RL-convention readers drop that last transition).

merge="prefix" is the earlier layout: only the generated steps, each trajectory a segment ending
in a timeout (backward: at the join, whose transition D4RL-convention readers then drop).

Columns of D_model rows:
  rewards      generated rows: `Generated.penalised_rewards()` (Eq. 6); copied rows: their own.
  generated    True on generated rows, False on copied real rows (their own value if the data
               already has the key).
  reliability  Γ on generated rows, 0 on real ones: an error, higher is worse (copied rows: their
               own value if the data already has the key).
  infos/*      every info key of the input, on every row. Copied rows take their own values.
               Generated rows take `qpos`/`qvel` from their own observation when the data's
               observation is the simulator state, or all of it but the first qpos coordinates
               (locomotion: the root's x, which no dynamics depend on; those come from the start
               row) (`_simulator_state_infos`), and every other
               info (goals, other reward types, ...) the value of the trajectory's start row. The
               metadata entry "generated_infos" says which key was filled how ("observation" or
               "start_row"): none of them was measured.

Two ways to D: `augment` in memory (a Dataset), and `write_augmented`, which writes the file a
D4RL reader sees: the input file's every dataset verbatim, then the merged rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from rtaug.data import Dataset, DatasetError
from rtaug.data.episodes import episode_bounds
from rtaug.data.hdf5 import METADATA_ATTR, next_row_kept
from rtaug.fileio import replacing
from rtaug.generate.generation import Generated

__all__ = ["MERGES", "merged_dataset", "augment", "write_augmented", "Written"]

MERGES = ("suffix", "prefix")
# root datasets a merged row has a value for (next_observations only when the input has it)
_FILLABLE_ROOT = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations",
                  "generated", "reliability")


def _check_merge(merge: str) -> None:
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {', '.join(repr(m) for m in MERGES)}, got {merge!r}")


# ---- the layout of D_model ---------------------------------------------------------
class _Plan(NamedTuple):
    """D_model row by row, over a real *source* (the loaded Dataset, or the input file's rows)."""

    real: np.ndarray  # (M,) int64: source row copied into this row, -1 on generated rows
    gen: np.ndarray  # (M,) int64: index into the flat kept steps, -1 on copied rows
    terminals: np.ndarray  # (M,) bool
    timeouts: np.ndarray  # (M,) bool
    hh: np.ndarray  # (G,) trajectory of each flat kept step
    uu: np.ndarray  # (G,) its generation-order step


def _plan(generated: Generated, merge: str, terminals: np.ndarray, timeouts: np.ndarray, start_src: np.ndarray,
          next_row: bool) -> _Plan:
    """Rows of D_model. `terminals`/`timeouts`: the source's flags; `start_src`: each trajectory's
    start row in the source; `next_row`: the output has no next_observations, so a transition's
    successor must be the next row's observation."""
    _check_merge(merge)
    if generated.direction not in ("backward", "forward"):
        raise ValueError(f"Generated.direction must be 'backward' or 'forward', got {generated.direction!r}")
    backward = generated.direction == "backward"
    terminals = np.asarray(terminals, bool)
    timeouts = np.asarray(timeouts, bool)
    bounds = episode_bounds(terminals, timeouts)
    lengths = generated.lengths
    H, L = generated.kept.shape
    g_terms = np.zeros((H, L), bool) if generated.terminals is None else np.asarray(generated.terminals, bool)

    real, gen, term, tout, hh, uu = [], [], [], [], [], []
    n_flat = 0

    def add_gen(h, t, t_flags, o_flags):
        nonlocal n_flat
        n = len(t)
        real.append(np.full(n, -1, np.int64))
        gen.append(np.arange(n_flat, n_flat + n, dtype=np.int64))
        term.append(t_flags)
        tout.append(o_flags)
        hh.append(np.full(n, h, np.int64))
        uu.append(np.asarray(t, np.int64))
        n_flat += n

    def add_real(rows, t_flags, o_flags):
        real.append(np.asarray(rows, np.int64))
        gen.append(np.full(len(rows), -1, np.int64))
        term.append(t_flags)
        tout.append(o_flags)

    for h in range(H):
        n = int(lengths[h])
        if n == 0:
            continue
        t = generated._time_order(h)
        s = int(start_src[h])
        a, b = bounds[np.searchsorted(bounds[:, 1], s, side="right")]
        t_flags = g_terms[h, t].copy()
        o_flags = np.zeros(n, bool)
        if backward:
            if t_flags.any():
                raise ValueError(f"trajectory {h}: a backward trajectory cannot end an episode "
                                 "(Generated.terminals must be None or all False)")
            if merge == "suffix":
                add_gen(h, t, t_flags, o_flags)
                rows = np.arange(s, b)
                r_t, r_o = terminals[rows].copy(), timeouts[rows].copy()
                if not (r_t[-1] or r_o[-1]):  # the data's final segment has no end: give the copy one
                    r_o[-1] = True
                add_real(rows, r_t, r_o)
            elif next_row:
                # the last step's successor (the start state) as the next row, a timeout
                add_gen(h, t, t_flags, o_flags)
                add_real([s], np.zeros(1, bool), np.ones(1, bool))
            else:
                o_flags[-1] = True
                add_gen(h, t, t_flags, o_flags)
        else:
            if t_flags[:-1].any():
                raise ValueError(f"trajectory {h}: Generated.terminals marks a kept step other than the "
                                 "last one (a forward trajectory must stop at its predicted episode end)")
            if not t_flags[-1]:
                o_flags[-1] = True
            if merge == "suffix" and s > a:
                rows = np.arange(a, s)
                add_real(rows, terminals[rows].copy(), timeouts[rows].copy())
            add_gen(h, t, t_flags, o_flags)
    if n_flat == 0:
        raise ValueError("no generated transition survived truncation: nothing to write")
    cat = np.concatenate
    return _Plan(cat(real), cat(gen), cat(term), cat(tout), cat(hh), cat(uu))


def _gather(plan: _Plan, real_values: np.ndarray, gen_values: np.ndarray, dtype) -> np.ndarray:
    """One column of D_model: copied rows from `real_values` (indexed by source row), generated
    rows from `gen_values` (indexed by flat kept step)."""
    row_shape = gen_values.shape[1:]
    out = np.empty((len(plan.real),) + row_shape, dtype)
    g = plan.gen >= 0
    out[g] = gen_values[plan.gen[g]].astype(dtype, copy=False)
    r = ~g
    if r.any():
        out[r] = np.asarray(real_values[plan.real[r]]).reshape((-1,) + row_shape).astype(dtype, copy=False)
    return out


# ---- infos of generated rows -----------------------------------------------------------
def _simulator_state_infos(data: Dataset, observations: np.ndarray, start_rows: np.ndarray) -> dict[str, np.ndarray]:
    """`infos/qpos`, `infos/qvel` of generated rows with these `observations`, when the data's
    observation is the simulator state, whole or but for its first k qpos coordinates; else {}.

    D4RL-layout files keep the simulator state beside the observation (float64 in ours), and
    the simulator audit restores real rows from it, so the key must exist on every row. A maze's
    observation is (qpos, qvel): a generated row's state is its observation. A locomotion
    observation is (qpos[1:], qvel): the root's x is left out because neither dynamics nor reward
    depend on it, so a generated row's state is its observation with the start row's x.
    """
    qpos, qvel = data.infos.get("qpos"), data.infos.get("qvel")
    if qpos is None or qvel is None:
        return {}
    qp, qv = qpos.reshape(len(data), -1), qvel.reshape(len(data), -1)
    nq = qp.shape[1]
    hidden = nq + qv.shape[1] - data.obs_dim  # leading qpos coordinates the observation leaves out
    if not 0 <= hidden < nq:
        return {}
    shown = np.concatenate([qp[:, hidden:], qv], axis=1)
    # D4RL's own maze files repeat an observation after each goal switch while the simulator
    # moved on, and hopper's and walker2d's observations clip joint velocities at ±10, so a few
    # disagreeing rows do not mean the observation is something else: the positions must agree.
    agree = np.abs(shown - data.observations) < 1e-4
    if np.mean(agree[:, :nq - hidden].all(axis=1)) < 0.99 or np.mean(agree.all(axis=1)) < 0.9:
        return {}
    obs = np.asarray(observations)
    state_q = np.concatenate([qp[np.asarray(start_rows, np.int64), :hidden], obs[:, :nq - hidden]], axis=1)
    return {"qpos": state_q.astype(qpos.dtype).reshape((-1,) + qpos.shape[1:]),
            "qvel": obs[:, nq - hidden:].astype(qvel.dtype).reshape((-1,) + qvel.shape[1:])}


def _generated_columns(data: Dataset, generated: Generated, plan: _Plan) -> tuple[dict[str, np.ndarray], dict]:
    """Values of every column on the flat kept steps, named as in a file (infos as "infos/k"),
    flags excepted (they come from the plan); and how each info was filled."""
    hh, uu = plan.hh, plan.uu
    obs = np.asarray(generated.observations)[hh, uu].astype(np.float32)
    actions = np.asarray(generated.actions)[hh, uu]
    actions = actions.astype(data.actions.dtype) if data.discrete_actions else actions.astype(np.float32)
    cols = {
        "observations": obs,
        "actions": actions,
        "rewards": np.asarray(generated.penalised_rewards())[hh, uu].astype(np.float32),
        "next_observations": np.asarray(generated.next_observations)[hh, uu].astype(np.float32),
        "generated": np.ones(len(hh), bool),
        "reliability": np.asarray(generated.reliability)[hh, uu].astype(np.float32),
    }
    start = np.asarray(generated.start_rows, np.int64)[hh]
    sim = _simulator_state_infos(data, obs, start)
    how = {}
    for k, v in data.infos.items():
        if k in sim:
            cols[f"infos/{k}"], how[k] = sim[k], "observation"
        else:
            cols[f"infos/{k}"], how[k] = v[start], "start_row"
    return cols, how


# ---- in memory -------------------------------------------------------------------------
def merged_dataset(data: Dataset, generated: Generated, merge: str = "suffix") -> Dataset:
    """D_model: the generated trajectories merged with `data` as `merge` says (module docstring).

    `data` is the Dataset the trajectories were generated from (`generated.start_rows` are its
    rows). Raises ValueError for an unknown `merge` or when no step was kept.
    """
    _check_merge(merge)
    plan = _plan(generated, merge, data.terminals, data.timeouts, generated.start_rows, next_row=False)
    cols, how = _generated_columns(data, generated, plan)
    n = len(data)
    real = {
        "observations": data.observations,
        "actions": data.actions,
        "rewards": data.rewards,
        "next_observations": data.next_observations,
        "generated": data.generated if data.generated is not None else np.zeros(n, bool),
        "reliability": data.reliability if data.reliability is not None else np.zeros(n, np.float32),
        **{f"infos/{k}": v for k, v in data.infos.items()},
    }
    out = {k: _gather(plan, real[k], cols[k], real[k].dtype) for k in real}
    return Dataset(
        observations=out["observations"],
        actions=out["actions"],
        rewards=out["rewards"],
        terminals=plan.terminals,
        timeouts=plan.timeouts,
        next_observations=out["next_observations"],
        generated=out["generated"],
        reliability=out["reliability"],
        infos={k: out[f"infos/{k}"] for k in data.infos},
        metadata=_provenance({}, generated, merge, how),
        source=data.source,
    )


def _provenance(metadata: dict, generated: Generated, merge: str, how: dict) -> dict:
    return {**metadata, "generator": generated.config, "alpha": generated.alpha, "merge": merge,
            "generated_infos": how}


def augment(data: Dataset, generated: Generated, merge: str = "suffix") -> Dataset:
    """D = D_env ∪ D_model (Alg. 1 line 20): `data` unchanged (every row, every key, every info),
    then `merged_dataset(data, generated, merge)`, with the generator's config as provenance.

    If `data`'s last row ends no episode (no terminal, no timeout), readers that split episodes
    by those flags see it run into the first merged episode; `data` is kept as it is regardless.
    """
    model_data = merged_dataset(data, generated, merge)
    out = data.concat(model_data)
    lost = sorted(set(data.infos) - set(out.infos))
    if lost:  # cannot happen: merged rows carry every info with the data's own dtype and shape
        raise DatasetError(f"{data.source}: infos {lost} would be lost in the concatenation")
    out.metadata = _provenance(data.metadata, generated, merge, model_data.metadata["generated_infos"])
    return out


# ---- on disk ---------------------------------------------------------------------------
class Written(NamedTuple):
    path: Path
    input_rows: int  # rows of the input file, copied first and verbatim
    generated_rows: int  # generated rows appended
    copied_rows: int  # real rows appended again inside merged episodes (suffixes, prefixes, successors)


def _flag(arr: np.ndarray | None, n: int) -> np.ndarray:
    if arr is None:
        return np.zeros(n, bool)
    return np.asarray(arr).reshape(n, -1)[:, 0] != 0


def _fit_dtype(values: np.ndarray, dtype: np.dtype) -> np.dtype:
    """`dtype` if it holds `values` exactly, else the smallest common type (real rows keep their values)."""
    cast = values.astype(dtype)
    if values.dtype.kind == "b" or np.array_equal(cast.astype(values.dtype), values):
        return np.dtype(dtype)
    return np.result_type(dtype, values.dtype)


def write_augmented(input_path, data: Dataset, generated: Generated, out_path, merge: str = "suffix") -> Written:
    """Write D = D_env ∪ D_model as a file: the input file, every dataset verbatim, then the merged rows.

    `data` must be `load_hdf5(input_path)` (`generated.start_rows` are its rows). The output
    holds every dataset of the input (root keys, `infos/*` at any depth, any dtype, their
    attributes; other groups such as D4RL's `metadata/*` copied as they are), each per-row
    dataset followed by the merged rows (`merged_dataset`'s layout), plus `generated` and
    `reliability` (and `timeouts`) where the input lacks them, and the root attribute
    `rtaug_metadata`: the input's, plus "generator", "alpha", "merge", "generated_infos".

    An input without `next_observations` (D4RL's maze2d/antmaze layout) gives an output without
    them, in which every generated transition is (row i, row i+1) as D4RL's qlearning_dataset
    reads it. The loaded Dataset's rows are mapped back to the file's (`next_row_kept`, the rows
    `load_hdf5_rows` reports), merged episodes copy the file's rows: a backward suffix runs to
    and includes its episode's timeout row, and merge="prefix" appends after the generated steps
    one copy of the start row marked timeout (the last step's successor). If such an input's
    last row is no timeout, the output's copy of it gets timeouts=True (recorded as
    "input_end_timeout"), the one change to the input part: D4RL drops that row anyway (it had no
    successor), and it must not be paired with the first generated row. In this layout the
    output's own final row has no successor either: if it is a generated terminal (a forward
    trajectory written last), D4RL drops that one transition as it drops every file's last row.
    With next_observations the input part is never changed; if its last row ends no episode,
    readers that split episodes by the flags run it into the first merged episode.

    Generated values are written in the input's dtype where it holds them exactly; otherwise
    the dataset is widened (e.g. integer rewards to float64, values kept) and the change recorded
    under "widened_dtypes". Keys the merge cannot fill raise DatasetError, before anything is
    written; the output appears only complete (written beside it, then renamed).
    """
    _check_merge(merge)
    input_path, out_path = Path(input_path), Path(out_path)
    source = str(input_path)
    if not input_path.is_file() or not h5py.is_hdf5(input_path):
        raise DatasetError(f"{source}: not an HDF5 file")

    # -- everything decided and checked before the output is opened
    with h5py.File(input_path, "r") as f:
        if not isinstance(f.get("observations"), h5py.Dataset):
            raise DatasetError(f"{source}: key 'observations': missing from file")
        n = f["observations"].shape[0]
        row_keys: dict[str, tuple] = {}  # per-row dataset -> (dtype, shape)
        for name, obj in f.items():
            if isinstance(obj, h5py.Dataset):
                if obj.ndim == 0:
                    continue  # copied as it is
                if name not in _FILLABLE_ROOT:
                    raise DatasetError(f"{source}: key '{name}': a root dataset the merge cannot fill for "
                                       "generated rows (known: " + ", ".join(_FILLABLE_ROOT) + ")")
                row_keys[name] = (obj.dtype, obj.shape)
        infos = f.get("infos")
        if isinstance(infos, h5py.Group):
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    row_keys[f"infos/{name}"] = (obj.dtype, obj.shape)
            infos.visititems(visit)
        for key, (_, shape) in row_keys.items():
            if len(shape) == 0 or shape[0] != n:
                raise DatasetError(f"{source}: key '{key}': length {shape[0] if shape else 'scalar'} does not "
                                   f"match observations ({n})")
        terminals = _flag(f["terminals"][()] if "terminals" in row_keys else None, n)
        timeouts = _flag(f["timeouts"][()] if "timeouts" in row_keys else None, n)
        has_next = "next_observations" in row_keys
        file_rows = np.arange(n, dtype=np.int64) if has_next else np.flatnonzero(next_row_kept(timeouts))
        if len(file_rows) != len(data):
            raise DatasetError(f"{source}: the Dataset has {len(data)} rows, the file loads as {len(file_rows)}: "
                               "`data` must be load_hdf5 of this file")
        start_file = file_rows[np.asarray(generated.start_rows, np.int64)]
        probe = np.unique(start_file)
        back = np.searchsorted(file_rows, probe)
        if not np.array_equal(np.asarray(f["observations"][probe], np.float32), data.observations[back]):
            raise DatasetError(f"{source}: key 'observations': the file's rows differ from the Dataset's at the "
                               "start rows: `data` must be load_hdf5 of this file")
        meta = {}
        raw = f.attrs.get(METADATA_ATTR)
        if raw is not None:
            meta = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))

    info_keys = {k[len("infos/"):] for k in row_keys if k.startswith("infos/")}
    if info_keys != set(data.infos):
        raise DatasetError(f"{source}: key 'infos': the file has {sorted(info_keys)}, the Dataset "
                           f"{sorted(data.infos)}: `data` must be load_hdf5 of this file")
    plan = _plan(generated, merge, terminals, timeouts, start_file, next_row=not has_next)
    cols, how = _generated_columns(data, generated, plan)
    cols["terminals"], cols["timeouts"] = plan.terminals, plan.timeouts  # flags of every merged row
    end_fix = (not has_next) and not timeouts[-1]
    added = {}  # keys the input lacks -> their dtype (input part: False, 0, no timeout)
    for key, dtype in (("generated", np.dtype(bool)), ("reliability", np.dtype(np.float32)),
                       ("timeouts", np.dtype(bool))):
        if key not in row_keys:
            added[key] = dtype
    targets, widened = {}, {}
    for key, (dtype, shape) in row_keys.items():
        values = cols[key]
        if values.shape[1:] != shape[1:]:
            if int(np.prod(values.shape[1:])) != int(np.prod(shape[1:])):
                raise DatasetError(f"{source}: key '{key}': per-row shape {shape[1:]} cannot hold the generated "
                                   f"rows' values of shape {values.shape[1:]}")
            cols[key] = values = values.reshape((len(values),) + shape[1:])
        targets[key] = _fit_dtype(values, dtype)
        if targets[key] != dtype:
            widened[key] = [str(dtype), str(targets[key])]
    meta = _provenance(meta, generated, merge, how)
    if widened:
        meta["widened_dtypes"] = widened
    if end_fix:
        meta["input_end_timeout"] = True
    try:
        meta_json = json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{out_path}: key '{METADATA_ATTR}': not JSON-serialisable ({exc})") from exc
    m = len(plan.real)

    # -- the output
    with replacing(out_path) as tmp:
        with h5py.File(input_path, "r") as fin, h5py.File(tmp, "w") as fout:
            def write_rows(name, src, real_part, dtype):
                """The input's rows, then the merged rows (copied rows from `real_part`)."""
                values = cols[name]
                if name in ("terminals", "timeouts"):  # the plan's flags, one per merged row
                    merged = values.astype(dtype)
                else:
                    merged = np.empty((m,) + values.shape[1:], dtype)
                    g = plan.gen >= 0
                    merged[g] = values[plan.gen[g]].astype(dtype, copy=False)
                    merged[~g] = real_part[plan.real[~g]].astype(dtype, copy=False)
                kw = {}
                if src is not None and src.compression is not None:
                    kw = dict(compression=src.compression, compression_opts=src.compression_opts,
                              shuffle=src.shuffle)
                ds = fout.create_dataset(name, shape=(n + m,) + merged.shape[1:], dtype=dtype, **kw)
                ds[:n] = real_part if real_part.dtype == dtype else real_part.astype(dtype)
                ds[n:] = merged
                if src is not None:
                    for k, v in src.attrs.items():
                        ds.attrs[k] = v

            def copy_group(gin, gout, prefix):
                for k, v in gin.attrs.items():
                    gout.attrs[k] = v
                for name, obj in gin.items():
                    key = f"{prefix}{name}"
                    if isinstance(obj, h5py.Group):
                        if key == "infos" or key.startswith("infos/"):
                            copy_group(obj, gout.require_group(name), key + "/")
                        else:
                            gin.copy(obj, gout, name)  # e.g. D4RL's metadata/*: not per row
                    elif key in row_keys:
                        real_part = obj[()]
                        if key == "timeouts" and end_fix:
                            real_part = real_part.copy()
                            real_part.reshape(n, -1)[-1] = 1
                        write_rows(key, obj, real_part, targets[key])
                    else:
                        gin.copy(obj, gout, name)  # a scalar dataset

            copy_group(fin, fout, "")
            for key, dtype in added.items():
                real_part = np.zeros(n, dtype)
                if key == "timeouts" and end_fix:
                    real_part[-1] = True
                write_rows(key, None, real_part, dtype)
            fout.attrs[METADATA_ATTR] = meta_json  # after copy_group copied the input's attributes
    n_gen = int((plan.gen >= 0).sum())
    return Written(out_path, n, n_gen, m - n_gen)
