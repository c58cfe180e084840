"""Where an augmented file's generated rows are, against its real rows: how far each generated
state is from the nearest real state (beside the same distance from real states to their
nearest other real state), and how often actions sit at the edge of the action box.

    python benchmarks/generated_rows.py FILE [--samples 5000] [--seed 0] [--json OUT]

FILE: an augmented file (`rtaug augment`, or a `generated` / `relabelled` stage's data.hdf5), whose
`generated` key marks the generated rows. Distances are Euclidean over raw observations, to the
file's distinct real states (Eq. 11's suffix copies are duplicates of real rows); `--samples`
states of each kind are queried (a k-d tree over the real ones). The simulator audit says whether
a generated transition is possible; this says whether its state is one the data visit.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from rtaug.data import load_hdf5
from rtaug.fileio import atomic_write_json


def describe(path, samples: int = 5000, seed: int = 0, saturated: float = 0.99) -> dict:
    from scipy.spatial import cKDTree

    data = load_hdf5(path)
    if data.generated is None or not data.generated.any():
        raise ValueError(f"{path}: key 'generated': the file marks no generated rows")
    real_obs = np.unique(data.observations[~data.generated].astype(np.float64), axis=0)
    gen = np.flatnonzero(data.generated)
    rng = np.random.default_rng(seed)
    tree = cKDTree(real_obs)
    probe_real = rng.choice(len(real_obs), min(samples, len(real_obs)), replace=False)
    real_nn = tree.query(real_obs[probe_real], k=2)[0][:, 1]  # the nearest *other* real state
    probe_gen = rng.choice(gen, min(samples, len(gen)), replace=False)
    gen_nn = tree.query(data.observations[probe_gen].astype(np.float64), k=1)[0]

    def spread(x):
        return {"median": float(np.median(x)), "mean": float(x.mean()), "p90": float(np.quantile(x, 0.9))}

    out = {"file": str(path), "real_states": len(real_obs), "generated_rows": len(gen), "samples": samples,
           "seed": seed, "real_to_nearest_other_real": spread(real_nn), "generated_to_nearest_real": spread(gen_nn)}
    if data.actions.ndim == 2 and data.actions.dtype.kind == "f":
        out["saturated_action_share"] = {  # components with |a| > saturated
            "real": float((np.abs(data.actions[~data.generated]) > saturated).mean()),
            "generated": float((np.abs(data.actions[gen]) > saturated).mean()), "threshold": saturated}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", help="augmented HDF5 file with a 'generated' key")
    ap.add_argument("--samples", type=int, default=5000, help="states of each kind queried (default 5000)")
    ap.add_argument("--seed", type=int, default=0, help="which states are sampled (default 0)")
    ap.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    if args.samples < 1:
        ap.error(f"--samples: must be at least 1, got {args.samples}")
    try:
        out = describe(args.file, args.samples, args.seed)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    r, g = out["real_to_nearest_other_real"], out["generated_to_nearest_real"]
    print(f"{out['file']}: {out['generated_rows']} generated rows, {out['real_states']} distinct real states")
    print(f"  real state -> nearest other real state: median {r['median']:.3f}, mean {r['mean']:.3f}, p90 {r['p90']:.3f}")
    print(f"  generated state -> nearest real state:  median {g['median']:.3f}, mean {g['mean']:.3f}, p90 {g['p90']:.3f}")
    if "saturated_action_share" in out:
        a = out["saturated_action_share"]
        print(f"  action components with |a| > {a['threshold']}: real {a['real']:.1%}, generated {a['generated']:.1%}")
    if args.json:
        atomic_write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
