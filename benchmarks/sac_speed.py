"""How fast does SAC (rtaug.collect.sac) train on this machine? The parts and the whole loop.

    python benchmarks/sac_speed.py --env Hopper-v5 --json sac_speed.json

Measures, in one process: the jitted update alone (256-256 networks, batch 256; blocks of 1 and
of 10 updates per call), the simulator step alone (uniform actions), the actor's one-observation
exploration step alone, drawing data with the stochastic actor (medium / expert) and auditing it,
and `train_sac` itself for --steps environment steps after its warm-up
(one update per step; its rate from the learning curve's wall clock, compilation excluded,
one single-episode evaluation every 500 steps included). Prints the load average before and after: the machine is shared, so
the numbers are an upper bound on the time per million steps.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

from rtaug.collect.sac import SACConfig, _jitted, _update_block, init, train_sac
from rtaug.envs.locomotion import make_sim


def _rate(fn, n: int) -> float:
    fn()  # compile / warm up
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def _update_rate(env_id: str, K: int, obs_dim: int, act_dim: int, updates: int) -> float:
    """Updates per second of the loop's compiled block of K updates, on random batches."""
    rng = np.random.default_rng(0)
    config = SACConfig(env_id=env_id, update_every=K)
    state = init(config, obs_dim, act_dim, jax.random.PRNGKey(0))
    sums = {n: jnp.zeros(()) for n in ("critic_loss", "actor_loss", "alpha", "alpha_loss", "entropy", "q_mean")}
    batches = {"observations": rng.normal(size=(K, 256, obs_dim)).astype(np.float32),
               "actions": rng.uniform(-1, 1, (K, 256, act_dim)).astype(np.float32),
               "rewards": rng.normal(size=(K, 256)).astype(np.float32),
               "next_observations": rng.normal(size=(K, 256, obs_dim)).astype(np.float32),
               "dones": np.zeros((K, 256), np.float32)}
    run, key, box = _update_block(config), jax.random.PRNGKey(1), [state, sums]

    def block():
        box[0], box[1], _ = run(box[0], box[1], batches, key)
        jax.block_until_ready(box[0])

    return K * _rate(block, max(1, updates // K))


def _iql_rate(obs_dim: int, act_dim: int, updates: int) -> float:
    from rtaug import algos
    from rtaug.train import make_runner

    rng = np.random.default_rng(0)
    module = algos.get("iql")
    config = module.Config(decay_steps=10 * updates)
    state = jax.tree_util.tree_map(lambda x: x[None], module.init(config, obs_dim, act_dim, jax.random.PRNGKey(0)))
    n = 10_000
    data = {"observations": jnp.asarray(rng.normal(size=(n, obs_dim)), jnp.float32),
            "actions": jnp.asarray(rng.uniform(-1, 1, (n, act_dim)), jnp.float32), "rewards": jnp.zeros(n),
            "next_observations": jnp.asarray(rng.normal(size=(n, obs_dim)), jnp.float32), "dones": jnp.zeros(n)}
    run, box = make_runner(module, config, 1, 256), [state, jax.random.split(jax.random.PRNGKey(1), 1)]

    def chunk():
        box[0], box[1], _ = run(box[0], box[1], data, updates)
        jax.block_until_ready(box[0])

    return updates * _rate(chunk, 1)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--updates", type=int, default=500, help="updates timed per block size")
    p.add_argument("--steps", type=int, default=3000, help="environment steps of train_sac timed after warm-up")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    out = {"env": args.env, "load_before": os.getloadavg(), "cpus": os.cpu_count()}
    sim = make_sim(args.env)
    obs_dim, act_dim = sim.observation_space.shape[0], sim.action_space.shape[0]
    rng = np.random.default_rng(0)

    for K in (1, 10):
        out[f"updates_per_s_block{K}"] = _update_rate(args.env, K, obs_dim, act_dim, args.updates)
    # IQL's update at the same sizes, timed now too: DESIGN §6 has its rate on an idle machine
    # (500-600/s), so the ratio says what SAC would do there.
    out["iql_updates_per_s"] = _iql_rate(obs_dim, act_dim, args.updates)

    sim.reset(seed=0)
    acts = rng.uniform(-1, 1, (10_000, act_dim)).astype(np.float32)
    i = [0]

    def step():
        _, _, term, _, _ = sim.step(acts[i[0] % len(acts)])
        i[0] += 1
        if term:
            sim.reset(seed=i[0])

    out["env_steps_per_s"] = _rate(step, 5000)
    config = SACConfig(env_id=args.env)
    actor = init(config, obs_dim, act_dim, jax.random.PRNGKey(0))["params"]["actor"]
    explore_step, obs, k = _jitted(config)[2], np.zeros(obs_dim), [jax.random.PRNGKey(0)]

    def explore():
        a, k[0] = explore_step(actor, obs, k[0])
        np.asarray(a)

    out["actor_steps_per_s"] = _rate(explore, 2000)

    # Drawing a dataset (medium / expert: the stochastic actor, one env) and auditing it.
    from rtaug.collect.locomotion import locomotion_dataset, policy_data
    from rtaug.collect.sac import make_actor_policy
    from rtaug.envs.locomotion_audit import audit_locomotion_dataset
    from rtaug.envs.registry import get_task

    task = next(t for t in (get_task(f"{e}-medium") for e in ("hopper", "walker2d", "halfcheetah"))
                if t.recipe.env_id == args.env)
    t0 = time.perf_counter()
    arrays = policy_data(args.env, make_actor_policy(config, actor, stochastic=True), 5000, seed=0, progress=False)
    out["data_steps_per_s"] = 5000 / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    audit_locomotion_dataset(locomotion_dataset(task, arrays, {}, "bench"), task)
    out["audit_rows_per_s"] = 5000 / (time.perf_counter() - t0)

    # train_sac: 1,000 warm-up steps, then --steps steps with an update each; the rate is taken
    # between the evaluations at 1,500 steps (the update compiled by then) and the end.
    warm = 1000
    total = warm + 500 * max(2, args.steps // 500)
    cfg = replace(config, total_steps=total, learning_starts=warm, eval_every=500, eval_episodes=1,
                  checkpoint_every=total)
    with tempfile.TemporaryDirectory() as d:
        curve = train_sac(cfg, d, progress=False, log=lambda *_: None).curve
    first = next(r for r in curve if r["step"] == warm + 500)
    out["train_sac_steps_per_s"] = (total - first["step"]) / (curve[-1]["wall_s"] - first["wall_s"])
    out["hours_per_million_steps"] = 1e6 / out["train_sac_steps_per_s"] / 3600
    # Per million steps, every step followed by one update, from the parts alone.
    parts = 1 / out["updates_per_s_block1"] + 1 / out["env_steps_per_s"] + 1 / out["actor_steps_per_s"]
    out["hours_per_million_steps_from_parts"] = 1e6 * parts / 3600
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
