"""D4RL's locomotion datasets, cut out of one SAC run per environment (D4RL §5, Fu et al. 2020).

One run of `rtaug.collect.sac.train_sac` per environment and seed serves all four datasets:

- **expert**: the run's final actor, SAC "trained to completion" (its whole budget, the recipe's
  `sac_steps`); the data is `steps` rows (1M) of its stochastic actions.
- **medium**: the actor at the first evaluation whose mean return reached `medium_fraction` (1/3)
  of the expert's (the mean of the last `expert_window` evaluations). D4RL stopped its SAC early
  at about a third of the expert; we train to the end and cut afterwards, because the expert's
  return is known only then, and the run's actor snapshots (one per evaluation) hold the actor as
  it was at the cut.
  The data is `steps` rows (1M) of its stochastic actions.
- **medium-replay**: SAC's replay buffer up to that cut: every transition the run saw until then,
  its uniform warm-up included (its size is what it is, so `steps` does not apply).
- **medium-expert**: the medium data, then the expert data.

Episodes last at most 1,000 steps (`timeouts`) and end early where the environment terminates
them (`terminals`: hopper and walker2d fall; halfcheetah never does). A collection's last row is
marked as a timeout when it is not a terminal (the stream ends there, its episode was cut).
Keys: D4RL's six, plus `infos/qpos` and `infos/qvel` (float64, the simulator state before each
step: what the audit restores; walker2d's observation clips velocities at ±10).
Drawn data is cached in the SAC run directory (data/), so medium-expert reuses medium and expert.
"""
from __future__ import annotations

from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
from rtaug.progress import progress_bar

__all__ = [
    "collect_locomotion",
    "default_sac_dir",
    "locomotion_dataset",
    "measure_references",
    "medium_cut",
    "policy_data",
    "sac_settings",
]

DATA_STREAM, REFERENCE_STREAM = 2, 3  # episode seeds (seed, stream, ...): disjoint from SAC's own
_SAC_OWN = ("env_id", "seed", "total_steps")  # set by the task, --seed and the recipe's sac_steps


def default_sac_dir(task, seed: int = 0) -> Path:
    return Path("runs") / "sac" / f"{task.env}-seed{seed}"


def _with(obj, overrides: dict, where: str):
    """`obj` (a dataclass) with `overrides`, each value converted to its field's type: values come
    from the command line as text ("3000", "3e-4", "64,64")."""
    out = {}
    for k, v in overrides.items():
        default = getattr(obj, k)
        # a YAML value (rtaug run's data.recipe) is typed already: no true for a number, no 0.5 for a count
        if isinstance(v, bool) or (isinstance(default, int) and isinstance(v, float) and not v.is_integer()):
            raise ValueError(f"{where}: {k}={v!r}: expected {type(default).__name__}")
        try:
            if isinstance(default, tuple):
                out[k] = tuple(int(x) for x in (v.split(",") if isinstance(v, str) else v))
            elif default is None:  # SACConfig.target_entropy: None means −|A|
                out[k] = None if v in (None, "None", "none") else float(v)
            else:
                out[k] = type(default)(v)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {k}={v!r}: expected {type(default).__name__}") from None
    return replace(obj, **out)


def sac_settings(task, seed: int, overrides: dict):
    """The task's recipe and the SAC config, with `overrides` (fields of either) applied."""
    from rtaug.collect.sac import SACConfig

    recipe_names = {f.name for f in fields(task.recipe)} - {"env_id", "dataset"}
    sac_names = {f.name for f in fields(SACConfig)} - set(_SAC_OWN)
    bad = sorted(set(overrides) - recipe_names - sac_names)
    if bad:
        raise ValueError(f"collect {task.name}: unknown setting(s) {', '.join(bad)}; the recipe's are "
                         f"{', '.join(sorted(recipe_names))}; SAC's {', '.join(sorted(sac_names))}")
    where = f"collect {task.name}"
    recipe = _with(task.recipe, {k: v for k, v in overrides.items() if k in recipe_names}, where)
    config = SACConfig(env_id=recipe.env_id, seed=int(seed), total_steps=int(recipe.sac_steps))
    config = _with(config, {k: v for k, v in overrides.items() if k in sac_names}, where).validate()
    if not 0.0 < recipe.medium_fraction <= 1.0:
        raise ValueError(f"{where}: medium_fraction must be in (0, 1], got {recipe.medium_fraction}")
    if recipe.expert_window < 1:
        raise ValueError(f"{where}: expert_window must be at least 1, got {recipe.expert_window}")
    if recipe.expert_return is not None:
        if not (np.isfinite(recipe.expert_return) and recipe.expert_return > 0):
            raise ValueError(f"{where}: expert_return must be a positive return, got {recipe.expert_return}")
        if recipe.dataset in ("expert", "medium-expert"):
            raise ValueError(f"{where}: expert_return cuts medium and medium-replay out of a run stopped at the "
                             "medium cut; the expert's data need the whole run (leave expert_return unset)")
    return recipe, config


def medium_cut(curve: list[dict], fraction: float, window: int = 5, expert_return: float | None = None) -> dict:
    """The expert (the last evaluation's actor) and the medium policy (the first evaluation whose
    mean return reached `fraction` of the expert's) of a SAC learning curve. The expert's return is
    the mean of the last `window` evaluations (5, the recipe's expert_window): one 10-episode
    evaluation of a hopper swings by half its value from one evaluation to the next
    (docs/decisions.md), and a threshold set by a single dip or spike moves the cut by 100k steps.
    A given `expert_return` (known from a finished run) replaces that mean and `window` is 0: the
    curve need then reach only the cut."""
    if not curve:
        raise ValueError("the SAC run has no evaluations yet")
    if window < 1:
        raise ValueError(f"expert_window must be at least 1, got {window}")
    expert = curve[-1]
    if expert_return is None:
        level, window = float(np.mean([row["return_mean"] for row in curve[-window:]])), min(window, len(curve))
    else:
        level, window = float(expert_return), 0
    threshold = fraction * level
    # without expert_return, fraction <= 1 and the window's best is at least its mean: some row qualifies
    medium = next((row for row in curve if row["return_mean"] >= threshold), None)
    if medium is None:
        raise ValueError(f"no evaluation of the SAC run (its last at step {int(expert['step'])}, return "
                         f"{float(expert['return_mean']):.1f}) reaches {threshold:.1f} ({fraction:.3g} of expert_return "
                         f"{level:.1f}): continue the run with a larger sac_steps")
    return {"expert_step": int(expert["step"]), "expert_return": float(expert["return_mean"]),
            "expert_level": level, "window": int(window),
            "medium_step": int(medium["step"]), "medium_return": float(medium["return_mean"]),
            "fraction": float(fraction), "threshold": float(threshold)}


def policy_data(env_id: str, policy, steps: int, seed, max_episode_steps: int = 1000, progress: bool = True,
                desc: str = "rollouts") -> dict[str, np.ndarray]:
    """`steps` rows of `policy` (a batch policy, called with one observation at a time) in fresh
    episodes, episode k starting from `reset(seed=episode_seed(seed, k))`, as the collectors' arrays."""
    from rtaug.envs.locomotion import episode_seed, make_sim

    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    sim = make_sim(env_id)
    obs_dim, act_dim = sim.observation_space.shape[0], sim.action_space.shape[0]
    out = {"observations": np.zeros((steps, obs_dim), np.float32), "actions": np.zeros((steps, act_dim), np.float32),
           "rewards": np.zeros(steps, np.float32), "next_observations": np.zeros((steps, obs_dim), np.float32),
           "terminals": np.zeros(steps, bool), "timeouts": np.zeros(steps, bool),
           "qpos": np.zeros((steps, sim.model.nq)), "qvel": np.zeros((steps, sim.model.nv))}
    episode, ep_len = 0, 0
    bar = progress_bar(total=steps, desc=desc, unit="step", progress=progress)
    for t in range(steps):
        if ep_len == 0:
            obs, _ = sim.reset(seed=episode_seed(seed, episode))
        a = np.asarray(policy(obs[None].astype(np.float32)), np.float32)[0]
        out["qpos"][t], out["qvel"][t] = sim.data.qpos, sim.data.qvel
        next_obs, r, terminated, _, _ = sim.step(a)
        ep_len += 1
        out["observations"][t], out["actions"][t], out["rewards"][t] = obs, a, r
        out["next_observations"][t], out["terminals"][t] = next_obs, terminated
        out["timeouts"][t] = ep_len >= max_episode_steps and not terminated
        obs = next_obs
        if out["terminals"][t] or out["timeouts"][t]:
            episode, ep_len = episode + 1, 0
        if (t + 1) % 1000 == 0:
            bar.update(1000)
    bar.update(steps - bar.n)
    bar.close()
    return out


def locomotion_dataset(task, arrays: dict, collector: dict, source: str):
    from rtaug.data import Dataset
    from rtaug.envs.locomotion import versions

    timeouts = arrays["timeouts"].copy()
    timeouts[-1] |= not arrays["terminals"][-1]  # the stream ends here: its episode was cut
    return Dataset(
        observations=arrays["observations"], actions=arrays["actions"], rewards=arrays["rewards"],
        terminals=arrays["terminals"], timeouts=timeouts, next_observations=arrays["next_observations"],
        infos={"qpos": arrays["qpos"], "qvel": arrays["qvel"]},
        metadata={"env": task.name, "task": task.name, "env_id": task.recipe.env_id, **versions(),
                  "spaces": {"observation": {"type": "box"},
                             "action": {"type": "box", "low": [-1.0] * task.act_dim, "high": [1.0] * task.act_dim}},
                  "collector": collector},
        source=source)


def collect_locomotion(task, steps: int | None = None, seed: int = 0, progress: bool = True, sac_dir=None,
                       log=print, rows_dir=None, **overrides):
    """The task's dataset: train SAC in `sac_dir` (default runs/sac/<env>-seed<seed>; a finished
    run is reused, a killed one resumed), then cut the medium, medium-replay, expert or
    medium-expert data out of it. Rows drawn from the medium or expert actor are kept in
    `rows_dir` (default `sac_dir`/data, where medium-expert finds them again; the experiment
    system gives each data stage its own, so a finished SAC stage is never written to).
    `overrides` are fields of the task's LocomotionRecipe or of SACConfig (e.g. sac_steps=3000,
    learning_starts=500: a small run for a test)."""
    import jax

    from rtaug.collect.sac import load_actor, load_buffer, make_actor_policy, train_sac
    from rtaug.data.hdf5 import load_hdf5, save_hdf5
    from rtaug.envs.locomotion import episode_seed
    from rtaug.envs.registry import get_task

    task = get_task(task, "mujoco", "the SAC collector")
    recipe, config = sac_settings(task, seed, overrides)
    kind = recipe.dataset
    if kind == "medium-replay" and steps is not None:
        raise ValueError(f"collect {task.name}: --steps does not apply: medium-replay is SAC's replay buffer up "
                         "to the medium cut, whatever its size")
    n = int(recipe.default_steps if steps is None else steps)
    if n < 1:
        raise ValueError(f"collect {task.name}: steps must be positive, got {steps}")
    run_dir = Path(sac_dir) if sac_dir is not None else default_sac_dir(task, seed)
    log(f"SAC on {recipe.env_id} in {run_dir} ({config.total_steps} steps; a finished run is reused)")
    run = train_sac(config, run_dir, progress=progress, log=log)
    try:
        cut = medium_cut(run.curve, recipe.medium_fraction, recipe.expert_window, recipe.expert_return)
    except ValueError as exc:
        raise ValueError(f"collect {task.name}: {run_dir}: {exc}") from None
    level = (f"last {cut['window']} evaluations {cut['expert_level']:.1f}" if cut["window"]
             else f"expert_return given, {cut['expert_level']:.1f}")
    log(f"expert: the actor after {cut['expert_step']} steps, return {cut['expert_return']:.1f} ({level}); medium: "
        f"after {cut['medium_step']} steps, return {cut['medium_return']:.1f} (the first at ≥ "
        f"{recipe.medium_fraction:.3g} of that)")
    about = {"algo": "sac", "dataset": kind, "seed": int(seed), "run": str(run_dir), "recipe": asdict(recipe),
             "sac": {**asdict(config), "hidden": list(config.hidden)}, "cut": cut}

    def drawn(which: str):
        step = cut[f"{which}_step"]
        cached = Path(rows_dir or run_dir / "data") / f"{which}-actor{step}-rows{n}-seed{seed}.hdf5"
        if cached.exists():
            return load_hdf5(cached)
        stream = (seed, DATA_STREAM, step)
        actor = make_actor_policy(config, load_actor(run_dir, step), stochastic=True,
                                  key=jax.random.PRNGKey(episode_seed(stream)))
        arrays = policy_data(recipe.env_id, actor, n, seed=stream, max_episode_steps=config.max_episode_steps,
                             progress=progress, desc=f"{which} data ({task.env})")
        policy = {"file": str(Path("policies") / f"actor_{step:010d}.msgpack"), "step": step,
                  "eval_return": cut[f"{which}_return"]}
        collector = {**about, "dataset": which, "steps": n, "policy": policy}
        data = locomotion_dataset(get_task(f"{task.env}-{which}"), arrays, collector, source=f"sac:{task.env}-{which}")
        save_hdf5(data, cached)
        return data

    if kind in ("medium", "expert"):
        data = drawn(kind)
    elif kind == "medium-replay":
        rows = cut["medium_step"]
        collector = {**about, "steps": rows, "policy": None, "rows": f"the replay buffer's first {rows}"}
        data = locomotion_dataset(task, load_buffer(run_dir, rows), collector, source=f"sac:{task.name}")
    else:
        medium, expert = drawn("medium"), drawn("expert")
        data = medium.concat(expert)
        data.metadata.update(env=task.name, task=task.name, collector={
            **about, "steps": 2 * n, "parts": [medium.metadata["collector"], expert.metadata["collector"]]})
        data.source = f"sac:{task.name}"
    return data


def measure_references(task, sac_dir, seed: int = 0, episodes: int = 100, progress: bool = True) -> dict:
    """Random (uniform actions in [-1, 1]) and expert (the final actor of the SAC run in `sac_dir`,
    its mean action) returns over `episodes` episodes each, with standard errors; `converged`
    says whether both are under 1% of their gap (the maze references' rule)."""
    from rtaug.collect.sac import SACConfig, finished_run, load_actor, make_actor_policy
    from rtaug.envs.locomotion import rollout, versions
    from rtaug.envs.registry import get_task
    from rtaug.evaluate import random_policy

    task = get_task(task, "mujoco", "locomotion references")
    run_dir = Path(sac_dir)
    info, curve = finished_run(run_dir)  # its final actor is the expert
    if info["config"]["env_id"] != task.recipe.env_id:
        raise ValueError(f"{run_dir}: a SAC run on {info['config']['env_id']}, not {task.recipe.env_id}")
    config = SACConfig(**{**info["config"], "hidden": tuple(info["config"]["hidden"])})
    expert_step = int(curve[-1]["step"])
    res = {}
    for i, (who, policy) in enumerate((("random", random_policy(seed + 1, task.act_dim)),
                                        ("expert", make_actor_policy(config, load_actor(run_dir, expert_step))))):
        r = rollout(task.recipe.env_id, policy, episodes, seed=(seed, REFERENCE_STREAM, i), batch_size=10,
                    progress=progress, desc=f"reference {task.env}: {who}")["returns"]
        res[who] = (float(r.mean()), float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else float("inf"))
    gap = res["expert"][0] - res["random"][0]
    return {"env": task.env, "env_id": task.recipe.env_id, "seed": seed, "episodes": episodes,
            "random": res["random"][0], "random_se": res["random"][1],
            "expert": res["expert"][0], "expert_se": res["expert"][1], "gap": gap,
            "converged": bool(max(res["random"][1], res["expert"][1]) < 0.01 * abs(gap)),
            "run": str(run_dir), "expert_step": expert_step, **versions(),
            "d4rl_random": task.references.d4rl_random, "d4rl_expert": task.references.d4rl_expert}
