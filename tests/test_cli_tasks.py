"""`rtaug collect`, `rtaug audit` and `rtaug tasks` on BoxBall and a maze, and their errors."""

import json

import numpy as np
from conftest import with_references

from rtaug.cli import main
from rtaug.collect.dqn import DQNConfig, collect_boxball
from rtaug.data import Dataset
from rtaug.data.hdf5 import load_hdf5, save_hdf5


def test_audit_boxball_splits_real_and_generated(tmp_path, capsys):
    real = collect_boxball(DQNConfig(total_steps=600, learning_starts=100), progress=False)
    bad = Dataset(  # one generated step straight through the wall, one valid
        observations=np.array([[4, 8], [2, 8]], np.float32), actions=np.array([0, 0]),
        rewards=np.zeros(2, np.float32), terminals=np.zeros(2, bool), timeouts=np.array([False, True]),
        next_observations=np.array([[4, 9], [2, 9]], np.float32), generated=np.ones(2, bool),
        reliability=np.array([0.5, 0.0], np.float32),
        metadata={**real.metadata, "generator": {"beta": 0.1, "reward_scale": 1.0, "alpha": 1.0}},
    )
    bad.rewards[0] = -0.05  # r̂ = 0 (not the goal), penalised by β·s·Γ/α = 0.1·0.5
    save_hdf5(real.concat(bad), tmp_path / "aug.hdf5")
    assert main(["audit", str(tmp_path / "aug.hdf5"), "--task", "boxball", "--json", str(tmp_path / "a.json")]) == 0
    summary = json.loads((tmp_path / "a.json").read_text())
    assert summary["real"]["invalid_rate"] == 0.0 and summary["real"]["wall_crossings"] == 0
    gen = summary["generated"]
    assert {k: gen[k] for k in ("transitions", "invalid_rate", "wall_crossings", "off_grid")} == \
        {"transitions": 2, "invalid_rate": 0.5, "wall_crossings": 1, "off_grid": 0}
    # rewards: BoxBall's is a function of the next state; the penalty is undone before the check
    assert gen["reward_agreement"] == 1.0 and gen["reward_mean_abs_error"] < 1e-6
    assert summary["real"]["reward_agreement"] == 1.0
    assert json.loads(capsys.readouterr().out) == summary


def test_collect_maze_and_audit_it(tmp_path):
    out = tmp_path / "umaze.hdf5"
    assert main(["collect", "maze2d-umaze-sparse", "--steps", "400", "--out", str(out), "--no-progress"]) == 0
    data = load_hdf5(out)
    assert len(data) == 400 and data.obs_dim == 4
    assert main(["audit", str(out), "--task", "maze2d-umaze-sparse", "--json", str(tmp_path / "a.json"),
                 "--no-progress"]) == 0
    summary = json.loads((tmp_path / "a.json").read_text())
    assert summary["max_error"] <= 1e-5 and summary["wall_rate"] == 0.0


def test_unknown_task_is_a_clear_error(tmp_path, capsys):
    assert main(["collect", "maze2d-tiny-sparse", "--out", str(tmp_path / "x.hdf5")]) == 2
    err = capsys.readouterr().err
    assert "maze2d-tiny-sparse" in err and "maze2d-umaze-sparse" in err
    assert not (tmp_path / "x.hdf5").exists()


def test_tasks_lists_every_task_a_line_each(capsys, monkeypatch):
    with_references(monkeypatch, "hopper", None, None)  # a task whose references are not measured
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith(("maze2d", "boxball", "hopper"))}
    for maze in ("umaze", "medium", "large"):
        for reward in ("sparse", "dense"):
            assert f"rtaug/maze2d-{maze}-{reward}-v0" in lines[f"maze2d-{maze}-{reward}"]
    # the references measured here and D4RL's, side by side
    assert "26.3 / 222.5" in lines["maze2d-umaze-sparse"] and "23.9 / 161.9" in lines["maze2d-umaze-sparse"]
    assert "4 discrete" in lines["boxball"]
    # a task whose references are not measured says how to measure them
    assert "hopper-medium: rtaug reference hopper-medium --sac-dir" in out


def test_tasks_name_shows_one_task_in_full(capsys):
    assert main(["tasks", "boxball"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("boxball: 10x10 grid with a wall in front of the goal")
    fields = dict(line.split(None, 1) for line in out.splitlines()[1:])
    assert fields["discrete_actions"] == "True" and fields["evaluation.max_episode_steps"] == "50"
    assert fields["references.random"] == "–" and "references.command" not in fields
    assert main(["tasks", "maze2d-umaze-dense"]) == 0
    fields = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines()[1:])
    assert fields["recipe.episode_length"] == "300" and fields["references.expert"] == "234.8162"


def test_tasks_json_is_the_registry(capsys):
    from rtaug.envs.registry import get_task

    assert main(["tasks", "--json"]) == 0
    every = json.loads(capsys.readouterr().out)
    assert every["walker2d-medium"]["references"]["expert"] == get_task("walker2d-medium").references.expert
    assert main(["tasks", "hopper-medium", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recipe"]["env_id"] == "Hopper-v5"


def test_tasks_unknown_name_is_refused(capsys):
    assert main(["tasks", "maze2d-tiny-sparse"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtaug tasks: error: unknown task 'maze2d-tiny-sparse'") and "boxball" in err


def test_output_into_a_closed_pipe_is_not_an_error():
    import subprocess
    import sys

    # the reader goes before rtaug writes, as `rtaug tasks --json | head -1` does when head is done
    proc = subprocess.Popen([sys.executable, "-m", "rtaug", "tasks", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 0 and err == b""
