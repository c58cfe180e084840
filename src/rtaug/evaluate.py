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
from rtaug.progress import progress_bar

from rtaug.envs.maze2d import RESET_NOISE, RESET_VEL_STD, Maze2DBatch, maze_reward
from rtaug.envs.registry import SIMULATED, get_task

__all__ = [
    "EvalResult", "rollout", "evaluate_policy", "random_policy", "ControllerPolicy", "FunctionPolicy",
    "load_function",
    "measure_references", "make_eval_fn", "iqm", "bootstrap_ci", "summarize_seeds",
    "evaluate_seeds", "LoadedRun", "load_run",
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


def _maze_task(task):
    """The task as every evaluation here needs it: a maze (the simulator's episodes and goal)."""
    return get_task(task, "maze2d", "evaluation in the simulator")


def _sim_task(task):
    """A task with a simulator: a maze, or a locomotion task (`rtaug.envs.locomotion` runs its episodes)."""
    return get_task(task, SIMULATED, "evaluation in the simulator")


class ControllerPolicy:
    """D4RL's waypoint controller heading to a fixed goal (default: the maze's evaluation goal),
    one controller per parallel episode, no action noise: the "expert" of the references."""

    def __init__(self, task, goal=None, seed: int = 0):
        from rtaug.collect.waypoint import WaypointController

        self._cls = WaypointController
        self.task = _maze_task(task)
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


def load_function(spec: str, flag: str = "--policy-fn"):
    """The callable named by "MODULE:FUNCTION" (FUNCTION may be dotted: an attribute of an attribute),
    imported as `python -m` would: the current directory first on the path. A bad name is a ValueError
    naming `flag`; an error raised by the module's own code while it is imported propagates."""
    import importlib
    import os
    import sys

    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{flag} {spec!r}: expected MODULE:FUNCTION, e.g. my_policy:act (a module on the path "
                         "or in the current directory, and a callable in it)")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ValueError(f"{flag} {spec}: no module named {exc.name!r} in the current directory or on "
                             "the Python path") from None
        raise ValueError(f"{flag} {spec}: importing {module_name} failed: {exc}") from None
    where = getattr(obj, "__file__", module_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{flag} {spec}: {where} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{flag} {spec}: {attr} is not callable ({type(obj).__name__})")  # noqa: TRY004 - a bad flag
    return obj


class FunctionPolicy:
    """Any Python callable as a policy: `fn(observations)` with a batch (B, obs_dim) float32 returns
    actions (B, act_dim) (d3rlpy's `predict`, a network); a callable of one observation (obs_dim,)
    returning one action (act_dim,) works too: when its answer to the first batch is not (B, act_dim),
    or it fails on the batch, it is called once per observation from then on (`called_with` says
    which). A `reset(batch_size)` attribute of the callable is called before each batch of episodes."""

    def __init__(self, fn, act_dim: int):
        self.fn = fn
        self.act_dim = int(act_dim)
        self.called_with = None  # "batch" | "observation", decided by the first call

    def reset(self, batch_size: int) -> None:
        if hasattr(self.fn, "reset"):
            self.fn.reset(batch_size)

    def _one_by_one(self, obs, first=None):
        rows = [first] if first is not None else []
        rows += [self.fn(o) for o in obs[len(rows):]]
        return np.stack([np.asarray(a, np.float64).reshape(self.act_dim) for a in rows])

    def __call__(self, obs):
        if self.called_with == "batch":
            return np.asarray(self.fn(obs))
        if self.called_with == "observation":
            return self._one_by_one(obs)
        want = (len(obs), self.act_dim)
        try:
            out = np.asarray(self.fn(obs))
            if out.shape == want:
                self.called_with = "batch"
                return out
            batch_error = None
        except Exception as exc:  # noqa: BLE001 - maybe a function of one observation: try that first
            batch_error = exc
        try:
            first = np.asarray(self.fn(obs[0]))
        except Exception:  # noqa: BLE001 - not one either: the batch's error (or shape) is reported
            first = None
        if first is None or first.shape not in ((self.act_dim,), (1, self.act_dim)):
            if batch_error is not None:
                raise batch_error
            raise ValueError(f"the policy function returned actions of shape {out.shape} for a batch of "
                             f"{len(obs)} observations; expected {want} (or ({self.act_dim},) for one observation)")
        self.called_with = "observation"
        return self._one_by_one(obs, first)


def _episode_starts(layout, seed, episodes: int):
    """(qpos, qvel) per episode, drawn as D4RL's reset draws them (a uniform free-or-goal cell
    ± U(−0.1, 0.1), velocity N(0, 0.1²)), from `seed` alone."""
    rng = np.random.default_rng(seed)
    cells = layout.free_cells[rng.integers(len(layout.free_cells), size=episodes)]
    qpos = cells + rng.uniform(-RESET_NOISE, RESET_NOISE, size=(episodes, 2))
    qvel = rng.normal(0.0, RESET_VEL_STD, size=(episodes, 2))
    return qpos, qvel


def rollout(task, policy, episodes: int, seed=0, batch_size: int = 100, progress: bool | None = None,
            max_episode_steps: int | None = None, desc: str | None = None) -> dict:
    """Run `episodes` episodes; return per-episode `sparse` and `dense` returns (N,) and
    `success` (the point ended within the goal radius). `seed`: an int or a tuple of ints."""
    task = _maze_task(task)
    episodes = int(episodes)
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    T = int(max_episode_steps or task.evaluation.max_episode_steps)
    batch_size = max(1, min(int(batch_size), episodes))
    sims = Maze2DBatch(task.maze, batch_size)
    starts_q, starts_v = _episode_starts(task.layout, seed, episodes)
    goal = task.layout.eval_goal
    out = {"sparse": np.zeros(episodes), "dense": np.zeros(episodes), "success": np.zeros(episodes, bool)}
    # Counted in episode-steps, not episodes: all episodes of a batch end together, so an episode
    # count would sit at 0% until the whole batch is done.
    bar = progress_bar(total=episodes * T, desc=desc or f"eval {task.name} ({episodes} episodes)", unit="step",
               unit_scale=True, progress=progress)
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
            bar.update(b)
        out["success"][lo:hi] = np.linalg.norm(obs[:b, :2] - goal, axis=1) <= 0.5
    bar.close()
    sims.close()
    return out


def evaluate_policy(task, policy, episodes: int | None = None, seed: int = 0, batch_size: int = 100,
                    progress: bool | None = None, desc: str | None = None) -> EvalResult:
    """D4RL's protocol: raw returns and normalized scores over `episodes` (default: the task's)."""
    task = _sim_task(task)
    if task.family == "mujoco":
        from rtaug.envs.locomotion import evaluate_locomotion

        return evaluate_locomotion(task, policy, episodes, seed=seed, batch_size=batch_size, progress=progress,
                                   desc=desc)
    n = int(episodes or task.evaluation.episodes)
    res = rollout(task, policy, n, seed=seed, batch_size=batch_size, progress=progress, desc=desc)
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
    task = _maze_task(task)
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
    task = _sim_task(task)

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


# ------------------------------------------------------------------------------ across seeds


def _iqm_rows(samples: np.ndarray) -> np.ndarray:
    """`iqm` of every row of a (B, n) array at once (the same trimming as `iqm` on each row)."""
    n = samples.shape[1]
    lo, hi = int(np.floor(0.25 * n)), int(np.ceil(0.75 * n))
    return np.sort(samples, axis=1)[:, lo:hi].mean(axis=1)


def bootstrap_ci(values, stat=iqm, n_boot: int = 10_000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat` over `values` (e.g. one score per training seed).

    Draws `n_boot` resamples of the values with replacement, applies `stat` to each, and returns
    the (1 − confidence)/2 and (1 + confidence)/2 quantiles of those statistics. Deterministic
    given `seed`. Needs at least two values: a single value has no spread to resample, and the
    "interval" it would give (the value itself) would claim a certainty the data do not have.
    """
    x = np.asarray(values, np.float64).ravel()
    if len(x) < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 values, got {len(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"values must be finite, got {x.tolist()}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(len(x), size=(int(n_boot), len(x)))]
    # The IQM is what the CLI bootstraps; sorting all resamples at once keeps 10k resamples instant.
    stats = _iqm_rows(samples) if stat is iqm else np.array([stat(row) for row in samples], np.float64)
    alpha = 1.0 - confidence
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def summarize_seeds(per_seed_scores, n_boot: int = 10_000, seed: int = 0) -> dict:
    """Across-seed summary of one score per training seed (a sequence, or a mapping seed -> score).

    `mean`, `std` (sample standard deviation, ddof=1), `iqm` and `iqm_ci95` (a percentile
    bootstrap 95% interval of the IQM over seeds, `bootstrap_ci`). With one seed `std` and
    `iqm_ci95` are None and `note` says why; with few seeds `note` says what that limits.
    """
    if isinstance(per_seed_scores, dict):
        per_seed_scores = list(per_seed_scores.values())
    x = np.asarray(per_seed_scores, np.float64).ravel()
    if len(x) == 0:
        raise ValueError("no per-seed scores to summarize")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"per-seed scores must be finite, got {x.tolist()}")
    n = len(x)
    out = {"n_seeds": n, "mean": float(x.mean()), "std": float(x.std(ddof=1)) if n > 1 else None,
           "iqm": iqm(x), "iqm_ci95": None, "n_boot": int(n_boot), "bootstrap_seed": int(seed)}
    if n == 1:
        out["note"] = ("one seed: no spread across seeds to estimate, so no std and no interval; "
                       "train and evaluate more seeds")
    else:
        out["iqm_ci95"] = list(bootstrap_ci(x, iqm, n_boot=n_boot, confidence=0.95, seed=seed))
        if n < 4:
            out["note"] = (f"{n} seeds: the IQM trims nothing below 4 values (it equals the mean), and a "
                           "bootstrap over so few values understates the uncertainty")
        elif n < 10:
            out["note"] = f"{n} seeds: a percentile bootstrap over few values tends to be too narrow"
    return out


def evaluate_seeds(task, policies: dict, episodes: int | None = None, seed: int = 0, batch_size: int = 100,
                   progress: bool | None = None, on_seed=None) -> dict:
    """Evaluate one policy per training seed, `policies` = {seed: policy}, and summarize across seeds.

    Every policy plays the same episode starts (from `seed`): the spread across seeds is then the
    training seeds' doing, not the luck of the starts. `on_seed(row)` is called as each finishes.
    Returns a JSON-ready dict: per-seed rows (means, success rate, per-episode returns) and
    `summarize_seeds` of the normalized, D4RL-normalized and raw per-seed means.
    """
    task = _sim_task(task)
    if not policies:
        raise ValueError("no policies to evaluate")
    n = int(episodes or task.evaluation.episodes)
    rows = []
    for s, policy in policies.items():
        res = evaluate_policy(task, policy, episodes=n, seed=seed, batch_size=batch_size, progress=progress,
                              desc=f"eval seed {s} ({n} episodes)")
        row = {"seed": s, "episodes": n, "return_mean": float(res.returns.mean()),
               "return_std": float(res.returns.std()),
               "normalized_mean": None if res.normalized is None else float(np.mean(res.normalized)),
               "normalized_std": None if res.normalized is None else float(np.std(res.normalized)),
               "normalized_d4rl_mean": float(np.mean(res.normalized_d4rl)),
               "success_rate": res.extra["success_rate"], "returns": res.returns.tolist()}
        rows.append(row)
        if on_seed is not None:
            on_seed(row)
    ref = task.references
    summary = {"return": summarize_seeds([r["return_mean"] for r in rows]),
               "normalized_d4rl": summarize_seeds([r["normalized_d4rl_mean"] for r in rows]),
               "normalized": None}
    if all(r["normalized_mean"] is not None for r in rows):
        summary["normalized"] = summarize_seeds([r["normalized_mean"] for r in rows])
    return {"task": task.name, "reward_type": getattr(task, "reward_type", None), "episodes": n, "episode_seed": seed,
            "max_episode_steps": task.evaluation.max_episode_steps,
            "references": {"random": ref.random, "expert": ref.expert,
                           "d4rl_random": ref.d4rl_random, "d4rl_expert": ref.d4rl_expert},
            "per_seed": rows, "summary": summary}


# ------------------------------------------------------------------------ trained policies


@dataclass
class LoadedRun:
    """The deterministic policies of a `rtaug train-policy` run, one per seed, at its checkpoint."""

    path: str
    algo: str
    step: int                     # updates behind the checkpoint
    steps: int | None             # updates the run was asked for (run.json), None if unknown
    seeds: tuple[int, ...]        # the seeds loaded (all of the run's, or the requested ones)
    obs_dim: int
    act_dim: int
    task: str | None              # the task `train-policy --task` recorded in summary.json, if any
    policies: dict = field(default_factory=dict)
    config: object = None         # the learner's Config as trained
    params: dict = field(default_factory=dict)  # seed -> that seed's parameters (critics included)
    obs_mean: np.ndarray | None = None  # the state normaliser the policies apply
    obs_std: np.ndarray | None = None

    def check_task(self, task) -> None:
        """Refuse a task whose observation or action size the policies were not trained for."""
        task = _sim_task(task)
        if self.obs_dim != task.obs_dim:
            raise ValueError(f"{self.path}: the run's policies take {self.obs_dim}-dimensional observations "
                             f"(checkpoint key 'obs_mean'), task {task.name!r} has {task.obs_dim}-dimensional "
                             "ones: this run was trained on another task's data")
        if self.act_dim != task.act_dim:
            raise ValueError(f"{self.path}: the run's policies output {self.act_dim}-dimensional actions, task "
                             f"{task.name!r} has {task.act_dim}-dimensional ones: this run was trained on "
                             "another task's data")


def _config_from_json(cls, values: dict, where: str):
    """The algorithm's frozen Config from run.json's dict (JSON lists back to tuples: configs are
    hashed as static arguments of the jitted policy)."""
    from dataclasses import fields

    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: key 'config': {unknown} are not fields of {cls.__name__} "
                         "(a run written by another version of rtaug?)")

    def tup(v):
        return tuple(tup(x) for x in v) if isinstance(v, list) else v

    return cls(**{k: tup(v) for k, v in values.items()})


def load_run(run_dir, seeds=None) -> LoadedRun:
    """Read a `rtaug train-policy` run directory (run.json, checkpoint.msgpack, summary.json if
    present) and rebuild each seed's deterministic policy (`rtaug.train.make_policy`); `seeds`
    selects some of the run's seeds (default: all, in the run's order)."""
    import json
    from pathlib import Path

    import jax

    from rtaug import algos
    from rtaug.train import CHECKPOINT, FORMAT, load_checkpoint, make_policy

    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run directory")
    ckpt_path = run / CHECKPOINT
    if not ckpt_path.exists():
        raise FileNotFoundError(f"{run}: no {CHECKPOINT} in this directory: not a run of `rtaug train-policy`, "
                                "or one killed before its first checkpoint")
    ckpt = load_checkpoint(ckpt_path)
    meta = ckpt["meta"]
    for key in ("format", "algo", "config", "seeds"):
        if key not in meta:
            raise ValueError(f"{ckpt_path}: key 'meta.{key}': missing")
    if meta["format"] != FORMAT:
        raise ValueError(f"{ckpt_path}: key 'meta.format': format {meta['format']}, this rtaug reads {FORMAT}")
    try:
        module = algos.get(meta["algo"])
    except ValueError as exc:
        raise ValueError(f"{ckpt_path}: key 'meta.algo': {exc}") from None
    config = _config_from_json(module.Config, meta["config"], str(ckpt_path))

    steps = None
    run_json = run / "run.json"
    if run_json.exists():
        try:
            info = json.loads(run_json.read_text())
        except ValueError as exc:
            raise ValueError(f"{run_json}: invalid JSON ({exc})") from None
        if info.get("algo") != meta["algo"] or info.get("seeds") != meta["seeds"]:
            raise ValueError(f"{run_json}: describes {info.get('algo')} seeds {info.get('seeds')}, but "
                             f"{CHECKPOINT} holds {meta['algo']} seeds {meta['seeds']}: the directory mixes two runs")
        steps = info.get("steps")
    task = None
    summary_json = run / "summary.json"
    if summary_json.exists():
        try:
            task = json.loads(summary_json.read_text()).get("task")
        except ValueError as exc:
            raise ValueError(f"{summary_json}: invalid JSON ({exc})") from None

    run_seeds = [int(s) for s in meta["seeds"]]
    wanted = run_seeds if seeds is None else [int(s) for s in seeds]
    missing = [s for s in wanted if s not in run_seeds]
    if missing:
        raise ValueError(f"{run}: seeds {missing} are not in this run; it has seeds {run_seeds}")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"seeds must be distinct, got {wanted}")

    params = ckpt["state"]["params"]
    obs_mean, obs_std = np.asarray(ckpt["obs_mean"]), np.asarray(ckpt["obs_std"])
    policies, seed_params = {}, {}
    for s in wanted:
        i = run_seeds.index(s)
        seed_params[s] = jax.tree_util.tree_map(lambda x, i=i: np.asarray(x)[i], params)
        policies[s] = make_policy(module, config, seed_params[s], obs_mean, obs_std)
    obs_dim = int(obs_mean.shape[-1])
    # The action size is not stored; the policy itself says it, and works for every learner.
    act_dim = int(np.shape(next(iter(policies.values()))(np.zeros((1, obs_dim), np.float32)))[-1])
    return LoadedRun(path=str(run), algo=algos.name_of(module), step=int(ckpt["step"]), steps=steps,
                     seeds=tuple(wanted), obs_dim=obs_dim, act_dim=act_dim, task=task, policies=policies,
                     config=config, params=seed_params, obs_mean=obs_mean, obs_std=obs_std)
