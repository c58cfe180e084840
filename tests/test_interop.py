"""The round trip of docs/interop.md: an augmented file RT made (the session's tiny experiment),
exported to Minari, loaded with minari.load_dataset, its env recovered and stepped (real rows replay
in it), and imported back with its generated and reliability columns."""

from pathlib import Path

import numpy as np
import pytest

minari = pytest.importorskip("minari")
pytest.importorskip("gymnasium_robotics")

from rtaug.cli import main  # noqa: E402
from rtaug.data.hdf5 import load_hdf5  # noqa: E402

pytestmark = pytest.mark.slow  # the tiny experiment trains models (shared with the other slow tests)


def test_an_augmented_file_round_trips_through_minari(tiny_experiment, tmp_path, monkeypatch, capsys):
    stages = {s["stage"]: Path(s["path"]) for s in tiny_experiment[1]["stages"]}
    path = stages["generated"] / "data.hdf5"
    data = load_hdf5(path)
    assert data.generated.any() and data.metadata["task"] == "maze2d-umaze-sparse"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))

    assert main(["minari", "export", str(path), "--id", "rtaug/umaze-rt-v0"]) == 0  # the task: the file's
    said = capsys.readouterr().out
    assert "env_spec rtaug/maze2d-umaze-sparse-v0" in said and "generated and reliability as step infos" in said

    md = minari.load_dataset("rtaug/umaze-rt-v0")
    assert md.total_steps == len(data)
    generated = np.concatenate([ep.infos["generated"][1:] for ep in md.iterate_episodes()])
    np.testing.assert_array_equal(generated, data.generated)
    env = md.recover_environment()
    assert env.spec.id == "rtaug/maze2d-umaze-sparse-v0" and env.spec.max_episode_steps == 300
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        steps, done = steps + 1, term or trunc
    assert steps == 300 and trunc
    # The recovered env is the data's: real rows replay in it at float32 precision.
    sim = env.unwrapped
    real = np.flatnonzero(~data.generated)[:50]
    for i in real:
        sim.set_state(data.observations[i, :2], data.observations[i, 2:])
        assert np.abs(sim.sim_step(data.actions[i]) - data.next_observations[i]).max() < 1e-5
    env.close()

    back = tmp_path / "back.hdf5"
    assert main(["minari", "import", "rtaug/umaze-rt-v0", "--out", str(back)]) == 0
    got = load_hdf5(back)
    for key in ("observations", "actions", "rewards", "next_observations", "generated", "reliability"):
        np.testing.assert_array_equal(getattr(got, key), getattr(data, key), err_msg=key)
    assert got.metadata["task"] == "maze2d-umaze-sparse"
