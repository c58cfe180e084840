"""Generation: shapes, chaining of generated steps into the real data, truncation, the
fixed-length ablation, the α-pessimistic rewards and provenance of the written dataset."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtaug.data.episodes import reward_to_go
from rtaug.data.hdf5 import load_hdf5, save_hdf5
from rtaug.generate.baselines import BackwardMLPConfig, generate_backward_mlp, train_backward_mlp
from rtaug.generate.generation import GenerationConfig, _build_block, _context, generate, select_starts, tilt_choice
from rtaug.generate.merge import augment, merged_dataset
from rtaug.generate.model import RTConfig
from rtaug.generate.spec import Spec
from rtaug.generate.train import VAEConfig, train_sequence_model, train_vae

pytestmark = pytest.mark.slow  # trains sequence models: outside the fast subset (-m "not slow")

TINY = dict(context_steps=8, n_layer=1, n_head=2, d_model=16, batch_size=8, steps=20, rtg_bins=8)


@pytest.fixture(scope="module", params=["grid", "continuous"])
def trained(request, grid_data, continuous_data):
    data = grid_data if request.param == "grid" else continuous_data
    spec = Spec.fit(data, rtg_bins=8)
    rt = train_sequence_model(data, RTConfig(direction="backward", **TINY), progress=False, spec=spec)
    ft = train_sequence_model(data, RTConfig(direction="forward", **TINY), progress=False, spec=spec)
    vae = train_vae(data, spec, VAEConfig(steps=20, hidden=(16,), latent_dim=2), progress=False)
    return data, spec, rt, ft, vae


def _cfg(**kw):
    base = dict(num_trajectories=7, max_length=4, candidates=3, batch=4, seed=1, dist="vae", alpha_trajectories=6)
    return GenerationConfig(**{**base, **kw})


def test_backward_steps_chain_into_the_start_state(trained):
    data, spec, rt, _, vae = trained
    g = generate(data, rt, vae, _cfg(), progress=False)
    H, L = 7, 4
    assert g.observations.shape == (H, L, spec.obs_dim) and g.next_observations.shape == (H, L, spec.obs_dim)
    assert g.rewards.shape == (H, L) and g.reliability.shape == (H, L) and g.kept.shape == (H, L)
    # step 0 leads into the real start state; step u into step u-1's state (backward)
    np.testing.assert_allclose(g.next_observations[:, 0], data.observations[g.start_rows], atol=1e-6)
    np.testing.assert_allclose(g.next_observations[:, 1:], g.observations[:, :-1], atol=1e-6)
    # kept is a prefix
    assert np.all(np.diff(g.kept.astype(int), axis=1) <= 0)


def test_forward_steps_chain_out_of_the_start_state(trained):
    data, spec, _, ft, vae = trained
    g = generate(data, ft, vae, _cfg(), progress=False)
    np.testing.assert_allclose(g.observations[:, 0], data.observations[g.start_rows], atol=1e-6)
    np.testing.assert_allclose(g.observations[:, 1:], g.next_observations[:, :-1], atol=1e-6)


def test_discrete_generation_stays_on_the_grid(grid_data):
    data = grid_data
    spec = Spec.fit(data, rtg_bins=8)
    rt = train_sequence_model(data, RTConfig(**TINY), progress=False, spec=spec)
    vae = train_vae(data, spec, VAEConfig(steps=10, hidden=(8,), latent_dim=2), progress=False)
    g = generate(data, rt, vae, _cfg(num_trajectories=20, reward="sample"), progress=False)
    assert np.all((g.observations >= 0) & (g.observations <= 9))
    assert np.all(g.observations == np.round(g.observations))
    assert set(np.unique(g.actions)) <= {0, 1, 2, 3}
    assert set(np.unique(g.rewards)) <= {0.0, 1.0}
    # the default writes the reward head's expectation: between the data's rewards, not only at them
    m = generate(data, rt, vae, _cfg(num_trajectories=20), progress=False)
    assert np.all((m.rewards >= 0.0) & (m.rewards <= 1.0))
    assert not set(np.unique(m.rewards)) <= {0.0, 1.0}


def test_tilt_choice_prefers_high_return_and_kappa_zero_is_uniform():
    rng = np.random.default_rng(0)
    r_bar = np.tile([0.0, 0.1, 1.0, 0.2], 2000)  # 2000 trajectories × 4 candidates
    pick = tilt_choice(r_bar, 4, 50.0, rng)
    assert np.all(pick % 4 == 2) and np.array_equal(pick // 4, np.arange(2000))
    flat = tilt_choice(r_bar, 4, 0.0, rng) % 4
    assert np.all(np.abs(np.bincount(flat, minlength=4) / 2000 - 0.25) < 0.05)
    # κ = 5: weights e^0, e^0.5, e^5, e^1 -> the best candidate ~94% of the time
    share = np.mean(tilt_choice(r_bar, 4, 5.0, rng) % 4 == 2)
    w = np.exp(5 * np.array([0.0, 0.1, 1.0, 0.2]))
    assert abs(share - w[2] / w.sum()) < 0.03


def test_trajectory_tilt_keeps_one_candidate_of_higher_return(trained):
    data, spec, rt, _, vae = trained
    g = generate(data, rt, vae, _cfg(kappa=50.0, truncation=False), progress=False)
    assert g.observations.shape[0] == 7 and g.tilt["candidates"] == 3
    assert g.tilt["chosen_mean_reward"] >= g.tilt["candidate_mean_reward"]
    # the kept trajectories still chain into their start states
    np.testing.assert_allclose(g.next_observations[:, 0], data.observations[g.start_rows], atol=1e-6)
    assert generate(data, rt, vae, _cfg(kappa=0.0), progress=False).tilt is None
    step = generate(data, rt, vae, _cfg(tilt="step"), progress=False)
    assert step.tilt is None and step.observations.shape == g.observations.shape


def test_same_seed_same_trajectories(trained):
    data, _, rt, _, vae = trained
    a = generate(data, rt, vae, _cfg(), progress=False)
    b = generate(data, rt, vae, _cfg(), progress=False)
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.reliability, b.reliability)


def test_decoding_in_segments_computes_what_one_scan_does(trained):
    # segments only change how many cache positions each token reads, never what it attends to
    data, _, rt, ft, _ = trained
    for model in (rt, ft):
        C, H = 3, 4
        bounds = data.episodes()
        rtg = reward_to_go(data.rewards, bounds, model.config.gamma)
        ctx = _context(data, rtg, bounds, select_starts(data, H, "uniform", np.random.default_rng(0)), C,
                       model.config.direction)
        NG = model.config.context_steps - C
        forced = {k: jnp.asarray(np.repeat(np.asarray(ctx[k])[:, :1], NG, 1)) for k in ("s", "a", "r", "R")}
        forced["done"] = jnp.zeros((H, NG), bool)
        args = ({k: jnp.asarray(v) for k, v in ctx.items()}, jax.random.PRNGKey(3), forced, jnp.asarray(False),
                jnp.float32(5.0))
        one, three = (_build_block(model, H, 2, C, "mean", 2, segments=n)(*args) for n in (1, 3))
        for a, b in zip(one, three):
            np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=1e-5)


def test_truncation_at_the_alpha_measured_on_real_trajectories(trained):
    data, _, rt, _, vae = trained
    # κ = 0: the tilt scores candidates after truncation, so with it on and off it may keep others
    g = generate(data, rt, vae, _cfg(reliability="sum", alpha_quantile=0.5, kappa=0.0), progress=False)
    # α is the quantile of Γ over real trajectories replayed through the same model
    assert g.alpha == pytest.approx(float(np.quantile(g.real_reliability, 0.5)))
    # kept steps are exactly those before the first Γ > α
    first_bad = np.argmax(np.concatenate([g.reliability > g.alpha, np.ones((7, 1), bool)], 1), axis=1)
    np.testing.assert_array_equal(g.lengths, np.minimum(first_bad, 4))
    off = generate(data, rt, vae, _cfg(reliability="sum", alpha_quantile=0.5, truncation=False, kappa=0.0),
                   progress=False)
    assert np.all(off.lengths == 4)
    np.testing.assert_allclose(off.reliability, g.reliability)
    # a cumulative Γ (here the running sum) grows along every trajectory, so it can pass α
    assert np.all(np.diff(off.reliability, axis=1) >= 0)


def test_fixed_length_ablation_ignores_reliability(trained):
    data, _, rt, _, vae = trained
    g = generate(data, rt, vae, _cfg(fixed_length=3, alpha_quantile=0.01), progress=False)
    assert g.kept.shape[1] == 3 and np.all(g.lengths == 3)


def test_trajectories_longer_than_the_window_slide_it(trained):
    data, spec, rt, ft, vae = trained
    # window K = 8, context 3: 5 new steps per window, so 12 steps take three windows
    g = generate(data, rt, vae, _cfg(max_length=12, context=3, truncation=False), progress=False)
    assert g.observations.shape == (7, 12, spec.obs_dim) and np.all(g.lengths == 12)
    np.testing.assert_allclose(g.next_observations[:, 0], data.observations[g.start_rows], atol=1e-6)
    np.testing.assert_allclose(g.next_observations[:, 1:], g.observations[:, :-1], atol=1e-6)
    f = generate(data, ft, vae, _cfg(max_length=12, context=3, truncation=False), progress=False)
    alive = f.kept
    np.testing.assert_allclose(f.observations[:, 1:][alive[:, 1:]], f.next_observations[:, :-1][alive[:, 1:]],
                               atol=1e-6)
    assert np.isfinite(g.reliability).all() and np.isfinite(f.reliability).all()


def test_context_must_fit_the_window(trained):
    data, _, rt, _, vae = trained
    with pytest.raises(ValueError, match="context"):
        generate(data, rt, vae, _cfg(context=8), progress=False)


def test_goal_start_is_state_of_maximal_reward(grid_data):
    rng = np.random.default_rng(0)
    starts = select_starts(grid_data, 50, "goal", rng)
    bounds = grid_data.episodes()
    for row in starts:
        a, b = bounds[np.searchsorted(bounds[:, 1], row, side="right")]
        assert grid_data.rewards[row] == grid_data.rewards[a:b].max()


def test_rewarded_start_skips_episodes_without_reward():
    from rtaug.data import Dataset

    # four 5-step episodes; only the second and the fourth earn anything
    rewards = np.zeros(20, np.float32)
    rewards[[7, 18]] = 1.0
    data = Dataset(observations=np.arange(20, dtype=np.float32)[:, None], actions=np.zeros((20, 1), np.float32),
                   rewards=rewards, terminals=np.zeros(20, bool), timeouts=np.arange(20) % 5 == 4,
                   next_observations=np.arange(1, 21, dtype=np.float32)[:, None])
    goal = select_starts(data, 200, "goal", np.random.default_rng(0))
    assert set(goal) == {4, 7, 14, 18}  # an episode without reward starts from its last row
    assert set(select_starts(data, 200, "rewarded", np.random.default_rng(0))) == {7, 18}
    with pytest.raises(ValueError, match="start 'rewarded': no episode has a reward above the data's least"):
        select_starts(data.subset(np.arange(5)), 3, "rewarded", np.random.default_rng(0))


def test_arrival_start_is_the_first_rewarded_row_of_a_rewarded_episode():
    from rtaug.data import Dataset

    # three 6-step episodes: a plateau of reward entered at row 2 and left after row 4, one with
    # none, one whose plateau runs to its end (entered at row 15)
    rewards = np.zeros(18, np.float32)
    rewards[[2, 3, 4, 15, 16, 17]] = 1.0
    data = Dataset(observations=np.arange(18, dtype=np.float32)[:, None], actions=np.zeros((18, 1), np.float32),
                   rewards=rewards, terminals=np.zeros(18, bool), timeouts=np.arange(18) % 6 == 5,
                   next_observations=np.arange(1, 19, dtype=np.float32)[:, None])
    assert set(select_starts(data, 200, "rewarded", np.random.default_rng(0))) == {4, 17}  # where it leaves
    assert set(select_starts(data, 200, "arrival", np.random.default_rng(0))) == {2, 15}  # where it enters
    with pytest.raises(ValueError, match="start 'arrival': no episode has a reward above the data's least"):
        select_starts(data.subset(np.arange(6, 12)), 3, "arrival", np.random.default_rng(0))
    assert GenerationConfig(start="arrival").start == "arrival"


def test_augmented_dataset_has_penalised_rewards_and_provenance(trained, tmp_path):
    data, _, rt, _, vae = trained
    beta = 0.5
    g = generate(data, rt, vae, _cfg(beta=beta, truncation=False), progress=False)
    model_data = merged_dataset(data, g, merge="prefix")  # the generated segments alone
    assert len(model_data) == int(g.lengths.sum())
    assert model_data.generated.all()
    # backward: each segment is in time order and ends in the real start state
    ends = np.flatnonzero(model_data.timeouts)
    assert len(ends) == 7
    np.testing.assert_allclose(model_data.next_observations[ends], data.observations[g.start_rows], atol=1e-6)
    # rewards are r̂ − β·s·Γ/α (s: the reward scale the penalty is measured in)
    first = model_data.rewards[ends[0]]
    h0_last = g.rewards[0, 0] - beta * g.reward_scale * g.reliability[0, 0] / g.alpha
    assert first == pytest.approx(h0_last, rel=1e-5, abs=1e-12)

    out = augment(data, g)  # merge="suffix": τ̂ + τ_suffix as one episode (Eq. 11)
    model_data = merged_dataset(data, g)
    assert len(out) == len(data) + len(model_data)
    assert not out.generated[: len(data)].any() and out.generated[len(data):].sum() == g.lengths.sum()
    # no episode ends at a join: every generated step leads into the next row, the last one into
    # the copied start row, and the episode ends where the real one did
    gen = np.flatnonzero(model_data.generated)
    assert not (model_data.terminals | model_data.timeouts)[gen].any()
    np.testing.assert_allclose(model_data.observations[gen + 1], model_data.next_observations[gen], atol=1e-6)
    assert len(model_data.episodes()) == 7
    assert out.metadata["generator"]["generator"] == "rt" and out.metadata["merge"] == "suffix"
    path = tmp_path / "aug.hdf5"
    save_hdf5(out, path)
    back = load_hdf5(path)
    np.testing.assert_array_equal(back.generated, out.generated)
    np.testing.assert_allclose(back.reliability, out.reliability)
    assert back.metadata["generator"]["max_length"] == 4


def test_backward_mlp_uses_given_starts_and_lengths(trained):
    data, spec, rt, _, vae = trained
    mlp = train_backward_mlp(data, spec, BackwardMLPConfig(steps=20, hidden=(16,)), progress=False)
    starts = np.array([3, 10, 25])
    lengths = np.array([2, 0, 3])
    g = generate_backward_mlp(data, mlp, vae, starts, lengths, seed=0)
    np.testing.assert_array_equal(g.lengths, lengths)
    np.testing.assert_allclose(g.next_observations[:, 0], data.observations[starts], atol=1e-6)
    np.testing.assert_allclose(g.next_observations[:, 1:], g.observations[:, :-1], atol=1e-6)
    assert g.config["generator"] == "backward-mlp"


@pytest.mark.parametrize("field, value", [("tilt", "episode"), ("reward", "median")])
def test_unknown_tilt_or_reward_is_a_clear_error(field, value):
    with pytest.raises(ValueError, match=f"GenerationConfig.{field} must be one of"):
        GenerationConfig(**{field: value})


def test_batches_decoded_at_once_compute_what_one_at_a_time_does(trained):
    # every batch has its key before any decodes, so threads change the speed, never the result
    data, _, rt, ft, vae = trained
    for model in (rt, ft):
        one, three = (generate(data, model, vae, _cfg(batch=2), progress=False, concurrency=c) for c in (1, 3))
        assert one.alpha == three.alpha
        for name in ("observations", "actions", "rewards", "reliability", "kept", "real_reliability"):
            np.testing.assert_array_equal(getattr(one, name), getattr(three, name), err_msg=name)
    with pytest.raises(ValueError, match="concurrency must be a positive int"):
        generate(data, rt, vae, _cfg(), progress=False, concurrency=0)
