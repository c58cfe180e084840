"""The command line on files: `rtaug train-model` and `rtaug augment` on an HDF5 file written
directly with h5py in D4RL's own maze2d layout, and clear errors on bad input."""

import h5py
import numpy as np
import pytest

from rtaug.cli import build_parser, main
from rtaug.data.hdf5 import load_hdf5

TINY_TRAIN = ["--steps", "20", "--layers", "1", "--heads", "2", "--d-model", "16", "--context-steps", "8",
              "--vae-steps", "20", "--rtg-bins", "8", "--dynamics-steps", "20", "--dynamics-members", "2",
              "--reward-steps", "20", "--no-progress"]


def _write_d4rl_maze2d(path, n=400, seg=50, seed=0):
    """D4RL's maze2d files: no next_observations, terminals all False, timeouts ending segments."""
    rng = np.random.default_rng(seed)
    obs = np.cumsum(rng.normal(0, 0.05, (n, 4)), axis=0)
    with h5py.File(path, "w") as f:
        f["observations"] = obs.astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        f["rewards"] = (rng.random(n) < 0.1).astype(np.float32)
        f["terminals"] = np.zeros(n, bool)
        timeouts = np.zeros(n, bool)
        timeouts[seg - 1::seg] = True
        f["timeouts"] = timeouts
        f["infos/qpos"] = obs[:, :2].astype(np.float32)
        f["infos/qvel"] = obs[:, 2:].astype(np.float32)
        f["infos/goal"] = np.zeros((n, 2), np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    _write_d4rl_maze2d(d / "maze.hdf5")
    assert main(["train-model", "--dataset", str(d / "maze.hdf5"), "--out", str(d / "model"), *TINY_TRAIN]) == 0
    return d


@pytest.mark.slow
def test_train_model_writes_a_loadable_model(model_dir):
    for name in ("spec.json", "rt.json", "rt.msgpack", "vae.json", "vae.msgpack", "dynamics.json",
                 "dynamics.msgpack"):
        assert (model_dir / "model" / name).is_file()


@pytest.mark.slow
def test_augment_on_d4rl_file(model_dir):
    out = model_dir / "aug.hdf5"
    code = main(["augment", "--dataset", str(model_dir / "maze.hdf5"), "--model", str(model_dir / "model"),
                 "--out", str(out), "--num-trajectories", "6", "--max-length", "3", "--alpha-trajectories", "6",
                 "--no-truncation", "--no-progress"])  # a 20-update model's steps all fail the check
    assert code == 0
    real = load_hdf5(model_dir / "maze.hdf5")
    aug = load_hdf5(out)
    n_gen = int(aug.generated.sum())
    assert 0 < n_gen <= 6 * 3
    # D_env, then each generated prefix joined to the real suffix it leads into (Eq. 11)
    assert len(aug) > len(real) + n_gen and not aug.generated[: len(real)].any()
    assert np.all(aug.reliability[~aug.generated] == 0) and np.all(aug.reliability[aug.generated] >= 0)
    np.testing.assert_array_equal(aug.observations[: len(real)], real.observations)
    assert aug.metadata["generator"]["generator"] == "rt"
    assert aug.metadata["generator"]["rt"]["direction"] == "backward"
    assert aug.metadata["generator"]["dist"] == "forward" and aug.metadata["merge"] == "suffix"
    assert "summary" in aug.metadata["generator"]
    # and the file itself is plain D4RL layout, readable without rtaug, in the input's own form
    # (a maze2d file has no next_observations: neither has its augmented file)
    with h5py.File(out, "r") as f, h5py.File(model_dir / "maze.hdf5", "r") as g:
        assert {"observations", "actions", "rewards", "terminals", "timeouts", "generated", "reliability"} \
            <= set(f.keys())
        assert "next_observations" not in f
        n = len(g["observations"])
        np.testing.assert_array_equal(f["observations"][:n], g["observations"][()])
        np.testing.assert_array_equal(f["infos/goal"][:n], g["infos/goal"][()])


@pytest.mark.slow
def test_augment_fixed_length_ablation(model_dir):
    out = model_dir / "aug_f3.hdf5"
    assert main(["augment", "--dataset", str(model_dir / "maze.hdf5"), "--model", str(model_dir / "model"),
                 "--out", str(out), "--num-trajectories", "4", "--fixed-length", "3", "--alpha-trajectories", "4",
                 "--no-progress"]) == 0
    assert int(load_hdf5(out).generated.sum()) == 12


def test_missing_dataset_is_a_clear_error(model_dir, tmp_path, capsys):
    missing = tmp_path / "nope.hdf5"
    code = main(["augment", "--dataset", str(missing), "--model", str(model_dir / "model"), "--out",
                 str(tmp_path / "o.hdf5"), "--no-progress"])
    assert code == 2
    assert "nope.hdf5" in capsys.readouterr().err
    assert not (tmp_path / "o.hdf5").exists()


def test_missing_model_is_a_clear_error(model_dir, tmp_path, capsys):
    code = main(["augment", "--dataset", str(model_dir / "maze.hdf5"), "--model", str(tmp_path / "nomodel"),
                 "--out", str(tmp_path / "o.hdf5"), "--no-progress"])
    assert code == 2
    assert "--model " + str(tmp_path / "nomodel") + ": no such model directory" in capsys.readouterr().err


def test_dataset_that_does_not_match_the_model(model_dir, tmp_path, capsys):
    other = tmp_path / "other.hdf5"
    n = 60
    with h5py.File(other, "w") as f:
        f["observations"] = np.zeros((n, 3), np.float32)
        f["actions"] = np.zeros((n, 2), np.float32)
        f["rewards"] = np.zeros(n, np.float32)
        f["terminals"] = np.zeros(n, bool)
        f["timeouts"] = np.zeros(n, bool)
        f["next_observations"] = np.zeros((n, 3), np.float32)
    code = main(["augment", "--dataset", str(other), "--model", str(model_dir / "model"),
                 "--out", str(tmp_path / "o.hdf5"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "other.hdf5" in err and "observations" in err


def test_every_command_has_help(capsys):
    parser = build_parser()
    for cmd in ("quickstart", "collect", "train-model", "augment"):
        with pytest.raises(SystemExit) as e:
            parser.parse_args([cmd, "--help"])
        assert e.value.code == 0
        assert "usage: rtaug " + cmd in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, words",
    [(["--num-trajectories", "0"], ["--num-trajectories 0: must be at least 1"]),
     (["--context", "8"], ["context", "window"]),
     (["--alpha-quantile", "2"], ["--alpha-quantile 2: must be in (0, 1]"]), (["--beta", "-1"], ["--beta -1: must be at least 0"]),
     (["--start", "goal", "--candidates", "0"], ["--candidates 0"])],
)
def test_bad_generation_flags_are_clear_errors(model_dir, tmp_path, capsys, flags, words):
    code = main(["augment", "--dataset", str(model_dir / "maze.hdf5"), "--model", str(model_dir / "model"),
                 "--out", str(tmp_path / "o.hdf5"), "--no-progress", *flags])
    err = capsys.readouterr().err
    assert code == 2 and all(w in err for w in words), err
    assert not (tmp_path / "o.hdf5").exists()


def test_bad_model_flags_are_clear_errors(model_dir, tmp_path, capsys):
    code = main(["train-model", "--dataset", str(model_dir / "maze.hdf5"), "--out", str(tmp_path / "m"),
                 "--d-model", "30", "--heads", "4", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err == "rtaug train-model: error: --d-model 30: must be a multiple of --heads 4\n"
    assert not (tmp_path / "m").exists()
