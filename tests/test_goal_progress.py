"""benchmarks/goal_progress.py: which way an augmented Maze2D file's input, copied and generated
rows move relative to the evaluation goal."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from rtaug.data import Dataset, save_hdf5
from rtaug.envs.registry import get_task

_SPEC = importlib.util.spec_from_file_location(
    "goal_progress", Path(__file__).resolve().parents[1] / "benchmarks" / "goal_progress.py")
goal_progress = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(goal_progress)

TASK = "maze2d-umaze-dense"


def _file(path):
    """4 input rows (2 towards the goal, 1 away, 1 still), then a merged episode: 2 generated
    rows towards the goal and 3 copied real rows away from it."""
    g = np.asarray(get_task(TASK).layout.eval_goal, np.float64)
    toward, away, still = (g + [1.0, 0.0], g + [0.5, 0.0]), (g + [0.5, 0.0], g + [1.0, 0.0]), (g + [1.0, 0.0],) * 2
    pairs = [toward, toward, away, still, toward, toward, away, away, away]
    obs = np.array([[*s, 0.0, 0.0] for s, _ in pairs])
    nxt = np.array([[*s, 0.0, 0.0] for _, s in pairs])
    n = len(pairs)
    save_hdf5(Dataset(observations=obs, actions=np.zeros((n, 2)), rewards=np.zeros(n), terminals=np.zeros(n, bool),
                      timeouts=np.ones(n, bool), next_observations=nxt,
                      generated=np.isin(np.arange(n), [4, 5])), path)
    return path


def test_input_copied_and_generated_rows_are_told_apart(tmp_path):
    path = _file(tmp_path / "aug.hdf5")
    out = goal_progress.progress(path, TASK, input_rows=4)
    assert (out["input"]["towards"], out["input"]["away"]) == (0.5, 0.25)
    assert out["input"]["mean_progress"] == pytest.approx(0.125)
    assert (out["copied"]["rows"], out["copied"]["towards"], out["copied"]["away"]) == (3, 0.0, 1.0)
    assert (out["generated"]["rows"], out["generated"]["towards"]) == (2, 1.0)
    assert out["all"] == {"rows": 9, "towards": 4 / 9, "away": 4 / 9}
    # a generated stage's file: the input's rows come from the stage.json beside it
    (tmp_path / "stage.json").write_text(json.dumps({"generation": {"input_rows": 4}}))
    assert goal_progress.main([str(path), "--task", TASK, "--json", str(tmp_path / "o.json")]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["copied"]["away"] == 1.0


def test_bad_input_is_refused_with_one_line(tmp_path, capsys):
    path = _file(tmp_path / "aug.hdf5")
    before = path.read_bytes()
    for argv, problem in ((["--task", TASK], "aug.hdf5: no stage.json beside it to give the input's rows"),
                          (["--task", TASK, "--input-rows", "10"], "--input-rows 10: must be in 1..9"),
                          (["--task", "boxball", "--input-rows", "4"], "--task boxball: not a Maze2D task")):
        assert goal_progress.main([str(path), *argv]) == 2
        err = capsys.readouterr().err
        assert problem in err and err.count("\n") == 1
    # the figures' file onto the input, or a directory: refused before any work
    for target, problem in ((path, "is the input file; it would be overwritten"), (tmp_path, "is a directory")):
        assert goal_progress.main([str(path), "--task", TASK, "--input-rows", "4", "--json", str(target)]) == 2
        err = capsys.readouterr().err
        assert f"--json {target}: {problem}" in err and err.count("\n") == 1
    assert path.read_bytes() == before


def test_a_file_without_next_observations_is_refused(tmp_path, capsys):
    """The loader pairs such a file's rows by the next-row convention and drops rows, so the
    first N loaded rows would not be the input's: refused, not miscounted."""
    import h5py

    path = _file(tmp_path / "aug.hdf5")
    with h5py.File(path, "a") as f:
        del f["next_observations"]
        f["timeouts"][...] = np.arange(len(f["timeouts"])) % 3 == 2
    assert goal_progress.main([str(path), "--task", TASK, "--input-rows", "4"]) == 2
    err = capsys.readouterr().err
    assert "aug.hdf5: key 'next_observations' is missing" in err and err.count("\n") == 1
