"""Throughput of the machine, not of one process: learners trained by Ray workers, one
single-threaded XLA process per worker, against one process using every core.

    pip install -e ".[ray]"
    python benchmarks/workers.py [--algos iql cql] [--workers 1 2 4] [--seconds 20] [--json OUT]

For each algorithm (D4RL network sizes, batch 256, 100k halfcheetah-shaped transitions, as
benchmarks/throughput.py times them):

- `one process, all threads`: one seed trained in this process, XLA using every core;
- `one process, N seeds vmapped`: N seeds at once in one program (what `rtaug train-policy
  --seeds` does), all threads;
- `Ray, W workers`: W Ray tasks at once (`ray.init(num_cpus=W)`, one CPU each), each a fresh
  process pinned to one core (worker w to core w mod the cores) before XLA starts, each training
  its own seed. XLA_FLAGS asking for one thread are set too, but jax 0.10's CPU runtime does not
  keep to them (a float32 matmul under those flags ran at 153-165 GFLOP/s against 184 with all
  threads and 94-103 pinned to one core, 2026-12-03): the pinning is what makes a worker
  single-threaded. Every worker compiles and warms up, then all time their updates over
  the same wall-clock window, so the sum of their rates is what the machine did.

Machine throughput = updates per second summed over everything running at once. Ray's own
start-up (a few seconds) is not counted: it is paid once per sweep, not per task.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def timed_updates(algo: str, seconds: float, seed: int, start_at: float | None = None, n_seeds: int = 1,
                  core: int | None = None) -> dict:
    """Compile and warm up `algo`'s chunk program, wait until `start_at` (wall clock), then run
    chunks for `seconds`; updates/s over that window (all seeds counted). With `core`, the
    process is pinned to that core before XLA starts, so its thread pool has one core to use."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    sys.path.insert(0, str(HERE))
    from throughput import halfcheetah_shaped, warm_chunk

    chunk, length = warm_chunk(algo, halfcheetah_shaped(), n_seeds, seed)
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    wall0, done, t0 = time.time(), 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        chunk()
        done += length
    elapsed = time.perf_counter() - t0
    return {"updates_per_s": done * n_seeds / elapsed, "updates": done * n_seeds, "seconds": elapsed,
            "start": wall0, "end": wall0 + elapsed, "pid": os.getpid()}


def ray_workers(algo: str, workers: int, seconds: float, warmup_s: float) -> dict:
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"XLA_FLAGS": SINGLE_THREAD_XLA, "PYTHONPATH": str(HERE)}})
    try:
        task = ray.remote(num_cpus=1)(timed_updates)
        start_at = time.time() + warmup_s
        cores = sorted(os.sched_getaffinity(0))
        res = ray.get([task.remote(algo, seconds, 100 * w, start_at, core=cores[w % len(cores)])
                       for w in range(workers)])
    finally:
        ray.shutdown()
    # the windows must overlap for the sum to be a rate of the machine: a worker still compiling
    # when the others time would inflate it
    overlap = (min(r["end"] for r in res) - max(r["start"] for r in res)) / seconds
    return {"updates_per_s": sum(r["updates_per_s"] for r in res), "per_worker": [r["updates_per_s"] for r in res],
            "workers": workers, "processes": len({r["pid"] for r in res}), "window_overlap": overlap}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algos", nargs="+", default=["iql", "cql"], choices=["bc", "td3bc", "iql", "cql", "bcq"])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--seconds", type=float, default=20.0, help="timed window per configuration (default 20)")
    ap.add_argument("--warmup", type=float, default=60.0,
                    help="seconds the Ray workers get to start, compile and warm up before the common window")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    if any(w < 1 for w in args.workers) or args.seconds <= 0:
        ap.error("--workers must be >= 1 and --seconds > 0")
    try:
        import ray  # noqa: F401
    except ImportError:
        ap.error("Ray is not installed: pip install -e '.[ray]'")
    sys.path.insert(0, str(HERE))
    from peak import matmul_peak

    out = {"cpu_count": os.cpu_count(), "load_average_before": os.getloadavg(), "seconds": args.seconds,
           "matmul_peak_gflops_before": matmul_peak() / 1e9, "algos": {}}
    print(f"{os.cpu_count()} cores; float32 matmul peak {out['matmul_peak_gflops_before']:.0f} GFLOP/s; "
          f"load average {out['load_average_before'][0]:.2f}", flush=True)
    for algo in args.algos:
        rows = {}
        one = timed_updates(algo, args.seconds, 0)
        rows["one process, all threads"] = {"updates_per_s": one["updates_per_s"]}
        n = max(args.workers)
        many = timed_updates(algo, args.seconds, 0, n_seeds=n)
        rows[f"one process, {n} seeds vmapped"] = {"updates_per_s": many["updates_per_s"]}
        for w in args.workers:
            rows[f"Ray, {w} single-threaded worker{'s' if w > 1 else ''}"] = ray_workers(algo, w, args.seconds,
                                                                                      args.warmup)
        base = rows["one process, all threads"]["updates_per_s"]
        print(f"\n{algo}: machine updates/s\n| configuration | updates/s | × one process |\n|---|---|---|")
        for name, r in rows.items():
            r["vs_one_process"] = r["updates_per_s"] / base
            note = ""
            if "window_overlap" in r:
                note = f" (windows overlap {100 * r['window_overlap']:.0f}%)"
                if r["window_overlap"] < 0.9:  # a worker started late: the sum is not one window's rate
                    note += ": NOT A MEASUREMENT, raise --warmup"
            print(f"| {name} | {r['updates_per_s']:.1f} | {r['vs_one_process']:.2f}{note} |", flush=True)
        out["algos"][algo] = rows
    out["load_average_after"] = os.getloadavg()
    out["matmul_peak_gflops_after"] = matmul_peak() / 1e9
    print(f"\nload average after {out['load_average_after'][0]:.2f}; peak after "
          f"{out['matmul_peak_gflops_after']:.0f} GFLOP/s")
    if args.json:
        from rtaug.fileio import atomic_write_json

        atomic_write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
