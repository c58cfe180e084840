"""Every command checks its flags before it works (issue 13): a numeric flag out of its field's
range (`rtaug.ranges`) or a combination that cannot run is refused in one line,
`rtaug CMD: error: --flag VALUE: problem`, exit code 2, and the inputs survive byte for byte.
Nothing here trains a model."""

from pathlib import Path

import pytest

from rtaug.cli import build_parser
from rtaug.data.hdf5 import save_hdf5
from rtaug.requests import check_request

from conftest import continuous_walks, refused

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
     "generator.model.sequence.context_steps: must be at least 2 (a window holds at least one step of context "
     "and one generated step), got 0"),
    (["run", "c.yaml", "seeds=[0, 4294967296]"], f"seeds: {SEED_RANGE}, got [0, 4294967296]"),
])
def test_a_flag_out_of_range_is_refused_before_work(work, capsys, argv, message):
    refused(argv, message, capsys, keep=INPUTS)
    assert sorted(p.name for p in work.iterdir()) == ["c.yaml", "walks.hdf5"]  # no output, no temporary


@pytest.mark.parametrize("argv", [
    [*TRAIN_MODEL, "--seed", "4294967295", "--alpha-quantile", "1", "--dynamics-steps", "0", "--reward-steps", "0",
     "--context-steps", "2", "--gamma", "1"],
    [*TRAIN_POLICY, "--seeds", "0", "4294967295"],
    [*EVAL, "--seed", "0", "--seeds", "4294967295"],
    ["collect", "boxball", "--out", "c.hdf5", "--steps", "1"],
])
def test_the_ends_of_each_range_pass(work, argv):
    check_request(build_parser().parse_args(argv))  # refuses by raising
