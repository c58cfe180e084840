"""Cumulative reliability Γ (Eq. 3), the truncation metric U (Eq. 4) and the α-pessimistic
reward (Eq. 6). Pure array functions: the generator calls them, the tests check them on
hand-computed numbers.

Which attention weights Γ uses (DESIGN §4, a choice): the last layer's attention, averaged
over heads, of the query at the *final* token of generated step t, summed over each generated
step's tokens. The softmax is the attention's own, over every token in the window (real
context included), so attention paid to real data dilutes Γ as Eq. 3's denominator over all
n positions says. The final token of step t is used rather than the token that starts step t
because, under the causal mask, the latter cannot see step t, and step t's own error would get
weight zero (docs/decisions.md).
"""

from __future__ import annotations

import numpy as np


def cumulative_reliability(attention, dist):
    """Γ_t = Σ_{i ≤ t} w_{t,i} · DIST_i.

    attention: (..., L, L) with [t, i] the attention mass from step t's query on step i's tokens.
    dist: (..., L) the VAE error of the transition each generated step creates.
    """
    attention = np.asarray(attention, np.float64)
    L = attention.shape[-1]
    lower = np.tril(np.ones((L, L), bool))
    return np.sum(np.where(lower, attention, 0.0) * np.asarray(dist, np.float64)[..., None, :], axis=-1)


def truncate(gamma, alpha: float):
    """U_t = 1 when Γ_t > α (Eq. 4). Returns (U, kept): kept is True for steps before the first U = 1.

    The offending step itself is dropped (Eq. 5: its transition probability is set to 0).
    """
    U = np.asarray(gamma) > alpha
    kept = np.cumsum(U, axis=-1) == 0
    return U, kept


def pessimistic_reward(reward, gamma, alpha: float, beta: float):
    """r̂ − β · Γ / α (Eq. 6, for steps with U = 0)."""
    return np.asarray(reward, np.float64) - beta * np.asarray(gamma, np.float64) / alpha
