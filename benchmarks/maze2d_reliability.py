"""RT-generated Maze2D data through the simulator audit: is it physically possible?

    python benchmarks/maze2d_reliability.py OUT_DIR [--task maze2d-umaze-sparse] [--steps 200000]
        [--seed 0] [--rt-steps 2000] [--layers 3] [--d-model 128] [--trajectories 1000] [--json OUT]

Runs the pipeline's stages on one maze task, as `rtaug collect / train-model / augment / audit`
do: collects a dataset by D4RL's protocol, trains RT (backward) with the reliability VAE and the
one-step backward MLP, and FT (forward); generates `--trajectories` trajectories with each,
truncated where Γ > α as `rtaug augment` does (the MLP, having no attention, truncates on its
own step's VAE error), writes each augmented file and audits it with the simulator
(`audit_maze_file`, the function behind `rtaug audit`). It prints, per generator, the mean /
median / max simulator error and the wall rate of the generated transitions beside the real
ones, how many steps truncation removed and how wrong those were; then how well the VAE error
DIST and the cumulative reliability Γ predict the simulator error (Spearman correlation, and
ROC AUC for telling steps with error above `--bad-error` from the rest).

Everything it writes goes under OUT_DIR (data.hdf5, models/, aug_*.hdf5, audit_*.json);
`--reuse` keeps a dataset and models that are already there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import jax.numpy as jnp

from rtaug.collect.waypoint import collect_maze2d
from rtaug.data.hdf5 import load_hdf5, save_hdf5
from rtaug.envs.maze_audit import audit_maze_file, audit_maze_transitions
from rtaug.experiments.stages import train_model
from rtaug.generate.baselines import BackwardMLPConfig, generate_backward_mlp_config
from rtaug.generate.generation import GenerationConfig, augment, generate
from rtaug.generate.io import load_generator
from rtaug.generate.model import RTConfig
from rtaug.generate.reliability import truncate
from rtaug.generate.train import VAEConfig


def auc(score_pos, score_neg) -> float:
    """P(score of a bad step > score of a good one), ties counted half (Mann-Whitney U)."""
    score_pos, score_neg = np.asarray(score_pos, np.float64), np.asarray(score_neg, np.float64)
    if len(score_pos) == 0 or len(score_neg) == 0:
        return float("nan")
    allv = np.concatenate([score_pos, score_neg])
    _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    # average rank of each distinct value: ties share the mean of the ranks they span
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inv]
    u = ranks[: len(score_pos)].sum() - len(score_pos) * (len(score_pos) + 1) / 2
    return float(u / (len(score_pos) * len(score_neg)))


def spearman(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2:
        return float("nan")
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def _flat(x):
    return x.reshape((-1,) + x.shape[2:])


def fit_velocity_map(data):
    """Per axis, v' = c_v·v + c_a·a, fitted on the data away from the speed clip (wall contacts
    are rare enough not to matter): the action a transition (s, s') needs is then
    (v' − c_v·clip(v, ±5)) / c_a."""
    o, a, n = (np.asarray(x, np.float64) for x in (data.observations, data.actions, data.next_observations))
    ok = (np.abs(o[:, 2:]) < 4.9).all(axis=1)
    x = np.concatenate([np.stack([o[ok, 2 + i], a[ok, i]], 1) for i in range(2)])
    y = np.concatenate([n[ok, 2 + i] for i in range(2)])
    return np.linalg.lstsq(x, y, rcond=None)[0]


def needed_action(coef, obs, next_obs):
    return (np.asarray(next_obs, np.float64)[:, 2:] - coef[0] * np.clip(obs[:, 2:], -5.0, 5.0)) / coef[1]


def _stage(times: dict, name: str, t0: float) -> float:
    times[name] = round(time.perf_counter() - t0, 1)
    print(f"  [{name}: {times[name]:.1f} s]", flush=True)
    return time.perf_counter()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", help="directory for the dataset, models, augmented files and audits")
    ap.add_argument("--task", default="maze2d-umaze-sparse")
    ap.add_argument("--steps", type=int, default=200_000, help="environment steps to collect")
    ap.add_argument("--seed", type=int, default=0, help="seed of collection, training and generation")
    ap.add_argument("--rt-steps", type=int, default=2000, help="updates of RT and of FT")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--context-steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--vae-steps", type=int, default=2000)
    ap.add_argument("--mlp-steps", type=int, default=2000)
    ap.add_argument("--trajectories", type=int, default=1000)
    ap.add_argument("--max-length", type=int, default=10)
    ap.add_argument("--bad-error", type=float, default=0.05,
                    help="simulator error above which a generated step counts as bad for the AUCs")
    ap.add_argument("--reuse", action="store_true", help="keep OUT_DIR's dataset and models if present")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    t_start = t0 = time.perf_counter()

    data_path = out / "data.hdf5"
    if not (args.reuse and data_path.exists()):
        save_hdf5(collect_maze2d(args.task, steps=args.steps, seed=args.seed, progress=False), data_path)
        t0 = _stage(times, "collect", t0)
    data = load_hdf5(data_path)

    models = {"rt": out / "models" / "rt", "ft": out / "models" / "ft"}
    rt_kw = dict(context_steps=args.context_steps, n_layer=args.layers, n_head=args.heads, d_model=args.d_model,
                 batch_size=args.batch_size, steps=args.rt_steps, seed=args.seed)
    vae_cfg = VAEConfig(steps=args.vae_steps, seed=args.seed)
    if not (args.reuse and (models["rt"] / "backward_mlp.msgpack").exists()):
        train_model(data_path, models["rt"], RTConfig(direction="backward", **rt_kw), vae_cfg,
                    BackwardMLPConfig(steps=args.mlp_steps, seed=args.seed), progress=False)
        t0 = _stage(times, "train RT + VAE + backward MLP", t0)
    if not (args.reuse and (models["ft"] / "rt.msgpack").exists()):
        train_model(data_path, models["ft"], RTConfig(direction="forward", **rt_kw), vae_cfg, None, progress=False)
        t0 = _stage(times, "train FT + VAE", t0)
    rt, vae, mlp = load_generator(models["rt"])
    ft, ft_vae, _ = load_generator(models["ft"])

    cfg = GenerationConfig(num_trajectories=args.trajectories, max_length=args.max_length, seed=args.seed)
    gens = {"rt": generate(data, rt, vae, cfg, progress=False),
            "forward": generate(data, ft, ft_vae, cfg, progress=False)}
    # The one-step baseline starts where RT starts, as `augment_file(..., generator="backward-mlp")`
    # does with the same seed, and truncates on its own step's VAE error at the same α.
    gens["backward-mlp"] = generate_backward_mlp_config(data, mlp, vae, cfg, start_rows=gens["rt"].start_rows)
    t0 = _stage(times, "generate", t0)

    result = {"task": args.task, "args": vars(args), "alpha": {"rt": vae.alpha, "forward": ft_vae.alpha},
              "generators": {}, "real": None}
    coef = fit_velocity_map(data)
    result["velocity_map"] = {"c_v": float(coef[0]), "c_a": float(coef[1]),
                              "real_needs_action_outside_box": float(np.mean(np.any(np.abs(needed_action(
                                  coef, data.observations, data.next_observations)) > 1.02, axis=1)))}
    for name, g in gens.items():
        path = out / f"aug_{name}.hdf5"
        save_hdf5(augment(data, g), path)
        summary = audit_maze_file(path, args.task, json_out=out / f"audit_{name}.json", progress=False)
        n_file = int(load_hdf5(path).generated.sum())
        # Every step, the truncated ones too: what truncation removed, and what Γ knew.
        full = audit_maze_transitions(args.task, _flat(g.observations), _flat(g.actions),
                                      _flat(g.next_observations))
        err, wall = full["error"], full["wall_hit"]
        kept = _flat(g.kept)
        dist, gamma = _flat(g.dist), _flat(g.reliability)
        bad = err > args.bad_error
        removed = ~kept
        # Where the error comes from: a state beyond the speed clip, or a state pair that needs an
        # action outside [-1, 1] (2% slack for the fitted map), which the action's clip breaks.
        obs, nxt = _flat(g.observations), _flat(g.next_observations)
        fast = np.any(np.abs(obs[:, 2:]) > 5.0, axis=1) | np.any(np.abs(nxt[:, 2:]) > 5.0, axis=1)
        outside = np.any(np.abs(needed_action(coef, obs, nxt)) > 1.02, axis=1)
        rest = ~fast & ~outside
        result["generators"][name] = {
            "file": str(path),
            "generated": summary["generated"],
            "generated_rows_in_file": n_file,
            "steps_generated": int(kept.size),
            "steps_removed_by_truncation": int(removed.sum()),
            "trajectories_truncated": int(np.sum(g.lengths < g.kept.shape[1])),
            "removed_mean_error": float(err[removed].mean()) if removed.any() else float("nan"),
            "all_steps_mean_error": float(err.mean()),
            "all_steps_wall_rate": float(wall.mean()),
            "bad_rate": float(bad.mean()),
            "dist_mean": float(dist.mean()),
            "dist_above_alpha": float(np.mean(dist > g.alpha)),
            "gamma_max": float(gamma.max()),
            "spearman_dist_error": spearman(dist, err),
            "spearman_gamma_error": spearman(gamma, err),
            "auc_dist_bad": auc(dist[bad], dist[~bad]),
            "auc_gamma_bad": auc(gamma[bad], gamma[~bad]),
            "auc_dist_wall": auc(dist[wall], dist[~wall]),
            "beyond_speed_clip": {"rate": float(fast.mean()), "error_share": float(err[fast].sum() / err.sum())},
            "needs_action_outside_box": {"rate": float(outside.mean()),
                                         "error_share": float(err[outside & ~fast].sum() / err.sum())},
            "other_steps": {"rate": float(rest.mean()), "mean_error": float(err[rest].mean()),
                            "median_error": float(np.median(err[rest]))},
            "_error": err,
        }
        if result["real"] is None:
            result["real"] = summary["real"]
    data_err = np.asarray(vae.dist(jnp.asarray(data.observations), jnp.asarray(data.actions),
                                   jnp.asarray(data.next_observations)))
    result["data_dist"] = {"mean": float(data_err.mean()), "q99": float(np.quantile(data_err, 0.99)),
                           "max": float(data_err.max())}
    # Lower thresholds than the paper's α = max: what would truncation at a quantile of the data's
    # VAE errors remove, of the bad steps and of the good ones? (FT's VAE has the same config,
    # seed and data as RT's, so one set of thresholds serves all.)
    for name, g in gens.items():
        m = result["generators"][name]
        err = m.pop("_error")
        bad = err > args.bad_error
        m["alphas"] = []
        for q in (1.0, 0.99, 0.95, 0.9):
            kept = _flat(truncate(g.reliability, float(np.quantile(data_err, q)))[1])
            m["alphas"].append({
                "quantile": q, "kept": float(kept.mean()),
                "bad_removed": float((~kept & bad).sum() / max(bad.sum(), 1)),
                "good_removed": float((~kept & ~bad).sum() / max((~bad).sum(), 1)),
                "mean_error_kept": float(err[kept].mean()) if kept.any() else float("nan"),
            })
    _stage(times, "augment + audit", t0)
    times["total"] = round(time.perf_counter() - t_start, 1)
    result["seconds"] = times

    print(f"\n{args.task}, {len(data)} real transitions, seed {args.seed}, {args.trajectories} trajectories "
          f"x {args.max_length} steps per generator, truncation at α = the data's maximum VAE error\n")
    head = (f"{'transitions':<14}{'rows':>7}{'mean err':>10}{'median err':>12}{'max err':>9}{'wall %':>8}"
            f"{'removed':>9}{'err removed':>13}")
    print(head)
    print("-" * len(head))
    r = result["real"]
    print(f"{'real':<14}{r['transitions']:>7d}{r['mean_error']:>10.2e}{r['median_error']:>12.2e}"
          f"{r['max_error']:>9.2e}{100 * r['wall_rate']:>8.3f}{'-':>9}{'-':>13}")
    for name, m in result["generators"].items():
        s = m["generated"]
        print(f"{name:<14}{s['transitions']:>7d}{s['mean_error']:>10.4f}{s['median_error']:>12.4f}"
              f"{s['max_error']:>9.3f}{100 * s['wall_rate']:>8.3f}{m['steps_removed_by_truncation']:>9d}"
              f"{m['removed_mean_error']:>13.4f}")
    print(f"\nDoes the VAE error tell wrong steps? (all generated steps, truncated ones included; "
          f"bad = simulator error > {args.bad_error})")
    head = (f"{'generator':<14}{'α':>8}{'DIST mean':>11}{'DIST > α %':>12}{'bad %':>8}{'ρ(DIST,err)':>13}"
            f"{'ρ(Γ,err)':>10}{'AUC DIST':>10}{'AUC Γ':>8}")
    print(head)
    print("-" * len(head))
    for name, m in result["generators"].items():
        alpha = result["alpha"]["forward" if name == "forward" else "rt"]
        print(f"{name:<14}{alpha:>8.3f}{m['dist_mean']:>11.3f}{100 * m['dist_above_alpha']:>12.2f}"
              f"{100 * m['bad_rate']:>8.1f}{m['spearman_dist_error']:>13.3f}{m['spearman_gamma_error']:>10.3f}"
              f"{m['auc_dist_bad']:>10.3f}{m['auc_gamma_bad']:>8.3f}")
    vm = result["velocity_map"]
    print(f"\nWhere the error comes from (all generated steps; fitted v' = {vm['c_v']:.4f}·v + {vm['c_a']:.4f}·a, "
          f"real transitions needing |a| > 1.02: {100 * vm['real_needs_action_outside_box']:.2f}%)")
    head = (f"{'generator':<14}{'|v|>5 %':>9}{'its err share':>15}{'needs |a|>1 %':>15}{'its err share':>15}"
            f"{'other: mean err':>17}{'median err':>12}")
    print(head)
    print("-" * len(head))
    for name, m in result["generators"].items():
        f, o, r = m["beyond_speed_clip"], m["needs_action_outside_box"], m["other_steps"]
        print(f"{name:<14}{100 * f['rate']:>9.2f}{100 * f['error_share']:>14.1f}%{100 * o['rate']:>15.2f}"
              f"{100 * o['error_share']:>14.1f}%{r['mean_error']:>17.4f}{r['median_error']:>12.4f}")
    print("\nTruncation at lower α (a quantile of the data's VAE errors): steps kept, bad / good steps removed, "
          "mean error of the kept")
    for name, m in result["generators"].items():
        cells = "   ".join(f"q{a['quantile']:g}: {100 * a['kept']:.1f}% kept, {100 * a['bad_removed']:.1f}/"
                           f"{100 * a['good_removed']:.1f}% removed, err {a['mean_error_kept']:.4f}"
                           for a in m["alphas"])
        print(f"{name:<14}{cells}")
    print(f"\ntimes (s): {json.dumps(times)}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result


if __name__ == "__main__":
    main()
