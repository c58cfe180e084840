"""Locomotion tasks (hopper, walker2d, halfcheetah on Gymnasium MuJoCo v5): the registry's entries,
evaluation, the dataset layout, the simulator audit, and the SAC collection through `rtaug collect`."""

import json

import h5py
import numpy as np
import pytest
from conftest import with_references

from rtaug.cli import main
from rtaug.collect.locomotion import locomotion_dataset, medium_cut, policy_data
from rtaug.data import Dataset, load_hdf5, save_hdf5
from rtaug.envs.locomotion import ENV_IDS, episode_seed, make_sim, rollout
from rtaug.envs.locomotion_audit import audit_locomotion_dataset
from rtaug.envs.registry import TaskError, get_task, task_names
from rtaug.evaluate import evaluate_policy, random_policy

KINDS = ("medium", "medium-replay", "expert", "medium-expert")
D4RL = {"hopper": (-20.272305, 3234.3), "halfcheetah": (-280.178953, 12135.0), "walker2d": (1.629008, 4592.3)}


@pytest.mark.parametrize("env", sorted(ENV_IDS))
def test_registry_has_the_four_datasets_of_each_env(env):
    sim = make_sim(ENV_IDS[env])
    for kind in KINDS:
        task = get_task(f"{env}-{kind}")
        assert f"{env}-{kind}" in task_names()
        assert (task.family, task.env, task.recipe.dataset) == ("mujoco", env, kind)
        assert task.recipe.env_id == ENV_IDS[env] and task.recipe.env_id.endswith("-v5")
        assert (task.obs_dim, task.act_dim) == (sim.observation_space.shape[0], sim.action_space.shape[0])
        assert (task.evaluation.episodes, task.evaluation.max_episode_steps) == (10, 1000)
        assert (task.recipe.default_steps, task.recipe.medium_fraction) == (1_000_000, pytest.approx(1 / 3))
        ref = task.references
        assert (ref.d4rl_random, ref.d4rl_expert) == D4RL[env]
        assert task.normalize_d4rl(ref.d4rl_expert) == pytest.approx(100.0)
        assert task.normalize_d4rl(ref.d4rl_random) == pytest.approx(0.0)
        # measured here (docs/locomotion.md): 100 episodes each, SEs small against the gap
        assert ref.random < ref.expert and ref.episodes == (100, 100)
        assert max(ref.random_se, ref.expert_se) < 0.02 * (ref.expert - ref.random)
        assert task.normalize(ref.expert) == pytest.approx(100.0) and task.normalize(ref.random) == pytest.approx(0)
        assert task.make_env().spec.max_episode_steps == 1000
    with pytest.raises(TaskError, match=f"task '{env}-medium': rtaug run supports maze2d tasks only"):
        get_task(f"{env}-medium", "maze2d", "rtaug run")


def test_unmeasured_references_are_refused_with_the_command_that_measures_them(monkeypatch):
    """No number is made up: the error names the run whose expert measures them (hopper's: seed 1)."""
    with_references(monkeypatch, "hopper", None, None)
    with pytest.raises(TaskError, match=r"not been measured yet; run `rtaug reference hopper-medium --sac-dir "
                                        r"runs/sac/hopper-seed1` and store them"):
        get_task("hopper-medium").normalize(100.0)


def test_making_an_env_leaves_no_mujoco_log(tmp_path, monkeypatch, capfd):
    """MuJoCo's notice about HalfCheetah's deprecated `settotalmass` would land in a MUJOCO_LOG.TXT
    in the user's working directory and on stderr, once per env made."""
    monkeypatch.chdir(tmp_path)
    make_sim("HalfCheetah-v5")
    get_task("halfcheetah-expert").make_env()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists() and "settotalmass" not in capfd.readouterr().err


def test_episode_starts_do_not_depend_on_batching():
    def still(obs):  # deterministic: no action at all
        return np.zeros((len(obs), 3), np.float32)

    a = rollout("Hopper-v5", still, 3, seed=5, batch_size=1, max_episode_steps=50)
    b = rollout("Hopper-v5", still, 3, seed=5, batch_size=3, max_episode_steps=50)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = rollout("Hopper-v5", still, 3, seed=6, batch_size=3, max_episode_steps=50)
    assert not np.array_equal(a["returns"], c["returns"])
    assert episode_seed(1, 2) == episode_seed((1, 2)) != episode_seed(2, 1)


def test_evaluation_by_d4rl_protocol():
    task = get_task("hopper-medium")
    res = evaluate_policy(task, random_policy(0, 3), episodes=4, seed=0)
    assert res.returns.shape == (4,) and np.all(np.isfinite(res.returns))
    np.testing.assert_allclose(res.normalized, task.normalize(res.returns))
    np.testing.assert_allclose(res.normalized_d4rl, task.normalize_d4rl(res.returns))
    # a random hopper falls within a few dozen steps; the env's termination ends its episode
    assert res.extra["success_rate"] == 0.0 and 1 <= res.extra["length_mean"] < 1000
    cheetah = evaluate_policy("halfcheetah-medium", random_policy(0, 6), episodes=2, seed=0)
    assert cheetah.extra == {"success_rate": 1.0, "length_mean": 1000.0}  # halfcheetah never terminates
    with pytest.raises(ValueError, match=r"policy returned actions of shape \(2, 2\), expected \(2, 3\)"):
        evaluate_policy(task, random_policy(0, 2), episodes=2)


@pytest.fixture(scope="module")
def random_data():
    """1,500 rows of uniform actions on Hopper-v5, in the collectors' layout."""
    task = get_task("hopper-medium")
    arrays = policy_data(task.recipe.env_id, random_policy(0, 3), 1500, seed=(0, 9), progress=False)
    return locomotion_dataset(task, arrays, {"algo": "uniform", "seed": 0}, source="test:hopper")


def test_dataset_layout_and_episodes(random_data, tmp_path):
    save_hdf5(random_data, tmp_path / "h.hdf5")
    data = load_hdf5(tmp_path / "h.hdf5")  # the validator accepts it
    get_task("hopper-medium").check_dataset(data)
    with h5py.File(tmp_path / "h.hdf5") as f:
        assert {"observations", "actions", "rewards", "terminals", "timeouts", "next_observations"} <= set(f)
        assert set(f["infos"]) == {"qpos", "qvel"}
        assert f["infos/qpos"].shape == (1500, 6) and f["infos/qpos"].dtype == np.float64
    meta = data.metadata
    assert meta["task"] == "hopper-medium" and meta["env_id"] == "Hopper-v5" and meta["mujoco"] and meta["gymnasium"]
    ends = data.terminals | data.timeouts
    assert data.terminals.sum() > 10 and ends[-1]  # random hoppers fall; the stream's end is an episode end
    assert not (data.terminals & data.timeouts).any()
    inside = ~ends[:-1]  # within an episode the next row starts where this one ended
    np.testing.assert_array_equal(data.next_observations[:-1][inside], data.observations[1:][inside])
    # the observation is the stored state without the root's x (hopper: velocities within ±10 here)
    np.testing.assert_allclose(data.observations, np.concatenate([data.infos["qpos"][:, 1:], data.infos["qvel"]], 1),
                               atol=1e-5)
    assert np.all(np.abs(data.actions) <= 1.0)


def test_real_rows_audit_at_numerical_precision(random_data):
    res = audit_locomotion_dataset(random_data, "hopper-medium")
    assert res["transitions"] == 1500 and res["restored_from_state"] == 1.0
    assert res["mean_error"] < 1e-6 and res["max_error"] < 1e-5
    assert res["terminal_agreement"] == 1.0 and res["reward_agreement"] == 1.0
    assert res["reward_mean_abs_error"] < 1e-6
    # From the float32 observations alone (no infos), still at float32 precision.
    bare = Dataset(**{k: getattr(random_data, k) for k in ("observations", "actions", "rewards", "terminals",
                                                          "timeouts", "next_observations")})
    res = audit_locomotion_dataset(bare, "hopper-medium")
    assert res["restored_from_state"] == 0.0 and res["max_error"] < 1e-4


def test_walker_states_need_the_stored_simulator_state():
    """Walker2d's observation clips joint velocities at ±10, and a flailing random walker exceeds
    that: from the observation alone those rows cannot be restored; from infos/qpos, qvel they can."""
    task = get_task("walker2d-medium")
    arrays = policy_data(task.recipe.env_id, random_policy(0, 6), 1000, seed=1, progress=False)
    data = locomotion_dataset(task, arrays, {}, source="test:walker")
    assert np.abs(arrays["qvel"]).max() > 10
    res = audit_locomotion_dataset(data, task)
    assert res["max_error"] < 1e-5 and res["at_velocity_clip"] == 0.0
    bare = Dataset(**{k: getattr(data, k) for k in ("observations", "actions", "rewards", "terminals", "timeouts",
                                                   "next_observations")})
    res = audit_locomotion_dataset(bare, task)
    assert res["at_velocity_clip"] > 0.01 and res["max_error"] > 1.0


def test_generated_rows_get_their_true_error(random_data):
    """Rows marked generated, with a known error on s′ and a reward off by 0.5, and (as RT's merge
    writes them) the simulator state of another row in their infos: the audit must restore them
    from their observation and report exactly the error that was put in."""
    real = random_data.subset(np.arange(500))
    rng = np.random.default_rng(0)
    shift = rng.normal(0.0, 1e-2, real.next_observations.shape).astype(np.float32)
    gen = Dataset(observations=real.observations, actions=real.actions, rewards=real.rewards + 0.5,
                  terminals=real.terminals, timeouts=real.timeouts, next_observations=real.next_observations + shift,
                  infos={k: v[::-1].copy() for k, v in real.infos.items()}, generated=np.ones(500, bool),
                  reliability=np.zeros(500, np.float32), metadata={"generator": {"beta": 0.0, "alpha": 1.0}})
    both = real.concat(gen)
    res = audit_locomotion_dataset(both, "hopper-medium")
    assert res["real"]["max_error"] < 1e-5 and res["real"]["restored_from_state"] == 1.0
    g = res["generated"]
    assert g["restored_from_state"] < 0.02  # a reversed row's state reproduces an observation only by chance
    expected = np.linalg.norm(shift.astype(np.float64), axis=1)
    assert g["mean_error"] == pytest.approx(expected.mean(), rel=0.01)
    assert g["reward_agreement"] == 0.0 and g["reward_mean_abs_error"] == pytest.approx(0.5, abs=1e-3)


def test_relabelled_rows_take_the_simulators_outcome_and_keep_the_penalty(random_data, tmp_path):
    """`relabel_locomotion_file`: generated rows with wrong next states, rewards and terminals come
    out auditing at float32 precision, their rewards the true ones minus RT's penalty β·s·Γ/α;
    states, actions, Γ and the real rows are the input's, and the input file is not written."""
    from rtaug.envs.locomotion_audit import relabel_locomotion_file

    real = random_data.subset(np.arange(500))
    rng = np.random.default_rng(1)
    shift = rng.normal(0.0, 0.1, real.next_observations.shape).astype(np.float32)
    gamma = rng.uniform(0.0, 2.0, 500).astype(np.float32)
    gen = Dataset(observations=real.observations, actions=real.actions, rewards=real.rewards + 0.5,
                  terminals=~real.terminals, timeouts=real.timeouts, next_observations=real.next_observations + shift,
                  infos={k: v[::-1].copy() for k, v in real.infos.items()}, generated=np.ones(500, bool),
                  reliability=gamma, metadata={"generator": {"beta": 0.5, "alpha": 2.0, "reward_scale": 1.0}})
    src, out = tmp_path / "aug.hdf5", tmp_path / "relabelled.hdf5"
    save_hdf5(real.concat(gen), src)
    before = src.read_bytes()
    made = relabel_locomotion_file(src, out, "hopper-medium", progress=False)
    assert src.read_bytes() == before
    assert made["relabelled_rows"] == 500 and made["mean_error_before"] > 0.1
    new = load_hdf5(out)
    for key in ("observations", "actions", "rewards", "terminals", "next_observations"):
        np.testing.assert_array_equal(getattr(new, key)[:500], getattr(real, key))  # real rows untouched
    np.testing.assert_array_equal(new.observations[500:], real.observations)
    np.testing.assert_array_equal(new.reliability[500:], gamma)
    np.testing.assert_allclose(new.next_observations[500:], real.next_observations, atol=1e-4)
    np.testing.assert_allclose(new.rewards[500:], real.rewards - 0.25 * gamma, atol=1e-4)
    np.testing.assert_array_equal(new.terminals[500:], real.terminals)
    assert new.metadata["relabelled"]["rows"] == 500
    res = audit_locomotion_dataset(new, "hopper-medium")["generated"]
    assert res["max_error"] < 1e-4 and res["reward_agreement"] == 1.0 and res["terminal_agreement"] == 1.0
    save_hdf5(real, tmp_path / "plain.hdf5")
    with pytest.raises(ValueError, match="plain.hdf5: key 'generated': the file marks no generated rows"):
        relabel_locomotion_file(tmp_path / "plain.hdf5", tmp_path / "x.hdf5", "hopper-medium", progress=False)
    with pytest.raises(ValueError, match="must be another file"):
        relabel_locomotion_file(src, src, "hopper-medium", progress=False)
    assert not (tmp_path / "x.hdf5").exists() and src.read_bytes() == before


def test_audit_and_eval_commands(random_data, tmp_path, capsys, monkeypatch):
    with_references(monkeypatch, "hopper", None, None)  # the eval line of a task not measured
    save_hdf5(random_data, tmp_path / "h.hdf5")
    out = tmp_path / "audit.json"
    assert main(["audit", str(tmp_path / "h.hdf5"), "--task", "hopper-medium", "--json", str(out),
                 "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text()) and printed["max_error"] < 1e-5
    assert main(["eval", "--policy", "random", "--task", "hopper-medium", "--episodes", "2", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "hopper-medium: uniform random actions" in said and "(-20.272305, 3234.3)" in said
    assert "normalized       n/a (references not measured)" in said
    assert main(["eval", "--policy", "controller", "--task", "hopper-medium"]) == 2
    assert "has no controller" in capsys.readouterr().err


def test_collect_refuses_bad_settings_before_any_work(tmp_path, capsys):
    sac_dir = tmp_path / "sac"
    cases = [
        (["hopper-medium-replay", "--steps", "100"], "medium-replay is SAC's replay buffer"),
        (["hopper-medium", "--sac", "bogus=1"], "unknown setting(s) bogus"),
        (["hopper-medium", "--sac", "learning_starts=many"], "learning_starts='many': expected int"),
        (["hopper-medium", "--sac", "medium_fraction=2"], "medium_fraction must be in (0, 1]"),
        (["hopper-medium", "--sac", "expert_window=0"], "expert_window must be at least 1"),
        (["hopper-medium", "--sac", "expert_return=-3"], "expert_return must be a positive return, got -3.0"),
        (["hopper-medium", "--sac", "expert_return=nan"], "expert_return must be a positive return, got nan"),
        (["hopper-expert", "--sac", "expert_return=3000"], "the expert's data need the whole run"),
        (["hopper-medium-expert", "--sac", "expert_return=3000"], "the expert's data need the whole run"),
        (["hopper-medium", "--sac", "eval_every"], "expected KEY=VALUE"),
        (["maze2d-umaze-sparse", "--sac-dir", str(sac_dir)], "--sac and --sac-dir apply to the SAC-made tasks"),
    ]
    for args, message in cases:
        assert main(["collect", *args, "--out", str(tmp_path / "x.hdf5"), "--sac-dir", str(sac_dir)]) == 2
        assert message in capsys.readouterr().err, args
    assert not (tmp_path / "x.hdf5").exists() and not (sac_dir / "checkpoint.msgpack").exists()


def test_medium_cut_is_the_first_evaluation_at_a_third_of_the_last_ones_mean():
    curve = [{"step": s, "return_mean": r} for s, r in ((10, 5.0), (20, 40.0), (30, 20.0), (40, 90.0))]
    cut = medium_cut(curve, 1 / 3, window=1)
    assert (cut["expert_step"], cut["expert_return"], cut["medium_step"], cut["medium_return"]) == (40, 90.0, 20, 40.0)
    assert medium_cut(curve, 1.0, window=1)["medium_step"] == 40
    # the threshold follows the mean of the last `window` evaluations, so one dip at the end moves it
    # less: a third of (20 + 90 + 30) / 3 instead of a third of 30
    dip = curve + [{"step": 50, "return_mean": 30.0}]
    assert medium_cut(dip, 1 / 3, window=1)["medium_step"] == 20
    cut = medium_cut(dip, 1 / 3, window=3)
    assert (cut["expert_step"], cut["expert_return"], cut["window"]) == (50, 30.0, 3)
    assert cut["expert_level"] == pytest.approx(140 / 3) and cut["medium_step"] == 20
    assert medium_cut(dip, 0.9, window=3)["medium_step"] == 40  # 42 is reached first at 40
    assert medium_cut(dip, 1.0, window=10)["expert_level"] == pytest.approx(37.0)  # all five when fewer
    assert medium_cut(curve, 1.0, window=3)["medium_step"] == 40  # the window's best always qualifies
    with pytest.raises(ValueError, match="no evaluations yet"):
        medium_cut([], 1 / 3)
    with pytest.raises(ValueError, match="expert_window must be at least 1"):
        medium_cut(curve, 1 / 3, window=0)
    # a known expert return replaces the window's mean: the curve need reach only the cut
    cut = medium_cut(curve[:2], 1 / 3, expert_return=90.0)
    assert (cut["expert_level"], cut["window"], cut["medium_step"], cut["threshold"]) == (90.0, 0, 20, 30.0)
    assert cut["expert_step"] == 20  # the run's last actor, whatever it is: not an expert here
    with pytest.raises(ValueError, match=r"its last at step 20, return 40.0\) reaches 50.0 .*larger sac_steps"):
        medium_cut(curve[:2], 1 / 3, expert_return=150.0)


# ------------------------------------------------------------------------ through a SAC run

SMALL_SAC = ["sac_steps=1200", "learning_starts=300", "eval_every=300", "eval_episodes=2", "hidden=16,16",
             "batch_size=16", "checkpoint_every=500"]


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """A tiny SAC run on Hopper-v5 (1,200 steps) and the four datasets cut out of it by `rtaug collect`."""
    root = tmp_path_factory.mktemp("loco")
    for kind in KINDS:
        steps = [] if kind == "medium-replay" else ["--steps", "700"]
        assert main(["collect", f"hopper-{kind}", "--out", str(root / f"{kind}.hdf5"), *steps, "--seed", "3",
                     "--sac-dir", str(root / "sac"), "--sac", *SMALL_SAC, "--no-progress"]) == 0
    return root


@pytest.mark.slow  # trains a tiny SAC (compiling it is most of the time)
def test_collect_cuts_four_datasets_out_of_one_sac_run(collected):
    from rtaug.collect.sac import load_buffer, read_curve

    data = {kind: load_hdf5(collected / f"{kind}.hdf5") for kind in KINDS}
    curve = read_curve(collected / "sac")
    assert [r["step"] for r in curve] == [300, 600, 900, 1200]
    cut = medium_cut(curve, 1 / 3)
    for kind, d in data.items():
        get_task(f"hopper-{kind}").check_dataset(d)
        c = d.metadata["collector"]
        assert (c["algo"], c["seed"], c["cut"]) == ("sac", 3, cut)
        assert c["sac"]["total_steps"] == 1200 and c["sac"]["hidden"] == [16, 16]
        assert audit_locomotion_dataset(d, f"hopper-{kind}")["max_error"] < 1e-5
    # medium-replay: the replay buffer up to the medium cut, as it was
    replay, buffer = data["medium-replay"], load_buffer(collected / "sac", cut["medium_step"])
    assert len(replay) == cut["medium_step"]
    np.testing.assert_array_equal(replay.observations, buffer["observations"])
    np.testing.assert_array_equal(replay.infos["qpos"], buffer["qpos"])
    assert replay.timeouts[-1] or replay.terminals[-1]
    # medium and expert: 700 rows of the actor saved at the cut and at the end
    assert len(data["medium"]) == len(data["expert"]) == 700
    assert data["medium"].metadata["collector"]["policy"]["step"] == cut["medium_step"]
    assert data["expert"].metadata["collector"]["policy"]["step"] == 1200
    assert not np.array_equal(data["medium"].actions, data["expert"].actions)
    # medium-expert: the same two, one after the other
    both = data["medium-expert"]
    np.testing.assert_array_equal(both.observations, np.concatenate([data["medium"].observations,
                                                                     data["expert"].observations]))
    assert both.metadata["task"] == "hopper-medium-expert"
    # the same command again reuses the finished run and the drawn data: the same rows
    again = collected / "again.hdf5"
    assert main(["collect", "hopper-medium", "--out", str(again), "--steps", "700", "--seed", "3", "--sac-dir",
                 str(collected / "sac"), "--sac", *SMALL_SAC, "--no-progress"]) == 0
    np.testing.assert_array_equal(load_hdf5(again).actions, data["medium"].actions)


@pytest.mark.slow
def test_a_given_expert_return_cuts_medium_replay_where_the_runs_own_level_did(collected, tmp_path):
    from rtaug.collect.sac import read_curve

    cut = medium_cut(read_curve(collected / "sac"), 1 / 3)
    out = tmp_path / "given.hdf5"
    assert main(["collect", "hopper-medium-replay", "--out", str(out), "--seed", "3", "--sac-dir",
                 str(collected / "sac"), "--sac", *SMALL_SAC, f"expert_return={cut['expert_level']!r}",
                 "--no-progress"]) == 0
    given, own = load_hdf5(out), load_hdf5(collected / "medium-replay.hdf5")
    assert given.metadata["collector"]["cut"] == {**cut, "window": 0}
    assert given.metadata["collector"]["recipe"]["expert_return"] == cut["expert_level"]
    for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(given, key), getattr(own, key))
    # past every evaluation of the run: refused with the step and return it reached, nothing written
    assert main(["collect", "hopper-medium-replay", "--out", str(tmp_path / "none.hdf5"), "--seed", "3", "--sac-dir",
                 str(collected / "sac"), "--sac", *SMALL_SAC, "expert_return=1e9", "--no-progress"]) == 2
    assert not (tmp_path / "none.hdf5").exists()


@pytest.mark.slow  # draws 700 rows from the tiny SAC run's medium actor
def test_rows_drawn_elsewhere_leave_a_finished_sac_run_untouched(collected, tmp_path):
    """The experiment system's data stages read a finished (cached) SAC stage and write only
    into their own directory: `rows_dir`."""
    from rtaug.collect.locomotion import collect_locomotion

    def listing():
        return sorted((str(f.relative_to(collected / "sac")), f.stat().st_mtime_ns)
                      for f in (collected / "sac").rglob("*"))

    before = listing()
    data = collect_locomotion("hopper-medium", steps=700, seed=3, progress=False, sac_dir=collected / "sac",
                              log=lambda *_: None, rows_dir=tmp_path / "drawn", sac_steps=1200,
                              learning_starts=300, eval_every=300, eval_episodes=2, hidden=(16, 16), batch_size=16,
                              checkpoint_every=500)
    assert listing() == before
    assert [f.name for f in (tmp_path / "drawn").iterdir()] == [
        f"medium-actor{data.metadata['collector']['policy']['step']}-rows700-seed3.hdf5"]
    np.testing.assert_array_equal(data.actions, load_hdf5(collected / "medium.hdf5").actions)  # the same draw


@pytest.mark.slow  # reads the tiny SAC run
def test_report_of_sac_runs_alone(collected, tmp_path, capsys):
    """`rtaug report runs/sac`: the SAC runs' table, CSV and learning curves, no experiment needed."""
    import csv

    from rtaug.collect.sac import read_curve

    assert main(["report", str(collected), "--out", str(tmp_path / "r"), "--name", "sac-runs"]) == 0
    cut = medium_cut(read_curve(collected / "sac"), 1 / 3)
    rows = list(csv.DictReader((tmp_path / "r" / "sac-runs-sac.csv").open()))
    assert len(rows) == 1 and rows[0]["env_id"] == "Hopper-v5" and rows[0]["seed"] == "3"
    assert (int(rows[0]["steps"]), int(rows[0]["budget"]), rows[0]["finished"]) == (1200, 1200, "True")
    assert int(rows[0]["medium_step"]) == cut["medium_step"]
    assert float(rows[0]["final_return"]) == pytest.approx(cut["expert_return"])
    assert float(rows[0]["expert_level"]) == pytest.approx(cut["expert_level"])
    md = (tmp_path / "r" / "sac-runs.md").read_text()
    assert f"| Hopper-v5 | 3 | 1,200 / 1,200 | {cut['expert_return']:.1f}" in md and f"| {cut['expert_level']:.1f} |" in md
    assert (tmp_path / "r" / "sac-runs-sac.png").stat().st_size > 1000


@pytest.mark.slow  # draws from the tiny SAC run
def test_report_of_a_run_cut_at_a_given_expert_return(collected, tmp_path, capsys):
    """A run stopped at the cut (`--sac expert_return=`) is reported at that level, read from the data
    it drew, not at its own last five evaluations (a run stopped at the cut has no expert)."""
    import csv
    import shutil

    from rtaug.collect.sac import read_curve

    run = tmp_path / "sac"
    shutil.copytree(collected / "sac", run)
    shutil.rmtree(run / "data")
    curve = read_curve(run)
    best = max(curve, key=lambda r: r["return_mean"])
    given = 3 * float(best["return_mean"])  # the threshold is the best evaluation: the cut falls on it
    assert medium_cut(curve, 1 / 3)["expert_level"] != pytest.approx(given)  # not what the last five say
    assert main(["collect", "hopper-medium", "--out", str(tmp_path / "m.hdf5"), "--steps", "50", "--seed", "3",
                 "--sac-dir", str(run), "--sac", *SMALL_SAC, f"expert_return={given!r}", "--no-progress"]) == 0
    assert main(["report", str(run), "--out", str(tmp_path / "r"), "--name", "cut"]) == 0
    row, = csv.DictReader((tmp_path / "r" / "cut-sac.csv").open())
    assert (int(row["medium_step"]), float(row["expert_level"]), row["expert_given"]) == (best["step"], given, "True")
    assert f"| {given:.1f} (given) |" in (tmp_path / "r" / "cut.md").read_text()
    # data cut at two levels out of one run: which one the run's cut is cannot be told, so it is refused
    drawn, = (run / "data").glob("*.hdf5")
    other = load_hdf5(drawn)
    other.metadata["collector"]["recipe"]["expert_return"] = 2 * given
    save_hdf5(other, run / "data" / "medium-other.hdf5")
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(tmp_path / "r2"), "--name", "cut"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rtaug report: error: {run / 'data'}: files cut at different expert returns") and "\n" not in err
    assert not (tmp_path / "r2").exists()


@pytest.mark.slow  # trains a BC policy on the collected data and evaluates it
def test_policy_trained_on_collected_data_is_evaluated_in_the_simulator(collected, tmp_path, capsys):
    run = tmp_path / "bc"
    assert main(["train-policy", "--dataset", str(collected / "medium.hdf5"), "--algo", "bc", "--steps", "20",
                 "--chunk", "10", "--out", str(run), "--eval-every", "20", "--eval-episodes", "2",
                 "--no-progress"]) == 0  # the task comes from the file's metadata
    rows = (run / "seed_0" / "eval.csv").read_text().splitlines()
    assert rows[0].startswith("step,return_mean") and len(rows) == 2
    assert json.loads((run / "summary.json").read_text())["task"] == "hopper-medium"
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--episodes", "2", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "hopper-medium:" in said and "D4RL-normalized" in said
