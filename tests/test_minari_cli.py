"""`rtaug minari export` and `rtaug minari import`: a round trip through Minari, offline, and
clear errors (exit code 2) for a taken id, a malformed id and a dataset that is not there."""

import pytest

pytest.importorskip("minari")

import numpy as np  # noqa: E402

from rtaug.cli import main  # noqa: E402
from rtaug.data.hdf5 import load_hdf5, save_hdf5  # noqa: E402

from conftest import continuous_walks  # noqa: E402


@pytest.fixture
def env_root(tmp_path, monkeypatch):
    """Minari's default root for the test, so nothing lands in ~/.minari."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "default-root"))
    return tmp_path / "default-root"


@pytest.fixture
def walks(tmp_path):
    data = continuous_walks(n=600, ep_len=50)
    path = tmp_path / "walks.hdf5"
    save_hdf5(data, path)
    return data, path


def test_export_then_import_round_trips(tmp_path, walks, env_root, capsys):
    data, path = walks
    root = tmp_path / "minari"
    assert main(["minari", "export", str(path), "--id", "rtaug/walks-v0", "--root", str(root),
                 "--task", "maze2d-umaze-sparse"]) == 0
    assert "12 episodes, 600 steps" in capsys.readouterr().out
    assert (root / "rtaug" / "walks-v0" / "data" / "metadata.json").exists()
    assert not env_root.exists()  # --root, not the environment's root

    back = tmp_path / "back.hdf5"
    assert main(["minari", "import", "rtaug/walks-v0", "--root", str(root), "--out", str(back)]) == 0
    got = load_hdf5(back)
    for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(got, key), getattr(data, key), err_msg=key)
    assert got.metadata["minari"]["dataset_id"] == "rtaug/walks-v0"

    # A dataset directory works as well as an id, and --task is recorded for train-policy.
    again = tmp_path / "again.hdf5"
    assert main(["minari", "import", str(root / "rtaug" / "walks-v0"), "--out", str(again),
                 "--task", "maze2d-umaze-sparse"]) == 0
    got = load_hdf5(again)
    np.testing.assert_array_equal(got.observations, data.observations)
    assert got.metadata["task"] == "maze2d-umaze-sparse"


def test_existing_id_is_refused_and_left_alone(tmp_path, walks, env_root, capsys):
    _, path = walks
    assert main(["minari", "export", str(path), "--id", "walks-v3"]) == 0  # the default root
    meta = env_root / "walks-v3" / "data" / "metadata.json"
    before = meta.read_bytes()
    capsys.readouterr()
    assert main(["minari", "export", str(path), "--id", "walks-v3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtaug minari export: error:") and "already exists" in err
    assert "--id" in err and "walks-v4" in err and "minari delete walks-v3" in err
    assert meta.read_bytes() == before


def test_malformed_id_leaves_nothing_behind(tmp_path, walks, capsys):
    _, path = walks
    root = tmp_path / "minari"
    for bad in ("no version", "noversion"):
        assert main(["minari", "export", str(path), "--id", bad, "--root", str(root)]) == 2
        assert "not a Minari dataset id" in capsys.readouterr().err
    assert not root.exists() or not any(root.iterdir())


def test_missing_inputs_are_clear_errors(tmp_path, walks, env_root, capsys):
    _, path = walks
    assert main(["minari", "export", str(path), "--id", "rtaug/here-v0"]) == 0
    capsys.readouterr()
    cases = [
        (["import", "rtaug/absent-v0", "--out", str(tmp_path / "x.hdf5")],
         ["not found", "never downloads", "rtaug/here-v0"]),  # names what is there
        (["import", "rtaug/here-v0", "--out", str(tmp_path / "x.hdf5"), "--relabel"],
         ["--relabel needs a task", "names none", "pass --task"]),
        (["import", "rtaug/here-v0", "--out", str(tmp_path / "x.hdf5"), "--frame", "gymnasium-robotics"],
         ["--frame gymnasium-robotics: rtaug/here-v0's observations are in the d4rl frame (written by rtaug"]),
        (["export", str(tmp_path / "absent.hdf5"), "--id", "rtaug/new-v0"], ["absent.hdf5: no such file"]),
        (["export", str(path), "--id", "rtaug/new-v0", "--task", "maze2d-tiny"], ["unknown task"]),
    ]
    for argv, messages in cases:
        assert main(["minari", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"rtaug minari {argv[0]}: error:"), err
        assert all(m in err for m in messages), err
    assert not (tmp_path / "x.hdf5").exists() and not (env_root / "rtaug" / "new-v0").exists()


def test_foreign_pointmaze_import_reads_the_frame_off_its_env_spec(tmp_path, env_root, capsys):
    """A DataCollector recording of gymnasium-robotics' PointMaze_UMaze-v3, imported with default flags:
    the env_spec names the maze, the reward type and the frame; the audit then replays every row
    (before: read as D4RL-frame data, every row sat in a wall)."""
    pytest.importorskip("gymnasium_robotics")
    import json

    from conftest import record_pointmaze

    record_pointmaze("pointmaze/umaze-random-v0", episodes=3, steps=100)
    out = tmp_path / "pm.hdf5"
    assert main(["minari", "import", "pointmaze/umaze-random-v0", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert ("task maze2d-umaze-sparse from its env_spec PointMaze_UMaze-v3, gymnasium-robotics frame mapped to "
            "D4RL's") in said and "--relabel recomputes them" in said
    got = load_hdf5(out)
    assert got.metadata["task"] == "maze2d-umaze-sparse" and got.metadata["minari"]["frame"] == "gymnasium-robotics"
    audit = tmp_path / "audit.json"
    assert main(["audit", str(out), "--task", "maze2d-umaze-sparse", "--json", str(audit), "--no-progress"]) == 0
    a = json.loads(audit.read_text())
    assert a["transitions"] == 300 and a["wall_rate"] == 0.0 and a["max_error"] < 1e-5
    assert "[audit maze2d-umaze-sparse] done: 300 row" in capsys.readouterr().err  # --no-progress still logs

    refused = [
        (["--task", "maze2d-large-sparse"], ("--task maze2d-large-sparse: pointmaze/umaze-random-v0 was recorded "
                                             "as task maze2d-umaze-sparse (env_spec PointMaze_UMaze-v3); drop --task")),
        (["--task", "maze2d-umaze-dense"], "rewards are sparse (env_spec PointMaze_UMaze-v3); pass --relabel"),
        (["--frame", "d4rl"], ("--frame d4rl: pointmaze/umaze-random-v0's observations are in the gymnasium-robotics "
                               "frame (env_spec PointMaze_UMaze-v3); drop --frame")),
    ]
    for flags, message in refused:
        assert main(["minari", "import", "pointmaze/umaze-random-v0", "--out", str(tmp_path / "no.hdf5"), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rtaug minari import: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "no.hdf5").exists()
    # The other reward type, asked for with --relabel, is allowed: the rewards are recomputed.
    assert main(["minari", "import", "pointmaze/umaze-random-v0", "--out", str(tmp_path / "dense.hdf5"),
                 "--task", "maze2d-umaze-dense", "--relabel"]) == 0
    assert load_hdf5(tmp_path / "dense.hdf5").rewards.min() > 0


def test_import_refuses_only_when_it_cannot_tell_the_frame(tmp_path, env_root, capsys):
    """No env_spec and not written by rtaug: fine as stored (no task), refused for a maze task unless
    --frame says which frame; rtaug's own exports without a task are in D4RL's frame."""
    import warnings

    import gymnasium as gym
    from minari import create_dataset_from_buffers
    from minari.data_collector import EpisodeBuffer

    data = continuous_walks(n=100, ep_len=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        create_dataset_from_buffers(
            "other/walks-v0", [EpisodeBuffer(id=0, observations=np.concatenate([data.observations, data.next_observations[-1:]]),
                                             actions=data.actions, rewards=data.rewards.tolist(),
                                             terminations=[False] * 100, truncations=[False] * 99 + [True])],
            observation_space=gym.spaces.Box(-np.inf, np.inf, (4,)), action_space=gym.spaces.Box(-1, 1, (2,)),
            description="made elsewhere")
    out = tmp_path / "x.hdf5"
    assert main(["minari", "import", "other/walks-v0", "--out", str(out), "--task", "maze2d-umaze-sparse"]) == 2
    err = capsys.readouterr().err
    assert ("cannot tell the frame of other/walks-v0's observations (the dataset has no env_spec); pass --frame d4rl"
            in err) and not out.exists()
    assert main(["minari", "import", "other/walks-v0", "--out", str(out)]) == 0  # as stored
    assert "task" not in load_hdf5(out).metadata
    assert main(["minari", "import", "other/walks-v0", "--out", str(tmp_path / "y.hdf5"), "--task",
                 "maze2d-umaze-sparse", "--frame", "d4rl"]) == 0
    assert load_hdf5(tmp_path / "y.hdf5").metadata["task"] == "maze2d-umaze-sparse"


def test_export_takes_the_files_task_and_refuses_another(tmp_path, env_root, capsys):
    pytest.importorskip("gymnasium_robotics")
    import minari

    from rtaug.collect.waypoint import collect_maze2d

    path = tmp_path / "umaze.hdf5"
    save_hdf5(collect_maze2d("maze2d-umaze-dense", steps=50, seed=0, progress=False), path)
    assert main(["minari", "export", str(path), "--id", "rtaug/umaze-v0", "--task", "maze2d-umaze-sparse"]) == 2
    assert "--task maze2d-umaze-sparse: " + str(path) + " records task maze2d-umaze-dense" in capsys.readouterr().err
    assert main(["minari", "export", str(path), "--id", "rtaug/umaze-v0"]) == 0
    assert "(env_spec rtaug/maze2d-umaze-dense-v0)" in capsys.readouterr().out
    assert minari.load_dataset("rtaug/umaze-v0").env_spec.id == "rtaug/maze2d-umaze-dense-v0"
    back = tmp_path / "back.hdf5"
    assert main(["minari", "import", "rtaug/umaze-v0", "--out", str(back)]) == 0
    assert "task maze2d-umaze-dense from its env_spec rtaug/maze2d-umaze-dense-v0, d4rl frame)" in capsys.readouterr().out
    assert load_hdf5(back).metadata["task"] == "maze2d-umaze-dense"


def test_export_without_a_task_says_what_is_missing(tmp_path, walks, env_root, capsys):
    _, path = walks
    assert main(["minari", "export", str(path), "--id", "rtaug/walks-v0"]) == 0
    assert "note: no task" in capsys.readouterr().out


def test_a_boxball_export_recovers_its_env_and_imports_with_its_task(tmp_path, env_root, capsys):
    import minari

    from conftest import grid_walks

    path = tmp_path / "grid.hdf5"
    save_hdf5(grid_walks(), path)
    assert main(["minari", "export", str(path), "--id", "rtaug/grid-v0", "--task", "boxball"]) == 0
    md = minari.load_dataset("rtaug/grid-v0")
    env = md.recover_environment()
    assert env.spec.id == "rtaug/boxball-v0" and "ref_max_score" not in md.storage.metadata  # none measured
    assert env.observation_space.contains(env.reset(seed=0)[0])
    capsys.readouterr()
    assert main(["minari", "import", "rtaug/grid-v0", "--out", str(tmp_path / "back.hdf5")]) == 0
    assert "(task boxball from its env_spec rtaug/boxball-v0)" in capsys.readouterr().out
    back = load_hdf5(tmp_path / "back.hdf5")
    assert back.metadata["task"] == "boxball" and back.discrete_actions
