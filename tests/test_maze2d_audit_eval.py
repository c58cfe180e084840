"""Simulator audit of Maze2D data and evaluation by D4RL's protocol."""

import json

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

from rtaug.collect.waypoint import collect_maze2d  # noqa: E402
from rtaug.data import Dataset, save_hdf5  # noqa: E402
from rtaug.envs.maze_audit import audit_maze_dataset, audit_maze_file, audit_maze_transitions  # noqa: E402
from rtaug.envs.registry import TaskError  # noqa: E402
from rtaug.evaluate import ControllerPolicy, evaluate_policy, iqm, random_policy, rollout  # noqa: E402

TASK = "maze2d-umaze-sparse"


@pytest.fixture(scope="module")
def data():
    return collect_maze2d(TASK, steps=2000, seed=0, progress=False)


def test_real_transitions_audit_at_numerical_precision(data):
    s = audit_maze_dataset(data, TASK)
    assert s["transitions"] == 2000
    assert s["max_error"] <= 1e-5
    assert s["wall_rate"] == 0.0
    # Also from the float32 observations alone (no infos/qpos): still numerical precision.
    r = audit_maze_transitions(TASK, data.observations, data.actions, data.next_observations)
    assert r["error"].max() <= 1e-5


def test_perturbed_transitions_are_clearly_above(data):
    rng = np.random.default_rng(0)
    nxt = data.next_observations.copy()
    nxt[:, :2] += rng.normal(0, 0.01, size=(len(nxt), 2))
    r = audit_maze_transitions(TASK, data.observations, data.actions, nxt)
    assert np.median(r["error"]) > 1e-3 and r["error"].min() > 1e-5
    # A wrong action is caught too: the successor no longer follows.
    r = audit_maze_transitions(TASK, data.observations, -data.actions, data.next_observations)
    assert (r["error"] > 1e-3).mean() > 0.9


def test_wall_hits_and_generated_split(data):
    n = 200
    d = data.subset(np.arange(n))
    obs, nxt = d.observations.copy(), d.next_observations.copy()
    gen = np.zeros(n, bool)
    gen[::2] = True
    # Generated rows jump into the wall cell (2, 1) (qpos centre (1.8, 0.8)).
    nxt[gen, :2] = [1.8, 0.8]
    mixed = Dataset(observations=obs, actions=d.actions, rewards=d.rewards, terminals=d.terminals,
                    timeouts=d.timeouts, next_observations=nxt, generated=gen, infos=d.infos, source="mixed")
    s = audit_maze_dataset(mixed, TASK)
    assert s["generated"]["wall_rate"] == 1.0 and s["real"]["wall_rate"] == 0.0
    assert s["real"]["max_error"] <= 1e-5 and s["generated"]["mean_error"] > 0.1
    assert s["wall_rate"] == pytest.approx(0.5)


def test_audit_file_writes_json(data, tmp_path):
    path = tmp_path / "d.hdf5"
    save_hdf5(data.subset(np.arange(300)), path)
    out = tmp_path / "audit.json"
    s = audit_maze_file(path, TASK, json_out=out, progress=False)
    on_disk = json.loads(out.read_text())
    assert on_disk["max_error"] == s["max_error"] <= 1e-5
    assert set(on_disk) >= {"mean_error", "max_error", "wall_rate", "transitions"}


def test_audit_of_generated_rows_and_a_sample_of_the_real_ones(data, tmp_path, capsys):
    """--real-rows N: every generated row, N real ones; the generated figures are those of the whole file."""
    from rtaug.cli import main

    n = 400
    d = data.subset(np.arange(n))
    nxt = d.next_observations.copy()
    gen = np.zeros(n, bool)
    gen[::4] = True
    nxt[gen, :2] += 0.05  # generated rows 0.05 off the simulator's next position
    mixed = Dataset(observations=d.observations, actions=d.actions, rewards=d.rewards, terminals=d.terminals,
                    timeouts=d.timeouts, next_observations=nxt, generated=gen, infos=d.infos, source="mixed")
    path = tmp_path / "mixed.hdf5"
    save_hdf5(mixed, path)
    whole = audit_maze_file(path, TASK, progress=False)
    assert "real_sample" not in whole
    assert main(["audit", str(path), "--task", TASK, "--real-rows", "50", "--json", str(tmp_path / "a.json"),
                 "--no-progress"]) == 0
    part = json.loads((tmp_path / "a.json").read_text())
    assert part["real_sample"] == {"real_rows": 300, "real_rows_audited": 50, "seed": 0}
    assert part["transitions"] == 150 and part["real"]["transitions"] == 50
    assert part["generated"] == whole["generated"]  # the generated rows, all of them, the same figures
    assert part["real"]["max_error"] <= 1e-5 and part["generated"]["mean_error"] == pytest.approx(0.05 * np.sqrt(2), rel=1e-3)
    # more real rows asked for than there are: the whole file, no sample
    assert audit_maze_file(path, TASK, progress=False, real_rows=300) == whole
    capsys.readouterr()
    assert main(["audit", str(path), "--task", TASK, "--real-rows", "0"]) == 2
    assert capsys.readouterr().err == "rtaug audit: error: --real-rows 0: must be at least 1\n"


def test_audit_refuses_wrong_sizes(data):
    bad = Dataset(observations=np.zeros((4, 6), np.float32), actions=np.zeros((4, 2), np.float32),
                  rewards=np.zeros(4, np.float32), terminals=np.zeros(4, bool), timeouts=np.zeros(4, bool),
                  next_observations=np.zeros((4, 6), np.float32), source="wrong.hdf5")
    with pytest.raises(TaskError, match="wrong.hdf5: key 'observations'.*4-dimensional"):
        audit_maze_dataset(bad, TASK)
    with pytest.raises(ValueError, match="actions"):
        audit_maze_transitions(TASK, data.observations[:3], np.zeros((3, 3)), data.next_observations[:3])
    with pytest.raises(TaskError, match="known tasks"):
        audit_maze_dataset(data, "maze2d-umaze")


def test_episode_starts_do_not_depend_on_batching():
    zero = lambda obs: np.zeros((len(obs), 2), np.float32)  # noqa: E731
    a = rollout(TASK, zero, episodes=6, seed=5, batch_size=6)
    b = rollout(TASK, zero, episodes=6, seed=5, batch_size=4)
    np.testing.assert_array_equal(a["dense"], b["dense"])
    c = rollout(TASK, zero, episodes=6, seed=6, batch_size=6)
    assert not np.array_equal(a["dense"], c["dense"])


def test_evaluate_policy_scores():
    ctrl = evaluate_policy(TASK, ControllerPolicy(TASK), episodes=6, seed=1)
    rand = evaluate_policy(TASK, random_policy(0), episodes=6, seed=1)
    assert ctrl.returns.shape == (6,) and ctrl.returns_other.shape == (6,)
    assert ctrl.returns.mean() > rand.returns.mean() + 50
    assert ctrl.summary()["success_rate"] == 1.0
    np.testing.assert_allclose(ctrl.normalized_d4rl, 100 * (ctrl.returns - 23.85) / (161.86 - 23.85))
    s = ctrl.summary()
    assert s["episodes"] == 6 and s["return"]["mean"] == pytest.approx(ctrl.returns.mean())


def test_policy_with_wrong_action_shape_is_refused():
    with pytest.raises(ValueError, match="shape"):
        rollout(TASK, lambda obs: np.zeros((len(obs), 3)), episodes=2, seed=0)


def test_iqm():
    assert iqm([0, 1, 2, 3, 100, -100, 1, 2]) == pytest.approx(1.5)
    assert np.isnan(iqm([]))


def test_maze_file_with_wrong_keys_is_refused(tmp_path):
    import h5py

    from rtaug.data import DatasetError

    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((5, 4), np.float32)
        f["acts"] = np.zeros((5, 2), np.float32)  # not 'actions'
        f["rewards"] = np.zeros(5, np.float32)
        f["terminals"] = np.zeros(5, bool)
    with pytest.raises(DatasetError, match="bad.hdf5: key 'actions': missing"):
        audit_maze_file(path, TASK, progress=False)


def test_make_eval_fn_for_the_training_loop():
    from rtaug.evaluate import make_eval_fn

    row = make_eval_fn(TASK, episodes=3, seed=0)(lambda obs: np.zeros((len(obs), 2), np.float32))
    assert set(row) >= {"return_mean", "return_std", "normalized_d4rl_mean", "success_rate"}
    assert all(isinstance(v, float) for v in row.values())


def test_references_hold_when_evaluated_again_with_another_seed():
    """With the stored references, the controller scores ≈ 100 and a random policy ≈ 0 on fresh starts."""
    ctrl = evaluate_policy(TASK, ControllerPolicy(TASK, seed=7), episodes=100, seed=1)
    rand = evaluate_policy(TASK, random_policy(11), episodes=100, seed=1)
    assert abs(ctrl.normalized.mean() - 100) < 10
    assert abs(rand.normalized.mean()) < 10
