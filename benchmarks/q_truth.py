"""Is a learner's critic right about its own policy? Q(s, π(s)) against the policy's true
discounted return from the same states, measured in the maze simulator.

    python benchmarks/q_truth.py RUN_DIR --data DATA.hdf5 --task maze2d-umaze-sparse
                                 [--states 200] [--horizon 700] [--seed 0] [--json OUT]

RUN_DIR is a policy run (`rtaug train-policy --out`, or a policy stage's `run/` in the
experiment cache); DATA the real data it was trained on (its states are where Q is read). For each
seed of the run, `--states` dataset states are drawn; from each, the policy acts in the simulator
(the state set exactly: Maze2D's observation is its qpos and qvel) for `--horizon` steps, rewards
as the task defines them, discounted by the learner's γ (γ^700 ≈ 0.001 at 0.99: the tail is
negligible). Printed per seed: the critic's mean Q₁(s, π(s)), the mean true discounted return,
their ratio, and the correlation across states; beside them the data's own discounted
reward-to-go at those states (the behaviour policy's value) and the discounted return of the
maze's controller from them (D4RL's expert heading to the evaluation goal: a good policy's value).

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


def draw_states(data, n: int, seed: int) -> np.ndarray:
    """The rows whose states the critic is read at (`--states`, `--seed`)."""
    return np.random.default_rng(seed).choice(len(data), size=n, replace=False)


def compare(q: np.ndarray, g: np.ndarray) -> dict:
    """The critic's Q against the true discounted return at the same states."""
    corr = float(np.corrcoef(q, g)[0, 1]) if q.std() > 0 and g.std() > 0 else float("nan")
    return {"q_mean": float(q.mean()), "true_mean": float(g.mean()),
            "ratio": float(q.mean() / g.mean()) if g.mean() else None, "corr": corr}


def true_returns(task, policy, obs, gamma: float, horizon: int) -> np.ndarray:
    """The policy's discounted return from each state, stepping the simulator from it."""
    from rtaug.envs.maze2d import Maze2DBatch, maze_reward
    from rtaug.progress import progress_bar

    sims = Maze2DBatch(task.maze, len(obs))
    o = sims.set_states(obs[:, :2].astype(np.float64), obs[:, 2:].astype(np.float64))
    ret, disc = np.zeros(len(obs)), 1.0
    for _ in progress_bar(iterable=range(horizon), desc="roll out from dataset states", unit="step",
                          progress=sys.stderr.isatty()):
        o = sims.step(np.asarray(policy(o.astype(np.float32)), np.float64))
        ret += disc * maze_reward(o[:, :2], task.layout.eval_goal, task.reward_type)
        disc *= gamma
    sims.close()
    return ret


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="policy run directory (checkpoint.msgpack, run.json)")
    p.add_argument("--data", required=True, help="the real data the policy was trained on (HDF5)")
    p.add_argument("--task", required=True, help="maze task (its simulator and reward)")
    p.add_argument("--states", type=int, default=200, help="dataset states per seed (default 200)")
    p.add_argument("--horizon", type=int, default=700, help="simulator steps per state (default 700)")
    p.add_argument("--seed", type=int, default=0, help="which states are drawn")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    if args.states < 1 or args.horizon < 1:
        p.error("--states and --horizon must be >= 1")

    from rtaug import algos
    from rtaug.data.episodes import reward_to_go
    from rtaug.data.hdf5 import load_hdf5
    from rtaug.envs.registry import get_task
    from rtaug.evaluate import load_run

    task = get_task(args.task, "maze2d", "q_truth")
    run = load_run(args.run)
    module, config = algos.get(run.algo), run.config
    gamma = float(config.discount)
    data = load_hdf5(args.data)
    rows = draw_states(data, args.states, args.seed)
    obs = np.asarray(data.observations[rows], np.float32)
    behaviour = reward_to_go(data.rewards, data.episodes(), gamma)[rows]

    report = {"run": str(args.run), "algo": run.algo, "step": run.step, "task": task.name, "gamma": gamma,
              "states": args.states, "horizon": args.horizon,
              "behaviour_value": float(behaviour.mean()), "seeds": {}}
    from rtaug.evaluate import ControllerPolicy

    # the maze's expert (D4RL's controller heading to the evaluation goal): a good policy's value
    expert = true_returns(task, ControllerPolicy(task, seed=args.seed), obs, gamma, args.horizon)
    report["controller_value"] = float(expert.mean())
    print(f"{run.algo} at {run.step} updates, {task.name}, γ {gamma}, {args.states} dataset states; "
          f"discounted return there of the data's behaviour {behaviour.mean():.2f}, "
          f"of the maze's controller {expert.mean():.2f}")
    for s in run.seeds:
        act = run.policies[s](obs)
        q = critic_q(module, config, run.params[s], (obs - run.obs_mean) / run.obs_std, act)
        g = true_returns(task, run.policies[s], obs, gamma, args.horizon)
        report["seeds"][str(s)] = row = compare(q, g)
        print(f"  seed {s}: critic Q {q.mean():.2f}, true discounted return {g.mean():.2f} "
              f"(ratio {q.mean() / g.mean() if g.mean() else float('nan'):.2f}), correlation over states {row['corr']:.2f}")
    if args.json:
        from rtaug.fileio import atomic_write_json

        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
