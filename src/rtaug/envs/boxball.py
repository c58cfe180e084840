"""BoxBall (paper §4.3, Fig. 4): a ball on a 10x10 grid must reach a goal behind a wall.

The paper gives only a picture, so the layout below is ours: the goal sits in the top row at
x = 5 and a wall spans the cell edges directly beneath it, x = 3..7, so from the start row the
ball must detour via x <= 2 or x >= 8. The dynamics are exposed as plain vectorised numpy
functions (`true_step`, `crosses_wall`, `in_grid`) because the audit applies them to whole
generated datasets at once; the gymnasium env is a thin wrapper over the same functions, so
there is exactly one definition of "what the environment does".
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

__all__ = [
    "GRID", "GOAL", "ACTIONS", "WALL", "MAX_EPISODE_STEPS",
    "true_step", "crosses_wall", "in_grid", "BoxBallEnv", "make_boxball", "render_grid",
]

GRID = 10
GOAL = (5, 9)
# Action index -> (dx, dy): 0 up, 1 down, 2 left, 3 right.
ACTIONS = np.array([[0, 1], [0, -1], [-1, 0], [1, 0]], dtype=np.int64)
# On a cell-centre grid the wall lies on cell edges, so it blocks exactly the moves
# (x, 8) <-> (x, 9) for x in 3..7 and nothing else.
WALL = ((2.5, 8.5), (7.5, 8.5))
MAX_EPISODE_STEPS = 50


def in_grid(s) -> np.ndarray:
    """(...) bool: both coordinates integer-valued and within 0..GRID-1."""
    s = np.asarray(s, dtype=np.float64)
    ok = (s == np.round(s)) & (s >= 0) & (s <= GRID - 1)
    return ok.all(axis=-1)


def crosses_wall(s, s_next) -> np.ndarray:
    """(...) bool: does the straight segment s -> s_next touch the wall segment?

    Works for arbitrary (float, non-adjacent) points so that the audit catches generated jumps
    that leap over the wall. The segments are closed: grazing an end of the wall counts, since
    a real ball could not pass through it either.
    """
    p = np.asarray(s, dtype=np.float64)
    q = np.asarray(s_next, dtype=np.float64)
    p, q = np.broadcast_arrays(p, q)
    (x0, wy), (x1, _) = WALL
    px, py, qx, qy = p[..., 0], p[..., 1], q[..., 0], q[..., 1]
    dy = qy - py
    flat = dy == 0
    # A segment parallel to the wall meets it only when it lies on the wall's line and the
    # x-intervals overlap.
    on_line = flat & (py == wy) & (np.maximum(px, qx) >= x0) & (np.minimum(px, qx) <= x1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(flat, -1.0, (wy - py) / np.where(flat, 1.0, dy))
    xc = px + t * (qx - px)
    through = ~flat & (t >= 0) & (t <= 1) & (xc >= x0) & (xc <= x1)
    return on_line | through


def true_step(state, action):
    """The true dynamics over a batch: (next_state int64 (..., 2), reward float32 (...), terminated bool (...)).

    A move that would leave the grid or pass through the wall leaves the ball where it is.
    """
    s = np.asarray(state).astype(np.int64)
    a = np.asarray(action).astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= len(ACTIONS)):
        # Negative indices would otherwise wrap silently into a different move.
        raise ValueError(f"BoxBall: actions must be in 0..{len(ACTIONS) - 1}, got {a.min()}..{a.max()}")
    cand = s + ACTIONS[a]
    blocked = ~in_grid(cand) | crosses_wall(s, cand)
    nxt = np.where(blocked[..., None], s, cand)
    terminated = (nxt[..., 0] == GOAL[0]) & (nxt[..., 1] == GOAL[1])
    return nxt, terminated.astype(np.float32), terminated


class BoxBallEnv(gym.Env):
    """Gymnasium BoxBall. Observation: np.int64 [x, y]; reward 1 on reaching GOAL (terminates).

    Start state (our choice; the paper does not say): x uniform in 0..9 on the bottom row
    y = 0, so every episode starts on the far side of the wall and the data cover both detours.
    Episodes are truncated after `max_episode_steps` steps.
    """

    metadata = {"render_modes": []}

    def __init__(self, max_episode_steps: int = MAX_EPISODE_STEPS):
        self.observation_space = gym.spaces.MultiDiscrete([GRID, GRID])
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self.max_episode_steps = int(max_episode_steps)
        self._state = np.zeros(2, dtype=np.int64)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._state = np.array([self.np_random.integers(0, GRID), 0], dtype=np.int64)
        self._t = 0
        return self._state.copy(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"BoxBall: action {action!r} is outside Discrete({len(ACTIONS)})")
        nxt, reward, terminated = true_step(self._state, int(action))
        self._state = nxt
        self._t += 1
        truncated = self._t >= self.max_episode_steps
        return self._state.copy(), float(reward), bool(terminated), bool(truncated), {}


def make_boxball(**kwargs) -> BoxBallEnv:
    return BoxBallEnv(**kwargs)


def render_grid(ax):
    """Draw the grid, the wall (thick brown line) and the goal (red square) on a matplotlib Axes."""
    import matplotlib.patches as patches

    for v in np.arange(-0.5, GRID, 1.0):
        ax.axhline(v, color="0.85", lw=0.5, zorder=0)
        ax.axvline(v, color="0.85", lw=0.5, zorder=0)
    ax.add_patch(patches.Rectangle((GOAL[0] - 0.4, GOAL[1] - 0.4), 0.8, 0.8, color="red", zorder=2))
    (x0, y0), (x1, y1) = WALL
    ax.plot([x0, x1], [y0, y1], color="saddlebrown", lw=5, solid_capstyle="butt", zorder=3)
    ax.set_xlim(-0.5, GRID - 0.5)
    ax.set_ylim(-0.5, GRID - 0.5)
    ax.set_xticks(range(GRID))
    ax.set_yticks(range(GRID))
    ax.set_aspect("equal")
    return ax
