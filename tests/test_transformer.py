"""Causality and the key/value cache of the transformer and of RT's sequence model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtaug.generate.model import RTConfig, RTModel
from rtaug.generate.spec import Spec
from rtaug.nets.transformer import GPT, empty_cache, share_prefix


def _gpt_and_params(d=32, n_layer=2, n_head=4, t=12):
    gpt = GPT(n_layer, n_head)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, t, d))
    return gpt, gpt.init(jax.random.PRNGKey(1), x), x


@pytest.mark.slow
def test_gpt_later_token_never_changes_earlier_output():
    gpt, params, x = _gpt_and_params()
    h, _, _ = gpt.apply(params, x)
    j = 7
    x2 = x.at[:, j].set(jax.random.normal(jax.random.PRNGKey(9), x[:, j].shape))
    h2, _, _ = gpt.apply(params, x2)
    np.testing.assert_allclose(h[:, :j], h2[:, :j], atol=1e-5)
    assert not np.allclose(h[:, j:], h2[:, j:], atol=1e-3)


def test_gpt_attention_is_causal_and_normalised():
    gpt, params, x = _gpt_and_params()
    _, attn, _ = gpt.apply(params, x)
    t = x.shape[1]
    upper = np.triu(np.ones((t, t), bool), 1)
    assert np.all(np.asarray(attn)[..., upper] < 1e-6)
    np.testing.assert_allclose(np.asarray(attn).sum(-1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_gpt_incremental_decoding_matches_full_pass():
    gpt, params, x = _gpt_and_params()
    h_full, attn_full, _ = gpt.apply(params, x)
    b, t, d = x.shape
    cache = empty_cache(2, b, t, 4, d)
    valid = jnp.ones((b, t), bool)
    # prefill 5 tokens at once, then one token at a time
    h, _, cache = gpt.apply(params, x[:, :5], valid, 0, cache)
    np.testing.assert_allclose(h, h_full[:, :5], atol=1e-5)
    for i in range(5, t):
        h, attn, cache = gpt.apply(params, x[:, i:i + 1], valid, i, cache)
        np.testing.assert_allclose(h[:, 0], h_full[:, i], atol=1e-4)
        np.testing.assert_allclose(attn[:, :, 0, : i + 1], attn_full[:, :, i, : i + 1], atol=1e-5)


def test_gpt_decoding_after_a_shared_prefix_matches_a_cache_per_row():
    # 2 contexts of 5 tokens, each continued by 3 rows with tokens of their own: the rows of a
    # group read one copy of their context's keys and values instead of one copy each
    gpt, params, x = _gpt_and_params()
    b, t, d = x.shape
    g, p = 3, 5
    valid = jnp.ones((b * g, t), bool)
    prefix = empty_cache(2, b, p, 4, d)
    _, _, prefix = gpt.apply(params, x[:, :p], valid[:b, :p], 0, prefix)
    per_row = empty_cache(2, b, t, 4, d)
    _, _, per_row = gpt.apply(params, x[:, :p], valid[:b], 0, per_row)
    per_row = jax.tree_util.tree_map(lambda c: jnp.repeat(c, g, axis=0), per_row)
    shared = share_prefix(prefix, b * g, t)
    rows = jnp.repeat(x, g, axis=0) + 0.1 * jax.random.normal(jax.random.PRNGKey(2), (b * g, t, d))
    for i in range(p, t):
        h_ref, attn_ref, per_row = gpt.apply(params, rows[:, i:i + 1], valid, i, per_row)
        h, attn, shared = gpt.apply(params, rows[:, i:i + 1], valid, i, shared)
        np.testing.assert_allclose(h, h_ref, atol=1e-5)
        np.testing.assert_allclose(attn, attn_ref, atol=1e-6)
    assert shared.k[0].shape == (b * g, 4, t - p, d // 4)  # each row holds only its own positions
    with pytest.raises(ValueError, match="not whole groups"):
        share_prefix(prefix, b * g + 1, t)


def _grid_spec():
    return Spec(
        obs_dim=2, obs_kind="discrete", obs_nvec=[10, 10], obs_mean=[4.5, 4.5], obs_std=[2.9, 2.9],
        delta_std=[0.5, 0.5], act_kind="discrete", num_actions=4, rew_kind="discrete",
        rew_values=[0.0, 1.0], rtg_lo=0.0, rtg_hi=1.0, rtg_bins=8,
    )


def _continuous_spec():
    return Spec(
        obs_dim=3, obs_kind="continuous", obs_mean=[0.0] * 3, obs_std=[1.0] * 3, delta_std=[0.1] * 3,
        act_kind="continuous", act_dim=2, act_mean=[0.0, 0.0], act_std=[1.0, 1.0], act_low=[-1, -1],
        act_high=[1, 1], rew_kind="continuous", rew_mean=0.0, rew_std=1.0, rtg_lo=-5.0, rtg_hi=5.0,
    )


def _windows(spec, b=2, k=6, seed=0):
    rng = np.random.default_rng(seed)
    if spec.obs_kind == "discrete":
        s = rng.integers(0, 10, (b, k, 2)).astype(np.float32)
        a = rng.integers(0, 4, (b, k))
        r = rng.integers(0, 2, (b, k)).astype(np.float32)
    else:
        s = rng.normal(size=(b, k, 3)).astype(np.float32)
        a = rng.uniform(-1, 1, (b, k, 2)).astype(np.float32)
        r = rng.normal(size=(b, k)).astype(np.float32)
    R = rng.uniform(0, 1, (b, k)).astype(np.float32)
    return s, a, r, R, np.ones((b, k), bool)


@pytest.mark.slow
@pytest.mark.parametrize("make_spec", [_grid_spec, _continuous_spec])
def test_rt_changing_a_later_token_never_changes_an_earlier_prediction(make_spec):
    spec = make_spec()
    cfg = RTConfig(context_steps=6, n_layer=2, n_head=2, d_model=32)
    model = RTModel(spec, cfg)
    s, a, r, R, m = _windows(spec)
    params = model.init(jax.random.PRNGKey(0), s, a, r, R, m)
    lp = np.asarray(model.apply(params, s, a, r, R, m))  # (4 modalities, B, K)
    # change the action of step 3: log P of every token before it (s_0..s_3) is unchanged
    a2 = a.copy()
    a2[:, 3] = (a2[:, 3] + 1) % 4 if spec.act_kind == "discrete" else -a2[:, 3]
    lp2 = np.asarray(model.apply(params, s, a2, r, R, m))
    np.testing.assert_allclose(lp2[:, :, :3], lp[:, :, :3], atol=1e-5)
    np.testing.assert_allclose(lp2[0, :, 3], lp[0, :, 3], atol=1e-5)  # s_3 comes before a_3
    assert not np.allclose(lp2[1:, :, 3:], lp[1:, :, 3:], atol=1e-4)


@pytest.mark.slow
def test_rt_padding_is_ignored():
    spec = _grid_spec()
    cfg = RTConfig(context_steps=6, n_layer=1, n_head=2, d_model=16)
    model = RTModel(spec, cfg)
    s, a, r, R, m = _windows(spec)
    m[:, 4:] = False
    params = model.init(jax.random.PRNGKey(0), s, a, r, R, m)
    lp = np.asarray(model.apply(params, s, a, r, R, m))
    assert np.all(lp[:, :, 4:] == 0.0)
    s2 = s.copy()
    s2[:, 4:] = 0.0
    np.testing.assert_allclose(np.asarray(model.apply(params, s2, a, r, R, m)), lp, atol=1e-5)
