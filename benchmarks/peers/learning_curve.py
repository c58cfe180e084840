"""A peer learner's learning curve on an rtaug / D4RL HDF5 file, scored by rtaug's evaluation
protocol: is a learner that does not reach the data's score a defect of ours, or the learner on
these data?

    PEER_PYTHON benchmarks/peers/learning_curve.py DATA.hdf5 --task walker2d-medium --algo td3bc \
        [--seeds 0 1] [--steps 100000] [--eval-every 5000] [--episodes 10] [--threads 1] --json OUT

Runs in the peer environment (torch + d3rlpy, ~/.cache/rtaug/bench-peers, built by
`benchmarks/compare.py`) with rtaug's source on PYTHONPATH: only rtaug's numpy parts are used
(the HDF5 reader, the task registry, `evaluate_policy`, i.e. the same simulator, episode seeds
and normalisation as `rtaug train-policy --eval-every`), none of its JAX.

d3rlpy's learner at the authors' settings, which are rtaug's defaults:
  td3bc  TD3+BC (Fujimoto & Gu 2021): states standardised by the data's mean and std, α = 2.5,
         256-256 networks, Adam 3e-4, batch 256, policy noise 0.2 clipped at 0.5, actor and
         targets updated every 2nd critic update, τ = 0.005, γ = 0.99.

The JSON (rewritten after every evaluation, so a killed run keeps what it finished) holds, per
seed, one row per evaluation: updates, mean return and its std over the episodes, both
normalised scores, the updates/s so far.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent / "src"))

BATCH = 256


def td3bc(seed: int):
    """d3rlpy's TD3+BC at the authors' settings (module docstring)."""
    import d3rlpy
    from d3rlpy.models.encoders import VectorEncoderFactory

    d3rlpy.seed(seed)
    enc = VectorEncoderFactory(hidden_units=[256, 256])
    cfg = d3rlpy.algos.TD3PlusBCConfig(
        batch_size=BATCH, actor_learning_rate=3e-4, critic_learning_rate=3e-4, gamma=0.99, tau=0.005,
        n_critics=2, target_smoothing_sigma=0.2, target_smoothing_clip=0.5, alpha=2.5, update_actor_interval=2,
        actor_encoder_factory=enc, critic_encoder_factory=enc,
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler())
    return cfg.create(device="cpu:0")


LEARNERS = {"td3bc": td3bc}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="learning_curve.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="the dataset (rtaug / D4RL HDF5)")
    p.add_argument("--task", required=True, help="the task whose simulator and references score the policy")
    p.add_argument("--algo", required=True, choices=sorted(LEARNERS), help="the peer learner")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=100_000, help="updates per seed (default 100000)")
    p.add_argument("--eval-every", type=int, default=5000, help="updates between evaluations (default 5000)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per evaluation (default 10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", required=True, help="write the curve here")
    args = p.parse_args(argv)
    for flag in ("steps", "eval_every", "episodes", "threads"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if not Path(args.data).is_file():
        p.error(f"{args.data}: no such file")
    if Path(args.json).is_dir():
        p.error(f"--json {args.json}: is a directory")
    if Path(args.json).resolve() == Path(args.data).resolve():
        p.error(f"--json {args.json}: is the dataset; the curve would be written onto its input")

    from rtaug.envs.registry import get_task

    try:
        task = get_task(args.task)
    except (KeyError, ValueError) as exc:
        p.error(f"--task {args.task}: {exc}")

    import torch

    torch.set_num_threads(args.threads)
    from d3rlpy.algos.utility import build_scalers_with_transition_picker
    from d3rlpy_side import mdp_dataset, quiet_d3rlpy

    from rtaug.data.hdf5 import load_hdf5
    from rtaug.evaluate import evaluate_policy
    from rtaug.fileio import atomic_write_json

    quiet_d3rlpy()
    data = load_hdf5(args.data)
    dataset = mdp_dataset(data)
    report = {"data": str(args.data), "task": task.name, "learner": f"d3rlpy {args.algo}", "steps": args.steps,
              "eval_every": args.eval_every, "episodes": args.episodes, "seeds": {}}
    out = Path(args.json)
    for seed in args.seeds:
        algo = LEARNERS[args.algo](seed)
        build_scalers_with_transition_picker(algo, dataset)  # as d3rlpy's fit(), before the networks
        algo.build_with_dataset(dataset)
        started = time.perf_counter()
        for done in range(1, args.steps + 1):
            algo.update(dataset.sample_transition_batch(BATCH))
            if done % args.eval_every and done != args.steps:
                continue
            rate = done / (time.perf_counter() - started)
            res = evaluate_policy(task, lambda o, algo=algo: algo.predict(np.asarray(o, np.float32)), args.episodes,
                                  seed=0, progress=False)
            s = res.summary()
            row = {"updates": done, "return_mean": float(np.mean(res.returns)),
                   "return_std": float(np.std(res.returns)),
                   "normalized": s["normalized"]["mean"] if s["normalized"] else None,
                   "normalized_d4rl": s["normalized_d4rl"]["mean"] if s["normalized_d4rl"] else None,
                   "updates_per_s": rate}
            report["seeds"].setdefault(str(seed), []).append(row)
            atomic_write_json(out, report)
            print(f"seed {seed} at {done} updates ({rate:.0f} updates/s): return {row['return_mean']:.1f} "
                  f"± {row['return_std']:.1f}, normalized {row['normalized']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
