"""Episode structure over flat D4RL arrays: boundaries, returns-to-go, context windows, normalisation.

Everything here is pure numpy and vectorised because it runs over full datasets (up to ~4M rows).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["episode_bounds", "episode_returns", "reward_to_go", "window_rows", "Normalizer"]


def episode_bounds(terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """(E, 2) int64 array of [start, end) per episode; a trailing unterminated segment is an episode too."""
    done = np.asarray(terminals, dtype=bool).ravel() | np.asarray(timeouts, dtype=bool).ravel()
    n = done.shape[0]
    ends = np.flatnonzero(done) + 1
    if n and not done[-1]:
        ends = np.append(ends, n)
    starts = np.concatenate([[0], ends[:-1]]) if ends.size else ends
    return np.stack([starts, ends], axis=1).astype(np.int64).reshape(-1, 2)


def episode_returns(rewards: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """(E,) undiscounted return of each [start, end) episode in `bounds`."""
    csum = np.concatenate([[0.0], np.cumsum(rewards, dtype=np.float64)])
    return csum[bounds[:, 1]] - csum[bounds[:, 0]]


def reward_to_go(rewards: np.ndarray, bounds: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted return from each row to the end of its episode, (N,) float32.

    Solves R_t = r_t + g_t * R_{t+1} (g_t = 0 on an episode's last row) with a log-depth
    doubling scan: each pass is a handful of whole-array operations, and the number of passes
    is log2 of the longest episode, so 4M rows take well under a second without a Python
    loop over rows. Unlike a "scale by gamma^-t and cumsum" trick it never builds huge or
    tiny intermediates, so it stays accurate for long episodes and small gamma.
    """
    r = np.asarray(rewards, dtype=np.float64).ravel()
    n = r.shape[0]
    bounds = np.asarray(bounds, dtype=np.int64).reshape(-1, 2)
    acc = r.copy()
    if n == 0:
        return acc.astype(np.float32)
    mult = np.full(n, float(gamma))
    # Cut the recurrence at every episode edge; the start-1 cut also covers gaps between bounds.
    mult[bounds[:, 1] - 1] = 0.0
    before_start = bounds[:, 0] - 1
    mult[before_start[before_start >= 0]] = 0.0
    mult[-1] = 0.0
    step = 1
    while step < n and mult.any():
        # acc_t now sums rows [t, t+step); fold in the next block of the same length.
        acc[:-step] += mult[:-step] * acc[step:]
        mult[:-step] *= mult[step:]
        mult[-step:] = 0.0
        step *= 2
    return acc.astype(np.float32)


def window_rows(start_rows: np.ndarray, bounds: np.ndarray, K: int, direction: str):
    """K-row windows that never cross an episode edge.

    Returns (rows, mask), both (B, K); padded positions repeat the start row so that gathers
    with `rows` are always in bounds, and `mask` tells real rows from padding.
    """
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
    start = np.asarray(start_rows, dtype=np.int64).ravel()
    bounds = np.asarray(bounds, dtype=np.int64).reshape(-1, 2)
    ep = np.searchsorted(bounds[:, 0], start, side="right") - 1
    if start.size and (np.any(ep < 0) or np.any(start >= bounds[ep, 1])):
        raise ValueError("start_rows contains a row outside every episode in bounds")
    offsets = np.arange(K, dtype=np.int64)
    if direction == "forward":
        rows = start[:, None] + offsets[None, :]
        mask = rows < bounds[ep, 1][:, None]
    else:
        rows = start[:, None] - offsets[None, :]
        mask = rows >= bounds[ep, 0][:, None]
    rows = np.where(mask, rows, start[:, None])
    return rows, mask


@dataclass
class Normalizer:
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, axis=0, eps: float = 1e-6) -> "Normalizer":
        # float64 accumulation: float32 sums over millions of rows drift noticeably.
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=axis)
        std = np.maximum(x.std(axis=axis), eps)
        return cls(np.asarray(mean, np.float32), np.asarray(std, np.float32))

    def normalize(self, x):
        return (x - self.mean) / self.std

    def denormalize(self, x):
        return x * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": np.asarray(self.mean).tolist(), "std": np.asarray(self.std).tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))
