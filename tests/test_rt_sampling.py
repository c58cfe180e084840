"""benchmarks/rt_sampling.py: where each generated row sits before the real state it joins, and
its refusals of bad input (one line, exit 2, before any work)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "rt_sampling", Path(__file__).resolve().parents[1] / "benchmarks" / "rt_sampling.py")
rt_sampling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rt_sampling)


def test_steps_back_counts_from_the_join():
    # real episode (3 rows), then a merged one: 2 generated rows joining a real suffix of 2, then a
    # merged one with 3 generated rows and a real suffix of 1 that ends the file
    generated = np.array([0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0], bool)
    ends = np.array([0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1], bool)
    assert rt_sampling.steps_back(generated, ends).tolist() == [0, 0, 0, 2, 1, 0, 0, 3, 2, 1, 0]


@pytest.mark.parametrize("argv, message", [
    (["--task", "walker2d-medium-replay"], "--dataset and --model are required unless --generated is given"),
    (["--task", "walker2d-medium-replay", "--generated", "/nonexistent.hdf5"], "--generated /nonexistent.hdf5: does not exist"),
    (["--task", "walker2d-medium-replay", "--dataset", "{tmp}", "--model", "{tmp}", "--temperatures", "-1"],
     "--temperatures: must be ≥ 0"),
    (["--task", "walker2d-medium-replay", "--dataset", "{tmp}", "--model", "{tmp}", "--keep", "{tmp}/file"],
     "--keep {tmp}/file: exists and is not a directory"),
    (["--task", "maze2d-umaze-sparse", "--generated", "{tmp}"], "--task: task 'maze2d-umaze-sparse': rt_sampling supports mujoco"),
])
def test_bad_input_is_refused_in_one_line(argv, message, tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    message = message.replace("{tmp}", str(tmp_path))
    with pytest.raises(SystemExit) as exit_:
        rt_sampling.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("rt_sampling.py: error: ") and message in err
