"""Why BCQ's action VAE fails on some seeds on Maze2D data, and that normalised states fix it.

    python benchmarks/bcq_vae.py DATA.hdf5                       # both parts, seeds 0-7
    python benchmarks/bcq_vae.py DATA.hdf5 --part init           # seconds
    python benchmarks/bcq_vae.py DATA.hdf5 --part fit --steps 2000 --json OUT.json   # ~1 h on 2 cores

1. `init`: the action decoder's tanh inputs at initialisation on the data's states, for each seed:
   raw states with Flax's default initialiser (what BCQ used before), normalised states with it,
   and raw states with PyTorch's nn.Linear default (the authors' code, BCQ's default now; weights
   and biases U(±1/√fan_in)). A tanh input beyond ±2 has under 7% of its gradient left.
2. `fit`: BCQ trained for --steps updates on the data in each of the three cases, every seed at
   once: the VAE's reconstruction error every 250 updates. A VAE that has not fitted proposes
   actions the data never took, and BCQ's actor only perturbs them by Φ = 0.05.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

from rtaug.algos import bcq
from rtaug.data.hdf5 import load_hdf5
from rtaug.fileio import atomic_write_json
from rtaug.train import train


CASES = (  # (label, BCQConfig changes)
    ("raw, Flax default", {"weight_init": "lecun", "normalize_obs": False}),
    ("normalised, Flax default", {"weight_init": "lecun", "normalize_obs": True}),
    ("raw, PyTorch default", {"weight_init": "torch", "normalize_obs": False}),
)


def _decoder_inputs(config, params, obs, key):
    act_dim = params["params"]["decoder"]["out"]["bias"].shape[-1]
    vae_net, _, _ = bcq._nets(config, act_dim)
    z = jnp.clip(jax.random.normal(key, (obs.shape[0], config.latent_scale * act_dim)), -0.5, 0.5)
    return vae_net.apply(params, jnp.concatenate([obs, z], -1), method=lambda m, x: m.decoder(x))


def part_init(data, seeds) -> list[dict]:
    rng = np.random.default_rng(0)
    obs = data.observations[rng.choice(len(data), min(2000, len(data)), replace=False)]
    mean, std = data.observations.mean(0), data.observations.std(0) + 1e-3
    rows = []
    print(f"{'seed':>4}  {'states / init':<26} {'mean |tanh input|':>18} {'share beyond ±2':>16}")
    for s in seeds:
        for name, changes in CASES:
            config = replace(bcq.BCQConfig(), **changes)
            vae = bcq.init(config, data.obs_dim, data.act_dim, jax.random.split(jax.random.PRNGKey(s))[0])["params"]["vae"]
            o = (obs - mean) / std if config.normalize_obs else obs
            pre = np.asarray(_decoder_inputs(config, vae, jnp.asarray(o), jax.random.PRNGKey(1)))
            row = {"seed": s, "case": name, "mean_abs": float(np.abs(pre).mean()), "beyond_2": float((np.abs(pre) > 2).mean())}
            rows.append(row)
            print(f"{s:>4}  {name:<26} {row['mean_abs']:>18.2f} {row['beyond_2']:>16.3f}")
    return rows


def part_fit(data, seeds, steps: int) -> dict:
    out = {}
    for name, changes in CASES:
        config = replace(bcq.BCQConfig(), **changes)
        res = train(data, "bcq", config, steps=steps, seeds=seeds, chunk=250, progress=True)
        out[name] = {str(s): [{"step": r["step"], "recon_loss": r["recon_loss"], "kl": r["kl"]} for r in res.metrics[s]]
                     for s in res.seeds}
        print(f"\n{name}: VAE reconstruction error (mean squared, actions in [-1, 1]) every 250 updates")
        for s in res.seeds:
            print(f"  seed {s}: " + " ".join(f"{r['recon_loss']:.2f}" for r in res.metrics[s]))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="D4RL-layout HDF5 file (e.g. `rtaug collect maze2d-medium-sparse`'s)")
    p.add_argument("--part", choices=["init", "fit", "both"], default="both")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    p.add_argument("--steps", type=int, default=2000, help="updates of the fit part (default: %(default)s)")
    p.add_argument("--json", help="write the figures as JSON")
    args = p.parse_args(argv)
    data = load_hdf5(args.dataset)
    result = {"dataset": args.dataset, "seeds": args.seeds}
    if args.part in ("init", "both"):
        result["init"] = part_init(data, args.seeds)
    if args.part in ("fit", "both"):
        result["fit"] = part_fit(data, args.seeds, args.steps)
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
