import numpy as np
import pytest

from rtaug.data.episodes import Normalizer, episode_bounds, reward_to_go, window_rows


def test_bounds_terminals_timeouts_and_trailing_segment():
    terminals = np.array([0, 1, 0, 0, 0, 0, 0], bool)
    timeouts = np.array([0, 0, 0, 1, 0, 0, 0], bool)
    np.testing.assert_array_equal(episode_bounds(terminals, timeouts), [[0, 2], [2, 4], [4, 7]])


def test_bounds_last_row_done_has_no_empty_episode():
    b = episode_bounds(np.array([0, 0, 1], bool), np.zeros(3, bool))
    np.testing.assert_array_equal(b, [[0, 3]])
    assert b.dtype == np.int64


def test_bounds_empty():
    assert episode_bounds(np.zeros(0, bool), np.zeros(0, bool)).shape == (0, 2)


def test_reward_to_go_gamma_one_multiple_episodes():
    rewards = np.array([1, 2, 3, 10, 20], np.float32)
    bounds = np.array([[0, 3], [3, 5]])
    np.testing.assert_allclose(reward_to_go(rewards, bounds, 1.0), [6, 5, 3, 30, 20])


def test_reward_to_go_gamma_half():
    rewards = np.array([1, 2, 4, 8, 1, 1], np.float32)
    bounds = np.array([[0, 4], [4, 6]])
    # 1 + 0.5*2 + 0.25*4 + 0.125*8 = 4; 2 + 2 + 2 = 6; 4 + 4 = 8; 8; 1 + 0.5 = 1.5; 1
    out = reward_to_go(rewards, bounds, 0.5)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [4, 6, 8, 8, 1.5, 1])


def test_reward_to_go_matches_reverse_loop_on_long_random_episodes():
    rng = np.random.default_rng(0)
    n = 5000
    rewards = rng.normal(size=n).astype(np.float32)
    terminals = rng.random(n) < 0.003
    bounds = episode_bounds(terminals, np.zeros(n, bool))
    ref = np.zeros(n)
    for s, e in bounds:
        acc = 0.0
        for i in range(e - 1, s - 1, -1):
            acc = rewards[i] + 0.99 * acc
            ref[i] = acc
    np.testing.assert_allclose(reward_to_go(rewards, bounds, 0.99), ref, rtol=1e-5, atol=1e-4)


def test_window_rows_forward_stops_at_episode_end():
    bounds = np.array([[0, 3], [3, 8]])
    rows, mask = window_rows(np.array([1, 3, 6]), bounds, 4, "forward")
    np.testing.assert_array_equal(rows, [[1, 2, 1, 1], [3, 4, 5, 6], [6, 7, 6, 6]])
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]])
    assert rows.dtype == np.int64 and mask.dtype == bool


def test_window_rows_backward_stops_at_episode_start():
    bounds = np.array([[0, 3], [3, 8]])
    rows, mask = window_rows(np.array([1, 3, 6]), bounds, 3, "backward")
    np.testing.assert_array_equal(rows, [[1, 0, 1], [3, 3, 3], [6, 5, 4]])
    np.testing.assert_array_equal(mask, [[1, 1, 0], [1, 0, 0], [1, 1, 1]])


def test_window_rows_bad_direction():
    with pytest.raises(ValueError, match="direction"):
        window_rows(np.array([0]), np.array([[0, 2]]), 2, "sideways")


def test_normalizer_round_trip_and_dict():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(1000, 3)).astype(np.float32)
    x[:, 2] = 5.0  # constant column: std must be floored, not zero
    norm = Normalizer.fit(x)
    z = norm.normalize(x)
    np.testing.assert_allclose(z[:, :2].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z[:, :2].std(0), 1, atol=1e-3)
    assert np.all(np.isfinite(z)) and norm.std[2] == pytest.approx(1e-6)
    np.testing.assert_allclose(norm.denormalize(z), x, rtol=1e-5, atol=1e-5)
    again = Normalizer.from_dict(norm.to_dict())
    assert isinstance(norm.to_dict()["mean"], list)
    np.testing.assert_array_equal(again.mean, norm.mean)
    np.testing.assert_array_equal(again.std, norm.std)
