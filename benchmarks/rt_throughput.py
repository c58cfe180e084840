"""RT throughput on this CPU: training tokens/s, generated steps/s, and achieved FLOP/s as a
fraction of the measured float32 matmul peak.

    python benchmarks/rt_throughput.py [--json OUT] [--quick] [--matmul xla onednn-bf16]

The FLOP count of one update is XLA's own (the compiled program's cost analysis, of the XLA
twin of the model when its matmuls go through oneDNN, which XLA does not count), not a
formula; the peak is the best of several large float32 matmuls timed here, with the same
threads the models get. `--matmul` times each named mode of RTConfig.matmul side by side
(bfloat16 products on AMX: rtaug.nets.onednn).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time

import numpy as np
import jax
import jax.numpy as jnp
import optax

from rtaug.data import Dataset
from rtaug.generate.generation import GenerationConfig, default_concurrency, rollout, select_starts
from rtaug.generate.model import RTConfig, RTModel
from rtaug.generate.spec import Spec
from rtaug.generate.train import TrainedRT, adam_schedule, training_windows
from rtaug.nets.onednn import MODES
from rtaug.data.episodes import reward_to_go
from peak import matmul_peak  # benchmarks/peak.py, beside this script


def synthetic_dataset(n=50_000, obs_dim=4, act_dim=2, ep_len=200, seed=0) -> Dataset:
    """Maze2D-shaped continuous data: smooth random walks, episodes of `ep_len` steps."""
    rng = np.random.default_rng(seed)
    act = rng.uniform(-1, 1, (n, act_dim)).astype(np.float32)
    obs = np.cumsum(rng.normal(0, 0.1, (n, obs_dim)), axis=0).astype(np.float32)
    nxt = np.concatenate([obs[1:], obs[-1:]])
    timeouts = np.zeros(n, bool)
    timeouts[ep_len - 1::ep_len] = True
    return Dataset(observations=obs, actions=act, rewards=rng.random(n).astype(np.float32),
                   terminals=np.zeros(n, bool), timeouts=timeouts, next_observations=nxt)


def bench_training(data: Dataset, cfg: RTConfig, chunk=20, repeats=3) -> dict:
    spec = Spec.fit(data, gamma=cfg.gamma, rtg_bins=cfg.rtg_bins)
    model = RTModel(spec, cfg)
    bounds = data.episodes()
    rtg = reward_to_go(data.rewards, bounds, cfg.gamma)
    rng = np.random.default_rng(0)
    K, B = cfg.context_steps, cfg.batch_size
    batch = training_windows(data, rtg, bounds, rng.integers(0, len(data), (B,)), K, cfg.direction)
    params = model.init(jax.random.PRNGKey(0), *batch)
    opt = adam_schedule(cfg.lr, 10_000, 100, cfg.weight_decay, cfg.grad_clip)
    opt_state = opt.init(params)

    def updater(model):
        def loss_fn(p, b):  # b: the windows of train.training_windows (mask at index 4), as training reads them
            return -model.apply(p, *b).sum() / jnp.maximum(b[4].sum(), 1)

        def update(carry, b):
            p, o = carry
            loss, g = jax.value_and_grad(loss_fn)(p, b)
            u, o = opt.update(g, o, p)
            return (optax.apply_updates(p, u), o), loss

        return update

    update = updater(model)
    # XLA counts no FLOPs inside a custom call: count the XLA twin's (the same parameters)
    twin = updater(RTModel(spec, dataclasses.replace(cfg, matmul="xla")))
    cost = jax.jit(twin).lower((params, opt_state), batch).compile().cost_analysis()
    flops = float((cost if isinstance(cost, dict) else cost[0]).get("flops", float("nan")))
    run = jax.jit(lambda c, bs: jax.lax.scan(update, c, bs))
    batches = training_windows(data, rtg, bounds, rng.integers(0, len(data), (chunk, B)), K, cfg.direction)
    carry = (params, opt_state)
    carry, _ = run(carry, batches)
    jax.block_until_ready(carry)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        carry, losses = run(carry, batches)
        jax.block_until_ready(losses)
        best = max(best, chunk / (time.perf_counter() - t))
    n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
    return {"updates_per_s": best, "tokens_per_s": best * B * 4 * K, "flops_per_update": flops,
            "achieved_flops": flops * best, "params": int(n_params)}


def bench_generation(data: Dataset, cfg: RTConfig, gcfg: GenerationConfig, H=1024, batch=256, repeats=3,
                     concurrency=None) -> dict:
    """Kept steps/s of RT's sampled rollout: H start states in batches of `batch` (several, so
    that batches can decode at once: `concurrency`, None for generation's default)."""
    spec = Spec.fit(data, gamma=cfg.gamma, rtg_bins=cfg.rtg_bins)
    model = RTModel(spec, cfg)
    bounds = data.episodes()
    rtg = reward_to_go(data.rewards, bounds, cfg.gamma)
    windows = training_windows(data, rtg, bounds, np.arange(2), cfg.context_steps, cfg.direction)
    params = model.init(jax.random.PRNGKey(0), *windows)
    trained = TrainedRT(spec, cfg, params, [])
    # as `generate` runs the whole-trajectory tilt: M independent rollouts of each of H start
    # states, batch·M rows per call
    M = gcfg.candidates
    gcfg = dataclasses.replace(gcfg, num_trajectories=H, alpha_trajectories=H, batch=batch, candidates=1)
    starts = select_starts(data, H, "uniform", np.random.default_rng(0))
    # the sampled rollout alone (sliding windows included); Γ, α and the tilt's choice are
    # host-side numpy after it
    rollout(data, trained, gcfg, starts, rtg, bounds, False, copies=M, concurrency=concurrency)
    best = float("inf")
    for i in range(repeats):
        t = time.perf_counter()
        rollout(data, trained, dataclasses.replace(gcfg, seed=i), starts, rtg, bounds, False, copies=M,
                concurrency=concurrency)
        best = min(best, time.perf_counter() - t)
    steps = H * gcfg.max_length  # steps of the H trajectories kept, one of M each
    return {"trajectories": H, "batch": batch, "candidates": M, "max_length": gcfg.max_length,
            "concurrency": default_concurrency() if concurrency is None else concurrency,
            "seconds": best, "generated_steps_per_s": steps / best,
            "candidate_tokens_per_s": steps * M * 4 / best}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    ap.add_argument("--quick", action="store_true", help="smaller runs (a smoke check, figures less stable)")
    ap.add_argument("--matmul", nargs="+", choices=MODES, default=["xla"],
                    help="RTConfig.matmul modes to time, each in turn (default: xla)")
    args = ap.parse_args(argv)

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s)")
    peak = matmul_peak(sizes=(1024,) if args.quick else (1024, 2048, 4096))
    print(f"float32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
    from rtaug.collect.dqn import DQNConfig, collect_boxball
    from rtaug.experiments.quickstart import QuickstartConfig

    quick = QuickstartConfig()
    boxball = collect_boxball(DQNConfig(total_steps=5_000 if args.quick else 20_000), progress=False)
    continuous = synthetic_dataset(n=20_000 if args.quick else 50_000)
    qc = quick.rt
    cases = {
        f"quickstart: BoxBall, {qc.n_layer} layers, d {qc.d_model}, K {qc.context_steps}, batch {qc.batch_size}":
            (boxball, qc, quick.generation.max_length),
        "default: maze2d-shaped continuous (obs 4, act 2), 3 layers, d 128, K 20, batch 64":
            (continuous, RTConfig(), 10),
    }
    results = {"matmul_peak_flops": peak, "training": {}, "generation": {}}
    for (case, (data, cfg, max_length)), mode in itertools.product(cases.items(), args.matmul):
        cfg = dataclasses.replace(cfg, matmul=mode)
        name = case if mode == "xla" else f"{case}, matmul {mode}"  # the default keeps its earlier key
        tr = bench_training(data, cfg, chunk=5 if args.quick else 20, repeats=2 if args.quick else 3)
        tr["peak_fraction"] = tr["achieved_flops"] / peak
        results["training"][name] = tr
        print(f"train {name}: {tr['updates_per_s']:.1f} updates/s, {tr['tokens_per_s']:.0f} tokens/s, "
              f"{tr['flops_per_update'] / 1e9:.2f} GFLOP/update, {tr['achieved_flops'] / 1e9:.1f} GFLOP/s "
              f"= {100 * tr['peak_fraction']:.1f}% of peak ({tr['params']} parameters)")
        gcfg = GenerationConfig(max_length=max_length, candidates=4)
        ge = bench_generation(data, cfg, gcfg, H=256 if args.quick else 1024, batch=64 if args.quick else 256,
                              repeats=2 if args.quick else 3)
        results["generation"][name] = ge
        print(f"generate {name}: {ge['generated_steps_per_s']:.0f} generated steps/s "
              f"({ge['trajectories']} trajectories x {ge['candidates']} candidates x {ge['max_length']} steps "
              f"in {ge['seconds']:.2f} s, batches of {ge['batch']}, {ge['concurrency']} at once; "
              f"{ge['candidate_tokens_per_s']:.0f} candidate tokens/s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
