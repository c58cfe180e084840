"""Which way an augmented Maze2D file's rows move, relative to the task's evaluation goal: the
input rows, Eq. 11's copies of real rows, and the generated rows, each as the share of their
transitions that bring the point closer to the goal.

    python benchmarks/goal_progress.py FILE --task maze2d-medium-dense [--input-rows N] [--json OUT]

FILE: an augmented file (`rtaug augment`, or a `generated` stage's data.hdf5 in the experiment
cache, whose stage.json beside it gives the input's row count; elsewhere pass `--input-rows`,
which `rtaug augment` prints). Its first N rows are the input verbatim; later rows are generated
(the `generated` key) or copies of real rows that merged episodes carry (a backward trajectory's
real suffix, a forward one's real prefix). A copy is a real transition, so the simulator audit
passes it; what it changes is the data's weights. Backward generation starts at an episode's
state of maximal reward (DESIGN §5), so its copied suffix is what the data's controller did
*after* its closest approach to the evaluation goal, on its way to a goal of its own: if the copies
move away from the goal more often than the data do, they tilt the behaviour a constrained learner
(BCQ, BC) imitates away from it (docs/results/README.md measures what that does to BCQ).

Progress of a transition: ‖s − g‖ − ‖s′ − g‖ over the (x, y) position, g the evaluation goal of
`--task` (positive: towards it); "towards" and "away" count moves of more than 1e-6.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from rtaug.data.hdf5 import load_hdf5_rows
from rtaug.fileio import atomic_write_json


def input_rows_of(path: Path) -> int:
    """The input's row count from the experiment cache's stage.json next to FILE."""
    record = path.parent / "stage.json"
    if not record.exists():
        raise ValueError(f"{path}: no stage.json beside it to give the input's rows: pass --input-rows")
    rows = json.loads(record.read_text()).get("generation", {}).get("input_rows")
    if rows is None:
        raise ValueError(f"{record}: no generation.input_rows in it: pass --input-rows")
    return int(rows)


def progress(path, task_name: str, input_rows: int | None = None) -> dict:
    from rtaug.envs.registry import get_task

    task = get_task(task_name)
    layout = getattr(task, "layout", None)
    if layout is None:
        raise ValueError(f"--task {task_name}: not a Maze2D task (no evaluation goal to move towards)")
    path = Path(path)
    data, file_rows = load_hdf5_rows(path)
    if not np.array_equal(file_rows, np.arange(len(data))):  # rows dropped by the next-row convention
        raise ValueError(f"{path}: key 'next_observations' is missing, so the loaded rows are not the file's; "
                         "this count needs a file that has it (a generated stage's file does)")
    n_in = input_rows_of(path) if input_rows is None else input_rows
    if not 0 < n_in <= len(data):
        raise ValueError(f"--input-rows {n_in}: must be in 1..{len(data)}, the file's rows")
    goal = np.asarray(layout.eval_goal, np.float64)
    here = np.linalg.norm(data.observations[:, :2].astype(np.float64) - goal, axis=1)
    there = np.linalg.norm(data.next_observations[:, :2].astype(np.float64) - goal, axis=1)
    step = here - there
    generated = np.zeros(len(data), bool) if data.generated is None else data.generated.astype(bool)
    rows = np.arange(len(data))
    groups = {"input": rows < n_in, "copied": (rows >= n_in) & ~generated, "generated": generated}
    out = {"file": str(path), "task": task_name, "goal": goal.tolist(), "input_rows": n_in}
    for name, mask in groups.items():
        p = step[mask]
        out[name] = {"rows": int(mask.sum())} | ({
            "towards": float(np.mean(p > 1e-6)), "away": float(np.mean(p < -1e-6)),
            "mean_progress": float(p.mean()), "mean_distance": float(here[mask].mean())} if mask.any() else {})
    out["all"] = {"rows": len(data), "towards": float(np.mean(step > 1e-6)), "away": float(np.mean(step < -1e-6))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", help="an augmented file (rtaug augment, or a generated stage's data.hdf5)")
    ap.add_argument("--task", required=True, help="the Maze2D task whose evaluation goal is the reference")
    ap.add_argument("--input-rows", type=int, default=None,
                    help="rows of the input at the file's head (default: the stage.json beside FILE)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    json_out = Path(args.json) if args.json else None
    if json_out is not None and json_out.is_dir():
        print(f"error: --json {args.json}: is a directory; give a file name", file=sys.stderr)
        return 2
    if json_out is not None and json_out.exists() and Path(args.file).exists() and json_out.samefile(args.file):
        print(f"error: --json {args.json}: is the input file; it would be overwritten", file=sys.stderr)
        return 2
    try:
        out = progress(args.file, args.task, args.input_rows)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{out['file']} ({out['task']}, goal at {out['goal'][0]:.2f}, {out['goal'][1]:.2f}):")
    for name in ("input", "copied", "generated", "all"):
        g = out[name]
        if g["rows"] == 0:
            print(f"  {name:9s} {0:>9d} rows")
            continue
        extra = (f", mean progress {g['mean_progress']:+.4f} per step, mean distance {g['mean_distance']:.3f}"
                 if "mean_progress" in g else "")
        print(f"  {name:9s} {g['rows']:>9d} rows: towards the goal {g['towards']:.1%}, away {g['away']:.1%}{extra}")
    if json_out is not None:
        atomic_write_json(json_out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
