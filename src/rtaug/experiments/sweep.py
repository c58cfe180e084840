"""`rtaug sweep`: a grid of experiments whose stages run as Ray tasks.

A sweep file is an experiment config (`rtaug run`'s) with a `grid` section: each key a dotted
field, each value the list it takes; the cells are every combination. Every cell's stages go
into one graph, a stage shared by several cells (the data, RT's model for rt / rt-f3 / rt-f5,
the `none` baseline's policies) once, each stage a Ray task that waits for the stages it reads.
Ray schedules them: locally one single-threaded worker per core by default (each worker pinned
to its core: one thread per core beats one process with all threads here, docs/performance.md),
or on a cluster with `address`. A worker claims its core machine-wide (`hold_a_core`), so a
second sweep started beside a first one waits for cores instead of doubling up on them, and
fills the core the first one's last lone policy leaves idle. A failed stage is retried; its
dependents are then reported as failed upstream, and every other cell still finishes. Finished
stages are cached (run.py), so a re-run continues where a killed sweep stopped.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rtaug.experiments.config import ConfigError, build, check_grid, read_yaml
from rtaug.experiments.run import (VERSIONS, Log, Stage, collect_result, default_cache, execute, format_result, plan,
                                  read_stage, stage_state, write_result)
from rtaug.fileio import atomic_write_json


@dataclass
class Cell:
    name: str  # the cell's directory under the sweep's output, e.g. "maze2d-umaze-sparse/rt+bcq"
    overrides: dict
    config: object  # ExperimentConfig


def expand(tree: dict, overrides=(), source: str = "sweep") -> list[Cell]:
    """The cells of a sweep file's mapping: every combination of its `grid` values. An override
    `grid.KEY=[...]` replaces (or adds) a grid axis; any other override applies to every cell."""
    from rtaug.experiments.config import parse_override

    grid = tree.get("grid") or {}
    if not isinstance(grid, dict):
        check_grid(grid, source)  # refuses it
    grid = dict(grid)
    base = {k: v for k, v in tree.items() if k != "grid"}
    rest = []
    for item in overrides:
        key, value = item if isinstance(item, tuple) else parse_override(item)
        if key.startswith("grid."):
            grid[key[len("grid."):]] = value
        else:
            rest.append((key, value))
    overrides = rest
    check_grid(grid, source)
    short = _short_keys([k for k in grid if k not in ("task", "generator.kind", "learner.algo", "name")])
    cells, names = [], set()
    for combo in itertools.product(*grid.values()) if grid else [()]:
        chosen = dict(zip(grid, combo))
        cfg = build(base, [*overrides, *chosen.items()], source=source)
        name = f"{cfg.task}/{cfg.label}"
        extra = [f"{short[k]}={v}" for k, v in chosen.items() if k in short]
        if extra:
            name += "-" + "-".join(extra)
            if not cfg.name:  # the report's label too, or its rows would not tell these cells apart
                cfg = replace(cfg, name=name.split("/", 1)[1])
        if name in names:
            raise ConfigError(f"grid: two cells are both named {name!r}; give the grid a field that tells them apart")
        names.add(name)
        cells.append(Cell(name, chosen, cfg))
    return cells


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted grid key by its last field, or by as many trailing fields as tell it apart
    from the others (learner.matmul and generator.model.sequence.matmul: "learner.matmul",
    "sequence.matmul")."""
    short = {}
    for key in keys:
        parts = key.split(".")
        n = 1
        while n < len(parts) and any(o != key and o.split(".")[-n:] == parts[-n:] for o in keys):
            n += 1
        short[key] = ".".join(parts[-n:])
    return short


def load_sweep(path, overrides=()) -> list[Cell]:
    return expand(read_yaml(path), overrides, source=str(path))


STATES = ("cached", "running", "resumable", "to run")


def sweep_status(cells: list[Cell], cache=None) -> dict:
    """Where a sweep stands, computing nothing: each distinct stage's state (`run.stage_state`:
    cached, running in another process, resumable from a killed attempt, to run) and per cell
    the counts and the unfinished stages' progress. What `rtaug sweep --dry-run` prints, so a
    user resuming or watching a long sweep knows what is left."""
    cache = Path(cache) if cache is not None else default_cache()
    states: dict[str, tuple[str, str | None]] = {}
    out = {"cells": {}, "cache": str(cache)}
    for c in cells:
        stages = plan(c.config).stages
        for st in stages:
            if st.key not in states:
                states[st.key] = stage_state(st, cache)
        counts = {s: sum(states[st.key][0] == s for st in stages) for s in STATES}
        busy = [f"{st.label}: {states[st.key][0]}" + (f", {states[st.key][1]}" if states[st.key][1] else "")
                for st in stages if states[st.key][0] in ("running", "resumable")]
        out["cells"][c.name] = {"overrides": c.overrides, **counts, "unfinished": busy}
    out["stages"] = {s: sum(v[0] == s for v in states.values()) for s in STATES}
    return out


def core_locks_dir() -> Path:
    """Where this machine's workers claim cores: one lock file per (core, place), shared by every
    sweep of this user on the machine (`RTAUG_CORE_LOCKS` moves it)."""
    return Path(os.environ.get("RTAUG_CORE_LOCKS") or Path(tempfile.gettempdir()) / f"rtaug-cores-{os.getuid()}")


def check_core_locks_dir() -> Path:
    """Make the core-claims directory, or say in one line why it cannot be (a sweep checks this
    before any work, so that a bad `RTAUG_CORE_LOCKS` does not fail every worker in turn)."""
    locks = core_locks_dir()
    name = f"RTAUG_CORE_LOCKS={locks}" if os.environ.get("RTAUG_CORE_LOCKS") else f"core locks directory {locks}"
    if locks.exists() and not locks.is_dir():
        raise ValueError(f"{name}: not a directory")
    try:
        locks.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{name}: cannot be made ({e.strerror})") from None
    if not os.access(locks, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: not writable")
    return locks


def hold_a_core(per_core: int = 1, poll_s: float = 2.0, log=None):
    """Claim a core no other rtaug worker on this machine holds and pin every thread of this
    process to it; wait while every core is claimed. Returns (open lock file, core): the claim
    lasts until the file is closed or the process exits.

    The claims are machine-wide, not per sweep, so two sweeps side by side share the cores
    instead of stacking two single-threaded workers on one: a second sweep's workers wait, and
    take each core the first one frees (a sweep's tail, its last policy alone, leaves one idle).
    XLA's one-thread flags are not honoured by this jax, so the core is the limit. `per_core`
    places per core, for a sweep with more workers than cores; cores come from this process's
    affinity (a sweep under `taskset` keeps to its cores)."""
    import fcntl

    cores = sorted(os.sched_getaffinity(0))
    locks = core_locks_dir()
    locks.mkdir(parents=True, exist_ok=True)
    waiting = False
    while True:
        for place in range(per_core):  # every core's first place before any core's second
            for core in cores:
                fh = open(locks / f"core{core}.{place}.lock", "a")
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    fh.close()
                    continue
                for tid in os.listdir("/proc/self/task"):
                    try:
                        os.sched_setaffinity(int(tid), {core})
                    except OSError:
                        pass
                if waiting and log is not None:
                    log(f"core {core} free: starting")
                return fh, core
        if not waiting and log is not None:
            log(f"every core ({', '.join(map(str, cores))}) is held by another rtaug worker: waiting ({locks})")
        waiting = True
        time.sleep(poll_s)


# Stages of seconds (an evaluation's episodes, the audit's replay): they take a place beside a
# core's long stage rather than wait for one, which could mean waiting out a 30-minute policy of
# another sweep for a 2-second evaluation.
SHORT_STAGES = ("evaluation", "audit")


def claim_places(stage_name: str, per_core: int) -> int:
    """Places per core a stage may claim: a short stage one more than the sweep's workers need."""
    return per_core + 1 if stage_name in SHORT_STAGES else per_core


def ray_cpus(stage_name: str) -> int:
    """The CPUs a stage's Ray task asks for: none for a short stage, so that it starts as soon as
    its policy is done instead of queueing behind every policy submitted before it (with one CPU
    each, a sweep's evaluations ran only after its last policy); its core is still claimed
    (claim_places), beside the long stages."""
    return 0 if stage_name in SHORT_STAGES else 1


def _ray_stage(stage: Stage, cache: str, pin: bool, per_core: int, *_deps):
    """One stage in a Ray worker (a fresh process per task: `max_calls=1`). It claims and pins to
    a core only to compute (not to find the stage cached, nor while another process builds it);
    nothing before that starts XLA, whose thread pool is sized by the cores it may use then."""
    log = Log(progress=False)
    places = claim_places(stage.name, per_core)
    claim = (lambda: hold_a_core(places, log=lambda m: log(f"[{stage.name}] {stage.label}: {m}"))[0]) if pin else None
    rec = execute(stage, cache, log, claim=claim)
    return {"key": stage.key, "cached": rec["cached"], "wall_s": rec.get("wall_s")}


def run_sweep(cells: list[Cell], out, cache=None, address: str | None = None, workers: int | None = None,
              retries: int = 1, printer=None, command: str | None = None) -> dict:
    """Run every cell's stages on Ray; write `out/<cell>/result.json` for the cells that finished
    and `out/sweep.json` (what ran, what was cached, what failed). What `rtaug sweep` calls."""
    import ray

    out = Path(out)
    cache = Path(cache) if cache is not None else default_cache()
    log = Log(False, printer)
    plans = {c.name: plan(c.config) for c in cells}
    unique: dict[str, Stage] = {}
    for p in plans.values():
        for st in p.stages:
            unique.setdefault(st.key, st)
    done = {k for k, st in unique.items() if st.done(cache)}
    todo = [st for k, st in unique.items() if k not in done]
    log(f"sweep: {len(cells)} cells, {len(unique)} distinct stages ({len(unique) - len(todo)} cached, "
        f"{len(todo)} to run), cache {cache}")
    if todo and address is None:
        check_core_locks_dir()  # before anything is written: a bad directory is the user's to fix
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    status: dict[str, dict] = {k: {"status": "cached"} for k in done}
    t0 = time.perf_counter()
    if todo:
        local = address is None
        cores = sorted(os.sched_getaffinity(0))
        n = workers or len(cores)
        if not ray.is_initialized():
            if local:
                ray.init(num_cpus=n, include_dashboard=False, log_to_driver=True,
                         runtime_env={"env_vars": {"RTAUG_RAY_WORKER": "1"}})
            else:
                ray.init(address=address, log_to_driver=True)
        per_core = -(-n // len(cores))
        task = ray.remote(num_cpus=1, max_calls=1, max_retries=retries, retry_exceptions=True)(_ray_stage)
        refs = {}
        # Stage kinds in pipeline order: what they read is submitted first, and the models
        # (the long chain: model -> generated -> policies) go ahead of the baseline's policies.
        order = list(VERSIONS)
        for st in sorted(unique.values(), key=lambda st: order.index(st.name)):
            if st.key in status:
                continue
            deps = [refs[d.key] for d in st.deps.values() if d.key in refs]
            refs[st.key] = task.options(name=f"{st.name}:{st.label}", num_cpus=ray_cpus(st.name)).remote(
                st, str(cache), local, per_core, *deps)
        pending = dict(refs)
        while pending:
            ready, _ = ray.wait(list(pending.values()), num_returns=1)
            key = next(k for k, r in pending.items() if r == ready[0])
            del pending[key]
            st = unique[key]
            try:
                rec = ray.get(ready[0])
                status[key] = {"status": "cached" if rec["cached"] else "ran", "wall_s": rec["wall_s"]}
                log(f"[{st.name}] {st.label}: {status[key]['status']}"
                    + (f" in {rec['wall_s']:.0f} s" if rec["wall_s"] and not rec["cached"] else "")
                    + f" ({len(pending)} left)")
            except Exception as exc:  # noqa: BLE001 - a failed stage is reported, the sweep goes on
                upstream = [d for d in st.deps.values() if status.get(d.key, {}).get("status", "").startswith("fail")]
                why = "failed upstream" if upstream else "failed"
                status[key] = {"status": why, "error": str(exc).strip().splitlines()[-1][:300]}
                log(f"[{st.name}] {st.label}: {why}: {status[key]['error']}")
        if local:
            ray.shutdown()
    summary = {"cells": {}, "wall_s": time.perf_counter() - t0, "command": command}
    for c in cells:
        p = plans[c.name]
        states = {st.key: status[st.key]["status"] for st in p.stages}
        failed = [st.label for st in p.stages if states[st.key].startswith("fail")]
        entry = {"overrides": c.overrides, "ran": sum(s == "ran" for s in states.values()),
                 "cached": sum(s == "cached" for s in states.values()), "failed": failed}
        if not failed:
            ran = {k: {**read_stage(unique[k], cache), "cached": False} for k, v in states.items() if v == "ran"}
            result = collect_result(p, cache, records=ran, command=command)
            write_result(out / c.name, result)
            entry["normalized"] = result["summary"]["normalized"]
            log(format_result(result))
        else:
            entry["errors"] = {unique[k].label: status[k].get("error") for k in states if "error" in status[k]}
        summary["cells"][c.name] = entry
    atomic_write_json(out / "sweep.json", summary)
    done = sum(not e["failed"] for e in summary["cells"].values())
    log(f"sweep done in {summary['wall_s']:.0f} s: {done} of {len(cells)} cells finished; "
        f"{sum(s['status'] == 'ran' for s in status.values())} stages ran, "
        f"{sum(s['status'] == 'cached' for s in status.values())} cached, "
        f"{sum(s['status'].startswith('fail') for s in status.values())} failed; wrote {out / 'sweep.json'}")
    return summary


__all__ = ["STATES", "Cell", "expand", "load_sweep", "run_sweep", "sweep_status"]
