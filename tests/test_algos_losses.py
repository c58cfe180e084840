"""Loss functions and data preparation of the offline RL learners, on hand-computed cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtaug.algos import bcq, cql, iql, td3bc
from rtaug.algos.common import for_budget, prepare, reward_transform, with_domain
from rtaug.data import Dataset


# --------------------------------------------------------------------------------------------- IQL


def test_expectile_loss_hand_values():
    diff = jnp.array([-2.0, -0.5, 0.0, 1.0, 3.0])
    # τ = 0.7: weight 0.3 on negative u, 0.7 on positive u, times u².
    np.testing.assert_allclose(iql.expectile_loss(diff, 0.7), [1.2, 0.075, 0.0, 0.7, 6.3], rtol=1e-6)
    # τ = 0.5 is half the squared error.
    np.testing.assert_allclose(iql.expectile_loss(diff, 0.5), 0.5 * np.asarray(diff) ** 2, rtol=1e-6)


def test_expectile_minimiser_is_the_expectile():
    # Samples {0, 1}: the τ-expectile v solves τ(1 − v) = (1 − τ)v, i.e. v = τ.
    samples = jnp.array([0.0, 1.0])
    grad = jax.grad(lambda v: jnp.mean(iql.expectile_loss(samples - v, 0.9)))
    assert abs(float(grad(0.9))) < 1e-6
    assert float(grad(0.5)) < 0 < float(grad(0.95))  # below the expectile the loss pushes v up


def test_awr_weights_are_clipped():
    w = iql.awr_weights(jnp.array([0.0, 1.0, 10.0]), 3.0, 100.0)
    np.testing.assert_allclose(w, [1.0, np.exp(3.0), 100.0], rtol=1e-6)


# ----------------------------------------------------------------------------------------- TD3+BC


def test_td3bc_lambda_is_alpha_over_mean_abs_q():
    q = jnp.array([1.0, -3.0, 2.0, -2.0])  # mean|Q| = 2
    assert float(td3bc.bc_lambda(q, 2.5)) == pytest.approx(1.25)
    pi = jnp.array([[0.5], [0.0], [0.0], [0.0]])
    actions = jnp.zeros((4, 1))
    loss, (lam, bc) = td3bc.actor_loss(q, pi, actions, 2.5)
    # −1.25·mean(Q) + mean (π − a)² = −1.25·(−0.5) + 0.25/4
    assert float(loss) == pytest.approx(0.625 + 0.0625)
    assert float(lam) == pytest.approx(1.25) and float(bc) == pytest.approx(0.0625)


def test_td3bc_lambda_carries_no_gradient():
    q = jnp.array([1.0, -3.0, 2.0, -2.0])
    g = jax.grad(lambda q: td3bc.actor_loss(q, jnp.zeros((4, 1)), jnp.zeros((4, 1)), 2.5)[0])(q)
    # Only the −λ·mean(Q) term: ∂/∂Q_i = −λ/4 for every i; a differentiated λ would add a sign(Q) term.
    np.testing.assert_allclose(g, np.full(4, -1.25 / 4), rtol=1e-6)


# -------------------------------------------------------------------------------------------- CQL


def test_cql_logsumexp_hand_value():
    zeros = jnp.zeros((1, 1))  # one state, one sample per proposal
    # act_dim 1: the uniform density on [−1, 1] is 1/2, so the random term is 0 − log ½ = log 2.
    lse = cql.cql_logsumexp(zeros, zeros, zeros, zeros, zeros, act_dim=1, temp=1.0)
    np.testing.assert_allclose(lse, [np.log(2.0 + 1.0 + 1.0)], rtol=1e-6)
    lse2 = cql.cql_logsumexp(zeros, zeros, zeros, zeros, zeros, act_dim=1, temp=2.0)
    np.testing.assert_allclose(lse2, [2.0 * np.log(np.sqrt(2.0) + 2.0)], rtol=1e-6)


def test_cql_penalty_subtracts_data_q_and_weights_proposals_by_density():
    q_rand = jnp.array([[1.0, 2.0]])
    q_curr = jnp.array([[0.5, -1.0]])
    q_next = jnp.array([[0.0, 3.0]])
    logp_curr = jnp.array([[-1.0, 0.0]])
    logp_next = jnp.array([[2.0, 1.0]])
    q_data = jnp.array([0.7])
    act_dim = 3
    terms = np.concatenate([np.array([1.0, 2.0]) - 3 * np.log(0.5),
                            np.array([0.0, 3.0]) - np.array([2.0, 1.0]),
                            np.array([0.5, -1.0]) - np.array([-1.0, 0.0])])
    expected = np.log(np.sum(np.exp(terms))) - 0.7
    got = cql.cql_penalty(q_rand, q_curr, q_next, logp_curr, logp_next, q_data, act_dim, 1.0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_tanh_log_prob_matches_change_of_variables():
    u, mean, log_std = jnp.array([[0.3, -1.2]]), jnp.array([[0.1, -0.5]]), jnp.array([[-0.2, 0.4]])
    std = np.exp(np.asarray(log_std))
    gauss = np.sum(-0.5 * ((np.asarray(u) - np.asarray(mean)) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi))
    expected = gauss - np.sum(np.log(1 - np.tanh(np.asarray(u)) ** 2))
    np.testing.assert_allclose(cql.tanh_log_prob(u, mean, log_std), [expected], rtol=1e-5)


# -------------------------------------------------------------------------------------------- BCQ


def test_bcq_perturbation_is_bounded_by_phi():
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.uniform(-1, 1, (1000, 3)), jnp.float32)
    raw = jnp.asarray(rng.normal(0, 1e3, (1000, 3)), jnp.float32)  # saturates tanh both ways
    out = np.asarray(bcq.perturb(a, raw, 0.05))
    assert np.all(np.abs(out - np.asarray(a)) <= 0.05 + 1e-6)
    assert np.all(np.abs(out) <= 1.0)
    assert np.abs(out - np.asarray(a)).max() > 0.049  # the bound is reached, not just respected


@pytest.mark.slow
def test_bcq_act_stays_within_phi_of_a_vae_candidate():
    config = bcq.BCQConfig(vae_hidden=(16,), actor_hidden=(16,), critic_hidden=(16,), phi=0.05)
    state = jax.jit(bcq.init, static_argnums=(0, 1, 2))(config, 4, 2, jax.random.PRNGKey(0))
    obs = jnp.asarray(np.random.default_rng(1).normal(size=(8, 4)), jnp.float32)
    act = jax.jit(lambda p, o: bcq.act(config, p, o))
    a1, a2 = act(state["params"], obs), act(state["params"], obs)
    np.testing.assert_array_equal(a1, a2)  # deterministic by default
    vae_net, _, _ = bcq._nets(config, 2)
    sample = jax.jit(lambda p, o: bcq._sample_candidates(config, vae_net, p, o, jax.random.PRNGKey(0),
                                                         config.n_samples)[1])
    cand = sample(state["params"]["vae"], obs)
    dist = np.abs(np.asarray(cand) - np.asarray(a1)[:, None, :]).max(axis=-1).min(axis=-1)
    assert np.all(dist <= 0.05 + 1e-6)


# ---------------------------------------------------------------------------- configs and data prep


def test_domain_defaults_and_user_overrides():
    c = with_domain(iql.IQLConfig(), "antmaze")
    assert (c.expectile, c.temperature, c.reward_bias, c.return_normalize) == (0.9, 10.0, -1.0, False)
    # A field the caller set explicitly wins over the domain table.
    c = with_domain(iql.IQLConfig(expectile=0.8), "antmaze")
    assert c.expectile == 0.8 and c.temperature == 10.0
    assert with_domain(iql.IQLConfig(), "mujoco") == iql.IQLConfig()
    # Maze2D: unscaled rewards, normalised states (docs/decisions.md, "Learners on Maze2D").
    c = with_domain(iql.IQLConfig(), "maze2d")
    assert (c.return_normalize, c.normalize_obs, c.expectile) == (False, True, 0.7)
    # A field given explicitly at its class default is kept when the caller says it was given.
    c = with_domain(iql.IQLConfig(normalize_obs=False), "maze2d", given={"normalize_obs"})
    assert (c.return_normalize, c.normalize_obs) == (False, False)
    with pytest.raises(ValueError, match="unknown domain"):
        with_domain(iql.IQLConfig(), "atari")


def test_budget_scaled_fields_follow_the_runs_length():
    """CQL's BC warm-up is the authors' 40k of 1M updates as a share of the run (a fixed 40k would
    make the cpu protocol's 30k-update runs behaviour cloning throughout); IQL's schedule decays
    over the run; fields set by hand are kept."""
    assert for_budget(cql.CQLConfig(), 30_000).bc_steps == 1_200
    assert for_budget(cql.CQLConfig(), 1_000_000).bc_steps == 40_000
    assert for_budget(cql.CQLConfig(bc_steps=500), 30_000).bc_steps == 500
    assert for_budget(iql.IQLConfig(), 30_000).decay_steps == 30_000
    assert for_budget(iql.IQLConfig(decay_steps=7), 30_000).decay_steps == 7
    assert for_budget(td3bc.TD3BCConfig(), 30_000) == td3bc.TD3BCConfig()
    state = cql.init(cql.CQLConfig(hidden=(8,)), 3, 2, jax.random.PRNGKey(0))
    batch = {"observations": jnp.zeros((4, 3)), "actions": jnp.zeros((4, 2)), "rewards": jnp.zeros(4),
             "next_observations": jnp.zeros((4, 3)), "dones": jnp.zeros(4)}
    with pytest.raises(ValueError, match="CQLConfig.bc_steps is None"):
        cql.update(cql.CQLConfig(hidden=(8,)), state, batch, jax.random.PRNGKey(1))


def _two_episode_data():
    obs = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    return Dataset(observations=obs, actions=np.zeros((4, 1), np.float32),
                   rewards=np.array([4.0, 6.0, 10.0, 20.0], np.float32),  # returns 10 and 30
                   terminals=np.array([False, True, False, True]), timeouts=np.zeros(4, bool),
                   next_observations=obs + 1)


def test_iql_mujoco_reward_normalisation_uses_return_range():
    arrays, mean, std = prepare(_two_episode_data(), iql.IQLConfig())
    np.testing.assert_allclose(arrays["rewards"], np.array([4.0, 6.0, 10.0, 20.0]) * 1000.0 / 20.0)
    np.testing.assert_array_equal(arrays["dones"], [0, 1, 0, 1])
    np.testing.assert_array_equal(mean, [0.0])  # IQL leaves states raw
    arrays, _, _ = prepare(_two_episode_data(), with_domain(iql.IQLConfig(), "antmaze"))
    np.testing.assert_allclose(arrays["rewards"], [3.0, 5.0, 9.0, 19.0])
    # the (scale, bias) a critic's values are in, as benchmarks/q_truth.py reads them
    assert reward_transform(_two_episode_data(), iql.IQLConfig()) == (50.0, 0.0)
    assert reward_transform(_two_episode_data(), with_domain(iql.IQLConfig(), "antmaze")) == (1.0, -1.0)
    assert reward_transform(_two_episode_data(), td3bc.TD3BCConfig()) == (1.0, 0.0)


def test_td3bc_state_normalisation():
    arrays, mean, std = prepare(_two_episode_data(), td3bc.TD3BCConfig())
    np.testing.assert_allclose(mean, [1.5])
    np.testing.assert_allclose(std, [np.std([0, 1, 2, 3]) + 1e-3], rtol=1e-6)
    np.testing.assert_allclose(arrays["observations"][:, 0], (np.arange(4) - 1.5) / std[0], rtol=1e-6)
    np.testing.assert_allclose(arrays["next_observations"][:, 0], (np.arange(1, 5) - 1.5) / std[0], rtol=1e-6)


@pytest.mark.slow
def test_first_critic_is_the_ensembles_first_member():
    from rtaug.algos.common import Critics, first_critic

    net = Critics((8, 8), 2)
    obs = jax.random.normal(jax.random.PRNGKey(0), (5, 1, 3))
    act = jax.random.normal(jax.random.PRNGKey(1), (5, 4, 2))  # 4 actions per state, obs broadcast
    params = net.init(jax.random.PRNGKey(2), obs, act)
    both = net.apply(params, obs, act)
    np.testing.assert_allclose(first_critic((8, 8), params, obs, act), both[0], rtol=1e-6, atol=1e-6)


def test_torch_initialisation_is_uniform_within_one_over_root_fan_in():
    from rtaug.algos import bcq
    from rtaug.nets.mlp import MLP

    x = jnp.ones((3, 9))
    torch_p = MLP((64,), 2, weight_init="torch").init(jax.random.PRNGKey(0), x)["params"]
    lecun_p = MLP((64,), 2).init(jax.random.PRNGKey(0), x)["params"]
    for layer, fan_in in (("dense0", 9), ("out", 64)):
        kernel, bias = np.asarray(torch_p[layer]["kernel"]), np.asarray(torch_p[layer]["bias"])
        assert 0.9 * fan_in ** -0.5 < np.abs(kernel).max() <= fan_in ** -0.5
        assert np.all(np.abs(bias) <= fan_in ** -0.5) and np.all(bias != 0)
        assert np.all(np.asarray(lecun_p[layer]["bias"]) == 0)  # Flax's default is kept elsewhere
    with pytest.raises(ValueError, match="weight_init"):
        MLP((4,), 1, weight_init="xavier").init(jax.random.PRNGKey(0), x)
    # BCQ's every network (VAE, perturbation, twin critics) starts as the authors' PyTorch code did
    state = bcq.init(bcq.BCQConfig(), 4, 2, jax.random.PRNGKey(0))
    for net in ("vae", "actor", "critic"):
        biases = [np.asarray(b) for p, b in jax.tree_util.tree_leaves_with_path(state["params"][net])
                  if p[-1].key == "bias"]
        assert all(np.any(b != 0) for b in biases), net
