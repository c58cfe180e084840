"""RT on Maze2D end to end through the command line: augment → audit, on collected data and a model
trained on it (the session's tiny experiment).

Tiny sizes and fixed seeds: the generated transitions are not meant to be good here, only to
arrive in the audit intact, counted and split from the real ones; the real ones must still
audit at the simulator's precision. A synthetic check below shows the continuous heads can
learn what joins a transition's parts (benchmarks/reliability.py measures it at size).
"""

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

pytestmark = pytest.mark.slow  # trains models: outside the fast subset (-m "not slow")

from conftest import TINY_EXPERIMENT  # noqa: E402
from rtaug.cli import main  # noqa: E402
from rtaug.data import Dataset, load_hdf5  # noqa: E402
from rtaug.envs.maze_audit import audit_maze_file  # noqa: E402
from rtaug.experiments.stages import augment_file  # noqa: E402
from rtaug.generate.baselines import BackwardMLPConfig, train_backward_mlp  # noqa: E402
from rtaug.generate.generation import GenerationConfig, generate  # noqa: E402
from rtaug.generate.io import load_generator, save_generator  # noqa: E402
from rtaug.generate.model import RTConfig  # noqa: E402
from rtaug.generate.spec import Spec  # noqa: E402
from rtaug.generate.train import TrainedVAE, VAEConfig, train_sequence_model  # noqa: E402
from rtaug.nets.vae import VAE  # noqa: E402

TASK = "maze2d-umaze-sparse"
ROWS, TRAJ, LENGTH = TINY_EXPERIMENT["data"]["steps"], 16, 4


def _run(*argv):
    assert main([str(a) for a in argv]) == 0


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_experiment):
    # the session's tiny experiment (conftest.py) collected these rows and trained this model: what
    # `rtaug collect` and `rtaug train-model` make (test_cli.py and test_cli_tasks.py run those)
    d = tmp_path_factory.mktemp("maze_rt")
    stages = {s["stage"]: Path(s["path"]) for s in tiny_experiment[1]["stages"]}
    shutil.copy(stages["data"] / "data.hdf5", d / "umaze.hdf5")
    shutil.copytree(stages["model"] / "model", d / "rt")
    # Truncation off: a 20-update VAE may put every generated step above α, and the counts
    # checked below should not depend on it.
    _run("augment", "--dataset", d / "umaze.hdf5", "--model", d / "rt", "--out", d / "aug.hdf5",
         "--num-trajectories", TRAJ, "--max-length", LENGTH, "--no-truncation", "--alpha-trajectories", TRAJ,
         "--seed", 0, "--no-progress")
    _run("audit", d / "aug.hdf5", "--task", TASK, "--json", d / "audit.json", "--no-progress")
    return d, json.loads((d / "audit.json").read_text())


def test_audit_splits_generated_from_real(pipeline):
    d, audit = pipeline
    aug = load_hdf5(d / "aug.hdf5")
    # a maze pays for the state after the step: the reward model reads s′ alone and writes the rewards
    assert json.loads((d / "rt" / "reward.json").read_text())["config"]["inputs"] == "next_state"
    assert aug.metadata["generator"]["reward_used"] == "model"
    n_gen = int(aug.generated.sum())
    copied = len(aug) - ROWS - n_gen  # the real suffixes joined to the generated prefixes (Eq. 11)
    assert n_gen == TRAJ * LENGTH and copied >= TRAJ
    assert not aug.generated[:ROWS].any()  # D_env first, then D_model
    gen, real = audit["generated"], audit["real"]
    assert gen["transitions"] == n_gen and real["transitions"] == ROWS + copied
    assert audit["transitions"] == len(aug)
    # rewards: the real rows' are the task's reward of their next state; the generated rows' r̂ is checked
    assert real["reward_agreement"] == 1.0
    assert 0.0 <= gen["reward_agreement"] <= 1.0 and gen["reward_mean_abs_error"] >= 0.0
    # the whole is the two parts together
    assert audit["mean_error"] == pytest.approx(
        (real["transitions"] * real["mean_error"] + n_gen * gen["mean_error"]) / len(aug))
    assert audit["max_error"] == max(real["max_error"], gen["max_error"])
    assert real["max_error"] <= 1e-5 and real["wall_rate"] == 0.0
    # a 20-update model does not produce what the simulator does
    assert 1e-3 < gen["mean_error"] <= gen["max_error"] < np.inf
    assert 0.0 <= gen["state_in_wall_rate"] <= gen["wall_rate"] <= 1.0


def test_backward_mlp_goes_through_the_same_stage_and_audit(pipeline):
    """`rtaug augment` has no flag for the one-step baseline yet; the stage behind it does it."""
    d, audit = pipeline
    data = load_hdf5(d / "umaze.hdf5")
    rt, vae, _ = load_generator(d / "rt")
    # What `train-model --backward-mlp` would add to the directory, without training RT again.
    mlp = train_backward_mlp(data, rt.spec, BackwardMLPConfig(steps=20, seed=0), progress=False)
    save_generator(d / "rt_mlp", rt, vae, mlp)
    augment_file(d / "umaze.hdf5", d / "rt_mlp", d / "aug_mlp.hdf5",
                 GenerationConfig(num_trajectories=TRAJ, max_length=LENGTH, truncation=False, seed=0, dist="vae",
                                  alpha_trajectories=TRAJ),
                 progress=False, log=lambda *_: None, generator="backward-mlp")
    _run("audit", d / "aug_mlp.hdf5", "--task", TASK, "--json", d / "audit_mlp.json", "--no-progress")
    mlp = json.loads((d / "audit_mlp.json").read_text())
    aug = load_hdf5(d / "aug_mlp.hdf5")
    assert aug.metadata["generator"]["generator"] == "backward-mlp"
    assert mlp["generated"]["transitions"] == int(aug.generated.sum()) == TRAJ * LENGTH
    assert mlp["real"] == audit["real"]
    assert 1e-3 < mlp["generated"]["mean_error"] < np.inf
    # same seed, same start states as the sequence model's: the segments end in the same states
    rt = load_hdf5(d / "aug.hdf5")
    np.testing.assert_array_equal(_joins(aug), _joins(rt))


def _joins(x):
    """next_observations of each generated prefix's last step: the real state it leads into."""
    g = x.generated
    last = g & ~np.append(g[1:], False)
    return x.next_observations[last]


def test_real_rows_keep_their_simulator_state(pipeline):
    d, audit = pipeline
    real = load_hdf5(d / "umaze.hdf5")
    aug = load_hdf5(d / "aug.hdf5")
    g = aug.generated
    for key in ("qpos", "qvel"):
        assert key in aug.infos, f"augmented file lost infos/{key}"
        np.testing.assert_array_equal(aug.infos[key][:ROWS], real.infos[key])
    # a generated row's simulator state is its observation
    np.testing.assert_array_equal(aug.infos["qpos"][g], aug.observations[g][:, :2].astype(np.float64))
    np.testing.assert_array_equal(aug.infos["qvel"][g], aug.observations[g][:, 2:].astype(np.float64))
    # hence the real rows audit exactly as in the collected file (restored from float64 state)
    alone = audit_maze_file(d / "umaze.hdf5", TASK, progress=False)
    # (the real rows copied into merged episodes are rows of the same file)
    assert audit["real"]["max_error"] == alone["max_error"] and audit["real"]["mean_error"] <= 1e-6


def test_generated_segments_lead_into_real_states(pipeline):
    d, _ = pipeline
    aug = load_hdf5(d / "aug.hdf5")
    ends = _joins(aug)  # backward: each prefix's last step enters its start state, then the real suffix
    assert len(ends) == TRAJ
    last = np.flatnonzero(aug.generated & ~np.append(aug.generated[1:], False))
    np.testing.assert_array_equal(aug.observations[last + 1], ends)  # no episode end at the join
    assert not (aug.terminals | aug.timeouts)[last].any()
    real_states = {tuple(o) for o in aug.observations[~aug.generated]}
    assert all(tuple(e) in real_states for e in ends)


def _linear_walks(seed=0, episodes=40, length=25, gain=0.1) -> Dataset:
    """s' = s + gain·a on states far wider than a step, like Maze2D's velocities."""
    rng = np.random.default_rng(seed)
    act = rng.uniform(-1, 1, (episodes, length, 2)).astype(np.float32)
    start = rng.normal(0, 2, (episodes, 1, 2))
    pos = start + np.concatenate([np.zeros((episodes, 1, 2)), np.cumsum(gain * act, axis=1)], axis=1)
    timeouts = np.zeros((episodes, length), bool)
    timeouts[:, -1] = True
    n = episodes * length
    return Dataset(observations=pos[:, :-1].reshape(n, 2), actions=act.reshape(n, 2),
                   rewards=np.zeros(n, np.float32), terminals=np.zeros(n, bool), timeouts=timeouts.reshape(n),
                   next_observations=pos[:, 1:].reshape(n, 2))


@pytest.mark.parametrize("direction", ["backward", "forward"])
def test_generated_steps_join_state_action_and_successor(direction):
    """The head that completes a transition (backward: the action, forward: the next state) must
    make it consistent. Without direct access to the other two parts, after the same 150 updates
    the action implied by the generated states was off by 0.46-0.63 of the action range (of 2);
    with it, by 0.05-0.06."""
    data = _linear_walks()
    cfg = RTConfig(direction=direction, context_steps=8, n_layer=1, n_head=2, d_model=32, batch_size=16,
                   steps=150, lr=3e-3, rtg_bins=4)
    rt = train_sequence_model(data, cfg, progress=False)
    # Γ plays no part here (truncation off): an untrained VAE saves compiling its training.
    vcfg = VAEConfig(hidden=(8,), latent_dim=2)
    key = jax.random.PRNGKey(0)
    params = VAE(rt.spec.transition_dim, 2, (8,)).init(key, np.zeros((1, rt.spec.transition_dim), np.float32), key)
    vae = TrainedVAE(rt.spec, vcfg, params, alpha=float("inf"))
    g = generate(data, rt, vae, GenerationConfig(num_trajectories=50, max_length=3, truncation=False, candidates=1,
                                                 kappa=0.0, dist="vae", alpha_trajectories=10), progress=False)
    implied = (g.next_observations - g.observations) / 0.1
    assert np.abs(implied - g.actions).mean() < 0.2
    lo, hi = np.asarray(rt.spec.obs_low), np.asarray(rt.spec.obs_high)
    for x in (g.observations, g.next_observations):
        assert np.all((x >= lo - 1e-6) & (x <= hi + 1e-6))


def test_generated_states_are_kept_inside_the_data_range():
    data = _linear_walks()
    spec = Spec.fit(data)
    both = np.concatenate([data.observations, data.next_observations])
    np.testing.assert_allclose(spec.obs_low, both.min(0))
    np.testing.assert_allclose(spec.obs_high, both.max(0))
    anchor = jnp.asarray(data.observations[:3])
    z = jnp.asarray([[1e4, -1e4], [0.0, 0.0], [-1e4, 1e4]], jnp.float32)
    s = np.asarray(spec.delta_to_obs(anchor, z))
    np.testing.assert_allclose(s[0], [spec.obs_high[0], spec.obs_low[1]], rtol=1e-6)
    np.testing.assert_allclose(s[2], [spec.obs_low[0], spec.obs_high[1]], rtol=1e-6)
    np.testing.assert_array_equal(s[1], data.observations[1])
    # a model saved before the range existed loads and generates unbounded, as it was trained
    old = {k: v for k, v in spec.to_dict().items() if k not in ("obs_low", "obs_high")}
    assert float(Spec.from_dict(old).delta_to_obs(anchor, z)[0, 0]) > spec.obs_high[0] + 1.0
