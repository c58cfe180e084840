"""Every command checks its request before it works (issue 13): a numeric flag out of its
field's range (`rtaug.ranges`) or a combination that cannot run, a dataset too small to train
on, a model directory that is partial, hand-broken, of other spaces or too short a window for
the flags, are refused in one line, `rtaug CMD: error: <flag or file>: problem`, exit code 2,
and the inputs survive byte for byte. A model records the data it was trained on, and
generating from other data of its spaces is a one-line warning. Nothing here trains a model
beyond the session's tiny experiment (conftest.py)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rtaug.cli import build_parser, main
from rtaug.data.hdf5 import load_hdf5, save_hdf5
from rtaug.generate.io import FORMAT, load_generator
from rtaug.generate.model import RTConfig
from rtaug.generate.spec import Spec
from rtaug.requests import check_request

from conftest import continuous_walks, file_bytes, grid_walks, refused

SEED_RANGE = "must be in [0, 2^32) (JAX's generators use a seed's low 32 bits)"
INPUTS = ("walks.hdf5", "c.yaml")


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A directory with a small continuous dataset and an experiment config; relative paths in
    the tests resolve inside it."""
    monkeypatch.chdir(tmp_path)
    save_hdf5(continuous_walks(n=100), "walks.hdf5")
    Path("c.yaml").write_text("task: maze2d-umaze-sparse\n")
    return tmp_path


TRAIN_MODEL = ["train-model", "--dataset", "walks.hdf5", "--out", "m", "--no-progress"]
AUGMENT = ["augment", "--dataset", "walks.hdf5", "--model", ".", "--out", "a.hdf5", "--no-progress"]
TRAIN_POLICY = ["train-policy", "--dataset", "walks.hdf5", "--algo", "bc", "--out", "p", "--no-progress"]
EVAL = ["eval", "--policy", "random", "--task", "maze2d-umaze-sparse", "--no-progress"]


@pytest.mark.parametrize("argv, message", [
    (["collect", "boxball", "--out", "c.hdf5", "--steps", "0"], "--steps 0: must be at least 1"),
    (["collect", "maze2d-umaze-sparse", "--out", "c.hdf5", "--steps", "-5"], "--steps -5: must be at least 1"),
    (["collect", "boxball", "--out", "c.hdf5", "--seed", "4294967296"], f"--seed 4294967296: {SEED_RANGE}"),
    (["collect", "boxball", "--out", "c.hdf5", "--seed", "-1"], f"--seed -1: {SEED_RANGE}"),
    (["quickstart", "--out", "q", "--trajectories", "0"], "--trajectories 0: must be at least 1"),
    (["quickstart", "--out", "q", "--seed", "-1"], f"--seed -1: {SEED_RANGE}"),
    (["reference", "maze2d-umaze-sparse", "--max-episodes", "0"], "--max-episodes 0: must be at least 1"),
    ([*TRAIN_MODEL, "--steps", "0"], "--steps 0: must be at least 1"),
    ([*TRAIN_MODEL, "--context-steps", "0"],
     "--context-steps 0: must be at least 2 (a window holds at least one step of context and one generated step)"),
    ([*TRAIN_MODEL, "--context-steps", "1"],
     "--context-steps 1: must be at least 2 (a window holds at least one step of context and one generated step)"),
    ([*TRAIN_MODEL, "--alpha-quantile", "2"], "--alpha-quantile 2: must be in (0, 1] (1 = the maximum)"),
    ([*TRAIN_MODEL, "--alpha-quantile", "0"], "--alpha-quantile 0: must be in (0, 1] (1 = the maximum)"),
    ([*TRAIN_MODEL, "--batch-size", "0"], "--batch-size 0: must be at least 1"),
    ([*TRAIN_MODEL, "--vae-steps", "0"], "--vae-steps 0: must be at least 1"),
    ([*TRAIN_MODEL, "--layers", "0"], "--layers 0: must be at least 1"),
    ([*TRAIN_MODEL, "--lr", "0"], "--lr 0: must be greater than 0"),
    ([*TRAIN_MODEL, "--gamma", "1.5"], "--gamma 1.5: must be in [0, 1]"),
    ([*TRAIN_MODEL, "--dynamics-members", "0"], "--dynamics-members 0: must be at least 1"),
    ([*TRAIN_MODEL, "--dynamics-steps", "-1"], "--dynamics-steps -1: must be at least 0"),
    ([*TRAIN_MODEL, "--reward-steps", "-1"], "--reward-steps -1: must be at least 0"),
    ([*TRAIN_MODEL, "--seed", "4294967296"], f"--seed 4294967296: {SEED_RANGE}"),
    ([*TRAIN_MODEL, "--d-model", "30", "--heads", "4"], "--d-model 30: must be a multiple of --heads 4"),
    ([*AUGMENT, "--num-trajectories", "0"], "--num-trajectories 0: must be at least 1"),
    ([*AUGMENT, "--max-length", "0"], "--max-length 0: must be at least 1"),
    ([*AUGMENT, "--fixed-length", "0"], "--fixed-length 0: must be at least 1"),
    ([*AUGMENT, "--context", "0"], "--context 0: must be at least 1"),
    ([*AUGMENT, "--candidates", "0"], "--candidates 0: must be at least 1"),
    ([*AUGMENT, "--alpha-quantile", "1.5"], "--alpha-quantile 1.5: must be in (0, 1] (1 = the maximum)"),
    ([*AUGMENT, "--alpha-trajectories", "0"], "--alpha-trajectories 0: must be at least 1"),
    ([*AUGMENT, "--kappa", "-1"], "--kappa -1: must be at least 0"),
    ([*AUGMENT, "--beta", "-0.5"], "--beta -0.5: must be at least 0"),
    ([*AUGMENT, "--seed", "-3"], f"--seed -3: {SEED_RANGE}"),
    ([*TRAIN_POLICY, "--steps", "0"], "--steps 0: must be at least 1"),
    ([*TRAIN_POLICY, "--seeds", "0", "4294967296"], f"--seeds 4294967296: {SEED_RANGE}"),
    ([*TRAIN_POLICY, "--eval-every", "0"], "--eval-every 0: must be at least 1"),
    ([*TRAIN_POLICY, "--eval-every", "5", "--eval-episodes", "0"], "--eval-episodes 0: must be at least 1"),
    ([*TRAIN_POLICY, "--chunk", "0"], "--chunk 0: must be at least 1"),
    ([*EVAL, "--episodes", "0"], "--episodes 0: must be at least 1"),
    ([*EVAL, "--seeds", "-1"], f"--seeds -1: {SEED_RANGE}"),
    ([*EVAL, "--seed", "4294967296"], f"--seed 4294967296: {SEED_RANGE}"),
    (["sweep", "c.yaml", "--workers", "0"], "--workers 0: must be at least 1"),
    (["sweep", "c.yaml", "--retries", "-1"], "--retries -1: must be at least 0"),
    # rtaug run: the typed config's validation, by the same ranges, names the key
    (["run", "c.yaml", "learner.steps=0"], "learner.steps: must be at least 1, got 0"),
    (["run", "c.yaml", "generator.model.sequence.context_steps=0"],
     ("generator.model.sequence.context_steps: must be at least 2 (a window holds at least one step of context "
      "and one generated step), got 0")),
    (["run", "c.yaml", "seeds=[0, 4294967296]"], f"seeds: {SEED_RANGE}, got [0, 4294967296]"),
])
def test_a_flag_out_of_range_is_refused_before_work(work, capsys, argv, message):
    refused(argv, message, capsys, keep=INPUTS)
    assert sorted(p.name for p in work.iterdir()) == ["c.yaml", "walks.hdf5"]  # no output, no temporary


def test_run_on_a_sweep_file_without_a_cell_is_refused_before_work(work, capsys):
    Path("s.yaml").write_text("grid:\n  task: [maze2d-umaze-sparse, maze2d-umaze-dense]\n  generator.kind: [none, rt]\n")
    refused(["run", "s.yaml", "task=maze2d-umaze-dense", "--out", "o", "--cache", "cache"],
            "s.yaml: a sweep file (2 cells over generator.kind): run it with `rtaug sweep`, or one cell of it by "
            "choosing each axis, e.g. `generator.kind=none`", capsys, keep=("s.yaml",))
    assert sorted(p.name for p in work.iterdir()) == ["c.yaml", "s.yaml", "walks.hdf5"]


@pytest.mark.parametrize("argv", [
    [*TRAIN_MODEL, "--seed", "4294967295", "--alpha-quantile", "1", "--dynamics-steps", "0", "--reward-steps", "0",
     "--context-steps", "2", "--gamma", "1"],
    [*TRAIN_POLICY, "--seeds", "0", "4294967295"],
    [*EVAL, "--seed", "0", "--seeds", "4294967295"],
    ["collect", "boxball", "--out", "c.hdf5", "--steps", "1"],
])
def test_the_ends_of_each_range_pass(work, argv):
    check_request(build_parser().parse_args(argv))  # refuses by raising


# ------------------------------------------------------------------ a dataset too small to train on


@pytest.mark.parametrize("rows, row_word", [(1, "row"), (2, "rows")])
def test_a_dataset_smaller_than_one_window_is_refused(work, capsys, rows, row_word):
    save_hdf5(continuous_walks(n=100).subset(np.arange(rows)), "tiny.hdf5")
    refused(["train-model", "--dataset", "tiny.hdf5", "--out", "m", "--context-steps", "8"],
            f"--dataset tiny.hdf5: {rows} {row_word}, too few to train on: needs at least --context-steps (8), "
            "one window of the sequence model", capsys, keep=("tiny.hdf5",))
    assert not Path("m").exists()


# ------------------------------------------------------------------ augment's model, checked before generation


@pytest.fixture
def model(work):
    """A model directory of the walks' spaces as far as augment's check reads one: the spec
    fitted on the walks, a sequence model of an 8-step window, and stand-ins for the weights."""
    d = Path("model")
    d.mkdir()
    spec = Spec.fit(load_hdf5("walks.hdf5"))
    (d / "spec.json").write_text(json.dumps({"format": FORMAT, **spec.to_dict()}))
    (d / "rt.json").write_text(json.dumps({"config": RTConfig(context_steps=8).to_dict(), "history": []}))
    for name in ("rt.msgpack", "vae.json", "vae.msgpack", "dynamics.json", "dynamics.msgpack"):
        (d / name).write_text("stand-in")
    save_hdf5(grid_walks(n_episodes=5), "grid.hdf5")
    wide = continuous_walks(n=100)
    wide.actions = np.zeros((100, 3), np.float32)  # 3-dimensional actions, the model's have 2
    save_hdf5(wide, "wide.hdf5")
    return d


def _edit_json(path, change):
    d = json.loads(Path(path).read_text())
    change(d)
    Path(path).write_text(json.dumps(d))


AUGMENT_MODEL = ["augment", "--dataset", "walks.hdf5", "--model", "model", "--out", "a.hdf5", "--no-progress"]
MODEL_FILES = "spec.json, rt.json, rt.msgpack, vae.json, vae.msgpack"


@pytest.mark.parametrize("change, argv, message", [
    (None, [*AUGMENT_MODEL, "--context", "8"],
     "--context 8: must be less than the model's window, 8 steps (--model model), to leave a step to generate"),
    (None, [*AUGMENT_MODEL[:2], "grid.hdf5", *AUGMENT_MODEL[3:]],
     ("grid.hdf5: key 'observations': discrete states on a 10x10 grid, but the model in model was trained on "
      "4-dimensional states")),
    (None, [*AUGMENT_MODEL[:2], "wide.hdf5", *AUGMENT_MODEL[3:]],
     "wide.hdf5: key 'actions': dimension 3 does not match the model in model (trained on 2)"),
    (lambda: Path("model/rt.msgpack").unlink(), AUGMENT_MODEL,
     f"model/rt.msgpack: missing (a model directory of `rtaug train-model` holds {MODEL_FILES})"),
    (lambda: Path("model/spec.json").write_text('{"format": 3, "obs_dim"'), AUGMENT_MODEL,
     "model/spec.json: not valid JSON (Expecting ':' delimiter: line 1 column 24 (char 23))"),
    (lambda: _edit_json("model/spec.json", lambda d: d.pop("obs_std")), AUGMENT_MODEL,
     "model/spec.json: not a model spec (TypeError: "),
    (lambda: _edit_json("model/spec.json", lambda d: d.update(format=2)), AUGMENT_MODEL,
     ("model/spec.json: a model of format 2, written by an older rtaug whose heads differ (format 3 now): "
      "retrain it with `rtaug train-model`")),
    (lambda: _edit_json("model/rt.json", lambda d: d["config"].update(n_layers=2)), AUGMENT_MODEL,
     "model/rt.json: not a sequence model config (TypeError: "),
    (lambda: _edit_json("model/rt.json", lambda d: d.pop("config")), AUGMENT_MODEL,
     "model/rt.json: not a sequence model config (KeyError: 'config')"),
    (lambda: Path("model/dynamics.json").unlink(), AUGMENT_MODEL,
     ("--dist forward: model has no dynamics ensemble (dynamics.json); retrain it with `rtaug train-model`, "
      "or pass --dist vae")),
    (None, [*AUGMENT_MODEL, "--reward", "model"],
     ("--reward model: model has no reward model (reward.json); retrain it with `rtaug train-model` (without "
      "--reward-steps 0), or pass --reward mean")),
    (None, [*AUGMENT_MODEL, "--generator", "backward-mlp"],
     ("--generator backward-mlp: model has no backward MLP (backward_mlp.json); train one with "
      "`rtaug train-model --backward-mlp`")),
])
def test_augment_refuses_a_model_it_cannot_use_before_generating(model, capsys, change, argv, message):
    if change is not None:
        change()
    # a TypeError's own words differ between Python versions: those messages are checked up to them
    refused(argv, message, capsys, keep=("walks.hdf5", "grid.hdf5", "wide.hdf5", "model"),
            whole=not message.endswith("(TypeError: "))
    assert not Path("a.hdf5").exists()


def test_a_model_that_fits_passes_the_check(model):
    check_request(build_parser().parse_args([*AUGMENT_MODEL, "--context", "7", "--max-length", "50"]))


# ------------------------------------------------------------------ what a model records of its data


def _tiny_model(tiny_experiment, d: Path):
    stages = {s["stage"]: Path(s["path"]) for s in tiny_experiment[1]["stages"]}
    shutil.copy(stages["data"] / "data.hdf5", d / "umaze.hdf5")
    shutil.copytree(stages["model"] / "model", d / "model")
    return d / "umaze.hdf5", d / "model"


class _Stop(Exception):
    pass


def _stop_at_generation(monkeypatch):
    from rtaug.experiments import stages

    def generate(*args, **kwargs):
        raise _Stop("generation reached")

    monkeypatch.setattr(stages, "generate", generate)


def test_a_model_records_its_data_and_warns_when_used_on_other_data(tiny_experiment, tmp_path, capsys,
                                                                    monkeypatch):
    data_path, model_dir = _tiny_model(tiny_experiment, tmp_path)
    data = load_hdf5(data_path)
    recorded = json.loads((model_dir / "spec.json").read_text())["dataset"]
    assert recorded["fingerprint"] == data.fingerprint() and recorded["rows"] == len(data)
    assert recorded["task"] == "maze2d-umaze-sparse"

    _stop_at_generation(monkeypatch)
    other = tmp_path / "other.hdf5"  # the same spaces, other transitions
    save_hdf5(data.subset(np.arange(len(data) // 2)), other)
    before = file_bytes(other, model_dir)
    argv = ["augment", "--model", str(model_dir), "--out", str(tmp_path / "a.hdf5"), "--no-progress"]
    assert main([*argv, "--dataset", str(other)]) == 1  # the stand-in generation stops it
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"warning: {model_dir} was trained on other data ({recorded['source']}: {len(data)} rows of "
                      f"maze2d-umaze-sparse), not {other}: its normalisation and reward bins are those data's")
    assert err[1].startswith("rtaug augment: error: _Stop: generation reached")
    assert file_bytes(other, model_dir) == before

    assert main([*argv, "--dataset", str(data_path)]) == 1  # its own data: no warning
    assert capsys.readouterr().err.startswith("rtaug augment: error: _Stop")


def test_a_model_directory_without_alpha_names_its_file(tiny_experiment, tmp_path):
    _, model_dir = _tiny_model(tiny_experiment, tmp_path)
    _edit_json(model_dir / "vae.json", lambda d: d.pop("alpha"))
    with pytest.raises(ValueError, match=f"^{model_dir / 'vae.json'}: key 'alpha': missing or not a number"):
        load_generator(model_dir)


# ------------------------------------------------------------------ a damaged checkpoint


def test_resuming_from_a_truncated_checkpoint_names_it(work, capsys):
    from flax import serialization

    Path("run").mkdir()
    whole = serialization.msgpack_serialize({"meta": "{}", "step": 5, "state": {"w": np.zeros(64, np.float32)},
                                             "keys": np.zeros((1, 2), np.uint32), "obs_mean": np.zeros(4),
                                             "obs_std": np.ones(4)})
    Path("run/checkpoint.msgpack").write_bytes(whole[: len(whole) // 2])  # a copy cut short
    refused(["train-policy", "--dataset", "walks.hdf5", "--algo", "bc", "--out", "run", "--resume", "--steps", "10",
             "--no-progress"],
            "run/checkpoint.msgpack: not a readable rtaug checkpoint (", capsys, keep=("walks.hdf5", "run"),
            whole=False)


# ------------------------------------------------------------------ a file's recorded task against --task


@pytest.fixture
def recorded(work):
    """Datasets recording their task as rtaug's collectors do (a maze's `task`, BoxBall's `env`),
    one recording a name rtaug does not know, and a run trained for the umaze."""
    for name, meta in (("umaze.hdf5", {"task": "maze2d-umaze-sparse", "env": "maze2d-umaze-sparse"}),
                       ("foreign.hdf5", {"task": "maze2d-umaze-v1"})):
        walks = continuous_walks(n=100)
        walks.metadata = meta
        save_hdf5(walks, name)
    grid = grid_walks(n_episodes=5)
    grid.metadata = {**grid.metadata, "env": "boxball"}
    save_hdf5(grid, "boxball.hdf5")
    Path("run").mkdir()
    Path("run/checkpoint.msgpack").write_bytes(b"a stand-in: nothing here reads it")
    Path("run/summary.json").write_text(json.dumps({"algo": "bc", "task": "maze2d-umaze-sparse"}))
    return work


TRAIN_BC = ["train-policy", "--algo", "bc", "--out", "p", "--no-progress", "--dataset"]


@pytest.mark.parametrize("argv, message", [
    (["audit", "umaze.hdf5", "--task", "maze2d-large-sparse"],
     "--task maze2d-large-sparse: umaze.hdf5 records task maze2d-umaze-sparse"),
    (["audit", "umaze.hdf5", "--task", "boxball"], "--task boxball: umaze.hdf5 records task maze2d-umaze-sparse"),
    (["audit", "umaze.hdf5", "--task", "maze2d-umaze-dense"],
     ("--task maze2d-umaze-dense: umaze.hdf5 records task maze2d-umaze-sparse (the same maze, but its rewards are "
      "the sparse ones)")),
    (["audit", "boxball.hdf5", "--task", "maze2d-umaze-sparse"],
     "--task maze2d-umaze-sparse: boxball.hdf5 records task boxball"),
    (["audit", "walks.hdf5", "--task", "boxball"],  # records none: its spaces are checked
     "walks.hdf5: key 'observations': task 'boxball' has 2-dimensional observations, the dataset has shape (100, 4)"),
    ([*TRAIN_BC, "umaze.hdf5", "--task", "maze2d-large-sparse"],
     "--task maze2d-large-sparse: umaze.hdf5 records task maze2d-umaze-sparse"),
    ([*TRAIN_BC, "umaze.hdf5", "--task", "maze2d-umaze-dense"],
     ("--task maze2d-umaze-dense: umaze.hdf5 records task maze2d-umaze-sparse (the same maze, but its rewards are "
      "the sparse ones)")),
    (["eval", "--run", "run", "--task", "maze2d-large-sparse"],
     "--task maze2d-large-sparse: the run run was trained for maze2d-umaze-sparse"),
])
def test_a_task_other_than_the_recorded_one_is_refused(recorded, capsys, argv, message):
    refused(argv, message, capsys, keep=("umaze.hdf5", "boxball.hdf5", "walks.hdf5", "run"))
    assert not Path("p").exists()


@pytest.mark.parametrize("argv", [
    ["audit", "umaze.hdf5", "--task", "maze2d-umaze-sparse"],
    ["audit", "walks.hdf5", "--task", "maze2d-large-sparse"],  # records no task: as before
    ["audit", "foreign.hdf5", "--task", "maze2d-large-sparse"],  # a name rtaug does not know: not compared
    ["audit", "boxball.hdf5", "--task", "boxball"],
    [*TRAIN_BC, "umaze.hdf5"],
    ["eval", "--run", "run", "--task", "maze2d-umaze-dense"],  # the same maze, returns in its dense reward
])
def test_the_recorded_task_or_none_passes(recorded, argv):
    check_request(build_parser().parse_args(argv))


def test_a_run_that_records_no_task_is_not_compared(recorded):
    Path("run/summary.json").unlink()  # killed before its summary
    check_request(build_parser().parse_args(["eval", "--run", "run", "--task", "maze2d-large-sparse"]))


def test_reference_is_one_call_into_experiments(work, capsys, monkeypatch):
    """`rtaug reference` parses its flags into a ReferenceRequest and prints (and with --json
    writes) what the task's measurement returns; a locomotion task without --sac-dir is refused
    before any work."""
    import rtaug.evaluate
    from rtaug.experiments.tasks import ReferenceRequest, measure_task_references

    calls, measured = [], {"sparse": {"random": 1.5, "expert": 90.0}, "converged": True}

    def fake(task, seed=0, max_episodes=10_000):
        calls.append((task, seed, max_episodes))
        return measured

    monkeypatch.setattr(rtaug.evaluate, "measure_references", fake)
    assert main(["reference", "maze2d-umaze-sparse", "--seed", "3", "--max-episodes", "200", "--json", "r.json"]) == 0
    assert calls == [("maze2d-umaze-sparse", 3, 200)]
    assert json.loads(capsys.readouterr().out) == json.loads(Path("r.json").read_text()) == measured
    refused(["reference", "hopper-medium"], "hopper-medium: --sac-dir is required: the SAC run whose final actor is "
            "the expert", capsys)
    assert len(calls) == 1  # the refusal measured nothing
    lines = []  # the same call from Python
    assert measure_task_references(ReferenceRequest("maze2d-umaze-dense", max_episodes=100), printer=lines.append) == measured
    assert calls[-1] == ("maze2d-umaze-dense", 0, 100) and json.loads(lines[0]) == measured
