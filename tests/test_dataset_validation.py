import h5py
import numpy as np
import pytest

from rtaug.data import Dataset, DatasetError, load_hdf5

SRC = "data/test.hdf5"


def arrays(n=5, obs_dim=3, act_dim=2, discrete=False):
    rng = np.random.default_rng(0)
    a = {
        "observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.zeros(n, bool),
        "next_observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
    }
    a["actions"] = (rng.integers(0, 4, size=n) if discrete
                    else rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32))
    return a


def expect_error(a, key, word, metadata=None):
    with pytest.raises(DatasetError) as info:
        Dataset.from_arrays(a, metadata=metadata, source=SRC)
    msg = str(info.value)
    assert SRC in msg and f"'{key}'" in msg and word in msg.lower(), msg
    return msg


def test_missing_key_from_arrays():
    a = arrays()
    del a["rewards"]
    expect_error(a, "rewards", "missing")


def test_missing_key_from_hdf5(tmp_path):
    path = tmp_path / "no_actions.hdf5"
    with h5py.File(path, "w") as f:
        for k, v in arrays().items():
            if k != "actions":
                f.create_dataset(k, data=v)
    with pytest.raises(DatasetError) as info:
        load_hdf5(path)
    msg = str(info.value)
    assert str(path) in msg and "'actions'" in msg and "missing" in msg


def test_length_mismatch():
    a = arrays(n=5)
    a["rewards"] = a["rewards"][:4]
    msg = expect_error(a, "rewards", "length")
    assert "4" in msg and "(5)" in msg


def test_length_mismatch_in_infos():
    a = arrays(n=5)
    a["infos/qpos"] = np.zeros((6, 2))
    expect_error(a, "infos/qpos", "length")


def test_nan_names_first_bad_row():
    a = arrays()
    a["observations"][3, 1] = np.nan
    a["observations"][4, 0] = np.nan
    msg = expect_error(a, "observations", "nan")
    assert "row 3" in msg


def test_inf_in_rewards():
    a = arrays()
    a["rewards"][2] = np.inf
    msg = expect_error(a, "rewards", "inf")
    assert "row 2" in msg


def test_empty_dataset():
    a = {k: v[:0] for k, v in arrays().items()}
    expect_error(a, "observations", "empty")


def test_string_observations_rejected():
    a = arrays()
    a["observations"] = np.array([["a", "b", "c"]] * 5)
    expect_error(a, "observations", "dtype")


def test_object_actions_rejected():
    a = arrays()
    a["actions"] = np.array([None] * 5, dtype=object)
    expect_error(a, "actions", "dtype")


def test_bool_observations_rejected():
    a = arrays()
    a["observations"] = a["observations"] > 0
    expect_error(a, "observations", "dtype")


def test_complex_rewards_rejected():
    a = arrays()
    a["rewards"] = a["rewards"].astype(np.complex64)
    expect_error(a, "rewards", "dtype")


def test_three_dimensional_observations():
    a = arrays()
    a["observations"] = np.zeros((5, 2, 2), np.float32)
    a["next_observations"] = np.zeros((5, 2, 2), np.float32)
    expect_error(a, "observations", "shape")


def test_next_observations_shape_mismatch():
    a = arrays(obs_dim=3)
    a["next_observations"] = np.zeros((5, 4), np.float32)
    expect_error(a, "next_observations", "shape")


def test_terminals_not_zero_one():
    a = arrays()
    a["terminals"] = np.array([0, 2, 0, 0, 0])
    expect_error(a, "terminals", "dtype")


def test_negative_discrete_action():
    a = arrays(discrete=True)
    a["actions"][2] = -1
    msg = expect_error(a, "actions", "negative")
    assert "row 2" in msg


def test_discrete_action_outside_space():
    a = arrays(discrete=True)
    a["actions"][1] = 4
    spaces = {"observation": {"type": "box"}, "action": {"type": "discrete", "n": 4}}
    msg = expect_error(a, "actions", "outside", metadata={"spaces": spaces})
    assert "row 1" in msg


def test_box_action_outside_bounds():
    a = arrays()
    a["actions"][3, 1] = 1.5
    spaces = {"observation": {"type": "box"},
              "action": {"type": "box", "low": [-1, -1], "high": [1, 1]}}
    msg = expect_error(a, "actions", "outside", metadata={"spaces": spaces})
    assert "row 3" in msg


def test_multidiscrete_observation_outside_nvec():
    a = arrays(obs_dim=2, discrete=True)
    a["observations"] = np.array([[0, 0], [1, 9], [2, 3], [3, 3], [4, 4]], np.float32)
    a["next_observations"] = a["observations"].copy()
    a["next_observations"][4] = [10, 0]
    spaces = {"observation": {"type": "multidiscrete", "nvec": [10, 10]},
              "action": {"type": "discrete", "n": 4}}
    msg = expect_error(a, "next_observations", "outside", metadata={"spaces": spaces})
    assert "row 4" in msg
    a["next_observations"][4] = [0.5, 0]
    expect_error(a, "next_observations", "outside", metadata={"spaces": spaces})


def test_valid_dataset_coerces_dtypes():
    a = arrays(n=4, discrete=True)
    a["observations"] = a["observations"].astype(np.float64)
    a["next_observations"] = a["next_observations"].astype(np.float64)
    a["rewards"] = a["rewards"].astype(np.float64)[:, None]
    a["actions"] = np.array([[0], [3], [1], [2]], np.int32)
    a["terminals"] = np.array([0, 1, 0, 0])
    a["timeouts"] = np.array([0.0, 0.0, 0.0, 1.0])
    spaces = {"observation": {"type": "box"}, "action": {"type": "discrete", "n": 6}}
    d = Dataset.from_arrays(a, metadata={"spaces": spaces}, source=SRC)
    assert d.observations.dtype == np.float32 and d.next_observations.dtype == np.float32
    assert d.rewards.dtype == np.float32 and d.rewards.shape == (4,)
    assert d.actions.dtype == np.int64 and d.actions.shape == (4,)
    assert d.terminals.dtype == bool and d.terminals.tolist() == [False, True, False, False]
    assert d.timeouts.dtype == bool and d.timeouts.tolist() == [False, False, False, True]
    assert d.discrete_actions and d.num_actions == 6 and d.act_dim == 1 and d.obs_dim == 3
    np.testing.assert_array_equal(d.episodes(), [[0, 2], [2, 4]])


def test_timeouts_optional_and_continuous_properties():
    a = arrays(n=5, act_dim=2)
    del a["timeouts"]
    d = Dataset.from_arrays(a)
    assert d.timeouts.dtype == bool and not d.timeouts.any()
    assert not d.discrete_actions and d.act_dim == 2 and d.num_actions == 2 and len(d) == 5


def test_num_actions_without_spaces_is_max_plus_one():
    a = arrays(discrete=True)
    a["actions"] = np.array([0, 2, 5, 1, 0])
    assert Dataset.from_arrays(a).num_actions == 6


def test_subset_and_concat():
    a = arrays(n=5)
    a["infos/qpos"] = np.arange(10.0).reshape(5, 2)
    real = Dataset.from_arrays(a, metadata={"env": "x"}, source=SRC)
    sub = real.subset(np.array([4, 0]))
    np.testing.assert_array_equal(sub.observations, real.observations[[4, 0]])
    np.testing.assert_array_equal(sub.infos["qpos"], [[8, 9], [0, 1]])
    assert sub.metadata == {"env": "x"} and sub.source == SRC

    g = arrays(n=2)
    g["generated"] = np.ones(2, bool)
    g["reliability"] = np.array([0.9, 0.8], np.float32)
    gen = Dataset.from_arrays(g, metadata={"generator": {"name": "rt"}, "env": "y"})
    both = real.concat(gen)
    assert len(both) == 7
    assert both.generated.tolist() == [False] * 5 + [True] * 2
    np.testing.assert_allclose(both.reliability, [0, 0, 0, 0, 0, 0.9, 0.8])
    assert both.infos == {}  # qpos only on one side
    assert both.metadata == {"env": "x", "generator": {"name": "rt"}}
    np.testing.assert_array_equal(both.observations[5:], gen.observations)
    keys = set(both.to_arrays())
    assert {"generated", "reliability", "observations", "timeouts"} <= keys
    assert "infos/qpos" in real.to_arrays()
