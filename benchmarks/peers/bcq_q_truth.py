"""d3rlpy's BCQ on the same Maze2D data as rtaug's, read the way `benchmarks/q_truth.py` reads
rtaug's: is a critic that overestimates its own policy a defect of ours, or BCQ on these data?

    PEER_PYTHON benchmarks/peers/bcq_q_truth.py DATA.hdf5 --task maze2d-umaze-sparse \
        [--seeds 0 1 2] [--checkpoints 10000 30000] [--states 200] [--horizon 700] \
        [--episodes 100] [--threads 1] --json OUT

Runs in the peer environment (torch + d3rlpy, ~/.cache/rtaug/bench-peers, built by
`benchmarks/compare.py`) with rtaug's source on PYTHONPATH: only rtaug's numpy parts are used
here (the HDF5 reader, the maze simulator, the evaluation protocol, q_truth's roll-out), none of
its JAX. d3rlpy's BCQ is set to the authors' settings, which are rtaug's defaults (batch 100,
Adam 1e-3 for every network, VAE 750-750 with latent 2 × action dimension and KL weight 0.5,
perturbation 400-300 bounded by Φ = 0.05, critics 400-300, λ = 0.75, 10 sampled actions, raw
states); d3rlpy's own default of 100 sampled actions is the one setting changed.

At each checkpoint and for each seed it writes what q_truth writes for an rtaug run (the critic's
Q₁(s, π(s)) at `--states` dataset states drawn as q_truth draws them, the policy's true discounted
return from them in the simulator, their ratio and correlation) and the policy's score under the
task's evaluation protocol (`--episodes` episodes, normalized as `rtaug eval` does). The JSON is
rewritten after every checkpoint, so a killed run keeps what it finished.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def bcq(seed: int):
    """d3rlpy's BCQ at the authors' settings (module docstring)."""
    import d3rlpy
    from d3rlpy.models.encoders import VectorEncoderFactory

    def enc(*hidden):
        return VectorEncoderFactory(hidden_units=list(hidden))

    d3rlpy.seed(seed)
    cfg = d3rlpy.algos.BCQConfig(batch_size=100, actor_learning_rate=1e-3, critic_learning_rate=1e-3,
                                 imitator_learning_rate=1e-3, gamma=0.99, tau=0.005, n_critics=2, lam=0.75,
                                 n_action_samples=10, action_flexibility=0.05, beta=0.5,
                                 actor_encoder_factory=enc(400, 300), critic_encoder_factory=enc(400, 300),
                                 imitator_encoder_factory=enc(750, 750))
    return cfg.create(device="cpu:0")


def first_q(algo, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    """Q₁(s, a): the first of d3rlpy's two critics (what q_truth reads of rtaug's), not their mean."""
    import torch

    with torch.no_grad():
        q = algo.impl._q_func_forwarder.compute_expected_q(torch.as_tensor(obs), torch.as_tensor(act),
                                                          reduction="none")
    return q[0].reshape(-1).numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="the real data (rtaug / D4RL HDF5)")
    p.add_argument("--task", required=True, help="maze task (its simulator, reward and evaluation)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--checkpoints", type=int, nargs="+", default=[10_000, 30_000],
                   help="update counts at which the policy is read (default 10000 30000)")
    p.add_argument("--states", type=int, default=200, help="dataset states (default 200, q_truth's)")
    p.add_argument("--horizon", type=int, default=700, help="simulator steps per state (default 700)")
    p.add_argument("--state-seed", type=int, default=0, help="which states are drawn (q_truth's --seed)")
    p.add_argument("--episodes", type=int, default=100, help="evaluation episodes (default 100)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", required=True, help="write the figures here (rewritten after every checkpoint)")
    args = p.parse_args(argv)
    if args.states < 1 or args.horizon < 1 or args.episodes < 1 or args.threads < 1:
        p.error("--states, --horizon, --episodes and --threads must be >= 1")
    if not Path(args.data).is_file():
        p.error(f"{args.data}: no such file")
    if any(c < 1 for c in args.checkpoints) or sorted(set(args.checkpoints)) != args.checkpoints:
        p.error("--checkpoints must be increasing counts >= 1")

    import torch

    torch.set_num_threads(args.threads)
    from d3rlpy_side import mdp_dataset, quiet_d3rlpy
    from q_truth import compare, draw_states, true_returns

    from rtaug.data.hdf5 import load_hdf5
    from rtaug.envs.registry import get_task
    from rtaug.evaluate import evaluate_policy
    from rtaug.fileio import atomic_write_json

    quiet_d3rlpy()
    task = get_task(args.task, "maze2d", "bcq_q_truth")
    data = load_hdf5(args.data)
    dataset = mdp_dataset(data)
    rows = draw_states(data, args.states, args.state_seed)
    obs = np.asarray(data.observations[rows], np.float32)

    report = {"data": str(args.data), "task": task.name, "learner": "d3rlpy BCQ", "states": args.states,
              "horizon": args.horizon, "episodes": args.episodes, "gamma": 0.99, "seeds": {}}
    out = Path(args.json)
    for seed in args.seeds:
        algo = bcq(seed)
        algo.build_with_dataset(dataset)
        done, started = 0, time.perf_counter()
        for target in args.checkpoints:
            while done < target:
                algo.update(dataset.sample_transition_batch(100))
                done += 1
                if done % 1000 == 0:
                    rate = done / (time.perf_counter() - started)
                    print(f"seed {seed}: {done}/{args.checkpoints[-1]} updates, {rate:.1f} updates/s",
                          file=sys.stderr, flush=True)

            def policy(o):
                return algo.predict(np.asarray(o, np.float32))

            q = first_q(algo, obs, policy(obs))
            g = true_returns(task, policy, obs, 0.99, args.horizon)
            score = evaluate_policy(task, policy, args.episodes, seed=0, progress=False).summary()
            row = {"updates": done, **compare(q, g),
                   "normalized": score["normalized"]["mean"] if score["normalized"] else None,
                   "normalized_d4rl": score["normalized_d4rl"]["mean"] if score["normalized_d4rl"] else None,
                   "success_rate": score.get("success_rate"), "wall_s": time.perf_counter() - started}
            report["seeds"].setdefault(str(seed), []).append(row)
            print(f"seed {seed} at {done} updates: critic Q {row['q_mean']:.2f}, true discounted return "
                  f"{row['true_mean']:.2f} (ratio {q.mean() / g.mean() if g.mean() else float('nan'):.2f}), "
                  f"normalized score {row['normalized']}", flush=True)
            atomic_write_json(out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
