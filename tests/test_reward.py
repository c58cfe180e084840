"""The reward model: it learns a reward of the next state, reads only what its inputs say,
survives a save/load, and its predictions are the rewards `generate` writes."""

import json

import numpy as np
import pytest

from rtaug.data import Dataset
from rtaug.generate.generation import GenerationConfig, generate, resolve_reward
from rtaug.generate.model import RTConfig
from rtaug.generate.reward import RewardConfig, load_reward, reward_inputs_for, save_reward, train_reward
from rtaug.generate.spec import Spec
from rtaug.generate.train import VAEConfig, train_sequence_model, train_vae


def disc_data(n=4000, seed=0, continuous_reward=False) -> Dataset:
    """Points moving in the plane; reward 1 when the next state lies within 0.5 of the origin
    (or, continuous, the next state's first coordinate)."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1.5, 1.5, (n, 4)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    nxt = obs + np.concatenate([0.05 * act, 0.1 * act], axis=1).astype(np.float32)
    r = nxt[:, 0].copy() if continuous_reward else (np.linalg.norm(nxt[:, :2], axis=1) < 0.5).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[49::50] = True
    return Dataset(observations=obs, actions=act, rewards=r, terminals=np.zeros(n, bool), timeouts=timeouts,
                   next_observations=nxt)


@pytest.fixture(scope="module")
def disc():
    data = disc_data()
    spec = Spec.fit(data)
    return data, spec, train_reward(data, spec, RewardConfig(inputs="next_state", steps=600, batch_size=256),
                                    progress=False)


def test_learns_a_reward_of_the_next_state(disc):
    data, spec, model = disc
    assert spec.rew_kind == "discrete"
    test = disc_data(n=2000, seed=1)
    pred = model.predict(test.observations, test.actions, test.next_observations)
    assert np.mean((pred > 0.5) == (test.rewards > 0.5)) > 0.95
    assert model.fit["held_out_rows"] == 40 and model.fit["accuracy"] > 0.9


def test_next_state_inputs_ignore_the_state_and_action(disc):
    data, _, model = disc
    s, a, n = data.observations[:50], data.actions[:50], data.next_observations[:50]
    np.testing.assert_array_equal(model.predict(s, a, n), model.predict(s[::-1] * 3, -a, n))


def test_continuous_rewards_are_regressed():
    data = disc_data(continuous_reward=True)
    spec = Spec.fit(data)
    assert spec.rew_kind == "continuous"
    model = train_reward(data, spec, RewardConfig(steps=600, batch_size=256), progress=False)
    assert model.config.inputs == "transition"  # no task recorded: the safe reading
    assert model.fit["rmse"] < 0.15 * float(data.rewards.std())


def test_save_and_load_give_the_same_predictions(disc, tmp_path):
    data, spec, model = disc
    assert load_reward(tmp_path, spec) is None
    save_reward(tmp_path, model)
    back = load_reward(tmp_path, spec)
    s, a, n = data.observations[:100], data.actions[:100], data.next_observations[:100]
    np.testing.assert_array_equal(back.predict(s, a, n), model.predict(s, a, n))
    assert back.config == model.config and back.fit == model.fit
    (tmp_path / "reward.json").write_text(json.dumps({"config": {"inputs": "everything"}}))
    with pytest.raises(ValueError, match="reward.json: not a reward model config"):
        load_reward(tmp_path, spec)


def test_inputs_follow_the_recorded_task():
    data = disc_data(n=100)
    assert reward_inputs_for(data) == "transition"
    data.metadata = {"task": "maze2d-umaze-sparse"}
    assert reward_inputs_for(data) == "next_state"
    data.metadata = {"env": "boxball"}
    assert reward_inputs_for(data) == "next_state"
    with pytest.raises(ValueError, match="RewardConfig.inputs must be one of"):
        RewardConfig(inputs="s")


@pytest.mark.slow
def test_generate_writes_the_reward_models_predictions(disc):
    data, spec, model = disc
    tiny = dict(context_steps=6, n_layer=1, n_head=2, d_model=16, batch_size=8, steps=10, rtg_bins=8)
    rt = train_sequence_model(data, RTConfig(direction="backward", **tiny), progress=False, spec=spec)
    vae = train_vae(data, spec, VAEConfig(steps=10, hidden=(16,), latent_dim=2), progress=False)
    cfg = GenerationConfig(num_trajectories=6, max_length=3, candidates=2, batch=4, dist="vae", alpha_trajectories=6)
    g = generate(data, rt, vae, cfg, progress=False, reward_model=model)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    expect = model.predict(flat(g.observations), flat(g.actions), flat(g.next_observations)).reshape(g.rewards.shape)
    np.testing.assert_allclose(g.rewards, expect, atol=1e-6)
    assert g.config["reward_used"] == "model"
    head = generate(data, rt, vae, cfg, progress=False)  # no reward model: the head's expectation
    assert head.config["reward_used"] == "mean"
    assert not np.allclose(head.rewards, expect)


def test_reward_model_asked_for_but_missing_is_a_clear_error():
    assert resolve_reward("auto", None) == "mean"
    with pytest.raises(ValueError, match="needs the model directory's reward model"):
        resolve_reward("model", None)
