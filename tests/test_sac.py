"""SAC (rtaug.collect.sac): the update on a problem with a known answer, the online loop's files,
and that a killed run resumes to exactly what an uninterrupted run computes.

Every test here compiles SAC's update (a few seconds, 10-20 s on the shared 2-core machine under
load 8), so all are marked slow; the locomotion tasks' fast tests are in test_locomotion.py."""

import json
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from rtaug.collect import sac
from rtaug.collect.sac import SACConfig, RunMismatch, load_actor, load_buffer, train_sac

TINY = SACConfig(total_steps=600, learning_starts=150, hidden=(16, 16), batch_size=16, eval_every=200,
                 eval_episodes=2, checkpoint_every=250)


def _batch(rng, n, obs_dim=3, act_dim=2):
    return {"observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "next_observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
            "dones": np.zeros(n, np.float32)}


# Both update tests use one config, so they share one compiled update (the bandit's learning rates).
SMALL = SACConfig(hidden=(32, 32), actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3)


def _updates(state, batches, key=1):
    """`update` applied once per leading row of `batches`, through the loop's own compiled block."""
    block, key = sac._update_block(SMALL), jax.random.PRNGKey(key)
    sums = {m: jnp.zeros(()) for m in sac._METRICS}
    for i in range(len(batches["rewards"])):
        state, sums, key = block(state, sums, {k: v[i][None] for k, v in batches.items()}, key)
    return state, {m: float(v) for m, v in sums.items()}


@pytest.mark.slow
def test_update_keeps_shapes_and_moves_every_part():
    config = SMALL
    state = sac.init_jitted(config, 3, 2, jax.random.PRNGKey(0))
    one = _batch(np.random.default_rng(0), 64)
    new, metrics = _updates(state, {k: v[None] for k, v in one.items()})
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(state)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(new)):
        assert a.shape == b.shape and a.dtype == b.dtype
    assert int(new["step"]) == 1
    assert all(np.isfinite(v) for v in metrics.values())
    for part in ("actor", "critic", "log_alpha"):
        moved = [not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(state["params"][part]),
                                                          jax.tree_util.tree_leaves(new["params"][part]))]
        assert all(moved), part
    # the targets trail the critics by τ = 0.005 of the step
    t0, t1, c1 = (jax.tree_util.tree_leaves(x) for x in (state["target"], new["target"], new["params"]["critic"]))
    np.testing.assert_allclose(t1[0], 0.995 * t0[0] + 0.005 * c1[0], rtol=1e-5, atol=1e-7)
    # the policy is tanh-bounded and deterministic in evaluation
    a = sac._jitted(config)[0](new["params"]["actor"], jnp.ones((5, 3)))
    assert a.shape == (5, 2) and float(jnp.abs(a).max()) <= 1.0


@pytest.mark.slow
def test_sac_finds_the_best_action_of_a_bandit():
    """One-step episodes (every transition terminal), reward −‖a − a*‖²: the critics must learn the
    reward surface and the actor climb it to a* = (0.5, −0.3), its entropy tuned down towards −|A|."""
    config = SMALL
    best = np.array([0.5, -0.3], np.float32)
    rng = np.random.default_rng(0)
    n = 4096
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    actions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    data = {"observations": obs, "actions": actions, "rewards": -np.sum((actions - best) ** 2, axis=1),
            "next_observations": obs, "dones": np.ones(n, np.float32)}
    idx = rng.integers(0, n, size=(1500, 64))
    state, _ = _updates(sac.init_jitted(config, 3, 2, jax.random.PRNGKey(0)), {k: v[idx] for k, v in data.items()})
    a = np.asarray(sac._jitted(config)[0](state["params"]["actor"], jnp.asarray(obs[:256])))
    assert np.abs(a.mean(axis=0) - best).max() < 0.1, a.mean(axis=0)
    assert float(jnp.exp(state["params"]["log_alpha"])) < 0.5  # α falls as the policy narrows


def _run(tmp_path, name, config=TINY, **kw):
    return train_sac(config, tmp_path / name, progress=False, log=lambda *_: None, **kw)


def _same_state(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


DETERMINISTIC = ("step", "episodes", "updates", "return_mean", "return_std", "length_mean", "critic_loss", "alpha")


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    whole = _run(tmp_path, "whole")
    assert whole.steps == 600 and [r["step"] for r in whole.curve] == [200, 400, 600]

    # Killed at the worst moment: the second checkpoint's replay rows are written, its state is not.
    real_save, calls = sac._save_checkpoint, []

    def dying_save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_save(*args, **kwargs)

    monkeypatch.setattr(sac, "_save_checkpoint", dying_save)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "killed")
    monkeypatch.setattr(sac, "_save_checkpoint", real_save)
    host = json.loads(serialization.msgpack_restore((tmp_path / "killed" / sac.CHECKPOINT).read_bytes())["host"])
    assert host["t"] == 250 and host["ep_len"] > 0  # the hard case: resumed mid-episode
    assert len(list((tmp_path / "killed" / "buffer").glob("*.npz"))) == 2  # one stale chunk

    resumed = _run(tmp_path, "killed")
    assert resumed.first_step == 250
    assert _same_state(whole.state, resumed.state)
    for k, v in load_buffer(tmp_path / "whole").items():
        np.testing.assert_array_equal(v, load_buffer(tmp_path / "killed")[k], err_msg=k)
    for a, b in zip(whole.curve, resumed.curve, strict=True):
        assert {k: a[k] for k in DETERMINISTIC} == {k: b[k] for k in DETERMINISTIC}
    counts = [[line.split(",")[:3] for line in (tmp_path / run / "curve.csv").read_text().splitlines()]
              for run in ("whole", "killed")]
    assert counts[0] == counts[1]  # the rows rewritten on resuming keep their counts as integers
    for step in (200, 400, 600):
        assert _same_state(load_actor(tmp_path / "whole", step), load_actor(tmp_path / "killed", step))

    # A larger budget continues a finished run as if it had been asked for from the start.
    short = _run(tmp_path, "extended", replace(TINY, total_steps=300))
    assert short.steps == 300
    longer = _run(tmp_path, "extended")
    assert _same_state(whole.state, longer.state)
    assert [r["step"] for r in longer.curve] == [200, 300, 400, 600]  # 300: the short run's last row


@pytest.mark.slow
def test_run_directory_of_another_run_is_refused(tmp_path):
    config = replace(TINY, total_steps=160, eval_every=80, checkpoint_every=80)
    run = _run(tmp_path, "a", config)
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert info["total_steps"] == 160 and info["config"]["hidden"] == [16, 16] and info["mujoco"]
    assert run.curve[-1]["step"] == 160 and np.isfinite(run.curve[-1]["return_mean"])
    with pytest.raises(RunMismatch, match=r"another run.*discount"):
        _run(tmp_path, "a", replace(config, discount=0.9))
    with pytest.raises(RunMismatch, match="already at step 160"):
        _run(tmp_path, "a", replace(config, total_steps=100))
    with pytest.raises(ValueError, match="eval_every must be at least 1"):
        _run(tmp_path, "b", replace(config, eval_every=0))
