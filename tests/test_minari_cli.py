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
        (["import", "rtaug/here-v0", "--out", str(tmp_path / "x.hdf5"), "--relabel"], ["need --task"]),
        (["import", "rtaug/here-v0", "--out", str(tmp_path / "x.hdf5"), "--frame", "gymnasium-robotics"],
         ["need --task"]),
        (["export", str(tmp_path / "absent.hdf5"), "--id", "rtaug/new-v0"], ["absent.hdf5: no such file"]),
        (["export", str(path), "--id", "rtaug/new-v0", "--task", "maze2d-tiny"], ["unknown task"]),
    ]
    for argv, messages in cases:
        assert main(["minari", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"rtaug minari {argv[0]}: error:"), err
        assert all(m in err for m in messages), err
    assert not (tmp_path / "x.hdf5").exists() and not (env_root / "rtaug" / "new-v0").exists()
