"""`rtaug train-policy` on HDF5 files: a run, its outputs, a refused overwrite, a resume, and
clear errors (exit code 2, no stack trace) on inputs the learners cannot use."""

import json

import h5py
import numpy as np
import pytest

from rtaug.cli import build_parser, main
from rtaug.data.hdf5 import save_hdf5
from rtaug.train import CHECKPOINT, load_checkpoint

from conftest import grid_walks


def _write_augmented(path, n=300, seg=50, seed=0, action_scale=1.0):
    """D4RL layout plus RT's `generated` and `reliability` keys (an augmented file)."""
    rng = np.random.default_rng(seed)
    obs = np.cumsum(rng.normal(0, 0.05, (n + 1, 4)), axis=0).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["observations"] = obs[:-1]
        f["next_observations"] = obs[1:]
        f["actions"] = (action_scale * rng.uniform(-1, 1, (n, 2))).astype(np.float32)
        f["rewards"] = rng.random(n).astype(np.float32)
        f["terminals"] = np.zeros(n, bool)
        timeouts = np.zeros(n, bool)
        timeouts[seg - 1::seg] = True
        f["timeouts"] = timeouts
        generated = np.zeros(n, bool)
        generated[-60:] = True
        f["generated"] = generated
        f["reliability"] = np.where(generated, 0.1, 0.0).astype(np.float32)


def test_help_lists_every_learner_and_option(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["train-policy", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for word in ("bc", "td3bc", "iql", "cql", "bcq", "--steps", "--seeds", "--domain", "--resume",
                 "--eval-every", "--no-progress", "metrics.csv"):
        assert word in text


def test_train_refuse_overwrite_then_resume(tmp_path, capsys):
    data = tmp_path / "maze2d-aug.hdf5"
    _write_augmented(data)
    out = tmp_path / "run"
    args = ["train-policy", "--dataset", str(data), "--algo", "bc", "--seeds", "0", "1", "--out", str(out),
            "--eval-every", "10", "--chunk", "10", "--no-progress"]

    assert main([*args, "--steps", "20"]) == 0
    said = capsys.readouterr().out
    assert "60 generated" in said and "domain maze2d" in said  # domain read from the file name
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [CHECKPOINT, "run.json", "summary.json", "seed_0", "seed_1"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["seeds"] == [0, 1]
    assert np.isfinite(summary["final"]["1"]["bc_loss"]) and summary["final"]["0"]["eval_action_mse"] >= 0
    assert (out / "seed_0" / "eval.csv").read_text().count("\n") == 3  # header + steps 10, 20

    # The run exists: without --resume that is an error, not a silent restart.
    assert main([*args, "--steps", "40"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert load_checkpoint(out / CHECKPOINT)["step"] == 20

    assert main([*args, "--steps", "40", "--resume"]) == 0
    assert load_checkpoint(out / CHECKPOINT)["step"] == 40
    assert (out / "seed_1" / "metrics.csv").read_text().count("\n") == 5  # steps 10..40


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    discrete = tmp_path / "grid.hdf5"
    save_hdf5(grid_walks(n_episodes=5), discrete)
    wide = tmp_path / "wide.hdf5"
    _write_augmented(wide, action_scale=2.0)
    cases = [
        (["--dataset", str(discrete), "--algo", "iql"], "discrete actions"),
        (["--dataset", str(wide), "--algo", "td3bc"], "outside [-1, 1]"),
        (["--dataset", str(tmp_path / "missing.hdf5"), "--algo", "cql"], "not found"),
        (["--dataset", str(wide), "--algo", "bc", "--steps", "0"], "--steps"),
    ]
    for argv, message in cases:
        assert main(["train-policy", *argv, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rtaug train-policy: error:") and message in err, err
    assert not (tmp_path / "x").exists()
