"""`rtaug eval` (train-policy runs and the reference policies), the across-seed statistics behind
it (`bootstrap_ci`, `summarize_seeds`), and its errors (exit code 2, no stack trace)."""

import importlib.util
import json

import numpy as np
import pytest

from rtaug.cli import build_parser, main
from rtaug.data import Dataset
from rtaug.data.hdf5 import save_hdf5
from rtaug.evaluate import bootstrap_ci, iqm, summarize_seeds

needs_sim = pytest.mark.skipif(importlib.util.find_spec("gymnasium_robotics") is None,
                               reason="the maze simulator needs gymnasium-robotics")

TASK = "maze2d-umaze-sparse"
DENSE = "maze2d-umaze-dense"  # dense returns are never all zero: equalities between scores mean something


# ------------------------------------------------------------------------------------- statistics


def test_constant_scores_give_an_interval_at_the_value():
    assert bootstrap_ci([0.5] * 5) == (0.5, 0.5)
    s = summarize_seeds([0.5] * 5)
    assert s["mean"] == s["iqm"] == 0.5 and s["std"] == 0.0 and s["iqm_ci95"] == [0.5, 0.5]


def test_iqm_of_a_small_array_and_its_interval():
    x = [8, 1, 7, 2, 6, 3, 5, 4]
    assert iqm(x) == 4.5  # middle half of 1..8: 3, 4, 5, 6
    lo, hi = bootstrap_ci(x)
    # The IQM of any resample lies within the data's range; the interval is strictly inside it
    # (a resample of only 1s or only 8s has probability 2·8⁻⁸) and contains the IQM.
    assert 1 < lo <= 4.5 <= hi < 8


def test_two_values_mean_interval_by_hand():
    # Resamples of [0, 1]: means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the 2.5% and
    # 97.5% quantiles are 0 and 1.
    assert bootstrap_ci([0.0, 1.0], stat=np.mean) == (0.0, 1.0)
    # The 0.5 atom spans the 25%-75% quantiles: a 40% interval (30% and 70%) lies inside it.
    assert bootstrap_ci([0.0, 1.0], stat=np.mean, confidence=0.4) == (0.5, 0.5)


def test_bootstrap_is_deterministic_given_its_seed():
    x = np.random.default_rng(3).normal(size=9)
    assert bootstrap_ci(x, seed=4) == bootstrap_ci(x, seed=4)
    assert bootstrap_ci(x, seed=4) != bootstrap_ci(x, seed=5)
    assert summarize_seeds(x, seed=4) == summarize_seeds(list(x), seed=4)


def test_fast_iqm_path_equals_iqm_on_each_resample():
    x = np.random.default_rng(0).normal(size=7)
    assert bootstrap_ci(x, stat=iqm, n_boot=500) == pytest.approx(
        bootstrap_ci(x, stat=lambda v: iqm(v), n_boot=500), abs=1e-12)


def test_summary_over_seeds():
    s = summarize_seeds({0: 10.0, 1: 40.0, 2: 20.0, 3: 30.0})
    assert s["n_seeds"] == 4 and s["mean"] == 25.0 and s["iqm"] == 25.0  # middle two: 20, 30
    assert s["std"] == pytest.approx(np.sqrt(500 / 3))  # sample std: Σ(x − 25)² = 500, over n − 1
    lo, hi = s["iqm_ci95"]
    assert 10.0 <= lo <= 25.0 <= hi <= 40.0 and lo < hi
    assert "few values" in s["note"]


def test_one_seed_has_no_interval_and_says_so():
    s = summarize_seeds([7.0])
    assert s["mean"] == s["iqm"] == 7.0
    assert s["std"] is None and s["iqm_ci95"] is None and "one seed" in s["note"]
    with pytest.raises(ValueError, match="at least 2 values"):
        bootstrap_ci([7.0])


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="finite"):
        summarize_seeds([1.0, float("nan")])
    with pytest.raises(ValueError, match="no per-seed scores"):
        summarize_seeds([])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.5)


# ------------------------------------------------------------------------------------------ runs


def _fitting_dataset(path, obs_dim=4, act_dim=2, n=200, metadata=None):
    rng = np.random.default_rng(0)
    obs = np.cumsum(rng.normal(0, 0.05, (n + 1, obs_dim)), axis=0).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[49::50] = True
    save_hdf5(Dataset(observations=obs[:-1], next_observations=obs[1:], rewards=rng.random(n).astype(np.float32),
                      actions=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32), terminals=np.zeros(n, bool),
                      timeouts=timeouts, metadata=metadata or {}), path)


def _train(dataset, out, *extra):
    assert main(["train-policy", "--dataset", str(dataset), "--algo", "bc", "--out", str(out),
                 "--chunk", "25", "--no-progress", *extra]) == 0


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
    """A tiny BC run on collected umaze data, 2 seeds, evaluated on 3 episodes at its end."""
    from rtaug.collect.waypoint import collect_maze2d

    root = tmp_path_factory.mktemp("dense")
    save_hdf5(collect_maze2d(DENSE, steps=600, seed=0, progress=False), root / "umaze.hdf5")
    _train(root / "umaze.hdf5", root / "run", "--steps", "50", "--seeds", "0", "1", "--task", DENSE,
           "--eval-every", "50", "--eval-episodes", "3")
    return root / "run"


@pytest.fixture(scope="module")
def taskless_runs(tmp_path_factory):
    """Tiny runs without a task: one of maze sizes, one with 6-dim observations, one with 3-dim actions."""
    root = tmp_path_factory.mktemp("taskless")
    runs = {}
    for name, obs_dim, act_dim in (("fits", 4, 2), ("wide_obs", 6, 2), ("wide_act", 4, 3)):
        _fitting_dataset(root / f"{name}.hdf5", obs_dim, act_dim)
        _train(root / f"{name}.hdf5", root / name, "--steps", "5")
        runs[name] = root / name
    return runs


@needs_sim
@pytest.mark.slow  # trains a run (module fixture)
def test_eval_of_a_run_gives_per_seed_scores_and_an_interval(dense_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    # No --task: the run recorded the one it was trained with.
    assert main(["eval", "--run", str(dense_run), "--episodes", "3", "--json", str(out), "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "across 2 seeds" in said and "95% bootstrap CI [" in said
    report = json.loads(out.read_text())
    assert report["task"] == DENSE and report["episodes"] == 3
    assert report["policy"]["algo"] == "bc" and report["policy"]["step"] == 50
    assert [r["seed"] for r in report["per_seed"]] == [0, 1]
    from rtaug.envs.registry import get_task

    task = get_task(DENSE)
    for row in report["per_seed"]:
        assert len(row["returns"]) == 3 and row["return_mean"] == pytest.approx(np.mean(row["returns"]))
        assert row["normalized_mean"] == pytest.approx(task.normalize(row["return_mean"]))
        assert row["normalized_d4rl_mean"] == pytest.approx(task.normalize_d4rl(row["return_mean"]))
        # Rebuilt from the checkpoint, each seed's policy is the trained one: same starts, same
        # episodes, same scores as the training loop's own last evaluation.
        last = (dense_run / f"seed_{row['seed']}" / "eval.csv").read_text().splitlines()
        header, values = last[0].split(","), last[-1].split(",")
        assert float(values[header.index("return_mean")]) == pytest.approx(row["return_mean"], rel=1e-6)
    s = report["summary"]["normalized"]
    means = [r["normalized_mean"] for r in report["per_seed"]]
    assert s["n_seeds"] == 2 and s["mean"] == pytest.approx(np.mean(means))
    assert s["std"] == pytest.approx(np.std(means, ddof=1))
    lo, hi = s["iqm_ci95"]
    assert lo <= s["iqm"] <= hi and lo == pytest.approx(min(means)) and hi == pytest.approx(max(means))


@needs_sim
@pytest.mark.slow  # trains a run (module fixture)
def test_eval_of_one_seed_says_there_is_no_interval(dense_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--run", str(dense_run), "--seeds", "1", "--episodes", "2", "--json", str(out),
                 "--no-progress"]) == 0
    assert "one seed" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert [r["seed"] for r in report["per_seed"]] == [1]
    assert report["summary"]["normalized"]["iqm_ci95"] is None
    assert "one seed" in report["summary"]["normalized"]["note"]


@needs_sim
def test_controller_scores_far_above_random(tmp_path):
    scores = {}
    for policy in ("controller", "random"):
        out = tmp_path / f"{policy}.json"
        assert main(["eval", "--policy", policy, "--task", TASK, "--episodes", "5", "--json", str(out),
                     "--no-progress"]) == 0
        scores[policy] = json.loads(out.read_text())["summary"]["normalized"]["mean"]
    assert scores["controller"] > scores["random"] + 50
    assert scores["controller"] > 50 and scores["random"] < 25


@needs_sim
@pytest.mark.slow  # trains a run (module fixture)
def test_run_of_another_size_is_a_clear_error(taskless_runs, capsys):
    for name, what in (("wide_obs", "6-dimensional observations"), ("wide_act", "3-dimensional actions")):
        assert main(["eval", "--run", str(taskless_runs[name]), "--task", TASK, "--episodes", "1",
                     "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rtaug eval: error:") and str(taskless_runs[name]) in err
        assert what in err and TASK in err, err


@pytest.mark.slow  # trains a run (module fixture)
def test_unknown_task_is_a_clear_error(taskless_runs, capsys):
    for argv in (["--policy", "random"], ["--run", str(taskless_runs["fits"])]):
        assert main(["eval", *argv, "--task", "maze2d-tiny-sparse"]) == 2
        err = capsys.readouterr().err
        assert "unknown task 'maze2d-tiny-sparse'" in err and TASK in err


@pytest.mark.slow  # trains a run (module fixture)
def test_bad_runs_and_seeds_are_clear_errors(taskless_runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    cases = [
        (["--run", str(tmp_path / "empty"), "--task", TASK], "no checkpoint.msgpack"),
        (["--run", str(tmp_path / "missing"), "--task", TASK], "no such run directory"),
        (["--run", str(taskless_runs["fits"])], "pass --task"),  # trained without a task
        (["--run", str(taskless_runs["fits"]), "--task", TASK, "--seeds", "3"], "seeds [3] are not in this run"),
        (["--policy", "controller"], "--task is required"),
        (["--policy", "random", "--task", TASK, "--episodes", "0"], "--episodes"),
    ]
    for argv, message in cases:
        assert main(["eval", *argv, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rtaug eval: error:") and message in err, err


@pytest.mark.slow  # trains a run (module fixture)
def test_damaged_checkpoint_is_a_clear_error(taskless_runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(taskless_runs["fits"], run)
    (run / "checkpoint.msgpack").write_bytes(b"\x00not msgpack")
    assert main(["eval", "--run", str(run), "--task", TASK]) == 2
    assert "checkpoint.msgpack: not a readable rtaug checkpoint" in capsys.readouterr().err


def test_help_explains_the_numbers(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["eval", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for word in ("--run", "--policy", "--policy-fn", "MODULE:FUNCTION", "--task", "--episodes", "--seeds", "--json",
                 "IQM", "bootstrap", "100"):
        assert word in text


# -------------------------------------------------------------------------------- --policy-fn

POLICY_MODULE = '''
import numpy as np
from rtaug.evaluate import ControllerPolicy

controller = ControllerPolicy("maze2d-umaze-dense", seed=0)  # has reset(batch_size): it is called
GOAL = np.array([1.0, 1.0])


def batch(obs):  # (B, 4) -> (B, 2)
    return np.clip(GOAL - obs[:, :2] - 0.5 * obs[:, 2:], -1, 1)


def one(o):  # (4,) -> (2,): detected, called once per observation
    return np.clip(GOAL - o[:2] - 0.5 * o[2:], -1, 1)


class Box:
    act = staticmethod(batch)


NUMBER = 3
'''


@pytest.fixture
def policy_module(tmp_path, monkeypatch):
    """`rtaug_test_policies.py` in the current directory (where --policy-fn looks first)."""
    import sys

    (tmp_path / "rtaug_test_policies.py").write_text(POLICY_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield "rtaug_test_policies"
    sys.modules.pop("rtaug_test_policies", None)


def _eval_json(tmp_path, name, *argv):
    out = tmp_path / f"{name}.json"
    assert main(["eval", *argv, "--task", DENSE, "--episodes", "3", "--json", str(out), "--no-progress"]) == 0
    return json.loads(out.read_text())


@needs_sim
def test_policy_fn_is_evaluated_like_any_policy(policy_module, tmp_path, capsys):
    # The controller as a function: the same episodes, the same report as --policy controller.
    ref = _eval_json(tmp_path, "ref", "--policy", "controller")
    got = _eval_json(tmp_path, "fn", "--policy-fn", f"{policy_module}:controller")
    assert got["policy"] == {"kind": "function", "function": f"{policy_module}:controller", "called_with": "batch"}
    assert got["per_seed"][0]["returns"] == ref["per_seed"][0]["returns"]
    assert got["summary"] == ref["summary"] and got["references"] == ref["references"]
    # A function of one observation is detected, and scores what its batch twin scores.
    batch = _eval_json(tmp_path, "batch", "--policy-fn", f"{policy_module}:batch")
    one = _eval_json(tmp_path, "one", "--policy-fn", f"{policy_module}:one")
    dotted = _eval_json(tmp_path, "dotted", "--policy-fn", f"{policy_module}:Box.act")
    assert (batch["policy"]["called_with"], one["policy"]["called_with"]) == ("batch", "observation")
    assert one["per_seed"][0]["returns"] == pytest.approx(batch["per_seed"][0]["returns"], rel=1e-6)
    assert dotted["per_seed"][0]["returns"] == batch["per_seed"][0]["returns"]
    assert "was called with one observation at a time" in capsys.readouterr().out


def test_policy_fn_errors_are_one_line(policy_module, tmp_path, capsys):
    cases = [
        (["--policy-fn", policy_module], "expected MODULE:FUNCTION"),
        (["--policy-fn", "no_such_module_here:act"], "no module named 'no_such_module_here'"),
        (["--policy-fn", f"{policy_module}:absent"], "rtaug_test_policies.py has no 'absent'"),
        (["--policy-fn", f"{policy_module}:NUMBER"], "NUMBER is not callable (int)"),
        (["--policy-fn", f"{policy_module}:batch", "--seeds", "1"], "--seeds: a --policy-fn function has no seeds"),
    ]
    for argv, message in cases:
        assert main(["eval", *argv, "--task", TASK, "--episodes", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rtaug eval: error: ") and message in err and err.count("\n") == 1, err
    assert main(["eval", "--policy-fn", f"{policy_module}:batch", "--no-progress"]) == 2
    assert "--task is required with --policy-fn" in capsys.readouterr().err
