"""Cumulative reliability Γ (Eq. 3), the truncation metric U (Eq. 4) and the α-pessimistic
reward (Eq. 6). Pure array functions: the generator calls them, the tests check them on
hand-computed numbers.

Γ must be able to grow along a trajectory: the paper calls it cumulative, and Theorem 1's α is
a budget on accumulated error. Eq. 3 read literally, Σ_i softmax(e)_i · DIST_i with one softmax
row, is a weighted *average*: never above the largest DIST, so with α = the data's largest
DIST it can never fire (it did not, on any task). That reading stays available as
`form="paper"`; the others accumulate (docs/reliability.md measures which predicts the
simulator's verdict best, docs/decisions.md records the choice):

- "window": the attention weights without the window's normalisation, w_{t,i}·n_t, with n_t
  the steps the query sees: uniform attention gives every generated step weight 1, so Γ is
  the running sum of DIST, re-weighted by where the model looked.
- "renormalised": the weights renormalised over the generated steps, times their count: the
  attention-weighted mean DIST of the generated steps, times how many there are.
- "sum": Σ_{i ≤ t} DIST_i, no attention.

Which attention weights (DESIGN §4, a choice): the last layer's attention, averaged over heads,
of the query at the *final* token of generated step t, summed over each generated step's
tokens. The final token of step t is used rather than the token that starts step t because,
under the causal mask, the latter cannot see step t, and step t's own error would get weight
zero (docs/decisions.md).
"""

from __future__ import annotations

import numpy as np

FORMS = ("paper", "window", "renormalised", "sum")


def cumulative_reliability(attention, dist, form: str = "paper", window_steps=None):
    """Γ_t for every generated step t.

    attention: (..., L, L), [t, i] the attention mass of step t's query on step i's tokens
    (zero for i > t and for steps that left the window). dist: (..., L) DIST of each step's
    transition. window_steps: (..., L) steps the query of step t sees (real ones included),
    needed by form="window".
    """
    if form not in FORMS:
        raise ValueError(f"reliability form must be one of {FORMS}, got {form!r}")
    attention = np.asarray(attention, np.float64)
    dist = np.asarray(dist, np.float64)
    L = attention.shape[-1]
    w = np.where(np.tril(np.ones((L, L), bool)), attention, 0.0)
    if form == "sum":
        return np.cumsum(dist, axis=-1)
    if form == "window":
        if window_steps is None:
            raise ValueError("form='window' needs window_steps (the steps each query sees)")
        w = w * np.asarray(window_steps, np.float64)[..., None]
    elif form == "renormalised":
        total = w.sum(axis=-1, keepdims=True)
        w = np.where(total > 0, w / np.where(total > 0, total, 1.0), 0.0) * np.arange(1, L + 1)[:, None]
    return np.sum(w * dist[..., None, :], axis=-1)


def truncate(gamma, alpha: float):
    """U_t = 1 when Γ_t > α (Eq. 4). Returns (U, kept): kept is True for steps before the first U = 1.

    The offending step itself is dropped (Eq. 5: its transition probability is set to 0).
    """
    U = np.asarray(gamma) > alpha
    kept = np.cumsum(U, axis=-1) == 0
    return U, kept


def pessimistic_reward(reward, gamma, alpha: float, beta: float):
    """r̂ − β · Γ / α (Eq. 6, for steps with U = 0); β here carries the reward's units."""
    return np.asarray(reward, np.float64) - beta * np.asarray(gamma, np.float64) / alpha
