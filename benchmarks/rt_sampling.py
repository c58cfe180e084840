"""How far are RT's generated rows from the simulator, and how much of that is the sampling?

    python benchmarks/rt_sampling.py --dataset DATA.hdf5 --model MODEL_DIR --task walker2d-medium-replay
    python benchmarks/rt_sampling.py ... --temperatures 1 0.5 0 --trajectories 2000 --json out.json
    python benchmarks/rt_sampling.py --generated <cache>/generated/<key>/data.hdf5 --task walker2d-medium-replay

Generates from a trained model (`rtaug train-model`, or a sweep's `<cache>/model/<key>/model`) with
the Gaussian heads' noise scaled by a temperature T (T = 1 is RT as the paper specifies; T = 0 takes
each head's mean), then audits every generated row in the simulator (locomotion tasks: restore s,
apply a, distance to the written s') and prints, per T: the mean length and truncated share, the
error overall and by steps back from the real state, Γ's rank correlation with the error, the share
of rows whose state sits at the observation's velocity clip, how far s lies from s', and the share
of action components at the action bounds (`--keep DIR` keeps the generated files). `--generated FILE` measures an augmented file already
written (a sweep's `generated` stage) instead. A diagnostic: the temperature is not one of rtaug's
settings (docs/locomotion.md has the walker2d figures).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


def steps_back(generated: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each generated row, its distance (1, 2, ...) from the real row its trajectory joins."""
    back = np.zeros(len(generated), int)
    k = 0
    for i in range(len(generated) - 1, -1, -1):
        if ends[i] or (i + 1 < len(generated) and not generated[i + 1]):
            k = 0
        if generated[i]:
            k += 1
            back[i] = k
    return back


def measure(path: Path, task: str) -> dict:
    from scipy.stats import spearmanr

    from rtaug.data.hdf5 import load_hdf5
    from rtaug.envs.locomotion_audit import audit_locomotion_transitions

    d = load_hdf5(path)
    if d.generated is None or not d.generated.any():
        sys.exit(f"rt_sampling.py: {path}: no generated rows (key 'generated')")
    g = d.generated
    idx = np.flatnonzero(g)
    back = steps_back(g, d.terminals | d.timeouts)[idx]
    res = audit_locomotion_transitions(task, d.observations[idx], d.actions[idx], d.next_observations[idx])
    err = res["error"]
    real = ~g
    return {
        "generated_rows": len(idx),
        "mean_error": float(err.mean()),
        "error_by_steps_back": {int(j): float(err[back == j].mean()) for j in np.unique(back)},
        "spearman_reliability_error": float(spearmanr(d.reliability[idx], err).correlation),
        "at_velocity_clip": float(res["at_velocity_clip"].mean()),
        "state_step": float(np.linalg.norm(d.next_observations[idx] - d.observations[idx], axis=1).mean()),
        "real_state_step": float(np.linalg.norm(d.next_observations[real] - d.observations[real], axis=1).mean()),
        "actions_at_bound": float((np.abs(d.actions[idx]) >= 0.999).mean()),
    }


def generate(dataset: Path, model: Path, out: Path, temperature: float, trajectories: int, max_length: int, seed: int):
    """`rtaug augment`'s generation (its defaults otherwise) with the heads' noise scaled by `temperature`."""
    import jax
    import jax.numpy as jnp

    import rtaug.generate.model as rt_model
    from rtaug.experiments.stages import augment_file
    from rtaug.generate.generation import GenerationConfig

    def scaled(head, key):  # the heads' Gaussian, its noise scaled by the temperature
        mean, log_std = jnp.split(head, 2, axis=-1)
        log_std = jnp.clip(log_std, rt_model.LOG_STD_MIN, rt_model.LOG_STD_MAX)
        return mean + temperature * jnp.exp(log_std) * jax.random.normal(key, mean.shape)

    original = rt_model._gaussian_sample
    rt_model._gaussian_sample = scaled  # read when generation is traced, so each run compiles its own
    try:
        augment_file(dataset, model, out, GenerationConfig(num_trajectories=trajectories, max_length=max_length,
                                                           seed=seed), progress=False)
    finally:
        rt_model._gaussian_sample = original
        jax.clear_caches()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="rt_sampling.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, help="the model's D4RL-layout HDF5 data")
    p.add_argument("--model", type=Path, help="model directory (`rtaug train-model`'s)")
    p.add_argument("--generated", type=Path, nargs="+", help="measure these augmented files instead of generating")
    p.add_argument("--task", required=True, help="a locomotion task, for the audit (e.g. walker2d-medium-replay)")
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.5, 0.0])
    p.add_argument("--trajectories", type=int, default=2000)
    p.add_argument("--max-length", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="keep the generated files, as DIR/T<temperature>.hdf5 (e.g. to train a learner on them)")
    args = p.parse_args(argv)
    if args.generated is None and (args.dataset is None or args.model is None):
        p.error("--dataset and --model are required unless --generated is given")
    paths = args.generated or [args.dataset, args.model]
    for what, path in zip(["--generated"] * len(paths) if args.generated else ["--dataset", "--model"], paths):
        if not path.exists():
            p.error(f"{what} {path}: does not exist")
    if args.keep is not None and args.keep.exists() and not args.keep.is_dir():
        p.error(f"--keep {args.keep}: exists and is not a directory")
    if any(t < 0 for t in args.temperatures):
        p.error(f"--temperatures: must be ≥ 0, got {args.temperatures}")
    from rtaug.envs.registry import get_task

    try:
        get_task(args.task, "mujoco", "rt_sampling")
    except ValueError as exc:
        p.error(f"--task: {exc}")
    rows = {}
    if args.generated:
        for path in args.generated:
            rows[str(path)] = measure(path, args.task)
            _print(str(path), rows[str(path)])
    else:
        with tempfile.TemporaryDirectory(prefix="rt-sampling-") as tmp:
            where = Path(tmp) if args.keep is None else args.keep
            where.mkdir(parents=True, exist_ok=True)
            for t in args.temperatures:
                out = where / f"T{t:g}.hdf5"
                generate(args.dataset, args.model, out, t, args.trajectories, args.max_length, args.seed)
                rows[f"T={t:g}"] = measure(out, args.task)
                _print(f"T={t:g}", rows[f"T={t:g}"])
    if args.json:
        from rtaug.fileio import atomic_write_json

        atomic_write_json(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows})
    return 0


def _print(name: str, r: dict) -> None:
    by = r["error_by_steps_back"]
    print(f"{name}: error {r['mean_error']:.2f} (1 back {by.get(1, float('nan')):.2f}, "
          f"{max(by)} back {by[max(by)]:.2f}), Spearman(Γ, error) {r['spearman_reliability_error']:.2f}, "
          f"at velocity clip {r['at_velocity_clip']:.1%}, s-to-s' {r['state_step']:.2f} "
          f"(real {r['real_state_step']:.2f}), actions at ±1 {r['actions_at_bound']:.1%}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
