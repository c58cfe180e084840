"""Does a policy's training give the same bits whatever cores its process may use?

    python benchmarks/cores_bits.py [--algos bcq iql] [--updates 300]

For each algorithm, trains one seed for `--updates` updates with `rtaug.train.train` (the
training loop a sweep's policy stage runs) on 20,000 synthetic halfcheetah-shaped transitions,
in a fresh process per placement: pinned to each core alone, then on every core (the
affinity is set before jax starts, as a sweep's Ray worker does). Prints a hash of the final
parameters per placement: equal hashes, equal parameters.

Why it matters (docs/decisions.md): a sweep pins each policy to one core; a process on several
cores runs XLA's CPU kernels on several threads, which may split the sums differently. If the
hashes differ, a stage's result depends on where it ran, not only on its spec and seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def trained_hash(algo: str, updates: int) -> str:
    import jax
    import numpy as np

    # benchmarks/throughput.py, beside this script
    from throughput import halfcheetah_shaped

    from rtaug import algos
    from rtaug.algos.common import for_budget
    from rtaug.train import train

    config = for_budget(algos.get(algo).Config(), updates)
    res = train(halfcheetah_shaped(n=20_000), algo, config, steps=updates, seeds=[0], chunk=min(100, updates))
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(res.state):
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()[:16]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algos", nargs="+", default=["bcq", "iql"])
    ap.add_argument("--updates", type=int, default=300)
    ap.add_argument("--child", nargs=2, metavar=("ALGO", "CORES"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:  # one placement: pin first, then import jax
        algo, cores = args.child
        os.sched_setaffinity(0, {int(c) for c in cores.split(",")})
        print(json.dumps({"hash": trained_hash(algo, args.updates)}))
        return 0
    cores = sorted(os.sched_getaffinity(0))
    placements = [[c] for c in cores] + ([cores] if len(cores) > 1 else [])
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {args.updates} updates, seed 0")
    for algo in args.algos:
        hashes = {}
        for where in placements:
            out = subprocess.run([sys.executable, __file__, "--updates", str(args.updates), "--child", algo,
                                  ",".join(map(str, where))], capture_output=True, text=True, check=True,
                                 cwd=HERE)
            name = where[0] if len(where) == 1 else "all"
            hashes[name] = json.loads(out.stdout.strip().splitlines()[-1])["hash"]
            label = f"core {name}" if name != "all" else f"cores {','.join(map(str, where))}"
            print(f"{algo}: {label:<12} {hashes[name]}", flush=True)
        single = {v for k, v in hashes.items() if k != "all"}
        verdict = "the same on every single core" if len(single) == 1 else "DIFFERENT between single cores"
        if "all" in hashes:
            verdict += "; " + ("the same" if hashes["all"] in single else "different") + " on all cores"
        print(f"{algo}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
