"""Does BCQ act better with more candidates? Re-evaluate a finished BCQ run's policies choosing
among n VAE candidates per state (the authors' `select_action` draws 100; rtaug acts with the
training target's 10, `BCQConfig.n_samples`), without training anything.

    python benchmarks/bcq_acting.py RUN_DIR --task maze2d-umaze-dense --samples 10 100

RUN_DIR is a run of `rtaug train-policy --algo bcq` or `benchmarks/learner_correctness.py`
(OUT/runs/<dataset>-bcq-<steps>). Every seed plays the same --episodes episodes from --seed
(the correctness benchmark evaluates from seed 10000, so n = 10 there reproduces its scores).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import jax
import numpy as np

from rtaug import algos
from rtaug.evaluate import _config_from_json, evaluate_policy
from rtaug.train import CHECKPOINT, load_checkpoint, make_policy


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory holding checkpoint.msgpack of a BCQ run")
    p.add_argument("--task", required=True, help="maze2d task the policies act in")
    p.add_argument("--samples", type=int, nargs="+", default=[10, 100], help="candidates per state to try")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=10_000, help="episode starts (default: the correctness benchmark's)")
    args = p.parse_args(argv)
    ckpt = load_checkpoint(f"{args.run}/{CHECKPOINT}")
    if ckpt["meta"]["algo"] != "bcq":
        raise SystemExit(f"{args.run}: a {ckpt['meta']['algo']} run, not BCQ")
    module = algos.get("bcq")
    config = _config_from_json(module.Config, ckpt["meta"]["config"], args.run)
    seeds = ckpt["meta"]["seeds"]
    print(f"{args.run}: BCQ at update {ckpt['step']}, seeds {seeds}; {args.episodes} episodes of {args.task} each")
    for n in args.samples:
        scores = []
        for i in range(len(seeds)):
            params = jax.tree_util.tree_map(lambda x: np.asarray(x)[i], ckpt["state"]["params"])
            policy = make_policy(module, replace(config, n_samples=n), params, np.asarray(ckpt["obs_mean"]),
                                 np.asarray(ckpt["obs_std"]))
            scores.append(float(np.mean(evaluate_policy(args.task, policy, episodes=args.episodes,
                                                        seed=args.seed).normalized)))
        print(f"  {n:>4} candidates: normalized " + ", ".join(f"seed {s} {x:.1f}" for s, x in zip(seeds, scores)),
              flush=True)


if __name__ == "__main__":
    main()
