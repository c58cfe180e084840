"""benchmarks/q_truth.py: a critic's Q beside its policy's true discounted return in the simulator."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

_SPEC = importlib.util.spec_from_file_location(
    "q_truth", Path(__file__).resolve().parents[1] / "benchmarks" / "q_truth.py")
q_truth = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(q_truth)


def test_true_returns_discount_the_simulator_rewards():
    from rtaug.envs.registry import get_task

    task = get_task("maze2d-umaze-sparse")
    goal = np.asarray(task.layout.eval_goal, np.float32)
    # one state resting on the goal, one in the maze's far corner; a policy that does nothing
    cells = np.asarray(task.layout.free_cells, np.float32)
    far = cells[np.argmax(np.linalg.norm(cells - goal, axis=1))]
    obs = np.array([[*goal, 0, 0], [*far, 0, 0]], np.float32)
    still = lambda o: np.zeros((len(o), 2), np.float32)  # noqa: E731
    g = q_truth.true_returns(task, still, obs, gamma=0.5, horizon=4)
    assert g[0] == pytest.approx(1 + 0.5 + 0.25 + 0.125) and g[1] == 0.0


@pytest.mark.slow
def test_q_truth_on_a_bcq_run(tiny_experiment, tmp_path, capsys):
    from rtaug.data.hdf5 import load_hdf5
    from rtaug.train import train

    d, result, _ = tiny_experiment
    data_path = Path(next(s for s in result["stages"] if s["stage"] == "data")["path"]) / "data.hdf5"
    from rtaug.algos.bcq import BCQConfig

    cfg = BCQConfig(vae_hidden=(16, 16), actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=16)
    train(load_hdf5(data_path), "bcq", steps=20, seeds=(0, 1), config=cfg, out_dir=tmp_path / "run",
          progress=None, chunk=10)
    out = tmp_path / "q.json"
    assert q_truth.main([str(tmp_path / "run"), "--data", str(data_path), "--task", "maze2d-umaze-sparse",
                         "--states", "6", "--horizon", "5", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["algo"] == "bcq" and rep["step"] == 20 and set(rep["seeds"]) == {"0", "1"}
    assert all(np.isfinite(v["q_mean"]) and v["true_mean"] >= 0 for v in rep["seeds"].values())
    assert "critic Q" in capsys.readouterr().out


@pytest.mark.parametrize("flags", [["--states", "0"], ["--horizon", "0"]])
def test_bad_sizes_are_refused_before_any_work(flags, capsys):
    with pytest.raises(SystemExit) as e:
        q_truth.main(["no-run", "--data", "no.hdf5", "--task", "maze2d-umaze-sparse", *flags])
    assert e.value.code == 2 and "--states and --horizon must be >= 1" in capsys.readouterr().err
