"""Γ (Eq. 3), U (Eq. 4) and the α-pessimistic reward (Eq. 6) on hand-computed numbers."""

import numpy as np
import pytest

from rtaug.generate.reliability import cumulative_reliability, pessimistic_reward, truncate


def test_gamma_is_attention_weighted_sum_of_past_errors():
    # row t: attention of step t's query on steps 0..2; entries above the diagonal (future
    # steps) must be ignored even if non-zero
    attn = np.array([[0.5, 0.9, 0.9], [0.2, 0.3, 0.9], [0.1, 0.1, 0.4]])
    dist = np.array([1.0, 2.0, 3.0])
    gamma = cumulative_reliability(attn, dist)
    np.testing.assert_allclose(gamma, [0.5, 0.2 + 0.6, 0.1 + 0.2 + 1.2])


def test_gamma_batched_matches_per_trajectory():
    rng = np.random.default_rng(0)
    attn = rng.random((5, 4, 4))
    dist = rng.random((5, 4))
    batched = cumulative_reliability(attn, dist)
    for h in range(5):
        np.testing.assert_allclose(batched[h], cumulative_reliability(attn[h], dist[h]))


def test_truncation_drops_offending_step_and_everything_after():
    U, kept = truncate(np.array([0.5, 0.8, 1.5, 0.2]), alpha=1.0)
    assert U.tolist() == [False, False, True, False]
    # generation stops at the first U = 1: a later reliable-looking step is not kept
    assert kept.tolist() == [True, True, False, False]


def test_truncation_threshold_is_strict():
    U, kept = truncate(np.array([1.0, 1.0 + 1e-9]), alpha=1.0)
    assert U.tolist() == [False, True]
    assert kept.tolist() == [True, False]


def test_pessimistic_reward():
    r = pessimistic_reward(np.array([1.0, 0.0]), np.array([0.5, 0.2]), alpha=2.0, beta=0.5)
    np.testing.assert_allclose(r, [1.0 - 0.5 * 0.5 / 2.0, -0.5 * 0.2 / 2.0])


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_pessimistic_reward_beta_zero_is_identity(beta):
    r = np.array([0.3, -1.0])
    out = pessimistic_reward(r, np.array([0.4, 0.4]), alpha=1.0, beta=beta)
    assert np.allclose(out, r) == (beta == 0.0)


ATTN = np.array([[0.5, 0.0, 0.0], [0.2, 0.3, 0.0], [0.1, 0.1, 0.4]])
DIST = np.array([1.0, 2.0, 3.0])


def test_paper_form_is_an_average_that_cannot_exceed_the_largest_dist():
    rng = np.random.default_rng(1)
    w = rng.random((50, 6, 6))
    w /= w.sum(-1, keepdims=True)  # one softmax row per step, as Eq. 3 reads
    d = rng.random((50, 6))
    g = cumulative_reliability(w, d, "paper")
    assert np.all(g <= d.max(axis=-1, keepdims=True) + 1e-12)


def test_window_form_scales_attention_by_the_steps_in_view():
    n = np.array([4.0, 5.0, 6.0])
    g = cumulative_reliability(ATTN, DIST, "window", n)
    np.testing.assert_allclose(g, [4 * 0.5, 5 * (0.2 + 0.6), 6 * (0.1 + 0.2 + 1.2)])
    # uniform attention over the n steps in view makes it the running sum of DIST
    uniform = np.tril(np.ones((3, 3))) / n[:, None]
    np.testing.assert_allclose(cumulative_reliability(uniform, DIST, "window", n), np.cumsum(DIST))
    with pytest.raises(ValueError, match="window_steps"):
        cumulative_reliability(ATTN, DIST, "window")


def test_renormalised_form_is_count_times_weighted_mean():
    g = cumulative_reliability(ATTN, DIST, "renormalised")
    np.testing.assert_allclose(g, [1 * 1.0, 2 * (0.2 * 1 + 0.3 * 2) / 0.5, 3 * (0.1 + 0.2 + 1.2) / 0.6])


def test_sum_form_and_unknown_form():
    np.testing.assert_allclose(cumulative_reliability(ATTN, DIST, "sum"), [1.0, 3.0, 6.0])
    with pytest.raises(ValueError, match="form"):
        cumulative_reliability(ATTN, DIST, "average")
