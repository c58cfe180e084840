"""Generation: shapes, chaining of generated steps into the real data, truncation, the
fixed-length ablation, the α-pessimistic rewards and provenance of the written dataset."""

import dataclasses

import numpy as np
import pytest

from rtaug.data.hdf5 import load_hdf5, save_hdf5
from rtaug.generate.baselines import BackwardMLPConfig, generate_backward_mlp, train_backward_mlp
from rtaug.generate.generation import GenerationConfig, augment, generate, select_starts
from rtaug.generate.model import RTConfig
from rtaug.generate.spec import Spec
from rtaug.generate.train import VAEConfig, train_sequence_model, train_vae

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
    base = dict(num_trajectories=7, max_length=4, candidates=3, batch=4, seed=1)
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
    g = generate(data, rt, vae, _cfg(num_trajectories=20), progress=False)
    assert np.all((g.observations >= 0) & (g.observations <= 9))
    assert np.all(g.observations == np.round(g.observations))
    assert set(np.unique(g.actions)) <= {0, 1, 2, 3}
    assert set(np.unique(g.rewards)) <= {0.0, 1.0}


def test_same_seed_same_trajectories(trained):
    data, _, rt, _, vae = trained
    a = generate(data, rt, vae, _cfg(), progress=False)
    b = generate(data, rt, vae, _cfg(), progress=False)
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.reliability, b.reliability)


def test_truncation_follows_alpha(trained):
    data, _, rt, _, vae = trained
    never = generate(data, rt, dataclasses.replace(vae, alpha=1e9), _cfg(), progress=False)
    assert np.all(never.lengths == 4)
    always = generate(data, rt, dataclasses.replace(vae, alpha=1e-12), _cfg(), progress=False)
    assert np.all(always.lengths == 0)
    with pytest.raises(ValueError, match="survived"):
        always.to_dataset()
    # kept steps are exactly those before the first Γ > α
    mid = float(np.median(never.reliability))
    g = generate(data, rt, dataclasses.replace(vae, alpha=mid), _cfg(), progress=False)
    first_bad = np.argmax(np.concatenate([g.reliability > mid, np.ones((7, 1), bool)], 1), axis=1)
    np.testing.assert_array_equal(g.lengths, np.minimum(first_bad, 4))


def test_fixed_length_ablation_ignores_reliability(trained):
    data, _, rt, _, vae = trained
    g = generate(data, rt, dataclasses.replace(vae, alpha=1e-12), _cfg(fixed_length=3), progress=False)
    assert g.kept.shape[1] == 3 and np.all(g.lengths == 3)


def test_max_length_must_leave_room_for_context(trained):
    data, _, rt, _, vae = trained
    with pytest.raises(ValueError, match="context"):
        generate(data, rt, vae, _cfg(max_length=8), progress=False)


def test_goal_start_is_state_of_maximal_reward(grid_data):
    rng = np.random.default_rng(0)
    starts = select_starts(grid_data, 50, "goal", rng)
    bounds = grid_data.episodes()
    for row in starts:
        a, b = bounds[np.searchsorted(bounds[:, 1], row, side="right")]
        assert grid_data.rewards[row] == grid_data.rewards[a:b].max()


def test_augmented_dataset_has_penalised_rewards_and_provenance(trained, tmp_path):
    data, _, rt, _, vae = trained
    beta = 0.5
    g = generate(data, rt, dataclasses.replace(vae, alpha=1e9), _cfg(beta=beta), progress=False)
    model_data = g.to_dataset()
    assert len(model_data) == int(g.lengths.sum())
    assert model_data.generated.all()
    # backward: each segment is in time order and ends in the real start state
    ends = np.flatnonzero(model_data.timeouts)
    assert len(ends) == 7
    np.testing.assert_allclose(model_data.next_observations[ends], data.observations[g.start_rows], atol=1e-6)
    # rewards are r̂ − β·Γ/α
    first = model_data.rewards[ends[0]]
    h0_last = g.rewards[0, 0] - beta * g.reliability[0, 0] / g.alpha
    assert first == pytest.approx(h0_last, rel=1e-5, abs=1e-12)

    out = augment(data, g)
    assert len(out) == len(data) + len(model_data)
    assert not out.generated[: len(data)].any() and out.generated[len(data):].all()
    assert out.metadata["generator"]["generator"] == "rt"
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
