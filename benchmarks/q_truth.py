"""Is a learner's critic right about its own policy? Q(s, π(s)) against the policy's true
discounted return from the same states, measured in the task's simulator (Maze2D or locomotion).

    python benchmarks/q_truth.py RUN_DIR --data DATA.hdf5 --task maze2d-umaze-sparse
                                 [--states 200] [--horizon 700] [--seed 0] [--starts] [--json OUT]

RUN_DIR is a policy run (`rtaug train-policy --out`, or a policy stage's `run/` in the
experiment cache); DATA the real data it was trained on (its states are where Q is read). For each
seed of the run, `--states` dataset states are drawn (with `--starts`, among the rows that begin
an episode: where an evaluation starts, and rare in the data); from each, the policy acts in the simulator
for `--horizon` steps (the state set exactly: Maze2D's observation is its qpos and qvel; a
locomotion row's `infos/qpos`, `infos/qvel`), rewards as the task defines them, discounted by the
learner's γ (γ^700 ≈ 0.001 at 0.99: the tail is negligible); a locomotion episode that
terminates (a fall) earns nothing after it, as the learners' targets assume. Rewards are in the
learner's units (IQL scales MuJoCo rewards by 1000 / the data's return spread), so Q and the
truth compare directly. Printed per seed: the critic's mean Q₁(s, π(s)) (BC has none: its
policy's truth alone), the mean true discounted return, their ratio, the correlation across
states, and the undiscounted return over the horizon (what an evaluation counts) with, on
locomotion, how many rollouts fell and when; beside them the data's own discounted
reward-to-go at those states (the behaviour policy's value), the rest of their episodes' return
and how many of those episodes end in a fall, and, on Maze2D, the
discounted return of the maze's controller from them (D4RL's expert heading to the evaluation
goal: a good policy's value).

A critic far above its policy's true return is overestimating (extrapolation error); near it but
still rising over training is a critic that has not finished propagating the reward.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def critic_q(module, config, params, obs_n, act):
    """Q₁ of the run's critic at (normalized obs, action), for the learners that have a Q(s, a)."""
    import jax.numpy as jnp

    from rtaug.algos.common import first_critic

    hidden = getattr(config, "critic_hidden", None) or getattr(config, "hidden", None)
    if "critic" not in params or hidden is None:
        raise ValueError(f"{module.__name__}: no Q(s, a) critic to read")
    return np.asarray(first_critic(hidden, params["critic"], jnp.asarray(obs_n), jnp.asarray(act)))


def draw_states(data, n: int, seed: int, starts: bool = False) -> np.ndarray:
    """The rows whose states the critic is read at (`--states`, `--seed`); with `starts`, only
    rows that begin an episode (where an evaluation begins)."""
    pool = data.episodes()[:, 0] if starts else np.arange(len(data))
    if n > len(pool):
        raise ValueError(f"--states {n}: the data have only {len(pool)} {'episode starts' if starts else 'rows'}")
    return np.sort(np.random.default_rng(seed).choice(pool, size=n, replace=False))


def compare(q: np.ndarray, g: np.ndarray) -> dict:
    """The critic's Q against the true discounted return at the same states."""
    corr = float(np.corrcoef(q, g)[0, 1]) if q.std() > 0 and g.std() > 0 else float("nan")
    return {"q_mean": float(q.mean()), "true_mean": float(g.mean()),
            "ratio": float(q.mean() / g.mean()) if g.mean() else None, "corr": corr}


def roll_out(task, policy, obs, gamma: float, horizon: int, qpos=None, qvel=None,
             rewards=(1.0, 0.0)) -> dict:
    """The policy acting from each state for `horizon` steps in the simulator: per state its
    `discounted` return in the learner's reward units (`rewards` = (scale, bias),
    `reward_transform`), its undiscounted `total` of the task's reward (what an evaluation counts),
    the `steps` it lasted and whether it `ended` in a termination (a locomotion fall; a maze never
    ends). Locomotion needs the rows' simulator states (`qpos`, `qvel`)."""
    from rtaug.progress import progress_bar

    steps = progress_bar(iterable=range(horizon), desc="roll out from dataset states", unit="step",
                         progress=sys.stderr.isatty())
    n = len(obs)
    out = {"discounted": np.zeros(n), "total": np.zeros(n), "steps": np.zeros(n, np.int64), "ended": np.zeros(n, bool)}
    scale, bias = rewards
    disc = 1.0
    if task.family == "mujoco":
        from rtaug.envs.locomotion import make_sim

        sims = [make_sim(task.recipe.env_id) for _ in range(n)]
        for sim, p, v in zip(sims, qpos, qvel):
            sim.set_state(np.asarray(p, np.float64), np.asarray(v, np.float64))
        o = np.stack([sim._get_obs() for sim in sims])
        for _ in steps:
            act = np.asarray(policy(o.astype(np.float32)), np.float64)
            for i in np.flatnonzero(~out["ended"]):
                o[i], r, terminated, _, _ = sims[i].step(act[i])
                out["discounted"][i] += disc * (r * scale + bias)
                out["total"][i] += r
                out["steps"][i] += 1
                out["ended"][i] = terminated  # a fall ends the return: the learners' targets stop there too
            disc *= gamma
            if out["ended"].all():
                break
        for sim in sims:
            sim.close()
        return out
    from rtaug.envs.maze2d import Maze2DBatch, maze_reward

    sims = Maze2DBatch(task.maze, n)
    o = sims.set_states(obs[:, :2].astype(np.float64), obs[:, 2:].astype(np.float64))
    for _ in steps:
        o = sims.step(np.asarray(policy(o.astype(np.float32)), np.float64))
        r = maze_reward(o[:, :2], task.layout.eval_goal, task.reward_type)
        out["discounted"] += disc * (r * scale + bias)
        out["total"] += r
        out["steps"] += 1
        disc *= gamma
    sims.close()
    return out


def survival(rolled: dict) -> str:
    """How long the rollouts lasted, for tasks whose episodes end."""
    return (f"{rolled['ended'].mean():.0%} fell, after {rolled['steps'][rolled['ended']].mean():.0f} steps on average"
            if rolled["ended"].any() else "none fell")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="policy run directory (checkpoint.msgpack, run.json)")
    p.add_argument("--data", required=True, help="the real data the policy was trained on (HDF5)")
    p.add_argument("--task", required=True, help="maze or locomotion task (its simulator and reward)")
    p.add_argument("--states", type=int, default=200, help="dataset states per seed (default 200)")
    p.add_argument("--horizon", type=int, default=700, help="simulator steps per state (default 700)")
    p.add_argument("--seed", type=int, default=0, help="which states are drawn")
    p.add_argument("--starts", action="store_true",
                   help="draw only rows that begin an episode (the states an evaluation starts from)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    if args.states < 1 or args.horizon < 1:
        p.error("--states and --horizon must be >= 1")
    if args.json:
        from pathlib import Path

        out = Path(args.json)
        if out.is_dir():
            p.error(f"--json {out}: is a directory; give a file name")
        if out.resolve() == Path(args.data).resolve() or Path(args.run).resolve() in out.resolve().parents:
            p.error(f"--json {out}: would overwrite an input (--data or the run); write elsewhere")

    from rtaug import algos
    from rtaug.algos.common import reward_transform
    from rtaug.data.episodes import reward_to_go
    from rtaug.data.hdf5 import load_hdf5
    from rtaug.envs.registry import get_task
    from rtaug.evaluate import load_run

    task = get_task(args.task, ("maze2d", "mujoco"), "q_truth")
    data = load_hdf5(args.data)
    if task.family == "mujoco":
        missing = [k for k in ("qpos", "qvel") if k not in data.infos]
        if missing:
            p.error(f"{args.data}: key 'infos/{missing[0]}': missing; the rollouts start from each row's "
                    "simulator state")
    try:
        rows = draw_states(data, args.states, args.seed, starts=args.starts)
    except ValueError as exc:
        p.error(f"{args.data}: {exc}")
    run = load_run(args.run)
    module, config = algos.get(run.algo), run.config
    # BC has no discount of its own: its policy is measured at the offline learners' 0.99
    gamma = float(getattr(config, "discount", 0.99))
    state = {}
    if task.family == "mujoco":
        state = {"qpos": np.asarray(data.infos["qpos"])[rows], "qvel": np.asarray(data.infos["qvel"])[rows]}
    obs = np.asarray(data.observations[rows], np.float32)
    scale, bias = reward_transform(data, config)
    bounds = data.episodes()
    behaviour = reward_to_go(data.rewards * scale + bias, bounds, gamma)[rows]
    rest = reward_to_go(data.rewards, bounds, 1.0)[rows]  # the rest of each row's episode

    report = {"run": str(args.run), "algo": run.algo, "step": run.step, "task": task.name, "gamma": gamma,
              "states": args.states, "starts": args.starts, "horizon": args.horizon, "reward_scale": scale, "reward_bias": bias,
              "behaviour_value": float(behaviour.mean()), "behaviour_rest_of_episode": float(rest.mean()),
              "controller_value": None, "seeds": {}}
    line = (f"{run.algo} at {run.step} updates, {task.name}, γ {gamma}, {args.states} dataset states"
            f"{' (episode starts)' if args.starts else ''}; "
            f"the data's behaviour there: discounted return {behaviour.mean():.2f}, "
            f"rest of the episode {rest.mean():.1f}")
    if task.family == "mujoco":
        last = bounds[:, 1] - 1  # each episode's last row: a terminal there is a fall
        fell = np.asarray(data.terminals, bool)[last[np.searchsorted(last, rows)]]
        report["behaviour_fell"] = float(fell.mean())
        line += f", {fell.mean():.0%} of those episodes end in a fall"
    if task.family == "maze2d":
        from rtaug.evaluate import ControllerPolicy

        # the maze's expert (D4RL's controller heading to the evaluation goal): a good policy's value
        expert = roll_out(task, ControllerPolicy(task, seed=args.seed), obs, gamma, args.horizon,
                          rewards=(scale, bias))["discounted"]
        report["controller_value"] = float(expert.mean())
        line += f"; the maze's controller's discounted return {expert.mean():.2f}"
    if scale != 1.0 or bias != 0.0:
        line += f" (discounted in the learner's rewards: r × {scale:.4g} + {bias:g})"
    print(line)
    for s in run.seeds:
        rolled = roll_out(task, run.policies[s], obs, gamma, args.horizon, rewards=(scale, bias), **state)
        g = rolled["discounted"]
        try:
            q = critic_q(module, config, run.params[s], (obs - run.obs_mean) / run.obs_std, run.policies[s](obs))
        except ValueError:  # BC: no critic, its policy's truth alone
            q = None
        row = compare(q, g) if q is not None else {"q_mean": None, "true_mean": float(g.mean()), "ratio": None, "corr": None}
        row.update(total_mean=float(rolled["total"].mean()), fell=float(rolled["ended"].mean()),
                   steps_mean=float(rolled["steps"].mean()))
        report["seeds"][str(s)] = row
        said = (f"critic Q {q.mean():.2f}, true discounted return {g.mean():.2f} (ratio "
                f"{q.mean() / g.mean() if g.mean() else float('nan'):.2f}), correlation over states {row['corr']:.2f}"
                if q is not None else f"no critic; true discounted return {g.mean():.2f}")
        print(f"  seed {s}: {said}; return over {args.horizon} steps {rolled['total'].mean():.1f}"
              + (f", {survival(rolled)}" if task.family == "mujoco" else ""))
    if args.json:
        from rtaug.fileio import atomic_write_json

        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
