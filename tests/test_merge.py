"""Writing generated data (generate/merge.py): τ' = τ̂ + τ_suffix (Eq. 11) as one episode, what a
D4RL-convention reader recovers from the augmented file, and the input file kept verbatim.

No model is trained: `Generated` records are built by hand, chained as the contract says
(backward: step u leads into step u-1's state, step 0 into the start state; forward: step 0
leaves the start state, step u leaves step u-1's successor)."""

import dataclasses
import json
import os
from collections import Counter

import h5py
import numpy as np
import pytest

from conftest import grid_walks
from rtaug.data import DatasetError, load_hdf5
from rtaug.data.hdf5 import METADATA_ATTR, load_hdf5_rows
from rtaug.generate.generation import Generated
from rtaug.generate.merge import augment, merged_dataset, write_augmented

L = 3
# file episodes: [0, 10) timeout, [10, 18) terminal, [18, 30) timeout, [30, 40) timeout (or no end)
EPISODE_ENDS = ((9, "timeout"), (17, "terminal"), (29, "timeout"), (39, "timeout"))
N = 40


def _write_input(path, next_obs: bool, end: str = "timeout", seed=0):
    """A D4RL-layout file: float64 states (= infos/qpos, qvel), a goal per episode, a second
    reward, an integer info, D4RL's `metadata/*` group, attributes."""
    rng = np.random.default_rng(seed)
    obs = np.cumsum(rng.normal(0, 0.3, (N, 4)), axis=0)
    terminals, timeouts = np.zeros(N, bool), np.zeros(N, bool)
    goal = np.zeros((N, 2))
    a = 0
    for i, (last, kind) in enumerate(EPISODE_ENDS):
        kind = end if last == N - 1 else kind
        if kind == "timeout":
            timeouts[last] = True
        elif kind == "terminal":
            terminals[last] = True
        goal[a:last + 1] = [i, -i]
        a = last + 1
    with h5py.File(path, "w") as f:
        f["observations"] = obs if not next_obs else obs.astype(np.float32)
        if next_obs:
            nxt = np.concatenate([obs[1:], rng.normal(size=(1, 4))]).astype(np.float32)
            ends = np.flatnonzero(terminals | timeouts)
            nxt[ends] = rng.normal(size=(len(ends), 4))  # no successor in the file
            f["next_observations"] = nxt
        f["actions"] = rng.uniform(-1, 1, (N, 2)).astype(np.float32)
        f["rewards"] = rng.random(N)
        f["terminals"] = terminals
        f["timeouts"] = timeouts
        f["infos/qpos"] = obs[:, :2]
        f["infos/qvel"] = obs[:, 2:]
        f["infos/goal"] = goal
        f["infos/reward_sparse"] = (rng.random(N) < 0.3).astype(np.float32)
        f["infos/step"] = np.arange(N, dtype=np.int32)
        f["metadata/algorithm"] = np.bytes_("sac")
        f["metadata/policy/w"] = rng.normal(size=(3, 3))
        f["infos/qpos"].attrs["unit"] = "m"
        f.attrs["note"] = "kept as is"
        f.attrs[METADATA_ATTR] = json.dumps({"task": "toy"})
    return path


def _record(direction, starts, obs, nxt, actions, rewards, reliability, kept, terminals=None):
    kw = dict(direction=direction, observations=obs, actions=actions, rewards=rewards, next_observations=nxt,
              reliability=reliability, kept=kept, start_rows=np.asarray(starts), alpha=0.5, beta=0.3,
              config={"generator": "by-hand", "direction": direction}, terminals=terminals, reward_scale=2.0)
    names = {f.name for f in dataclasses.fields(Generated)}
    if "dist" in names:
        kw["dist"] = np.zeros(kept.shape)
    return Generated(**{k: v for k, v in kw.items() if k in names})


def _generated(data, direction, seed=0):
    """One trajectory from the first, a middle and the last row of every episode of `data`."""
    bounds = data.episodes()
    starts = np.array([r for a, b in bounds for r in (a, (a + b) // 2, b - 1)])
    H = len(starts)
    lengths = np.array([3, 1, 0, 2] * H)[:H]
    rng = np.random.default_rng(seed)
    fresh = rng.normal(size=(H, L, data.obs_dim)).astype(np.float32)
    start = data.observations[starts][:, None]
    if direction == "backward":
        obs, nxt = fresh, np.concatenate([start, fresh[:, :-1]], axis=1)
    else:
        obs, nxt = np.concatenate([start, fresh[:, :-1]], axis=1), fresh
    return _record(direction, starts, obs, nxt, rng.uniform(-1, 1, (H, L, 2)).astype(np.float32),
                   rng.random((H, L)), rng.random((H, L)) * 0.1, np.arange(L)[None] < lengths[:, None])


def _key(s, a, r, s2, done):
    f32 = lambda x: np.asarray(x, np.float32).tobytes()  # noqa: E731
    return f32(s), f32(a), f32(r), f32(s2), bool(done)


def d4rl_rows(path, next_row_only=False):
    """D4RL's qlearning_dataset loop (terminate_on_end=False), row by row: {row: transition}.

    next obs = next_observations[i] if the file has them (unless `next_row_only`, as D4RL's own
    loop does), else observations[i+1]; a timeouts row is skipped, and so is the last row in the
    next-row form; terminals are kept."""
    with h5py.File(path, "r") as f:
        obs, act, rew = f["observations"][()], f["actions"][()], f["rewards"][()]
        term = f["terminals"][()]
        tout = f["timeouts"][()] if "timeouts" in f else np.zeros(len(obs), bool)
        nxt = f["next_observations"][()] if "next_observations" in f and not next_row_only else None
    out = {}
    for i in range(len(obs) if nxt is not None else len(obs) - 1):
        if tout[i]:
            continue
        out[i] = _key(obs[i], act[i], rew[i], nxt[i] if nxt is not None else obs[i + 1], term[i])
    return out


def _expected(g, skip_last_timeout=False):
    """Every kept generated transition (s, a, r̃, s', terminal) as a multiset."""
    pen = g.penalised_rewards()
    terms = np.zeros(g.kept.shape, bool) if g.terminals is None else g.terminals
    out = Counter()
    for h in range(len(g.start_rows)):
        n = int(g.lengths[h])
        for u in range(n):
            if skip_last_timeout and u == n - 1 and not terms[h, u]:
                continue
            out[_key(g.observations[h, u], g.actions[h, u], pen[h, u], g.next_observations[h, u], terms[h, u])] += 1
    return out


def _assert_input_verbatim(inp, out, changed_timeout_row=None):
    """Every dataset and attribute of the input is in the output, its first N rows byte-identical."""
    with h5py.File(inp, "r") as fi, h5py.File(out, "r") as fo:
        seen = []

        def check(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            seen.append(name)
            a, b = obj[()], fo[name]
            assert b.dtype == a.dtype, name
            assert dict(b.attrs) == dict(obj.attrs), name
            if name.startswith("metadata/") or obj.ndim == 0:
                assert b.shape == a.shape and np.asarray(b[()]).tobytes() == np.asarray(a).tobytes(), name
                return
            assert b.shape[0] > len(a) and b.shape[1:] == a.shape[1:], name
            part = b[: len(a)]
            if name == "timeouts" and changed_timeout_row is not None:
                assert not a[changed_timeout_row] and part[changed_timeout_row]
                a, part = np.delete(a, changed_timeout_row), np.delete(part, changed_timeout_row)
            assert part.tobytes() == a.tobytes(), name

        fi.visititems(check)
        assert {"infos/goal", "infos/reward_sparse", "infos/step", "metadata/algorithm"} <= set(seen)
        assert fo.attrs["note"] == fi.attrs["note"]
        meta = json.loads(fo.attrs[METADATA_ATTR])
        assert meta["task"] == "toy"
        return meta


def _free_terminal_next(c: Counter) -> Counter:
    """In the next-row form a terminal row's s' is whatever row follows (D4RL keeps it, value
    targets ignore it): compare terminal transitions without it."""
    return Counter({(k[0], k[1], k[2], b"" if k[4] else k[3], k[4]): v for k, v in c.items()})


def _check_reader(inp, out, g, n_in, skip_last_timeout=False, next_row_only=False, expect_missing=None):
    """What the D4RL reader gets from the augmented file: the input's transitions exactly (rows < N),
    every generated transition on generated rows, copies of real transitions on copied rows."""
    before = Counter(d4rl_rows(inp, next_row_only).values())
    rows = d4rl_rows(out, next_row_only)
    with h5py.File(out, "r") as f:
        next_row = next_row_only or "next_observations" not in f
        gen_flag, term = f["generated"][()], f["terminals"][()]
    assert Counter(v for i, v in rows.items() if i < n_in) == before
    got_gen = Counter(v for i, v in rows.items() if gen_flag[i])
    want = _expected(g, skip_last_timeout)
    missing = Counter() if expect_missing is None else expect_missing  # what the layout loses to the reader
    if next_row:
        got_gen, want, missing = (_free_terminal_next(c) for c in (got_gen, want, missing))
    assert (want & missing) == missing
    assert got_gen == want - missing
    copied = [v for i, v in rows.items() if i >= n_in and not gen_flag[i] and not term[i]]
    assert all(before[v] for v in copied)
    assert sum(want.values()) > 0
    return rows


# ---- the paper's layout on files -----------------------------------------------------
@pytest.mark.parametrize("next_obs", [True, False], ids=["next_observations", "maze2d-layout"])
def test_backward_suffix_file_keeps_every_transition_and_the_input(tmp_path, next_obs):
    inp = _write_input(tmp_path / "in.hdf5", next_obs)
    data, file_rows = load_hdf5_rows(inp)
    g = _generated(data, "backward")
    out = tmp_path / "aug.hdf5"
    written = write_augmented(inp, data, g, out)
    assert written.input_rows == N and written.generated_rows == int(g.lengths.sum())

    meta = _assert_input_verbatim(inp, out)
    assert meta["merge"] == "suffix" and meta["alpha"] == g.alpha and meta["generator"] == g.config
    assert meta["generated_infos"] == {"qpos": "observation", "qvel": "observation", "goal": "start_row",
                                       "reward_sparse": "start_row", "step": "start_row"}
    assert "input_end_timeout" not in meta
    with h5py.File(out, "r") as f:
        assert ("next_observations" in f) == next_obs
        n_out = f["observations"].shape[0]
        gen = f["generated"][()]
        assert n_out == N + written.generated_rows + written.copied_rows and gen.sum() == written.generated_rows
        assert not gen[:N].any() and np.all(f["reliability"][:N] == 0)
        # generated rows: their own state as simulator state, the start row's goal and other infos
        obs = f["observations"][()]
        np.testing.assert_array_equal(f["infos/qpos"][N:][gen[N:]], obs[N:][gen[N:], :2])
        # no episode ends on a generated row: the join leads into the copied start row
        assert not (f["timeouts"][()] | f["terminals"][()])[gen].any()
    for next_row_only in ([False, True] if next_obs else [False]):
        _check_reader(inp, out, g, N, next_row_only=next_row_only)

    # each merged episode: the generated steps, then the real episode from the start row on
    aug = load_hdf5(out)
    assert len(aug) == (n_out if next_obs else n_out - int(np.sum(_dropped_on_load(out))))
    bounds = data.episodes()
    with h5py.File(out, "r") as f, h5py.File(inp, "r") as fi:
        fobs, fgoal, fto, fterm = f["observations"][()], f["infos/goal"][()], f["timeouts"][()], f["terminals"][()]
        starts_of = np.flatnonzero(np.diff(np.concatenate([[0], gen.astype(int)])) == 1)
        h_kept = [h for h in range(len(g.start_rows)) if g.lengths[h] > 0]
        assert len(starts_of) == len(h_kept)
        for row, h in zip(starts_of, h_kept):
            n = int(g.lengths[h])
            s = int(g.start_rows[h])
            fs = int(file_rows[s])
            np.testing.assert_array_equal(fobs[row:row + n], g.observations[h, :n][::-1].astype(fobs.dtype))
            assert np.all(fgoal[row:row + n] == fi["infos/goal"][fs])
            a, b = bounds[np.searchsorted(bounds[:, 1], s, side="right")]
            # the file's episode around the start row, including its timeout row in the maze2d layout
            fe = int(file_rows[b - 1]) + (0 if next_obs or fi["terminals"][int(file_rows[b - 1])] else 1) + 1
            suffix = slice(row + n, row + n + fe - fs)
            assert fobs[suffix].tobytes() == fi["observations"][fs:fe].tobytes()
            assert fto[suffix].tobytes() == fi["timeouts"][fs:fe].tobytes()
            assert fterm[suffix].tobytes() == fi["terminals"][fs:fe].tobytes()


def _dropped_on_load(path):
    """Rows load_hdf5 drops from a file without next_observations: timeouts, and the last row."""
    with h5py.File(path, "r") as f:
        t = f["timeouts"][()].copy()
    t[-1] = True
    return t


def test_unended_last_row_of_a_maze2d_file_gets_a_timeout(tmp_path):
    inp = _write_input(tmp_path / "in.hdf5", next_obs=False, end="none")
    data, _ = load_hdf5_rows(inp)
    g = _generated(data, "backward")
    out = tmp_path / "aug.hdf5"
    write_augmented(inp, data, g, out)
    # the one change: the input's last row, which D4RL drops (no successor), must not be paired
    # with the first generated row
    meta = _assert_input_verbatim(inp, out, changed_timeout_row=N - 1)
    assert meta["input_end_timeout"] is True
    _check_reader(inp, out, g, N)


# ---- the earlier layout --------------------------------------------------------------
def test_prefix_reproduces_the_old_layout(tmp_path):
    inp = _write_input(tmp_path / "in.hdf5", next_obs=True)
    data = load_hdf5(inp)
    g = _generated(data, "backward")
    m = merged_dataset(data, g, merge="prefix")
    assert len(m) == int(g.lengths.sum()) and m.generated.all() and not m.terminals.any()
    ends = np.flatnonzero(m.timeouts)
    kept = np.flatnonzero(g.lengths > 0)
    assert len(ends) == len(kept)
    np.testing.assert_array_equal(m.next_observations[ends], data.observations[g.start_rows[kept]])
    np.testing.assert_allclose(m.rewards[ends], g.penalised_rewards()[kept, 0], rtol=1e-6)
    assert m.metadata["merge"] == "prefix"

    # on disk with next_observations: exactly the join transitions are lost to the reader
    out = tmp_path / "aug_prefix.hdf5"
    write_augmented(inp, data, g, out, merge="prefix")
    _assert_input_verbatim(inp, out)
    pen = g.penalised_rewards()
    joins = Counter(_key(g.observations[h, 0], g.actions[h, 0], pen[h, 0], g.next_observations[h, 0], False)
                    for h in kept)
    _check_reader(inp, out, g, N, expect_missing=joins)


def test_prefix_without_next_observations_appends_the_start_row(tmp_path):
    inp = _write_input(tmp_path / "in.hdf5", next_obs=False)
    data, file_rows = load_hdf5_rows(inp)
    g = _generated(data, "backward")
    out = tmp_path / "aug.hdf5"
    written = write_augmented(inp, data, g, out, merge="prefix")
    kept = np.flatnonzero(g.lengths > 0)
    assert written.copied_rows == len(kept)
    _assert_input_verbatim(inp, out)
    with h5py.File(out, "r") as f, h5py.File(inp, "r") as fi:
        gen, to = f["generated"][N:], f["timeouts"][N:]
        holders = np.flatnonzero(~gen)
        assert to[holders].all() and not to[gen].any()
        starts = file_rows[g.start_rows[kept]]
        np.testing.assert_array_equal(f["observations"][N:][holders], fi["observations"][()][starts])
    _check_reader(inp, out, g, N)  # every generated transition, the last one's successor the next row


# ---- forward -------------------------------------------------------------------------
@pytest.mark.parametrize("next_obs", [True, False], ids=["next_observations", "maze2d-layout"])
def test_forward_suffix_puts_the_real_prefix_first_and_ends_as_predicted(tmp_path, next_obs):
    inp = _write_input(tmp_path / "in.hdf5", next_obs)
    data, file_rows = load_hdf5_rows(inp)
    g0 = _generated(data, "forward")
    terms = np.zeros(g0.kept.shape, bool)
    ended = [h for h in range(len(g0.start_rows)) if g0.lengths[h] > 0][::2]
    for h in ended:
        terms[h, g0.lengths[h] - 1] = True
    g = dataclasses.replace(g0, terminals=terms)

    m = merged_dataset(data, g)
    bounds = data.episodes()
    row = 0
    for h in range(len(g.start_rows)):
        n = int(g.lengths[h])
        if n == 0:
            continue
        s = int(g.start_rows[h])
        a, _ = bounds[np.searchsorted(bounds[:, 1], s, side="right")]
        pre = slice(row, row + s - a)
        np.testing.assert_array_equal(m.observations[pre], data.observations[a:s])
        assert not m.generated[pre].any() and not (m.terminals[pre] | m.timeouts[pre]).any()
        gen = slice(row + s - a, row + s - a + n)
        assert m.generated[gen].all()
        np.testing.assert_array_equal(m.observations[gen], g.observations[h, :n])
        last = gen.stop - 1
        assert m.terminals[last] == (h in ended) and m.timeouts[last] == (h not in ended)
        assert not (m.terminals[gen.start:last] | m.timeouts[gen.start:last]).any()
        row = gen.stop
    assert row == len(m)
    # a forward trajectory stops at its predicted end
    bad = dataclasses.replace(g, terminals=np.ones(g.kept.shape, bool))
    with pytest.raises(ValueError, match="terminals"):
        merged_dataset(data, bad)

    out = tmp_path / "aug.hdf5"
    write_augmented(inp, data, g, out)
    _assert_input_verbatim(inp, out)
    # as for every timed-out real episode, the reader drops the last step of an unended trajectory;
    # in the next-row form also the file's final row (no successor), here the last trajectory's end
    last = max(h for h in range(len(g.start_rows)) if g.lengths[h] > 0)
    assert last in ended
    u = int(g.lengths[last]) - 1
    final = Counter([_key(g.observations[last, u], g.actions[last, u], g.penalised_rewards()[last, u],
                          g.next_observations[last, u], True)])
    _check_reader(inp, out, g, N, skip_last_timeout=True, expect_missing=None if next_obs else final)


# ---- in memory -------------------------------------------------------------------------
def test_augment_keeps_the_input_and_every_info(tmp_path):
    inp = _write_input(tmp_path / "in.hdf5", next_obs=False)
    data = load_hdf5(inp)
    g = _generated(data, "backward")
    out = augment(data, g)
    n = len(data)
    assert set(out.infos) == set(data.infos) == {"qpos", "qvel", "goal", "reward_sparse", "step"}
    for k, v in data.to_arrays().items():
        a = out.to_arrays()[k]
        assert a.dtype == v.dtype, k
        assert a[:n].tobytes() == v.tobytes(), k
    assert not out.generated[:n].any() and np.all(out.reliability[:n] == 0)
    assert out.metadata["task"] == "toy" and out.metadata["merge"] == "suffix"
    assert out.metadata["generator"] == g.config and out.metadata["alpha"] == g.alpha
    gen = np.flatnonzero(out.generated)
    hh = np.repeat(np.arange(len(g.start_rows)), g.lengths)
    np.testing.assert_array_equal(out.infos["goal"][gen], data.infos["goal"][g.start_rows[hh]])
    np.testing.assert_array_equal(out.infos["step"][gen], data.infos["step"][g.start_rows[hh]])
    np.testing.assert_array_equal(out.infos["qvel"][gen], out.observations[gen, 2:].astype(np.float64))
    # each generated step leads into the next row (the copied start row after the last one)
    np.testing.assert_array_equal(out.observations[gen + 1], out.next_observations[gen])
    np.testing.assert_allclose(out.rewards[gen], g.penalised_rewards()[hh, _u(g)], rtol=1e-6)


def _u(g):
    """Generation-order step of each kept row, in the order rows are written (time order)."""
    return np.concatenate([g._time_order(h) for h in range(len(g.start_rows))]).astype(int)


def test_discrete_data_in_memory():
    data = grid_walks(n_episodes=6, seed=1)
    starts = data.episodes()[:, 1] - 1
    H = len(starts)
    rng = np.random.default_rng(0)
    fresh = rng.integers(0, 10, (H, L, 2)).astype(np.float32)
    nxt = np.concatenate([data.observations[starts][:, None], fresh[:, :-1]], axis=1)
    g = _record("backward", starts, fresh, nxt, rng.integers(0, 4, (H, L)), np.zeros((H, L)), np.zeros((H, L)),
                np.ones((H, L), bool))
    out = augment(data, g)
    # each episode's last row is its whole suffix
    assert out.actions.dtype == np.int64 and len(out) == len(data) + H * L + H
    np.testing.assert_array_equal(out.actions[len(data):].reshape(H, L + 1)[:, :L], g.actions[:, ::-1])
    assert out.metadata["merge"] == "suffix"


# ---- errors ----------------------------------------------------------------------------
def test_bad_merge_is_a_value_error_and_writes_nothing(tmp_path):
    inp = _write_input(tmp_path / "in.hdf5", next_obs=True)
    data = load_hdf5(inp)
    g = _generated(data, "backward")
    for call in (lambda: merged_dataset(data, g, merge="both"), lambda: augment(data, g, merge="both"),
                 lambda: write_augmented(inp, data, g, tmp_path / "o.hdf5", merge="both")):
        with pytest.raises(ValueError, match="merge"):
            call()
    assert not (tmp_path / "o.hdf5").exists()


def test_a_key_the_merge_cannot_fill_is_named_before_writing(tmp_path):
    inp = _write_input(tmp_path / "in.hdf5", next_obs=True)
    data = load_hdf5(inp)
    with h5py.File(inp, "a") as f:
        f["returns_to_go"] = np.zeros(N)
    with pytest.raises(DatasetError, match=r"in\.hdf5.*returns_to_go"):
        write_augmented(inp, data, _generated(data, "backward"), tmp_path / "o.hdf5")
    assert os.listdir(tmp_path) == ["in.hdf5"]


def test_write_is_atomic(tmp_path, monkeypatch):
    inp = _write_input(tmp_path / "in.hdf5", next_obs=False)
    data = load_hdf5(inp)
    g = _generated(data, "backward")
    original = h5py.Group.create_dataset
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        write_augmented(inp, data, g, tmp_path / "o.hdf5")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["in.hdf5"]


def test_integer_rewards_are_widened_not_rounded(tmp_path):
    inp = _write_input(tmp_path / "in.hdf5", next_obs=True)
    with h5py.File(inp, "a") as f:
        r = (f["rewards"][()] > 0.5).astype(np.int64)
        del f["rewards"]
        f["rewards"] = r
    data = load_hdf5(inp)
    g = _generated(data, "backward")
    out = tmp_path / "aug.hdf5"
    write_augmented(inp, data, g, out)
    with h5py.File(out, "r") as f:
        assert f["rewards"].dtype == np.float64
        np.testing.assert_array_equal(f["rewards"][:N], r)
        meta = json.loads(f.attrs[METADATA_ATTR])
    assert meta["widened_dtypes"] == {"rewards": ["int64", "float64"]}
    _check_reader(inp, out, g, N)


def test_load_hdf5_rows_maps_loaded_rows_to_file_rows(tmp_path):
    inp = _write_input(tmp_path / "in.hdf5", next_obs=False)
    data, rows = load_hdf5_rows(inp)
    dropped = [9, 29, 39]  # timeout rows (and the last row); the terminal row 17 stays
    np.testing.assert_array_equal(rows, np.setdiff1d(np.arange(N), dropped))
    with h5py.File(inp, "r") as f:
        np.testing.assert_array_equal(data.observations, f["observations"][()][rows].astype(np.float32))
        np.testing.assert_array_equal(data.next_observations, f["observations"][()][rows + 1].astype(np.float32))
    data2, rows2 = load_hdf5_rows(_write_input(tmp_path / "in2.hdf5", next_obs=True))
    np.testing.assert_array_equal(rows2, np.arange(N))


def test_generated_rows_get_a_locomotion_state_with_the_start_rows_root_x(tmp_path):
    """A locomotion observation leaves out the root's x (obs = qpos[1:], qvel, velocities clipped at
    ±10): a generated row's infos are its own observation with its start row's x, so they
    reproduce its observation; with an observation that is not the state, the start row's."""
    path = _write_input(tmp_path / "in.hdf5", True)
    data = load_hdf5(path)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, 1))
    qpos = np.concatenate([x, data.observations[:, :1].astype(np.float64)], axis=1)  # nq 2, obs shows 1
    qvel = data.observations[:, 1:].astype(np.float64)
    qvel[::15] += 20.0  # a few rows past the observation's velocity clip: still the state
    loco = dataclasses.replace(data, infos={**data.infos, "qpos": qpos, "qvel": qvel})
    g = _generated(loco, "backward")
    out = merged_dataset(loco, g)
    gen = out.generated
    starts_of_rows = np.repeat(g.start_rows, g.lengths)  # generated rows in trajectory order
    shown = np.concatenate([out.infos["qpos"][gen][:, 1:], out.infos["qvel"][gen]], axis=1)
    np.testing.assert_allclose(shown, out.observations[gen], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.sort(out.infos["qpos"][gen][:, 0]), np.sort(x[starts_of_rows, 0]))
    assert out.metadata["generated_infos"]["qpos"] == "observation"

    # the positions disagree on most rows: the observation is something else, the start row's infos
    other = dataclasses.replace(loco, infos={**loco.infos, "qpos": qpos + 1.0})
    out = merged_dataset(other, _generated(other, "backward"))
    assert out.metadata["generated_infos"]["qpos"] == "start_row"
