"""Does the reliability Γ find the unreliable steps? BoxBall's true dynamics answer it.

    python benchmarks/boxball_reliability.py runs/quickstart [--trajectories 2000] [--json OUT]

Loads the dataset and models a `rtaug quickstart --out DIR` run kept, generates many
trajectories with truncation switched off (so every step is seen), audits each step against
the true dynamics, and prints, per generator, the invalid rate and wall crossings at equal
volume; then, for RT: how well the VAE error DIST and the cumulative reliability Γ separate
invalid from valid steps (ROC AUC), and what truncation at α = the data's maximum error (the
paper) or at lower quantiles would remove of each.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import jax.numpy as jnp

from rtaug.data.hdf5 import load_hdf5
from rtaug.envs.audit import audit_boxball_transitions
from rtaug.generate.baselines import generate_backward_mlp
from rtaug.generate.generation import GenerationConfig, generate
from rtaug.generate.io import load_generator
from rtaug.generate.reliability import truncate


def auc(score_pos, score_neg) -> float:
    """P(score of an invalid step > score of a valid one), ties half (Mann-Whitney U)."""
    if len(score_pos) == 0 or len(score_neg) == 0:
        return float("nan")
    allv = np.concatenate([score_pos, score_neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    for v in np.unique(allv):  # average ranks of ties
        m = allv == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    u = ranks[: len(score_pos)].sum() - len(score_pos) * (len(score_pos) + 1) / 2
    return float(u / (len(score_pos) * len(score_neg)))


def _audit(g):
    au = audit_boxball_transitions(g.observations.reshape(-1, 2), g.actions.reshape(-1),
                                   g.next_observations.reshape(-1, 2))
    shape = g.observations.shape[:2]
    return ~au["valid"].reshape(shape), au["wall_crossing"].reshape(shape)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="output directory of `rtaug quickstart --out DIR`")
    ap.add_argument("--trajectories", type=int, default=2000)
    ap.add_argument("--max-length", type=int, default=10)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    run = Path(args.run_dir)
    data = load_hdf5(run / "boxball.hdf5")
    rt, vae, mlp = load_generator(run / "models" / "rt")
    ft, _, _ = load_generator(run / "models" / "ft")
    no_trunc = dataclasses.replace(vae, alpha=float("inf"))
    cfg = GenerationConfig(num_trajectories=args.trajectories, max_length=args.max_length, candidates=4,
                           kappa=5.0, seed=args.seed)
    gens = {"rt": generate(data, rt, no_trunc, cfg, progress=False),
            "forward": generate(data, ft, no_trunc, cfg, progress=False)}
    gens["backward-mlp"] = generate_backward_mlp(data, mlp, no_trunc, gens["rt"].start_rows,
                                                 gens["rt"].lengths, seed=args.seed)
    out = {"trajectories": args.trajectories, "max_length": args.max_length, "generators": {}}
    print(f"{args.trajectories} trajectories x {args.max_length} steps per generator, truncation off\n")
    print(f"{'generator':<14}{'steps':>8}{'invalid %':>11}{'wall crossings':>16}")
    for name, g in gens.items():
        inv, wall = _audit(g)
        out["generators"][name] = {"steps": int(inv.size), "invalid_rate": float(inv.mean()),
                                   "wall_crossings": int(wall.sum())}
        print(f"{name:<14}{inv.size:>8d}{100 * inv.mean():>11.2f}{int(wall.sum()):>16d}")

    g = gens["rt"]
    inv, wall = _audit(g)
    data_err = np.asarray(vae.dist(jnp.asarray(data.observations), jnp.asarray(data.actions),
                                   jnp.asarray(data.next_observations)))
    rel = {
        "auc_dist": auc(g.dist[inv], g.dist[~inv]),
        "auc_gamma": auc(g.reliability[inv], g.reliability[~inv]),
        "dist_valid_mean": float(g.dist[~inv].mean()),
        "dist_invalid_mean": float(g.dist[inv].mean()) if inv.any() else float("nan"),
        "data_error_max": float(data_err.max()),
        "alphas": [],
    }
    print(f"\nRT: DIST of valid steps {rel['dist_valid_mean']:.3f}, of invalid steps {rel['dist_invalid_mean']:.3f}; "
          f"ROC AUC (invalid vs valid) of DIST {rel['auc_dist']:.3f}, of Γ {rel['auc_gamma']:.3f}")
    print(f"\n{'α':<26}{'value':>8}{'steps kept %':>14}{'invalid removed %':>19}{'valid removed %':>17}"
          f"{'invalid % after':>17}")
    for label, q in [("max (paper)", 1.0), ("quantile 0.999", 0.999), ("quantile 0.99", 0.99),
                     ("quantile 0.95", 0.95), ("quantile 0.9", 0.9)]:
        alpha = float(np.quantile(data_err, q))
        _, kept = truncate(g.reliability, alpha)
        removed_inv = float((~kept & inv).sum() / max(inv.sum(), 1))
        removed_val = float((~kept & ~inv).sum() / max((~inv).sum(), 1))
        after = float(inv[kept].mean()) if kept.any() else float("nan")
        rel["alphas"].append({"alpha": label, "value": alpha, "kept": float(kept.mean()),
                              "invalid_removed": removed_inv, "valid_removed": removed_val,
                              "invalid_rate_after": after})
        print(f"{label:<26}{alpha:>8.3f}{100 * kept.mean():>14.1f}{100 * removed_inv:>19.1f}"
              f"{100 * removed_val:>17.1f}{100 * after:>17.2f}")
    out["rt_reliability"] = rel
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
