"""Offline RL learners on this CPU, rtaug's side: updates/s (one seed, and several seeds at once),
GFLOP per update and the fraction of the measured float32 matmul peak, per algorithm, at the
D4RL network sizes with batch 256. The comparison with d3rlpy lives in benchmarks/compare.py,
which imports the functions here and runs the peers in an environment of their own.

    python benchmarks/throughput.py [--algos bc td3bc iql cql bcq] [--seconds 10] [--seeds 2] [--json OUT]
    taskset -c 1 python benchmarks/throughput.py --algos cql bcq --seeds 1 --matmul xla onednn-bf16

`--matmul`: the learners' matmuls by XLA (default) or through oneDNN (`rtaug.nets.onednn`; CQL and
BCQ have the field), each algorithm timed under each mode one after the other in the same run.
FLOPs are counted on the XLA program (XLA cannot see inside a custom call), so a oneDNN row's
GFLOP/s and peak fraction are the same work done faster.

Data: 100k synthetic halfcheetah-shaped transitions (obs 17, act 6, episodes of 1000 steps).

rtaug is timed exactly as `rtaug.train.train` runs it: the same compiled program (batch
sampling + update, `lax.scan` over a chunk of updates), compile and the first run excluded,
with every core of the machine (XLA's CPU thread pool).

FLOPs of one rtaug update are XLA's own count (cost analysis of the compiled single update,
batch gather included), not a formula. The peak is the best of several large float32 matmuls
timed here with the same threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

from rtaug import algos
from rtaug.algos.common import for_budget, prepare
from rtaug.data import Dataset
from rtaug.nets.onednn import MODES as MATMULS
from rtaug.train import make_runner
from peak import matmul_peak  # benchmarks/peak.py, beside this script
from peers.d3rlpy_side import timed as _timed  # the same timing rule as the peers' side

ALGOS = ("bc", "td3bc", "iql", "cql", "bcq")
BATCH = 256
OBS_DIM, ACT_DIM, N, EP_LEN = 17, 6, 100_000, 1000


# --------------------------------------------------------------------------------------- shared


def halfcheetah_shaped(n=N, obs_dim=OBS_DIM, act_dim=ACT_DIM, ep_len=EP_LEN, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, obs_dim)).astype(np.float32)
    nxt = obs[1:].copy()
    timeouts = np.zeros(n, bool)
    timeouts[ep_len - 1::ep_len] = True
    nxt[timeouts] = rng.normal(size=(int(timeouts.sum()), obs_dim))  # a new episode starts after
    act = np.clip(rng.normal(0, 0.5, (n, act_dim)), -1, 1).astype(np.float32)
    return Dataset(observations=obs[:-1], actions=act, rewards=rng.normal(size=n).astype(np.float32),
                   terminals=np.zeros(n, bool), timeouts=timeouts, next_observations=nxt)


# ---------------------------------------------------------------------------------------- rtaug


def rtaug_config(name: str, matmul: str = "xla"):
    # the budget-scaled fields as in a 1M-update run (IQL's schedule, CQL's warm-up): the update is the same program
    config = replace(algos.get(name).Config(), batch_size=BATCH)
    if matmul != "xla":
        config = replace(config, matmul=matmul)
    return for_budget(config, 1_000_000)


def warm_chunk(name: str, data: Dataset, n_seeds: int = 1, seed: int = 0, matmul: str = "xla"):
    """(chunk, length): `chunk()` runs `length` updates of `name` for `n_seeds` seeds (seeds
    `seed`, `seed` + 1, ...) with `rtaug.train.train`'s compiled program, already compiled and
    warmed up, carrying the training state from call to call."""
    module = algos.get(name)
    config = rtaug_config(name, matmul)
    arrays, _, _ = prepare(data, config)
    device_data = {k: jnp.asarray(v) for k, v in arrays.items()}
    states = [module.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(seed + s)) for s in range(n_seeds)]
    state = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)
    keys = jnp.stack([jax.random.PRNGKey(100 + seed + s) for s in range(n_seeds)])
    run = make_runner(module, config, n_seeds, BATCH)

    # Chunk length: about 0.5 s of updates, so that per-chunk overhead is negligible.
    probe = 10
    out = run(state, keys, device_data, probe)
    jax.block_until_ready(out)
    t = time.perf_counter()
    jax.block_until_ready(run(*out[:2], device_data, probe))
    per_update = (time.perf_counter() - t) / probe
    length = int(max(10, min(2000, round(0.5 / per_update))))
    carry = {"state": out[0], "keys": out[1]}
    jax.block_until_ready(run(carry["state"], carry["keys"], device_data, length))  # compile + warm-up

    def chunk():
        s, k, m = run(carry["state"], carry["keys"], device_data, length)
        jax.block_until_ready((s, m))
        carry["state"], carry["keys"] = s, k

    return chunk, length


def bench_rtaug(name: str, data: Dataset, seconds: float, n_seeds: int = 1, matmul: str = "xla") -> dict:
    chunk, length = warm_chunk(name, data, n_seeds, matmul=matmul)
    sec = _timed(chunk, seconds)
    return {"updates_per_s": length * n_seeds / sec, "per_seed_updates_per_s": length / sec,
            "chunk": length, "seeds": n_seeds}


def rtaug_flops(name: str, data: Dataset) -> float:
    """XLA's FLOP count of one update, batch gather and key split included."""
    module = algos.get(name)
    config = rtaug_config(name)
    arrays, _, _ = prepare(data, config)
    device_data = {k: jnp.asarray(v) for k, v in arrays.items()}
    state = module.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))

    def one(state, key, data):
        key, k_idx, k_update = jax.random.split(key, 3)
        idx = jax.random.randint(k_idx, (BATCH,), 0, data["rewards"].shape[0])
        batch = jax.tree_util.tree_map(lambda x: x[idx], data)
        return module.update(config, state, batch, k_update)

    def count(fn):
        cost = jax.jit(fn).lower(state, jax.random.PRNGKey(1), device_data).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost.get("flops", float("nan")))

    flops = count(one)
    if name == "td3bc":
        # The delayed actor step is a lax.cond that XLA counts as if it always ran; it runs on
        # one update in `policy_freq`. Count the program with the skip branch taken as well and
        # average the two by their frequency.
        from unittest import mock

        with mock.patch.object(jax.lax, "cond", lambda pred, yes, no, *ops: no(*ops)):
            critic_only = count(one)
        flops = (flops + (config.policy_freq - 1) * critic_only) / config.policy_freq
    return flops


# ------------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    ap.add_argument("--seconds", type=float, default=10.0, help="timed seconds per measurement (default 10)")
    ap.add_argument("--seeds", type=int, default=2,
                    help="also time this many seeds at once (vmapped) and report per-seed updates/s (default 2)")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    ap.add_argument("--matmul", nargs="+", choices=MATMULS, default=["xla"],
                    help="time each algorithm under each of these matmul modes (default xla; the oneDNN "
                         "modes apply to the algorithms with a `matmul` field: cql, bcq)")
    args = ap.parse_args(argv)

    data = halfcheetah_shaped()
    peak = matmul_peak()
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
               "jax": jax.__version__, "matmul_peak_gflops": peak / 1e9, "load_average": os.getloadavg()}
    print(f"float32 matmul peak: {peak / 1e9:.1f} GFLOP/s ({os.cpu_count()} cores); "
          f"batch {BATCH}, {N} transitions, obs {OBS_DIM}, act {ACT_DIM}", flush=True)

    results = {}
    header = f"{'algo':18} {'rtaug/s':>9} {f'x{args.seeds}/seed':>9} {'GFLOP/upd':>9} {'GFLOP/s':>8} {'peak':>6}"
    print(header, flush=True)
    for name, matmul in [(n, m) for n in args.algos for m in args.matmul]:
        if matmul != "xla" and not hasattr(algos.get(name).Config(), "matmul"):
            continue
        one = bench_rtaug(name, data, args.seconds, 1, matmul)
        many = bench_rtaug(name, data, args.seconds, args.seeds, matmul) if args.seeds > 1 else None
        flops = rtaug_flops(name, data)
        ups = one["updates_per_s"]
        name = name if matmul == "xla" else f"{name}:{matmul}"
        res = {
            "rtaug_updates_per_s": ups,
            "peak_fraction": flops * ups / peak,
            "gflop_per_update": flops / 1e9,
            "achieved_gflops": flops * ups / 1e9,
            f"rtaug_{args.seeds}_seeds_per_seed_updates_per_s": many["per_seed_updates_per_s"] if many else None,
            "rtaug_chunk": one["chunk"],
        }
        results[name] = res
        many_s = f"{many['per_seed_updates_per_s']:9.1f}" if many else f"{'-':>9}"
        print(f"{name:18} {ups:9.1f} {many_s} {flops / 1e9:9.3f} {res['achieved_gflops']:8.1f} "
              f"{res['peak_fraction']:6.1%}", flush=True)

    machine["load_average_after"] = os.getloadavg()
    print(f"load average before {machine['load_average'][0]:.2f}, after {machine['load_average_after'][0]:.2f}")
    if args.json:
        payload = {"machine": machine, "batch_size": BATCH, "transitions": N, "obs_dim": OBS_DIM,
                   "act_dim": ACT_DIM, "seconds": args.seconds, "algorithms": results,
                   "command": " ".join(["python", "benchmarks/throughput.py", *(argv if argv is not None else sys.argv[1:])])}
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
