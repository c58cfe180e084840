import os

import h5py
import numpy as np
import pytest

from rtaug.data import Dataset, DatasetError, load_hdf5, save_hdf5


def make_dataset(n=6):
    rng = np.random.default_rng(0)
    return Dataset(
        observations=rng.normal(size=(n, 3)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        terminals=np.array([0, 0, 1, 0, 0, 0], bool)[:n],
        timeouts=np.array([0, 0, 0, 0, 0, 1], bool)[:n],
        next_observations=rng.normal(size=(n, 3)).astype(np.float32),
        generated=np.array([0, 0, 0, 1, 1, 1], bool)[:n],
        reliability=np.array([0, 0, 0, 0.9, 0.5, 0.25], np.float32)[:n],
        infos={"qpos": rng.normal(size=(n, 4)), "goal": np.arange(2 * n).reshape(n, 2)},
        metadata={"env": "hopper-medium-v2", "generator": {"name": "rt", "K": 20}},
    )


def test_round_trip(tmp_path):
    d = make_dataset()
    path = tmp_path / "sub" / "out.hdf5"
    save_hdf5(d, path)
    back = load_hdf5(path)
    assert back.source == str(path)
    assert back.metadata == d.metadata
    original, loaded = d.to_arrays(), back.to_arrays()
    assert set(original) == set(loaded)
    for k, v in original.items():
        assert loaded[k].dtype == v.dtype, k
        np.testing.assert_array_equal(loaded[k], v, err_msg=k)


def test_round_trip_with_compression_and_discrete_actions(tmp_path):
    d = make_dataset()
    d = Dataset.from_arrays({**d.to_arrays(), "actions": np.array([0, 1, 2, 3, 0, 1])})
    save_hdf5(d, tmp_path / "d.hdf5", compression="gzip")
    back = load_hdf5(tmp_path / "d.hdf5")
    assert back.actions.dtype == np.int64
    np.testing.assert_array_equal(back.actions, [0, 1, 2, 3, 0, 1])


def test_maze2d_layout_derives_next_observations(tmp_path):
    # 7 rows: a timeout at row 2 ends the first segment, the file ends mid-segment.
    obs = np.arange(14, dtype=np.float64).reshape(7, 2)  # row i = [2i, 2i+1]
    path = tmp_path / "maze2d-umaze-v1.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=obs)
        f.create_dataset("actions", data=np.arange(7 * 2, dtype=np.float32).reshape(7, 2) / 100)
        f.create_dataset("rewards", data=np.arange(7, dtype=np.float64))
        f.create_dataset("terminals", data=np.zeros(7, bool))
        f.create_dataset("timeouts", data=np.array([0, 0, 1, 0, 0, 0, 0], bool))
        f.create_dataset("infos/qpos", data=obs)
        f.create_dataset("infos/qvel", data=-obs)
        f.create_dataset("infos/goal", data=np.tile([[1.0, 1.0]], (7, 1)))
        f.create_dataset("metadata/algorithm", data=np.bytes_("sac"))
    d = load_hdf5(path)
    # Rows 2 (timeout) and 6 (last in file) are dropped; kept rows are 0, 1, 3, 4, 5.
    assert len(d) == 5
    np.testing.assert_array_equal(d.observations, obs[[0, 1, 3, 4, 5]])
    np.testing.assert_array_equal(d.next_observations, obs[[1, 2, 4, 5, 6]])
    np.testing.assert_array_equal(d.rewards, [0, 1, 3, 4, 5])
    np.testing.assert_array_equal(d.infos["qpos"], obs[[0, 1, 3, 4, 5]])
    np.testing.assert_array_equal(d.infos["qvel"], -obs[[0, 1, 3, 4, 5]])
    assert d.infos["goal"].shape == (5, 2)
    assert d.timeouts.tolist() == [False, True, False, False, True]
    assert not d.terminals.any()
    np.testing.assert_array_equal(d.episodes(), [[0, 2], [2, 5]])


def test_missing_next_observations_keeps_terminal_rows(tmp_path):
    obs = np.arange(5, dtype=np.float32)[:, None]
    path = tmp_path / "antmaze.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=obs)
        f.create_dataset("actions", data=np.zeros((5, 1), np.float32))
        f.create_dataset("rewards", data=np.zeros(5, np.float32))
        f.create_dataset("terminals", data=np.array([0, 1, 0, 0, 0], bool))
        f.create_dataset("timeouts", data=np.zeros(5, bool))
    d = load_hdf5(path)
    # D4RL keeps the terminal row and pairs it with the next row; only the file's last row goes.
    np.testing.assert_array_equal(d.observations[:, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(d.next_observations[:, 0], [1, 2, 3, 4])
    assert d.terminals.tolist() == [False, True, False, False]
    assert d.timeouts.tolist() == [False, False, False, True]


def test_v0_file_without_timeouts(tmp_path):
    path = tmp_path / "hopper-medium-v0.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=np.ones((4, 2)))
        f.create_dataset("next_observations", data=np.ones((4, 2)))
        f.create_dataset("actions", data=np.zeros((4, 1)))
        f.create_dataset("rewards", data=np.ones(4))
        f.create_dataset("terminals", data=np.array([0.0, 1.0, 0.0, 0.0]))
    d = load_hdf5(path)
    assert len(d) == 4 and d.timeouts.dtype == bool and not d.timeouts.any()
    assert d.terminals.tolist() == [False, True, False, False]
    assert d.observations.dtype == np.float32


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "fake.hdf5"
    path.write_text("this is not hdf5\n")
    with pytest.raises(DatasetError, match="fake.hdf5.*not an HDF5 file"):
        load_hdf5(path)


def test_file_not_found(tmp_path):
    with pytest.raises(DatasetError, match="nope.hdf5.*not found"):
        load_hdf5(tmp_path / "nope.hdf5")


def test_atomic_write_leaves_previous_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "data.hdf5"
    save_hdf5(make_dataset(), path)
    before = path.read_bytes()

    original = h5py.File.create_dataset
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(args[0] if args else kwargs.get("name"))
        if len(calls) > 1:
            raise RuntimeError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.File, "create_dataset", failing)
    other = make_dataset(n=3)
    with pytest.raises(RuntimeError, match="disk full"):
        save_hdf5(other, path)
    monkeypatch.undo()

    assert len(calls) == 2
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["data.hdf5"]
    assert len(load_hdf5(path)) == 6
