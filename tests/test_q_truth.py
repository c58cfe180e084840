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
    rolled = q_truth.roll_out(task, still, obs, gamma=0.5, horizon=4, rewards=(2.0, 0.0))
    # discounted in the learner's rewards (here r × 2), the total in the task's
    assert rolled["discounted"][0] == pytest.approx(2 * (1 + 0.5 + 0.25 + 0.125)) and rolled["discounted"][1] == 0.0
    assert rolled["total"].tolist() == [4.0, 0.0] and rolled["steps"].tolist() == [4, 4] and not rolled["ended"].any()


def test_locomotion_rollouts_start_from_the_stored_state_and_stop_at_a_fall():
    """Against Gymnasium's own Hopper stepped by hand from the same simulator state: the same
    rewards, discounted, and nothing after the fall."""
    from rtaug.envs.locomotion import make_env
    from rtaug.envs.registry import get_task

    task = get_task("hopper-medium")
    env = make_env(task.recipe.env_id)
    env.reset(seed=3)
    for _ in range(5):  # a state away from the reset's
        env.step(np.full(3, 0.5))
    qpos, qvel = env.unwrapped.data.qpos.copy(), env.unwrapped.data.qvel.copy()
    push = lambda o: np.tile([1.0, -1.0, 1.0], (len(o), 1)).astype(np.float32)
    expect, disc, steps, fell = 0.0, 1.0, 0, False
    while not fell and steps < 300:
        _, r, fell, _, _ = env.step(np.array([1.0, -1.0, 1.0]))
        expect += disc * r
        disc *= 0.9
        steps += 1
    assert fell  # this push topples the hopper well within the horizon
    rolled = q_truth.roll_out(task, push, np.zeros((2, 11), np.float32), gamma=0.9, horizon=300,
                              qpos=np.stack([qpos] * 2), qvel=np.stack([qvel] * 2))
    assert rolled["discounted"] == pytest.approx([expect] * 2)
    assert rolled["steps"].tolist() == [steps] * 2 and rolled["ended"].all()
    assert q_truth.survival(rolled) == f"100% fell, after {steps} steps on average"


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


def hopper_rows(n=20, ends=(19,)):
    from rtaug.data import Dataset

    return Dataset(observations=np.zeros((n, 11), np.float32), actions=np.zeros((n, 3), np.float32),
                   rewards=np.ones(n, np.float32), terminals=np.isin(np.arange(n), ends),
                   timeouts=np.arange(n) == n - 1, next_observations=np.zeros((n, 11), np.float32))


def test_states_drawn_from_episode_starts_begin_an_episode():
    data = hopper_rows(ends=(4, 9, 14, 19))
    assert sorted(q_truth.draw_states(data, 4, 0, starts=True).tolist()) == [0, 5, 10, 15]
    assert len(set(q_truth.draw_states(data, 20, 0).tolist())) == 20
    with pytest.raises(ValueError, match="only 4 episode starts"):
        q_truth.draw_states(data, 5, 0, starts=True)


def test_locomotion_data_without_simulator_states_is_refused_before_any_work(tmp_path, capsys):
    from rtaug.data import save_hdf5

    save_hdf5(hopper_rows(), tmp_path / "h.hdf5")
    with pytest.raises(SystemExit) as e:
        q_truth.main(["no-run", "--data", str(tmp_path / "h.hdf5"), "--task", "hopper-medium"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"{tmp_path / 'h.hdf5'}: key 'infos/qpos': missing" in err


def test_more_start_states_than_episodes_is_refused_before_any_work(tmp_path, capsys):
    from rtaug.data import Dataset, save_hdf5

    n = 20  # two maze episodes
    obs = np.ones((n, 4), np.float32)
    save_hdf5(Dataset(observations=obs, actions=np.zeros((n, 2), np.float32), rewards=np.zeros(n, np.float32),
                      terminals=np.zeros(n, bool), timeouts=np.isin(np.arange(n), (9, 19)), next_observations=obs),
              tmp_path / "m.hdf5")
    before = (tmp_path / "m.hdf5").read_bytes()
    with pytest.raises(SystemExit) as e:
        q_truth.main(["no-run", "--data", str(tmp_path / "m.hdf5"), "--task", "maze2d-umaze-sparse",
                      "--starts", "--states", "5"])
    assert e.value.code == 2 and "the data have only 2 episode starts" in capsys.readouterr().err
    assert (tmp_path / "m.hdf5").read_bytes() == before


@pytest.mark.parametrize("where", ["data", "run", "dir"])
def test_json_onto_an_input_or_a_directory_is_refused(tmp_path, capsys, where):
    (tmp_path / "run").mkdir()
    (tmp_path / "d.hdf5").write_bytes(b"data")
    out = {"data": tmp_path / "d.hdf5", "run": tmp_path / "run" / "run.json", "dir": tmp_path}[where]
    with pytest.raises(SystemExit) as e:
        q_truth.main([str(tmp_path / "run"), "--data", str(tmp_path / "d.hdf5"), "--task", "maze2d-umaze-sparse",
                      "--json", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and ("is a directory" if where == "dir" else "would overwrite an input") in err
    assert (tmp_path / "d.hdf5").read_bytes() == b"data"


@pytest.mark.parametrize("flags", [["--states", "0"], ["--horizon", "0"]])
def test_bad_sizes_are_refused_before_any_work(flags, capsys):
    with pytest.raises(SystemExit) as e:
        q_truth.main(["no-run", "--data", "no.hdf5", "--task", "maze2d-umaze-sparse", *flags])
    assert e.value.code == 2 and "--states and --horizon must be >= 1" in capsys.readouterr().err
