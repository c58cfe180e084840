"""Evaluation by D4RL's protocol: N episodes in the real simulator, raw and normalized scores.

A policy is any callable mapping a batch of observations (B, obs_dim) float32 to actions
(B, act_dim); if it has a `reset(batch_size)` method it is called before each batch of episodes
(stateful policies: the waypoint controller). Episodes run in lockstep batches so that the policy
is called once per step for the whole batch (a jitted network pays its dispatch once, not B times).

Episode k's start state depends only on (seed, k), never on the batch size, so the same seed
gives the same starts however the episodes are batched.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from rtaug.envs.maze2d import RESET_NOISE, RESET_VEL_STD, Maze2DBatch, maze_reward
from rtaug.envs.registry import get_task

__all__ = [
    "EvalResult", "rollout", "evaluate_policy", "random_policy", "ControllerPolicy",
    "measure_references", "make_eval_fn", "iqm",
]


@dataclass
class EvalResult:
    task: str
    returns: np.ndarray                      # (N,) returns of the task's reward type
    returns_other: np.ndarray                # (N,) returns of the other reward type (same rollouts)
    normalized: np.ndarray | None = None     # (N,) by this task's measured references (None if unmeasured)
    normalized_d4rl: np.ndarray | None = None
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        def stats(x):
            if x is None:
                return None
            x = np.asarray(x, np.float64)
            return {"mean": float(x.mean()), "std": float(x.std()),
                    "se": float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")}

        return {"task": self.task, "episodes": int(len(self.returns)), "seed": self.seed,
                "return": stats(self.returns), "normalized": stats(self.normalized),
                "normalized_d4rl": stats(self.normalized_d4rl), **self.extra}


def random_policy(seed: int = 0, act_dim: int = 2):
    """Uniform random actions in [−1, 1]."""
    rng = np.random.default_rng(seed)

    def act(obs):
        return rng.uniform(-1.0, 1.0, size=(np.shape(obs)[0], act_dim)).astype(np.float32)

    return act


class ControllerPolicy:
    """D4RL's waypoint controller heading to a fixed goal (default: the maze's evaluation goal),
    one controller per parallel episode, no action noise: the "expert" of the references."""

    def __init__(self, task, goal=None, seed: int = 0):
        from rtaug.collect.waypoint import WaypointController

        self._cls = WaypointController
        self.task = get_task(task)
        self.layout = self.task.layout
        self.goal = self.layout.eval_goal if goal is None else np.asarray(goal, np.float64)
        self.rng = np.random.default_rng(seed)
        self.controllers = []

    def reset(self, batch_size: int) -> None:
        r = self.task.recipe
        self.controllers = [self._cls(self.layout, rng=self.rng, p_gain=r.p_gain, d_gain=r.d_gain,
                                      solve_thresh=r.solve_thresh, vel_thresh=r.vel_thresh,
                                      waypoint_jitter=r.waypoint_jitter) for _ in range(batch_size)]

    def __call__(self, obs):
        obs = np.asarray(obs, np.float64)
        if len(self.controllers) != len(obs):
            self.reset(len(obs))
        return np.stack([c.act(o[:2], o[2:], self.goal)[0] for c, o in zip(self.controllers, obs)]).astype(np.float32)


def _episode_starts(layout, seed, episodes: int):
    """(qpos, qvel) per episode, drawn as D4RL's reset draws them (a uniform free-or-goal cell
    ± U(−0.1, 0.1), velocity N(0, 0.1²)), from `seed` alone."""
    rng = np.random.default_rng(seed)
    cells = layout.free_cells[rng.integers(len(layout.free_cells), size=episodes)]
    qpos = cells + rng.uniform(-RESET_NOISE, RESET_NOISE, size=(episodes, 2))
    qvel = rng.normal(0.0, RESET_VEL_STD, size=(episodes, 2))
    return qpos, qvel


def rollout(task, policy, episodes: int, seed=0, batch_size: int = 100, progress: bool = False,
            max_episode_steps: int | None = None) -> dict:
    """Run `episodes` episodes; return per-episode `sparse` and `dense` returns (N,) and
    `success` (the point ended within the goal radius). `seed`: an int or a tuple of ints."""
    task = get_task(task)
    episodes = int(episodes)
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    T = int(max_episode_steps or task.evaluation.max_episode_steps)
    batch_size = max(1, min(int(batch_size), episodes))
    sims = Maze2DBatch(task.maze, batch_size)
    starts_q, starts_v = _episode_starts(task.layout, seed, episodes)
    goal = task.layout.eval_goal
    out = {"sparse": np.zeros(episodes), "dense": np.zeros(episodes), "success": np.zeros(episodes, bool)}
    bar = tqdm(total=episodes, desc=f"eval {task.name}", unit="ep", disable=not progress)
    for lo in range(0, episodes, batch_size):
        hi = min(lo + batch_size, episodes)
        b = hi - lo
        # A last, smaller batch runs the full batch with the spare copies idling on a repeat start.
        idx = np.minimum(np.arange(lo, lo + batch_size), hi - 1)
        obs = sims.set_states(starts_q[idx], starts_v[idx])
        if hasattr(policy, "reset"):
            policy.reset(b)
        for _ in range(T):
            act = np.asarray(policy(obs[:b].astype(np.float32)), dtype=np.float64)
            if act.shape != (b, task.act_dim):
                raise ValueError(f"policy returned actions of shape {act.shape}, expected {(b, task.act_dim)}")
            if b < batch_size:
                act = np.concatenate([act, np.zeros((batch_size - b, task.act_dim))])
            obs = sims.step(act)
            out["sparse"][lo:hi] += maze_reward(obs[:b, :2], goal, "sparse")
            out["dense"][lo:hi] += maze_reward(obs[:b, :2], goal, "dense")
        out["success"][lo:hi] = np.linalg.norm(obs[:b, :2] - goal, axis=1) <= 0.5
        bar.update(b)
    bar.close()
    sims.close()
    return out


def evaluate_policy(task, policy, episodes: int | None = None, seed: int = 0, batch_size: int = 100,
                    progress: bool = False) -> EvalResult:
    """D4RL's protocol: raw returns and normalized scores over `episodes` (default: the task's)."""
    task = get_task(task)
    n = int(episodes or task.evaluation.episodes)
    res = rollout(task, policy, n, seed=seed, batch_size=batch_size, progress=progress)
    other = "dense" if task.reward_type == "sparse" else "sparse"
    ret = res[task.reward_type]
    ref = task.references
    norm = task.normalize(ret) if ref.random is not None and ref.expert is not None else None
    return EvalResult(task=task.name, returns=ret, returns_other=res[other], normalized=norm,
                      normalized_d4rl=task.normalize_d4rl(ret), seed=seed,
                      extra={"success_rate": float(res["success"].mean())})


_REFERENCE_STREAM = 0x5EFE


def measure_references(task, seed: int = 0, min_episodes: int = 1000, max_episodes: int = 10_000,
                       rel_se: float = 0.01, batch_size: int = 100, progress: bool = True) -> dict:
    """Random-policy and controller returns of a maze, for both reward types, in batches of
    `batch_size` episodes until every mean's standard error is under `rel_se` of its gap
    (expert − random), or `max_episodes`. Returns the means, SEs, episode counts and `converged`."""
    task = get_task(task)
    seqs = {"random": [], "expert": []}
    policies = {"random": random_policy(seed + 1), "expert": ControllerPolicy(task, seed=seed + 2)}
    offsets = {"random": 0, "expert": 1}
    n = {"random": 0, "expert": 0}

    def stats():
        s = {}
        for rt in ("sparse", "dense"):
            for who in ("random", "expert"):
                x = np.concatenate([r[rt] for r in seqs[who]]) if seqs[who] else np.zeros(0)
                s[(who, rt)] = (float(x.mean()) if len(x) else float("nan"),
                                float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("inf"))
        return s

    while True:
        s = stats()
        todo = []
        for who in ("random", "expert"):
            if n[who] >= max_episodes:
                continue
            if n[who] < min_episodes:
                todo.append(who)
                continue
            for rt in ("sparse", "dense"):
                gap = abs(s[("expert", rt)][0] - s[("random", rt)][0])
                if s[(who, rt)][1] >= rel_se * gap:
                    todo.append(who)
                    break
        if not todo:
            break
        for who in todo:
            # Starts of batch k of `who` come from the entropy (seed, REF, offset, k): disjoint from each
            # other and from any evaluation's plain integer seed, so re-evaluating never reuses them.
            k = n[who] // batch_size
            res = rollout(task, policies[who], batch_size, seed=(seed, _REFERENCE_STREAM, offsets[who], k),
                          batch_size=batch_size)
            seqs[who].append(res)
            n[who] += batch_size
            if progress:
                m = np.concatenate([r[task.reward_type] for r in seqs[who]])
                print(f"[reference {task.maze}] {who}: {n[who]} episodes, {task.reward_type} mean "
                      f"{m.mean():.2f} ± {m.std(ddof=1) / np.sqrt(len(m)):.2f}", flush=True)
    s = stats()
    out = {"maze": task.maze, "seed": seed, "episodes": dict(n), "rel_se": rel_se}
    converged = True
    for rt in ("sparse", "dense"):
        gap = s[("expert", rt)][0] - s[("random", rt)][0]
        ok = max(s[("random", rt)][1], s[("expert", rt)][1]) < rel_se * abs(gap)
        converged &= ok
        out[rt] = {"random": s[("random", rt)][0], "random_se": s[("random", rt)][1],
                   "expert": s[("expert", rt)][0], "expert_se": s[("expert", rt)][1], "gap": gap}
    out["converged"] = bool(converged)
    return out


def make_eval_fn(task, episodes: int | None = None, seed: int = 0, batch_size: int = 100):
    """`eval_fn(policy) -> dict` of flat numbers for `rtaug.train.train`: return mean/std,
    normalized mean/std (when references are measured), D4RL-normalized mean, success rate."""
    task = get_task(task)

    def eval_fn(policy) -> dict:
        res = evaluate_policy(task, policy, episodes=episodes, seed=seed, batch_size=batch_size)
        row = {"return_mean": float(res.returns.mean()), "return_std": float(res.returns.std()),
               "normalized_d4rl_mean": float(np.mean(res.normalized_d4rl)),
               "success_rate": res.extra["success_rate"]}
        if res.normalized is not None:
            row["normalized_mean"] = float(np.mean(res.normalized))
            row["normalized_std"] = float(np.std(res.normalized))
        return row

    return eval_fn


def iqm(x) -> float:
    """Interquartile mean (mean of the middle 50%)."""
    x = np.sort(np.asarray(x, np.float64).ravel())
    n = len(x)
    if n == 0:
        return float("nan")
    lo, hi = int(np.floor(0.25 * n)), int(np.ceil(0.75 * n))
    return float(x[lo:hi].mean()) if hi > lo else float(x.mean())
