"""Maze2D (D4RL) on gymnasium-robotics' PointMaze, speaking D4RL's coordinates.

D4RL's point-mass mazes are rebuilt here because their data files cannot be downloaded on every
machine. The physics is gymnasium-robotics' PointMaze (MuJoCo: timestep 0.01, Euler, joint
damping 1, gear 100, actions clipped to [-1, 1], velocity clipped to ±5 before each step), which
is D4RL's point model; everything *outside* the simulator is D4RL's:

- the maze strings (`MAZES`, `#` wall, `O` free, `G` the evaluation goal);
- the frame: the observation is [x, y, vx, vy] with x along the string's rows and y along its
  columns, and qpos (i, j) is where D4RL's point sits in cell (i, j), i.e. 0.2 past the cell's
  centre on both axes (D4RL's body is mounted at world (1.2, 1.2) while the wall of cell (i, j)
  is centred at world (i + 1, j + 1)), so the centre of cell (i, j) is qpos (i − 0.2, j − 0.2);
- the evaluation goal: exactly qpos = (row, column) of the G cell;
- rewards: sparse = 1.0 when ||pos − goal|| <= 0.5 (no termination there), dense =
  exp(−||pos − goal||), both judged on the state *after* the step, as D4RL's env does;
- resets: a uniformly drawn free or goal cell, qpos = cell + U(−0.1, 0.1), qvel = N(0, 0.1²);
- time limits 300 / 600 / 800 steps (a truncation, never a termination).

`to_sim_*` / `from_sim_*` map D4RL-frame positions, velocities and actions to and from
gymnasium-robotics' frame (x = column, y = −row, centred on the map), a rotation plus a shift, so
the isotropic point dynamics are identical in both.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

__all__ = [
    "MAZES", "MAX_EPISODE_STEPS", "POINT_RADIUS", "GOAL_RADIUS", "BODY_OFFSET",
    "MazeLayout", "get_layout", "maze_reward", "Maze2DEnv", "Maze2DBatch", "Maze2DError",
]

# Rows of D4RL's maze strings (d4rl/pointmaze/maze_model.py: U_MAZE, MEDIUM_MAZE, LARGE_MAZE).
MAZES: dict[str, tuple[str, ...]] = {
    "umaze": (
        "#####",
        "#GOO#",
        "###O#",
        "#OOO#",
        "#####",
    ),
    "medium": (
        "########",
        "#OO##OO#",
        "#OO#OOO#",
        "##OOO###",
        "#OO#OOO#",
        "#O#OO#O#",
        "#OOO#OG#",
        "########",
    ),
    "large": (
        "############",
        "#OOOO#OOOOO#",
        "#O##O#O#O#O#",
        "#OOOOOO#OOO#",
        "#O####O###O#",
        "#OO#O#OOOOO#",
        "##O#O#O#O###",
        "#OO#OOO#OGO#",
        "############",
    ),
}
MAX_EPISODE_STEPS = {"umaze": 300, "medium": 600, "large": 800}

POINT_RADIUS = 0.1   # the point's sphere geom
GOAL_RADIUS = 0.5    # sparse reward radius (D4RL: <= 0.5)
BODY_OFFSET = 0.2    # D4RL's qpos (i, j) is 0.2 past cell (i, j)'s centre on both axes
RESET_NOISE = 0.1    # U(-0.1, 0.1) on qpos at reset and on random goals
RESET_VEL_STD = 0.1  # N(0, 0.1²) on qvel at reset
_WALL_CHUNK = 1 << 21  # point-box pairs per chunk in wall_distance


class Maze2DError(ValueError):
    """Bad input to a maze task (wrong observation size, unknown maze, ...)."""


@dataclass(frozen=True)
class MazeLayout:
    """One maze: its string, wall grid, cells, evaluation goal and frame mapping."""

    name: str
    rows: tuple[str, ...]
    walls: np.ndarray = field(repr=False)            # (H, W) bool
    free_cells: np.ndarray = field(repr=False)       # (F, 2) int: D4RL's empty cells (sorted) then G
    goal_cell: tuple[int, int] = (0, 0)

    @classmethod
    def from_rows(cls, name: str, rows) -> "MazeLayout":
        rows = tuple(str(r) for r in rows)
        if not rows or len({len(r) for r in rows}) != 1:
            raise Maze2DError(f"maze {name!r}: rows must be non-empty and of equal length")
        bad = sorted({ch for r in rows for ch in r} - set("#OG"))
        if bad:
            raise Maze2DError(f"maze {name!r}: unknown tile(s) {bad}; expected '#', 'O' or 'G'")
        grid = np.array([list(r) for r in rows])
        goals = np.argwhere(grid == "G")
        if len(goals) != 1:
            raise Maze2DError(f"maze {name!r}: expected exactly one 'G' cell, found {len(goals)}")
        empty = np.argwhere(grid == "O")  # argwhere is row-major sorted, like D4RL's sorted list
        free = np.concatenate([empty, goals]).astype(np.int64)
        return cls(name=name, rows=rows, walls=grid == "#", free_cells=free,
                   goal_cell=(int(goals[0, 0]), int(goals[0, 1])))

    # ---------------------------------------------------------------- geometry

    @property
    def shape(self) -> tuple[int, int]:
        return self.walls.shape

    @property
    def eval_goal(self) -> np.ndarray:
        """D4RL's fixed evaluation goal: qpos = (row, column) of the G cell."""
        return np.asarray(self.goal_cell, dtype=np.float64)

    def wall_distance(self, xy) -> np.ndarray:
        """Signed distance (...) from points (..., 2) in D4RL's frame to the nearest wall box.

        Negative inside a wall; a point outside the map counts as inside a wall.
        """
        p = np.asarray(xy, dtype=np.float64)
        if p.shape[-1] != 2:
            raise Maze2DError(f"maze {self.name}: positions must have 2 coordinates, got shape {p.shape}")
        # Continuous cell coordinates: the centre of cell (i, j) is at (i, j).
        c = p + BODY_OFFSET
        flat = c.reshape(-1, 2)
        boxes = np.argwhere(self.walls).astype(np.float64)                 # (B, 2) centres
        dist = np.empty(len(flat))
        step = max(1, _WALL_CHUNK // max(1, len(boxes)))                    # bounded memory for millions of points
        for lo in range(0, len(flat), step):
            d = np.abs(flat[lo:lo + step, None, :] - boxes[None, :, :]) - 0.5  # (n, B, 2)
            outside = np.linalg.norm(np.maximum(d, 0.0), axis=-1)
            inside = np.minimum(d.max(axis=-1), 0.0)
            dist[lo:lo + step] = (outside + inside).min(axis=1)
        h, w = self.shape
        off_map = ((flat[:, 0] < -0.5) | (flat[:, 0] > h - 0.5) | (flat[:, 1] < -0.5) | (flat[:, 1] > w - 0.5))
        dist = np.where(off_map, -np.inf, dist)
        return dist.reshape(p.shape[:-1])

    def in_wall(self, xy, radius: float = 0.0) -> np.ndarray:
        """(...) bool: does a disc of `radius` centred at each point (D4RL frame) overlap a wall?

        radius=0 asks whether the point itself lies inside a wall box; radius=POINT_RADIUS
        asks whether the ball would overlap one (real states touch walls within a few mm:
        MuJoCo's contacts are soft, so pass a small tolerance when judging data).
        """
        return self.wall_distance(xy) < radius

    def cell_of(self, xy) -> np.ndarray:
        """The cell (i, j) whose area contains each point (D4RL frame), (..., 2) int."""
        return np.floor(np.asarray(xy, dtype=np.float64) + BODY_OFFSET + 0.5).astype(np.int64)

    # ---------------------------------------------------------------- frame mapping
    # Continuous cell coordinates (r, c), the centre of cell (i, j) at (i, j):
    #   D4RL:               (r, c) = qpos + 0.2 (its body is mounted 0.2 past the origin)
    #   gymnasium-robotics: x = c + 0.5 − W/2, y = H/2 − 0.5 − r (W columns, H rows)

    def to_sim_pos(self, xy) -> np.ndarray:
        p = np.asarray(xy, dtype=np.float64)
        h, w = self.shape
        r = p[..., 0] + BODY_OFFSET
        c = p[..., 1] + BODY_OFFSET
        return np.stack([c + 0.5 - w / 2.0, h / 2.0 - 0.5 - r], axis=-1)

    def from_sim_pos(self, xy) -> np.ndarray:
        p = np.asarray(xy, dtype=np.float64)
        h, w = self.shape
        r = h / 2.0 - 0.5 - p[..., 1]
        c = p[..., 0] - 0.5 + w / 2.0
        return np.stack([r - BODY_OFFSET, c - BODY_OFFSET], axis=-1)

    @staticmethod
    def to_sim_vec(v) -> np.ndarray:
        """Velocities and actions (forces) D4RL → gymnasium-robotics: (vx, vy) → (vy, −vx)."""
        v = np.asarray(v, dtype=np.float64)
        return np.stack([v[..., 1], -v[..., 0]], axis=-1)

    @staticmethod
    def from_sim_vec(v) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        return np.stack([-v[..., 1], v[..., 0]], axis=-1)

    def to_gr_map(self) -> list[list[int]]:
        """The maze as gymnasium-robotics' maze_map (1 wall, 0 free)."""
        return [[1 if ch == "#" else 0 for ch in row] for row in self.rows]


_LAYOUTS: dict[str, MazeLayout] = {}


def get_layout(maze: str) -> MazeLayout:
    if maze not in MAZES:
        raise Maze2DError(f"unknown maze {maze!r}; known mazes: {', '.join(MAZES)}")
    if maze not in _LAYOUTS:
        _LAYOUTS[maze] = MazeLayout.from_rows(maze, MAZES[maze])
    return _LAYOUTS[maze]


def maze_reward(xy, goal, reward_type: str) -> np.ndarray:
    """D4RL's Maze2D reward of positions (..., 2) for a goal (2,) or (..., 2), float32."""
    dist = np.linalg.norm(np.asarray(xy, np.float64) - np.asarray(goal, np.float64), axis=-1)
    if reward_type == "sparse":
        return (dist <= GOAL_RADIUS).astype(np.float32)
    if reward_type == "dense":
        return np.exp(-dist).astype(np.float32)
    raise Maze2DError(f"unknown reward type {reward_type!r}; expected 'sparse' or 'dense'")


def check_observations(obs, what: str = "observations", source: str = "<input>") -> np.ndarray:
    """The array as float64 (N, 4), or a Maze2DError naming the problem."""
    a = np.asarray(obs)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != 4:
        raise Maze2DError(f"{source}: key '{what}': maze observations are [x, y, vx, vy] (4 values per row), "
                          f"got shape {np.shape(obs)}")
    return a.astype(np.float64)


def _point_maze_class():
    """gymnasium-robotics' PointMazeEnv; its import prints a notice about unrelated (Adroit) envs
    to stderr, which would land in every rtaug command's output, so that one import is muted."""
    import contextlib
    import io
    import sys

    if "gymnasium_robotics" not in sys.modules:
        with contextlib.redirect_stderr(io.StringIO()):
            import gymnasium_robotics  # noqa: F401
    from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv

    return PointMazeEnv


class Maze2DEnv(gym.Env):
    """One D4RL Maze2D task, simulated by gymnasium-robotics' PointMaze (MuJoCo).

    Observation: float64 [x, y, vx, vy] in D4RL's frame. Action: float32 Box(−1, 1, (2,)) in
    D4RL's frame. The goal is fixed (D4RL's G cell) unless `set_goal` moves it (the data
    collector does). `step` never terminates; it truncates after `max_episode_steps`.
    """

    metadata = {"render_modes": []}

    def __init__(self, maze: str = "umaze", reward_type: str = "sparse",
                 max_episode_steps: int | None = None):
        PointMazeEnv = _point_maze_class()

        if reward_type not in ("sparse", "dense"):
            raise Maze2DError(f"unknown reward type {reward_type!r}; expected 'sparse' or 'dense'")
        self.layout = get_layout(maze)
        self.maze = maze
        self.reward_type = reward_type
        self.max_episode_steps = int(max_episode_steps or MAX_EPISODE_STEPS[maze])
        self._gr = PointMazeEnv(maze_map=self.layout.to_gr_map(), reward_type=reward_type,
                                continuing_task=True, reset_target=False)
        self._gr.reset(seed=0)  # initialises the MuJoCo env; state is set by our own reset
        try:  # gymnasium-robotics leaves its generated model file in the temp dir; it is loaded now
            os.unlink(self._gr.tmp_xml_file_path)
        except OSError:
            pass
        self._sim = self._gr.point_env
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.goal = self.layout.eval_goal.copy()
        self._t = 0

    # ---------------------------------------------------------------- state

    @property
    def model(self):
        return self._sim.model

    @property
    def data(self):
        return self._sim.data

    def get_qpos(self) -> np.ndarray:
        return self.layout.from_sim_pos(self._sim.data.qpos[:2])

    def get_qvel(self) -> np.ndarray:
        return self.layout.from_sim_vec(self._sim.data.qvel[:2])

    def get_obs(self) -> np.ndarray:
        return np.concatenate([self.get_qpos(), self.get_qvel()])

    def set_state(self, qpos, qvel) -> None:
        """Put the simulator in D4RL-frame state (qpos, qvel)."""
        qpos = np.asarray(qpos, np.float64).reshape(2)
        qvel = np.asarray(qvel, np.float64).reshape(2)
        self._sim.set_state(self.layout.to_sim_pos(qpos), self.layout.to_sim_vec(qvel))

    def set_state_from_obs(self, obs) -> None:
        o = check_observations(obs, "observation")
        if o.shape[0] != 1:
            raise Maze2DError(f"set_state_from_obs: expected one observation, got {o.shape[0]}")
        self.set_state(o[0, :2], o[0, 2:])

    def set_goal(self, goal) -> None:
        self.goal = np.asarray(goal, np.float64).reshape(2).copy()

    def sample_cell_position(self, rng: np.random.Generator) -> np.ndarray:
        """D4RL's draw: a uniform free-or-goal cell + U(−0.1, 0.1) per axis (resets and random goals)."""
        cell = self.layout.free_cells[rng.integers(len(self.layout.free_cells))]
        return cell + rng.uniform(-RESET_NOISE, RESET_NOISE, size=2)

    # ---------------------------------------------------------------- gym API

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = options or {}
        if "qpos" in options:
            qpos = np.asarray(options["qpos"], np.float64)
            qvel = np.asarray(options.get("qvel", np.zeros(2)), np.float64)
        else:
            qpos = self.sample_cell_position(self.np_random)
            qvel = self.np_random.normal(0.0, RESET_VEL_STD, size=2)
        if "goal" in options:
            self.set_goal(options["goal"])
        self.set_state(qpos, qvel)
        self._t = 0
        return self.get_obs(), {"goal": self.goal.copy()}

    def sim_step(self, action) -> np.ndarray:
        """Advance the simulator one step with a D4RL-frame action; return the new observation.

        Exactly PointMaze's step: clip the action, clip the velocity to ±5, one MuJoCo step.
        """
        a = np.clip(np.asarray(action, np.float64).reshape(2), -1.0, 1.0)
        d = self._sim.data
        self._sim.set_state(d.qpos.copy(), np.clip(d.qvel, -5.0, 5.0))
        self._sim.do_simulation(self.layout.to_sim_vec(a), 1)
        return self.get_obs()

    def step(self, action):
        obs = self.sim_step(action)
        self._t += 1
        reward = float(maze_reward(obs[:2], self.goal, self.reward_type))
        truncated = self._t >= self.max_episode_steps
        return obs, reward, False, truncated, {"goal": self.goal.copy()}

    def close(self):
        self._gr.close()


class Maze2DBatch:
    """B copies of one maze simulated in lockstep: one MuJoCo model, B MjData (for evaluation).

    `step` does for each copy exactly what `Maze2DEnv.sim_step` does (clip the action, clip the
    velocity to ±5, one MuJoCo step) without building B gymnasium envs (≈ 80 ms each).
    """

    def __init__(self, maze: str, batch_size: int):
        import mujoco

        self._mujoco = mujoco
        self._env = Maze2DEnv(maze)
        self.layout = self._env.layout
        self.model = self._env.model
        self.datas = [mujoco.MjData(self.model) for _ in range(int(batch_size))]

    def __len__(self) -> int:
        return len(self.datas)

    def set_states(self, qpos, qvel) -> np.ndarray:
        qpos = self.layout.to_sim_pos(np.asarray(qpos, np.float64).reshape(len(self), 2))
        qvel = self.layout.to_sim_vec(np.asarray(qvel, np.float64).reshape(len(self), 2))
        for d, p, v in zip(self.datas, qpos, qvel):
            self._mujoco.mj_resetData(self.model, d)
            d.qpos[:] = p
            d.qvel[:] = v
            self._mujoco.mj_forward(self.model, d)
        return self.get_obs()

    def get_obs(self) -> np.ndarray:
        qp = np.stack([d.qpos[:2] for d in self.datas])
        qv = np.stack([d.qvel[:2] for d in self.datas])
        return np.concatenate([self.layout.from_sim_pos(qp), self.layout.from_sim_vec(qv)], axis=1)

    def step(self, actions) -> np.ndarray:
        a = np.asarray(actions, np.float64).reshape(len(self), 2)
        ctrl = self.layout.to_sim_vec(np.clip(a, -1.0, 1.0))
        mj = self._mujoco
        for d, c in zip(self.datas, ctrl):
            np.clip(d.qvel, -5.0, 5.0, out=d.qvel)
            d.ctrl[:] = c
            mj.mj_step(self.model, d)
        return self.get_obs()

    def close(self) -> None:
        self._env.close()
