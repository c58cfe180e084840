"""Can the return tilt raise returns, and where? (docs/reliability.md, "The return tilt")

    python benchmarks/tilt.py RUN_DIR --task maze2d-medium-sparse --seed 0 [--trajectories 2000]
        [--max-length 10] [--json OUT]
    python benchmarks/tilt.py --report OUT.json [OUT.json ...]      # tables over seeds

RUN_DIR is an output directory of benchmarks/reliability.py (its data.hdf5 and models/ are
reused, nothing is trained). For each of RT from goal states (what `augment` does), RT from
uniformly drawn states and FT from uniformly drawn states (what `augment --generator ft` does),
it rolls out M = 4 independent trajectories per start state, truncates them as `generate` does
(the default DIST, Γ form and α, α measured on real trajectories next to the same kind of start
states), and keeps one per start with weight exp(κ·R̄) for κ in a sweep (`tilt_choice`, R̄ the
model's mean reward). Every kept step's true reward is recomputed from its states and every
step audited by the simulator, so the table says, per setting and κ:

- the true return of the kept trajectories, how many reach the goal, their bad-step rate and length;
- whether the M candidates of a start differ in true return at all (if they do not, no tilt can
  help), and the return an oracle that knew the true rewards would get by picking the best;
- how well R̄ (the model's rewards) ranks the candidates by their true return.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from reliability import KAPPAS, Task, _default_kept, _flat, roll_out

from rtaug.data.episodes import reward_to_go
from rtaug.data.hdf5 import load_hdf5
from rtaug.generate.dynamics import load_dynamics
from rtaug.generate.generation import dist_function, mean_reward, resolve_reward, tilt_choice
from rtaug.generate.io import load_generator
from rtaug.generate.reward import load_reward

SETTINGS = (("rt-goal", "rt", "goal"), ("rt-uniform", "rt", "uniform"), ("ft-uniform", "ft", "uniform"))


def study(task, ro, kept, r_bar, M, kappas, seed):
    """The κ sweep and the oracle over one setting's candidates (n·M rows, consecutive per start)."""
    r_true = np.where(kept, task.true_reward(ro["nxt"]), 0.0)
    ret = r_true.sum(axis=1).reshape(-1, M)
    sparse = task.boxball or task.task.reward_type == "sparse"
    reach = np.any(kept & (task.true_reward(ro["nxt"]) > 0.5), axis=1).reshape(-1, M)

    def summary(pick):
        k = kept[pick]
        return {"true_return": float(ret.reshape(-1)[pick].mean()),
                "reach_goal_rate": float(reach.reshape(-1)[pick].mean()) if sparse else float("nan"),
                "bad_rate": float(ro["bad"][pick][k].mean()) if k.any() else float("nan"),
                "mean_length": float(k.sum(1).mean()), "mean_r_bar": float(r_bar[pick].mean())}

    # the same uniform draws at every κ, so that rows differ by κ alone
    out = {"sweep": {f"{kappa:g}": summary(tilt_choice(r_bar, M, kappa, np.random.default_rng(seed)))
                     for kappa in kappas}}
    best = np.arange(len(ret)) * M + ret.argmax(axis=1)
    out["oracle"] = summary(best)
    out["starts_whose_candidates_differ"] = float(np.mean(ret.max(1) - ret.min(1) > 1e-9))
    # Spearman-free ranking check: among starts whose candidates differ, how often R̄'s best
    # candidate is a true-best one
    differ = ret.max(1) - ret.min(1) > 1e-9
    rb = r_bar.reshape(-1, M)
    hit = ret[np.arange(len(ret)), rb.argmax(1)] == ret.max(1)
    out["r_bar_picks_a_true_best"] = float(hit[differ].mean()) if differ.any() else float("nan")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", nargs="?", help="an output directory of benchmarks/reliability.py")
    ap.add_argument("--report", nargs="+", metavar="JSON", help="print the tables of these runs' JSON (one task)")
    ap.add_argument("--task", default="boxball", help="the run's task (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="the run's seed (default: %(default)s)")
    ap.add_argument("--trajectories", type=int, default=2000, help="start states per setting (default: %(default)s)")
    ap.add_argument("--max-length", type=int, default=10, help="L_max (default: %(default)s)")
    ap.add_argument("--settings", nargs="+", choices=[n for n, _, _ in SETTINGS], default=[n for n, _, _ in SETTINGS],
                    help="which generators and start states (default: all)")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    if args.report:
        return report([json.loads(Path(p).read_text()) for p in args.report])
    if args.run_dir is None:
        ap.error("RUN_DIR is required (or --report)")
    run = Path(args.run_dir)
    for need in (run / "data.hdf5", run / "models" / "rt", run / "models" / "ft"):
        if not need.exists():
            ap.error(f"{need}: not found; RUN_DIR must be an output directory of benchmarks/reliability.py")
    if args.trajectories < 1 or args.max_length < 1:
        ap.error("--trajectories and --max-length must be >= 1")
    t0 = time.perf_counter()
    task = Task(args.task, args.seed, rows=0, rt_steps=0)
    data = load_hdf5(run / "data.hdf5")
    rt, vae, _ = load_generator(run / "models" / "rt")
    ft, _, _ = load_generator(run / "models" / "ft")
    dyn = load_dynamics(run / "models" / "rt", rt.spec)
    reward_model = load_reward(run / "models" / "rt", rt.spec)
    cfg = replace(task.gen, num_trajectories=args.trajectories, max_length=args.max_length, seed=args.seed,
                  truncation=False, alpha_trajectories=min(args.trajectories, 2000))
    M = cfg.candidates
    bounds = data.episodes()
    rtg = reward_to_go(data.rewards, bounds, rt.config.gamma)
    dist = dist_function(cfg.dist, vae, dyn)
    reward_used = resolve_reward(cfg.reward, reward_model)  # R̄ from the rewards `generate` writes
    res = {"task": args.task, "seed": args.seed, "trajectories": args.trajectories, "max_length": args.max_length,
           "candidates": M, "reward": reward_used, "dist": cfg.dist, "reliability": cfg.reliability, "alpha_quantile": cfg.alpha_quantile,
           "settings": {}}
    for name, which, how in SETTINGS:
        if name not in args.settings:
            continue
        model = rt if which == "rt" else ft
        ro = roll_out(data, model, cfg, args.trajectories, how, M, args.seed, rtg, bounds)
        shape = ro["obs"].shape[:2]
        bad, _err, _wall = task.audit(_flat(ro["obs"]), _flat(ro["act"]), _flat(ro["nxt"]))
        ro["bad"] = bad.reshape(shape)
        ro["dist"] = {cfg.dist: dist(_flat(ro["obs"]), _flat(ro["act"]), _flat(ro["nxt"])).reshape(shape)}
        re = ro["real"]
        re["dist"] = {cfg.dist: np.where(re["valid"], dist(_flat(re["obs"]), _flat(re["act"]), _flat(re["nxt"]))
                                         .reshape(re["valid"].shape), 0.0)}
        if reward_used == "model":
            ro["r"] = reward_model.predict(_flat(ro["obs"]), _flat(ro["act"]), _flat(ro["nxt"])).reshape(shape)
        kept = _default_kept(ro, cfg)
        r_bar = mean_reward(ro["r"], kept, model.spec)
        res["settings"][name] = study(task, ro, kept, r_bar, M, KAPPAS, args.seed + 3)
        print(f"  [{name}: {time.perf_counter() - t0:.0f} s]", flush=True)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    report([res])
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


def report(runs):
    """A Markdown table per setting, values per seed separated by /."""
    cell = lambda get, fmt: " / ".join(fmt.format(get(r)) for r in runs)  # noqa: E731
    r0 = runs[0]
    print(f"\n### {r0['task']}: seeds {', '.join(str(r['seed']) for r in runs)}; {r0['trajectories']} start states "
          f"× {r0['candidates']} candidates, L_max {r0['max_length']}, truncated as generated "
          f"({r0['dist']}/{r0['reliability']}/q{r0['alpha_quantile']:g})\n")
    for name in r0["settings"]:
        s = lambda r: r["settings"][name]  # noqa: E731
        print(f"**{name}**: the candidates of a start differ in true return on "
              f"{cell(lambda r: 100 * s(r)['starts_whose_candidates_differ'], '{:.1f}')}% of starts; where they "
              f"differ, the highest R̄ is a true best on {cell(lambda r: 100 * s(r)['r_bar_picks_a_true_best'], '{:.1f}')}%\n")
        print("| κ | true return | true reward per kept step | reaches the goal % | bad % | mean length | mean R̄ |\n"
              "|---|---|---|---|---|---|---|")
        for key in list(r0["settings"][name]["sweep"]) + ["oracle"]:
            t = (lambda r: s(r)["oracle"]) if key == "oracle" else (lambda r, key=key: s(r)["sweep"][key])
            # both are means over the same start states, so their ratio is the reward per kept step
            print(f"| {key} | {cell(lambda r: t(r)['true_return'], '{:.3f}')} | "
                  f"{cell(lambda r: t(r)['true_return'] / max(t(r)['mean_length'], 1e-12), '{:.4f}')} | "
                  f"{cell(lambda r: 100 * t(r)['reach_goal_rate'], '{:.1f}')} | {cell(lambda r: 100 * t(r)['bad_rate'], '{:.2f}')} | "
                  f"{cell(lambda r: t(r)['mean_length'], '{:.2f}')} | {cell(lambda r: t(r)['mean_r_bar'], '{:.4f}')} |")
        print()


if __name__ == "__main__":
    main()
