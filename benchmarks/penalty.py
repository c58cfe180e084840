"""β of the α-pessimistic reward (Eq. 6) on a learner's policy: the same RT-generated
trajectories written with r̂ − β·s·Γ/α for a few β, a learner trained on each augmented file and
on the real data alone, every policy evaluated in the simulator (docs/reliability.md, "β").

    python benchmarks/penalty.py OUT --dataset DATA.hdf5 --model MODEL_DIR --task maze2d-medium-sparse
        [--betas 0 0.1 1] [--algo iql] [--steps 50000] [--seeds 0 1 2] [--trajectories 10000] [--json OUT.json]
    python benchmarks/penalty.py --report OUT.json

Generation runs once (the default GenerationConfig, `--trajectories` of them, seed 0): β
changes only the written rewards, so every condition trains on the same generated
transitions. Each augmented file is the input file followed by the merged trajectories
(Eq. 11), as `rtaug augment` writes it. Policies: `rtaug.train.train` with the learner's
published settings for the task's domain, all seeds at once; evaluation: the task's protocol
(100 episodes per seed, the same starts for every policy), normalized score mean ± std and IQM
with a bootstrap 95% interval over seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rtaug.data.hdf5 import load_hdf5
from rtaug.evaluate import evaluate_seeds
from rtaug.fileio import atomic_write_json
from rtaug.generate.dynamics import load_dynamics
from rtaug.generate.generation import GenerationConfig, generate, summarize
from rtaug.generate.io import load_generator
from rtaug.generate.merge import write_augmented
from rtaug.generate.reward import load_reward
from rtaug.train import train


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?")
    ap.add_argument("--report", metavar="JSON", help="print the table of a finished run")
    ap.add_argument("--dataset", metavar="FILE")
    ap.add_argument("--model", metavar="DIR", help="a model directory of `rtaug train-model` (backward)")
    ap.add_argument("--task", help="the maze task the data is of")
    ap.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.1, 1.0])
    ap.add_argument("--algo", default="iql")
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trajectories", type=int, default=10_000)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    if args.report:
        return report(json.loads(Path(args.report).read_text()))
    if not (args.out_dir and args.dataset and args.model and args.task):
        ap.error("OUT_DIR, --dataset, --model and --task are required (or --report)")
    if any(b < 0 for b in args.betas) or args.steps < 1 or args.trajectories < 1:
        ap.error("--betas must be >= 0, --steps and --trajectories >= 1")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = load_hdf5(args.dataset)
    rt, vae, _ = load_generator(args.model)
    gen = generate(data, rt, vae, GenerationConfig(num_trajectories=args.trajectories), progress=True,
                   dynamics=load_dynamics(args.model, rt.spec), reward_model=load_reward(args.model, rt.spec))
    res = {"task": args.task, "algo": args.algo, "steps": args.steps, "seeds": args.seeds,
           "trajectories": args.trajectories, "dataset": str(args.dataset), "model": str(args.model),
           "generation_seconds": round(time.perf_counter() - t0, 1), "conditions": {}}
    conditions = [("none", None)] + [(f"rt β={b:g}", b) for b in args.betas]
    for name, beta in conditions:
        t = time.perf_counter()
        if beta is None:
            train_data, gen_stats = data, None
        else:
            gen.beta = beta
            path = out / f"aug-beta{beta:g}.hdf5"
            write_augmented(args.dataset, data, gen, path, merge="suffix")
            train_data = load_hdf5(path)
            s = summarize(gen, data)
            penalised = gen.penalised_rewards()[gen.kept]
            gen_stats = {"generated_transitions": s["generated_transitions"], "mean_length": s["mean_length"],
                         "truncated_fraction": s["truncated_fraction"], "reward_mean": s["model_reward_mean"],
                         "penalised_reward_mean": s["penalised_reward_mean"],
                         "negative_after_penalty": float(np.mean(penalised < 0)), "rows": len(train_data)}
        run = train(train_data, args.algo, steps=args.steps, seeds=args.seeds, domain="maze2d", progress=True,
                    out_dir=out / f"run-{name.replace(' ', '-').replace('=', '')}")
        ev = evaluate_seeds(args.task, {s: run.policy(i) for i, s in enumerate(args.seeds)})
        res["conditions"][name] = {"beta": beta, "generated": gen_stats, "evaluation": ev["summary"],
                                   "per_seed": [{k: r[k] for k in ("seed", "normalized_mean", "success_rate")}
                                                for r in ev["per_seed"]],
                                   "seconds": round(time.perf_counter() - t, 1)}
        print(f"  [{name}: {res['conditions'][name]['seconds']:.0f} s]", flush=True)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    report(res)
    if args.json:
        atomic_write_json(args.json, res)
    return res


def report(res):
    print(f"\n{res['algo'].upper()} on {res['task']}, {res['steps']} updates, seeds {res['seeds']}; "
          f"RT: {res['trajectories']} generated trajectories (the same for every β)\n")
    print("| data | normalized score, mean ± std | IQM [95% CI] | success % | generated r̂ mean → after penalty | "
          "negative after penalty % |\n|---|---|---|---|---|---|")
    for name, c in res["conditions"].items():
        s = c["evaluation"]["normalized"]
        ci = s["iqm_ci95"] or [float("nan")] * 2
        g = c["generated"]
        succ = 100 * np.mean([r["success_rate"] for r in c["per_seed"]])
        gtxt = "-" if g is None else f"{g['reward_mean']:.4f} → {g['penalised_reward_mean']:.4f}"
        neg = "-" if g is None else f"{100 * g['negative_after_penalty']:.1f}"
        print(f"| {name} | {s['mean']:.1f} ± {s['std'] or 0:.1f} | {s['iqm']:.1f} [{ci[0]:.1f}, {ci[1]:.1f}] | "
              f"{succ:.0f} | {gtxt} | {neg} |")


if __name__ == "__main__":
    main()
