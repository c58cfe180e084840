"""Do the learners learn? Each one on maze2d-umaze-dense data of a noisy controller, scored in
the simulator by the task's normalized score.

    python benchmarks/learner_correctness.py runs/correctness            # everything (hours on 2 cores)
    python benchmarks/learner_correctness.py runs/correctness --algos cql --datasets mixed
    python benchmarks/learner_correctness.py runs/correctness --report   # table + plot of what exists

Two datasets, both of evaluation-shaped episodes (`rtaug.collect.waypoint.collect_maze2d_episodes`:
start where an evaluation episode starts, last 300 steps, D4RL's action noise N(0, 0.5²)):

* `expert`: every episode chases the evaluation goal. The learners should score close to the
  data's own episodes (the "data's best behaviour").
* `mixed`: a quarter of the episodes chase the evaluation goal, the rest chase random goals by
  D4RL's protocol. Behaviour cloning averages the two; value-based learners (IQL, TD3+BC, CQL,
  BCQ) should pick out the goal-chasing behaviour the reward favours and beat it.

Every (dataset, algorithm) cell trains all `--seeds` at once with the published settings for the
maze2d domain, evaluates every `--eval-every` updates on `--eval-episodes` episodes, and writes
OUT/results/<dataset>-<algo>.json; a cell whose result exists is skipped and a killed cell
resumes from its checkpoint, so several invocations (e.g. one per core) can share OUT.

One departure from the published settings, for a CPU budget: CQL's policy warm-up of pure
behaviour cloning (`bc_steps`, 40k of the authors' 1M updates) is scaled to the same 4% of the
run (rtaug's default, `CQLConfig.for_budget`), else a run shorter than 40k updates would be
behaviour cloning throughout (`--cql-bc-steps`
overrides it, e.g. to continue a finished run to more updates from its checkpoint: the loop
resumes it exactly, so the result is that of one uninterrupted longer run).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from rtaug import algos
from rtaug.algos.common import episode_returns
from rtaug.collect.waypoint import collect_maze2d_episodes
from rtaug.data.hdf5 import load_hdf5, save_hdf5
from rtaug.envs.registry import get_task
from rtaug.evaluate import make_eval_fn
from rtaug.fileio import atomic_savefig, atomic_write_json
from rtaug.train import train

TASK = "maze2d-umaze-dense"
DATASETS = {"expert": 1.0, "mixed": 0.25}  # share of episodes chasing the evaluation goal
ALGOS = ("bc", "td3bc", "iql", "cql", "bcq")
EVAL_SEED = 10_000  # evaluation starts: disjoint from the data's (seed 0 / 1 streams)


def dataset_path(out: Path, name: str) -> Path:
    return out / "data" / f"{name}.hdf5"


def get_dataset(out: Path, name: str, episodes: int):
    path = dataset_path(out, name)
    if not path.exists():
        data = collect_maze2d_episodes(TASK, episodes, expert_fraction=DATASETS[name],
                                       seed=list(DATASETS).index(name), progress=True)
        save_hdf5(data, path)
    return load_hdf5(path)


def behaviour(data) -> dict:
    """Normalized returns of the dataset's own episodes: all of them, and the goal-chasing ones."""
    task = get_task(TASK)
    scores = task.normalize(episode_returns(data))
    expert = np.asarray(data.infos["expert"])[data.episodes()[:, 0]].astype(bool)
    return {"episodes": int(len(scores)), "all_mean": float(scores.mean()),
            "expert_episodes": int(expert.sum()),
            "expert_mean": float(scores[expert].mean()) if expert.any() else float("nan"),
            "other_mean": float(scores[~expert].mean()) if (~expert).any() else float("nan")}


def run_cell(out: Path, name: str, algo: str, args) -> dict:
    result_path = out / "results" / f"{name}-{algo}-{args.steps}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    data = get_dataset(out, name, args.episodes)
    module = algos.get(algo)
    config = module.Config()
    if algo == "cql" and args.cql_bc_steps is not None:  # else 4% of --steps (CQLConfig.for_budget)
        config = replace(config, bc_steps=args.cql_bc_steps)
    eval_fn = make_eval_fn(TASK, episodes=args.eval_episodes, seed=EVAL_SEED)
    print(f"== {algo} on {name}: {len(data)} transitions, {args.steps} updates, seeds {args.seeds}", flush=True)
    t0 = time.time()
    res = train(data, algo, config, steps=args.steps, seeds=args.seeds, out_dir=out / "runs" / f"{name}-{algo}-{args.steps}",
                eval_fn=eval_fn, eval_every=args.eval_every, chunk=min(1000, args.eval_every),
                progress=not args.no_progress, domain="maze2d")
    curves = {str(s): [{"step": r["step"], "normalized_mean": r["normalized_mean"],
                        "success_rate": r["success_rate"]} for r in res.evaluations[s]] for s in res.seeds}
    finals = [curves[str(s)][-1]["normalized_mean"] for s in res.seeds]
    record = {"dataset": name, "algo": algo, "task": TASK, "steps": args.steps, "seeds": list(res.seeds),
              "eval_episodes": args.eval_episodes, "config": asdict(res.config),
              "final_normalized": finals, "final_mean": float(np.mean(finals)),
              "final_std": float(np.std(finals, ddof=1)) if len(finals) > 1 else None, "curves": curves,
              "updates_per_s": res.updates_per_s, "wall_s": time.time() - t0,
              "behaviour": behaviour(data)}
    atomic_write_json(result_path, record)
    print(f"   final normalized score {_cell(record)} ({record['wall_s']:.0f} s)", flush=True)
    return record


def _cell(r) -> str:
    """mean ± sample std over seeds, or the single seed's score marked as such."""
    x = np.asarray(r["final_normalized"], np.float64)
    if len(x) == 1:
        return f"{x[0]:.1f} (1 seed)"
    return f"{x.mean():.1f} ± {x.std(ddof=1):.1f}"


def report(out: Path) -> None:
    rows = [json.loads(p.read_text()) for p in sorted((out / "results").glob("*.json"))]
    if not rows:
        print(f"no results in {out / 'results'}")
        return
    rows.sort(key=lambda r: (list(DATASETS).index(r["dataset"]), ALGOS.index(r["algo"]), r["steps"]))
    by = {(r["dataset"], r["algo"]): r for r in rows}  # the longest run of each cell is tabulated
    print(f"\n{TASK}: normalized score at the end of training (mean ± sample std over seeds; "
          f"{rows[0]['eval_episodes']} evaluation episodes per seed)")
    header = f"{'dataset':8s} {'data (all)':>11s} {'data (goal)':>12s}" + "".join(f"{a:>16s}" for a in ALGOS)
    print(header)
    print("-" * len(header))
    for name in DATASETS:
        cells = [by.get((name, a)) for a in ALGOS]
        known = [c for c in cells if c]
        if not known:
            continue
        b = known[0]["behaviour"]
        line = f"{name:8s} {b['all_mean']:11.1f} {b['expert_mean']:12.1f}"
        for c in cells:
            line += f"{_cell(c):>16s}" if c else f"{'-':>16s}"
        print(line)
    print("\nevery run (final normalized score per seed; updates, wall time):")
    for r in rows:
        finals = ", ".join(f"{x:.1f}" for x in r["final_normalized"])
        print(f"  {r['dataset']:7s} {r['algo']:6s} [{finals}]  {r['steps']} updates x {len(r['seeds'])} seeds, "
              f"{r['wall_s']:.0f} s ({r['updates_per_s']:.0f} updates/s per seed)")
    _plot(list(by.values()), out / "correctness.png")
    print(f"\nlearning curves: {out / 'correctness.png'}")


def _plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DATASETS), figsize=(11, 4), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), DATASETS):
        for r in rows:
            if r["dataset"] != name:
                continue
            steps = [p["step"] for p in next(iter(r["curves"].values()))]
            scores = np.array([[p["normalized_mean"] for p in c] for c in r["curves"].values()])
            mean = scores.mean(0)
            line, = ax.plot(steps, mean, label=r["algo"])
            if len(scores) > 1:
                ax.fill_between(steps, scores.min(0), scores.max(0), color=line.get_color(), alpha=0.2)
        b = next((r["behaviour"] for r in rows if r["dataset"] == name), None)
        if b:
            ax.axhline(b["expert_mean"], color="k", ls="--", lw=1, label="data: goal-chasing episodes")
            ax.axhline(b["all_mean"], color="gray", ls=":", lw=1, label="data: all episodes")
        ax.set_title(f"{TASK}, {name} data")
        ax.set_xlabel("updates")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("normalized score")
    np.atleast_1d(axes)[-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="output directory (data, runs, results, plot)")
    p.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    p.add_argument("--steps", type=int, default=10_000, help="updates per seed (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--episodes", type=int, default=500, help="episodes per dataset (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--cql-bc-steps", type=int, default=None,
                   help="CQL's policy BC warm-up (default: 4%% of --steps, the authors' 40k of 1M); a run "
                        "continued from a shorter one's checkpoint (copy OUT/runs/D-cql-N to D-cql-M) must "
                        "keep the shorter run's value")
    p.add_argument("--report", action="store_true", help="only print the table and plot of existing results")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    if not args.report:
        for name in args.datasets:
            for algo in args.algos:
                run_cell(args.out, name, algo, args)
    report(args.out)


if __name__ == "__main__":
    main()
