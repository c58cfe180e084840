"""Maze2D datasets by D4RL's protocol: a noisy waypoint controller chasing random goals.

D4RL (scripts/generation/generate_maze2d_datasets.py with --noisy, d4rl/pointmaze/
waypoint_controller.py) made its Maze2D data as one continuous stream: the env is reset once; a
goal is drawn like a reset position; the controller plans a shortest path over maze cells to the
goal's cell, drives through jittered waypoints by PD control, the action gets N(0, 0.5²) noise;
on arrival (or after `episode_length` steps on one goal) a new goal is drawn, without a reset.

What we do differently, on purpose (each is a `DataRecipe` field or documented in docs/maze2d.md):
- `timeouts` mark every `episode_length` rows (fixed segments, as long as an evaluation episode),
  not goal arrivals (D4RL's files; `timeouts="goal"` reproduces that);
- every row is a true transition: D4RL's row after a goal switch repeats the previous
  observation while the simulator has moved on; ours does not;
- `rewards[t]` is judged on `next_observations[t]`, as the env's reward is (D4RL's relabelling
  judged `observations[t]`; `reward_on="current"` reproduces that);
- the planner is a breadth-first search over cells (D4RL: Q-iteration with discount 0.99, the
  same shortest paths; ties broken in D4RL's grid-action order).
"""
from __future__ import annotations

from collections import deque
from dataclasses import asdict, replace

import numpy as np
from rtaug.progress import progress_bar

from rtaug.envs.maze2d import MazeLayout, maze_reward

__all__ = ["WaypointController", "plan_cells", "collect_maze2d", "collect_maze2d_episodes", "relabel_rewards",
           "with_reward_type"]

# D4RL's grid actions in argmax order (gridcraft: up, down, left, right in its (row, col) terms).
_MOVES = ((0, -1), (0, 1), (-1, 0), (1, 0))
_NOISE_BLOCK = 4096


def _cell_distances(layout: MazeLayout, target: tuple[int, int]) -> np.ndarray:
    """BFS steps from every free cell to `target` (inf for walls / unreachable)."""
    h, w = layout.shape
    dist = np.full((h, w), np.inf)
    dist[target] = 0
    queue = deque([target])
    while queue:
        i, j = queue.popleft()
        for di, dj in _MOVES:
            a, b = i + di, j + dj
            if 0 <= a < h and 0 <= b < w and not layout.walls[a, b] and dist[a, b] == np.inf:
                dist[a, b] = dist[i, j] + 1
                queue.append((a, b))
    return dist


def plan_cells(layout: MazeLayout, start, target) -> list[tuple[int, int]]:
    """Shortest path of cells from `start` (exclusive) to `target` (inclusive).

    A start inside a wall (the rounded position of a point pressed against a wall can be one)
    first steps to its best free neighbour. A start equal to the target gives [target].
    """
    target = (int(target[0]), int(target[1]))
    if layout.walls[target]:
        raise ValueError(f"maze {layout.name}: target cell {target} is a wall")
    dist = _cell_distances(layout, target)
    h, w = layout.shape
    cur = (int(start[0]), int(start[1]))
    if cur == target:
        return [target]
    path = []
    for _ in range(h * w + 1):
        # Step to the neighbour nearest the target (first in D4RL's action order on ties).
        best = None
        for di, dj in _MOVES:
            a, b = cur[0] + di, cur[1] + dj
            if 0 <= a < h and 0 <= b < w and dist[a, b] < np.inf and (best is None or dist[a, b] < dist[best]):
                best = (a, b)
        if best is None:
            break
        cur = best
        path.append(cur)
        if cur == target:
            return path
    raise ValueError(f"maze {layout.name}: no path from {tuple(start)} to {target}")


class WaypointController:
    """D4RL's waypoint controller, in D4RL's frame.

    The target is the goal's rounded cell; on a new target cell it plans from the point's rounded
    cell. Intermediate waypoints are cell − U(0, jitter) per axis, the last is the target cell.
    Control a = p·(waypoint − pos) + d·vel, clipped to [−1, 1]. A waypoint is passed when the point
    is within `solve_thresh` of it and moved less than `vel_thresh` since the last call; the goal
    is "reached" the same way with respect to the target cell, after which it holds there.
    """

    def __init__(self, layout: MazeLayout, rng: np.random.Generator | None = None, p_gain: float = 10.0,
                 d_gain: float = -1.0, solve_thresh: float = 0.1, vel_thresh: float = 0.1,
                 waypoint_jitter: float = 0.2):
        self.layout = layout
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.p_gain, self.d_gain = float(p_gain), float(d_gain)
        self.solve_thresh, self.vel_thresh = float(solve_thresh), float(vel_thresh)
        self.jitter = float(waypoint_jitter)
        self._target: tuple[int, int] | None = None
        self._waypoints = np.zeros((0, 2))
        self._idx = 0
        self._prev = np.zeros(2)

    def _new_target(self, pos, target_cell) -> None:
        start = (int(round(pos[0])), int(round(pos[1])))
        cells = np.asarray(plan_cells(self.layout, start, target_cell), dtype=np.float64)
        if len(cells) > 1:
            cells[:-1] -= self.rng.uniform(size=(len(cells) - 1, 2)) * self.jitter
        self._waypoints = cells
        self._idx = 0
        self._prev = np.asarray(start, dtype=np.float64)
        self._target = target_cell

    def act(self, pos, vel, goal) -> tuple[np.ndarray, bool]:
        """(action (2,), reached) for a point at `pos` with velocity `vel` heading to `goal`."""
        pos = np.asarray(pos, dtype=np.float64)
        target_cell = (int(round(goal[0])), int(round(goal[1])))
        if target_cell != self._target:
            self._new_target(pos, target_cell)
        target = np.asarray(self._target, dtype=np.float64)
        moved = np.hypot(*(self._prev - pos))
        slow = moved < self.vel_thresh
        reached = bool(np.hypot(*(pos - target)) < self.solve_thresh and slow)
        wp = target if reached else self._waypoints[self._idx]
        action = self.p_gain * (wp - pos) + self.d_gain * np.asarray(vel, dtype=np.float64)
        if not reached and slow and np.hypot(*(pos - wp)) < self.solve_thresh:
            self._idx = min(self._idx + 1, len(self._waypoints) - 1)
        self._prev = pos
        return np.clip(action, -1.0, 1.0), reached


def relabel_rewards(observations, next_observations, goal, reward_type: str, reward_on: str = "next") -> np.ndarray:
    """Rewards for a fixed goal from positions: of the state after each step ("next"), or of the
    state before it ("current", D4RL's relabelling off-by-one)."""
    if reward_on == "next":
        xy = np.asarray(next_observations)[:, :2]
    elif reward_on == "current":
        xy = np.asarray(observations)[:, :2]
    else:
        raise ValueError(f"reward_on must be 'next' or 'current', got {reward_on!r}")
    return maze_reward(xy, goal, reward_type)


def collect_maze2d(task, steps: int | None = None, seed: int = 0, progress: bool = True, **recipe_overrides):
    """A Dataset of `steps` rows (default: the task's recipe) collected by D4RL's Maze2D protocol.

    Keys: observations, actions, rewards (the task's reward type for D4RL's evaluation goal),
    terminals (all false), timeouts, next_observations, infos/goal, infos/qpos, infos/qvel
    (float64, the simulator state before the step: what the audit restores), and
    infos/reward_sparse, infos/reward_dense for both reward types from the same trajectories.
    `recipe_overrides` replace fields of the task's DataRecipe (e.g. noise_std=0.0).
    """
    from rtaug.envs.registry import get_task

    task = get_task(task, "maze2d", "the waypoint controller")
    recipe = replace(task.recipe, **recipe_overrides)
    if recipe.timeouts not in ("length", "goal"):
        raise ValueError(f"recipe.timeouts must be 'length' or 'goal', got {recipe.timeouts!r}")
    n = int(task.recipe.default_steps if steps is None else steps)
    if n <= 0:
        raise ValueError(f"collect_maze2d: steps must be positive, got {steps}")

    rng = np.random.default_rng(seed)
    env = task.make_env()
    layout = env.layout
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    controller = WaypointController(layout, rng=rng, p_gain=recipe.p_gain, d_gain=recipe.d_gain,
                                    solve_thresh=recipe.solve_thresh, vel_thresh=recipe.vel_thresh,
                                    waypoint_jitter=recipe.waypoint_jitter)

    observations = np.zeros((n, 4), np.float64)
    next_observations = np.zeros((n, 4), np.float64)
    actions = np.zeros((n, 2), np.float32)
    goals = np.zeros((n, 2), np.float64)
    switched = np.zeros(n, bool)
    arrived = np.zeros(n, bool)

    goal = env.sample_cell_position(rng)
    t_goal = 0
    bar = progress_bar(total=n, desc=f"collect {task.name}", unit="step", progress=progress)
    chunk = 5000
    for t in range(n):
        if t % _NOISE_BLOCK == 0:
            # Drawn in fixed blocks, so a shorter collection is a prefix of a longer one.
            noise = rng.normal(0.0, 1.0, size=(_NOISE_BLOCK, 2)) * recipe.noise_std
        a, reached = controller.act(obs[:2], obs[2:], goal)
        a = np.clip(a + noise[t % _NOISE_BLOCK], -1.0, 1.0).astype(np.float32)
        done = reached or t_goal >= recipe.episode_length
        observations[t] = obs
        actions[t] = a
        goals[t] = goal
        switched[t] = done
        arrived[t] = reached
        obs = env.sim_step(a)
        next_observations[t] = obs
        t_goal += 1
        if done:
            goal = env.sample_cell_position(rng)
            t_goal = 0
        if (t + 1) % chunk == 0:
            bar.update(chunk)
    bar.update(n - bar.n)
    bar.close()
    env.close()

    if recipe.timeouts == "length":
        timeouts = np.zeros(n, bool)
        timeouts[recipe.episode_length - 1::recipe.episode_length] = True
    else:
        timeouts = switched.copy()
    timeouts[-1] = True  # the stream ends here: a truncation, never a terminal

    return _maze_dataset(task, recipe, observations, next_observations, actions, goals, timeouts,
                         collector={"algo": "waypoint", "seed": int(seed), "steps": n, **asdict(recipe)},
                         extra_meta={"goals_reached": int(arrived.sum()), "goals_drawn": int(switched.sum()) + 1},
                         source=f"waypoint:{task.name}")


def with_reward_type(data, task):
    """`data` (collected for one reward type of a maze) as the same maze's `task`: the controller never
    sees the reward, so -sparse and -dense data are the same trajectories and differ only in the
    `rewards` column, which the collector stored for both types (infos/reward_sparse, _dense)."""
    from rtaug.envs.registry import get_task

    task = get_task(task, "maze2d", "relabelling maze rewards")
    meta = data.metadata
    source_task = get_task(meta.get("task", ""), "maze2d", "relabelling maze rewards")
    if source_task.maze != task.maze:
        raise ValueError(f"{data.source}: collected in maze {source_task.maze!r}, cannot serve {task.name}")
    key = f"reward_{task.reward_type}"
    if key not in data.infos:
        raise ValueError(f"{data.source}: key 'infos/{key}' missing; cannot relabel for {task.name}")
    return replace(data, rewards=data.infos[key], infos=dict(data.infos),
                   metadata={**meta, "env": task.name, "task": task.name}, source=f"{data.source} as {task.name}")


def _maze_dataset(task, recipe, observations, next_observations, actions, goals, timeouts, collector: dict,
                  source: str, extra_infos=None, extra_meta=None):
    """The Dataset both collectors write: rewards of both types for D4RL's evaluation goal, the
    simulator state before each step (what the audit restores) and the task in the metadata."""
    from rtaug.data import Dataset

    eval_goal = task.layout.eval_goal
    rewards = {rt: relabel_rewards(observations, next_observations, eval_goal, rt, recipe.reward_on)
               for rt in ("sparse", "dense")}
    return Dataset(
        observations=observations.astype(np.float32),
        actions=actions,
        rewards=rewards[task.reward_type],
        terminals=np.zeros(len(observations), bool),
        timeouts=timeouts,
        next_observations=next_observations.astype(np.float32),
        infos={"goal": goals.astype(np.float32), "qpos": observations[:, :2].copy(),
               "qvel": observations[:, 2:].copy(), **(extra_infos or {}),
               "reward_sparse": rewards["sparse"], "reward_dense": rewards["dense"]},
        metadata={
            "env": task.name,
            "task": task.name,
            "spaces": {"observation": {"type": "box"},
                       "action": {"type": "box", "low": [-1.0, -1.0], "high": [1.0, 1.0]}},
            "collector": collector,
            "eval_goal": eval_goal.tolist(),
            **(extra_meta or {}),
            "frame": "d4rl",
        },
        source=source,
    )


def collect_maze2d_episodes(task, episodes: int, expert_fraction: float = 1.0, noise_std: float | None = None,
                            seed: int = 0, batch_size: int = 100, progress: bool = True):
    """Evaluation-shaped episodes of the noisy waypoint controller: a Dataset for learner checks.

    Unlike `collect_maze2d` (D4RL's one continuous stream of random goals), every episode here
    starts the way an evaluation episode starts (a uniform free cell ± 0.1, velocity N(0, 0.1²)) and
    lasts the task's episode length. A fraction `expert_fraction` of the episodes chase the
    evaluation goal (the behaviour the normalized score rewards); the others chase random goals by
    D4RL's protocol (a new goal on arrival). Rewards are the task's, for the evaluation goal, so
    the data holds good and bad behaviour under one reward: the "mixed-quality" datasets on which
    value-based learners should beat behaviour cloning. `infos/expert` marks the rows of
    goal-chasing episodes; `noise_std` defaults to the task recipe's action noise.
    """
    from rtaug.envs.maze2d import RESET_NOISE, RESET_VEL_STD, Maze2DBatch
    from rtaug.envs.registry import get_task

    task = get_task(task, "maze2d", "the waypoint controller")
    recipe = task.recipe
    episodes = int(episodes)
    if episodes <= 0:
        raise ValueError(f"collect_maze2d_episodes: episodes must be positive, got {episodes}")
    if not 0.0 <= expert_fraction <= 1.0:
        raise ValueError(f"collect_maze2d_episodes: expert_fraction must be in [0, 1], got {expert_fraction}")
    noise_std = recipe.noise_std if noise_std is None else float(noise_std)
    T = recipe.episode_length
    rng = np.random.default_rng(seed)
    layout = task.layout
    eval_goal = layout.eval_goal
    F = len(layout.free_cells)

    def draw_positions(k):
        return layout.free_cells[rng.integers(F, size=k)] + rng.uniform(-RESET_NOISE, RESET_NOISE, size=(k, 2))

    starts_q = draw_positions(episodes)
    starts_v = rng.normal(0.0, RESET_VEL_STD, size=(episodes, 2))
    expert = rng.random(episodes) < expert_fraction

    n = episodes * T
    observations = np.zeros((n, 4), np.float64)
    next_observations = np.zeros((n, 4), np.float64)
    actions = np.zeros((n, 2), np.float32)
    goals = np.zeros((n, 2), np.float64)
    B = max(1, min(int(batch_size), episodes))
    sims = Maze2DBatch(task.maze, B)
    bar = progress_bar(total=n, desc=f"collect {task.name} episodes", unit="step", progress=progress)
    for lo in range(0, episodes, B):
        hi = min(lo + B, episodes)
        b = hi - lo
        idx = np.minimum(np.arange(lo, lo + B), hi - 1)  # spare copies of a short last batch idle on a repeat
        obs = sims.set_states(starts_q[idx], starts_v[idx])
        ctrls = [WaypointController(layout, rng=rng, p_gain=recipe.p_gain, d_gain=recipe.d_gain,
                                    solve_thresh=recipe.solve_thresh, vel_thresh=recipe.vel_thresh,
                                    waypoint_jitter=recipe.waypoint_jitter) for _ in range(b)]
        goal = np.where(expert[lo:hi, None], eval_goal, draw_positions(b))
        for t in range(T):
            act = np.zeros((B, 2))
            for k in range(b):
                a, reached = ctrls[k].act(obs[k, :2], obs[k, 2:], goal[k])
                act[k] = a
                if reached and not expert[lo + k]:
                    goal[k] = draw_positions(1)[0]
            act[:b] = np.clip(act[:b] + rng.normal(0.0, noise_std, size=(b, 2)), -1.0, 1.0)
            rows = np.arange(lo, hi) * T + t
            observations[rows] = obs[:b]
            actions[rows] = act[:b]
            goals[rows] = goal
            obs = sims.step(act)
            next_observations[rows] = obs[:b]
        bar.update(b * T)
    bar.close()
    sims.close()

    timeouts = np.zeros(n, bool)
    timeouts[T - 1::T] = True
    return _maze_dataset(task, recipe, observations, next_observations, actions, goals, timeouts,
                         collector={"algo": "waypoint-episodes", "seed": int(seed), "episodes": episodes,
                                    "expert_fraction": float(expert_fraction), "noise_std": noise_std,
                                    "expert_episodes": int(expert.sum()), "episode_length": T},
                         extra_infos={"expert": np.repeat(expert, T)}, source=f"waypoint-episodes:{task.name}")
