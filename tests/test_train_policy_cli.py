"""`rtaug train-policy` on HDF5 files: a run, its outputs, a refused overwrite, a resume, and
clear errors (exit code 2, no stack trace) on inputs the learners cannot use."""

import json

import h5py
import numpy as np
import pytest
from conftest import grid_walks

from rtaug.cli import build_parser, main
from rtaug.data.hdf5 import save_hdf5
from rtaug.train import CHECKPOINT, load_checkpoint


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
    said = capsys.readouterr()
    assert "60 generated" in said.out and "domain maze2d" in said.out  # domain read from the file name
    # --no-progress: no bar, but the training still says when it starts and ends, at what rate
    assert "[bc x2 seeds] started: 20 update" in said.err and "[bc x2 seeds] done: 20 update" in said.err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [CHECKPOINT, "run.json", "summary.json", "seed_0", "seed_1"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["seeds"] == [0, 1]
    assert np.isfinite(summary["final"]["1"]["bc_loss"]) and summary["final"]["0"]["eval_action_mse"] >= 0
    assert (out / "seed_0" / "eval.csv").read_text().count("\n") == 3  # header + steps 10, 20
    # one rate everywhere: updates per second per seed. The first chunk compiles and is not
    # timed, so the summary's rate is the second chunk's, as metrics.csv records it per seed.
    second = float((out / "seed_0" / "metrics.csv").read_text().splitlines()[2].split(",")[1])
    assert summary["updates_per_s"] == pytest.approx(second, rel=1e-6)

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
        (["--dataset", str(tmp_path / "missing.hdf5"), "--algo", "cql"], "missing.hdf5: no such file"),
        (["--dataset", str(wide), "--algo", "bc", "--steps", "0"], "--steps"),
    ]
    for argv, message in cases:
        assert main(["train-policy", *argv, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rtaug train-policy: error:") and message in err, err
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ --task: simulator evaluation


def _eval_rows(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_task_puts_normalized_scores_in_eval_csv(tmp_path, capsys):
    pytest.importorskip("gymnasium_robotics")
    from rtaug.envs.registry import get_task

    data = tmp_path / "walks.hdf5"  # no task in its metadata or name: --task alone names it
    _write_augmented(data)
    out = tmp_path / "run"
    assert main(["train-policy", "--dataset", str(data), "--algo", "bc", "--steps", "20", "--chunk", "10",
                 "--eval-every", "10", "--eval-episodes", "2", "--task", "maze2d-umaze-dense", "--out", str(out),
                 "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "domain maze2d" in said and "rtaug eval --run" in said
    task = get_task("maze2d-umaze-dense")
    for s in (0,):
        rows = _eval_rows(out / f"seed_{s}" / "eval.csv")
        assert [int(float(r["step"])) for r in rows] == [10, 20]
        assert "action_mse" not in rows[0]
        for r in rows:
            ret, norm = float(r["return_mean"]), float(r["normalized_mean"])
            assert ret > 0 and norm == pytest.approx(task.normalize(ret))  # dense returns are never 0
            assert 0.0 <= float(r["success_rate"]) <= 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "maze2d-umaze-dense" and summary["eval_episodes"] == 2
    assert "eval_normalized_mean" in summary["final"]["0"]


def test_task_is_read_from_the_dataset_metadata_only_if_known(tmp_path, capsys):
    pytest.importorskip("gymnasium_robotics")
    from rtaug.collect.waypoint import collect_maze2d

    collected = tmp_path / "collected.hdf5"
    save_hdf5(collect_maze2d("maze2d-umaze-sparse", steps=300, seed=0, progress=False), collected)
    other = tmp_path / "other.hdf5"
    _write_augmented(other)
    with h5py.File(other, "a") as f:  # a task rtaug does not know: no simulator, the offline check stays
        f.attrs["rtaug_metadata"] = json.dumps({"task": "hopper-medium-v2"})
    common = ["--algo", "bc", "--steps", "10", "--chunk", "10", "--eval-every", "10", "--no-progress"]

    assert main(["train-policy", "--dataset", str(collected), "--out", str(tmp_path / "a"), *common]) == 0
    assert "maze2d-umaze-sparse (from the dataset's metadata)" in capsys.readouterr().out
    assert "normalized_mean" in _eval_rows(tmp_path / "a" / "seed_0" / "eval.csv")[0]
    assert len(_eval_rows(tmp_path / "a" / "seed_0" / "eval.csv")) == 1

    assert main(["train-policy", "--dataset", str(other), "--out", str(tmp_path / "b"), *common]) == 0
    assert "action MSE" in capsys.readouterr().out
    row = _eval_rows(tmp_path / "b" / "seed_0" / "eval.csv")[0]
    assert "action_mse" in row and "normalized_mean" not in row
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["task"] is None


def test_task_refuses_data_of_another_shape(tmp_path, capsys):
    wide = tmp_path / "wide.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(wide, "w") as f:
        f["observations"] = rng.normal(size=(100, 6)).astype(np.float32)
        f["next_observations"] = rng.normal(size=(100, 6)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, (100, 2)).astype(np.float32)
        f["rewards"] = np.zeros(100, np.float32)
        f["terminals"] = np.zeros(100, bool)
    maze = tmp_path / "maze.hdf5"
    _write_augmented(maze)
    cases = [
        (["--dataset", str(wide), "--task", "maze2d-umaze-sparse"], "key 'observations'"),
        (["--dataset", str(maze), "--task", "maze2d-tiny"], "unknown task 'maze2d-tiny'"),
        (["--dataset", str(maze), "--eval-episodes", "5", "--eval-every", "5"], "needs a task"),
        (["--dataset", str(maze), "--task", "maze2d-umaze-sparse", "--eval-episodes", "0"], "--eval-episodes"),
        (["--dataset", str(maze), "--task", "maze2d-umaze-sparse", "--eval-episodes", "3"], "needs --eval-every"),
    ]
    for argv, message in cases:
        assert main(["train-policy", *argv, "--algo", "bc", "--steps", "5", "--out", str(tmp_path / "x"),
                     "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rtaug train-policy: error:") and message in err, err
    assert not (tmp_path / "x").exists()
