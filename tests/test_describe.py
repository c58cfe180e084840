"""`rtaug describe`: a dataset's counts, episode lengths and returns, and the data's own score."""

import json

import numpy as np
import pytest
from conftest import refused, with_references

from rtaug.cli import main
from rtaug.data.dataset import Dataset
from rtaug.data.hdf5 import save_hdf5
from rtaug.data.stats import dataset_stats


def _maze_rows(n: int, rng) -> dict:
    obs = rng.uniform(0.5, 1.5, (n, 4)).astype(np.float32)
    return {"observations": obs, "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
            "next_observations": obs + 0.01, "rewards": np.zeros(n, np.float32),
            "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}


def small(generated: bool = False) -> Dataset:
    """Three whole episodes (lengths 3, 4, 2; returns 1, 3, 0.5; the first ends in a terminal)
    and two rows of an unfinished fourth."""
    a = _maze_rows(11, np.random.default_rng(0))
    a["rewards"][:] = [0, 0, 1, 1, 1, 1, 0, 0.25, 0.25, 7, 7]
    a["terminals"][2] = True
    a["timeouts"][[6, 8]] = True
    if generated:
        a["generated"] = np.array([1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0], bool)
        a["reliability"] = np.array([0.2, 0.4, 0, 0, 0, 0, 0, 0.6, 0, 0, 0], np.float32)
    return Dataset.from_arrays(a, metadata={"task": "maze2d-umaze-sparse"}, source="small")


def test_stats_count_whole_episodes_and_leave_the_unfinished_tail_apart():
    s = dataset_stats(small())
    assert (s["rows"], s["episodes"], s["terminals"], s["timeouts"], s["unfinished_rows"]) == (11, 3, 1, 2, 2)
    assert s["episode_length"] == pytest.approx({"mean": 3.0, "std": np.std([3, 4, 2]), "min": 2, "max": 4})
    assert s["episode_return"] == pytest.approx({"mean": 1.5, "std": np.std([1, 3, 0.5]), "min": 0.5, "max": 3})
    assert s["generated_rows"] is None and s["generated_reliability"] is None
    g = dataset_stats(small(generated=True))
    assert g["generated_rows"] == 3 and g["generated_reliability"] == pytest.approx(0.4)


def test_stats_of_data_with_no_whole_episode():
    a = _maze_rows(5, np.random.default_rng(1))
    s = dataset_stats(Dataset.from_arrays(a))
    assert (s["episodes"], s["unfinished_rows"]) == (0, 5)
    assert s["episode_length"] is None and s["episode_return"] is None


def test_describe_scores_the_data_under_both_references(tmp_path, capsys):
    from rtaug.envs.registry import get_task

    path = tmp_path / "small.hdf5"
    save_hdf5(small(generated=True), path)
    assert main(["describe", str(path), "--json", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    d = json.loads((tmp_path / "d.json").read_text())
    task = get_task("maze2d-umaze-sparse")
    assert d["task"] == "maze2d-umaze-sparse" and d["rows"] == 11 and d["episodes"] == 3
    assert d["normalized"]["mean"] == pytest.approx(task.normalize(1.5))
    assert d["normalized_d4rl"]["max"] == pytest.approx(task.normalize_d4rl(3.0))
    assert d["d4rl_size"] is None  # D4RL's maze files are not re-cut into our episodes
    assert "rows 11 in 3 episodes (1 terminals, 2 timeouts; 2 rows after the last episode's end)" in out
    assert f"normalized (this simulator's references): mean {task.normalize(1.5):.1f}" in out
    assert "generated rows 3 (27.3%), mean Γ 0.400" in out


def test_describe_of_data_that_record_no_task_still_writes_its_json(tmp_path, capsys):
    a = _maze_rows(6, np.random.default_rng(3))
    a["timeouts"][2] = True
    save_hdf5(Dataset.from_arrays(a), tmp_path / "plain.hdf5")
    assert main(["describe", str(tmp_path / "plain.hdf5"), "--json", str(tmp_path / "d.json")]) == 0
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["task"] is None and d["normalized"] is None and (d["episodes"], d["unfinished_rows"]) == (1, 3)
    assert "no task (give --task for its scores)" in capsys.readouterr().out


def test_describe_gives_d4rl_sizes_and_says_when_references_are_missing(tmp_path, capsys, monkeypatch):
    from rtaug.experiments.stages import describe_file, format_description

    with_references(monkeypatch, "hopper", None, None)

    rng = np.random.default_rng(2)
    n = 20
    obs = rng.normal(size=(n, 11)).astype(np.float32)
    a = {"observations": obs, "next_observations": obs, "actions": rng.uniform(-1, 1, (n, 3)).astype(np.float32),
         "rewards": np.ones(n, np.float32), "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}
    a["timeouts"][[9, 19]] = True
    save_hdf5(Dataset.from_arrays(a, metadata={"task": "hopper-medium-replay"}), tmp_path / "h.hdf5")
    d = describe_file(tmp_path / "h.hdf5")
    assert d["d4rl_size"] == {"episodes": 2_040, "steps": 402_000}
    assert d["normalized"] is None  # references not measured: no score made up
    assert d["normalized_d4rl"]["mean"] == pytest.approx(100 * (10 + 20.272305) / (3234.3 + 20.272305))
    text = format_description(d)
    assert "normalized (this simulator's references): – (no references for hopper-medium-replay)" in text
    assert "D4RL's file of this dataset: 2,040 episodes, 402,000 steps" in text


def test_describe_refuses_bad_input_in_one_line(tmp_path, capsys):
    path = tmp_path / "small.hdf5"
    save_hdf5(small(), path)
    refused(["describe", str(tmp_path / "none.hdf5")], f"{tmp_path / 'none.hdf5'}: no such file", capsys)
    refused(["describe", str(path), "--task", "maze2d-large-sparse"],
            f"--task maze2d-large-sparse: {path} records task maze2d-umaze-sparse", capsys, keep=[path])
    refused(["describe", str(path), "--task", "nope"], "unknown task 'nope'", capsys, keep=[path], whole=False)
    (tmp_path / "d.json").write_text("{}")
    refused(["describe", str(path), "--json", str(tmp_path / "d.json")],
            f"--json {tmp_path / 'd.json'}: exists; pass --overwrite to replace it", capsys,
            keep=[path, tmp_path / "d.json"])
