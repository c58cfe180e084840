"""`rtaug train-policy` and `rtaug eval` as calls: a typed request in, the summary out. The
command line only parses its flags into these requests (the same functions a Python user calls)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from rtaug.progress import rate_text
from rtaug.ranges import COUNT, SEED, check_ranges, ranged

_print = functools.partial(print, flush=True)


@dataclass
class TrainPolicyRequest:
    dataset: str
    algo: str
    steps: int = ranged(COUNT, 100_000)
    seeds: tuple = ranged(SEED, (0,))
    task: str | None = None  # evaluate in this task's simulator (default: the dataset's recorded task)
    domain: str = "auto"  # published per-domain settings: auto = the task's, else inferred
    out: str | None = None  # run directory (default: runs/<dataset stem>-<algo>)
    resume: bool = False
    eval_every: int | None = ranged(COUNT, None)
    eval_episodes: int | None = ranged(COUNT, None)
    chunk: int = ranged(COUNT, 1000)
    matmul: str = "xla"  # cql, bcq: "onednn" / "onednn-bf16" route the networks' matmuls through oneDNN
    progress: bool = True

    def __post_init__(self):
        check_ranges(self)


@dataclass
class EvalRequest:
    run: str | None = None  # a train-policy run directory, or
    policy: str | None = None  # a reference policy: "random" | "controller", or
    policy_fn: str | None = None  # "MODULE:FUNCTION", any Python callable obs -> action
    task: str | None = None
    episodes: int | None = None
    seeds: tuple | None = None
    seed: int = 0  # episode starts
    json: str | None = None
    progress: bool = True


def _policy_task(req, data):
    """The task (a maze or a locomotion task) whose simulator evaluates the policy: --task, else the dataset's metadata
    `task` when it names a registered task, else None (no simulator: offline checks only)."""
    from rtaug.envs.registry import SIMULATED, get_task, task_names

    if req.task is not None:
        return get_task(req.task, SIMULATED, "--task (evaluation in the simulator)"), "--task"
    named = (data.metadata or {}).get("task")
    if isinstance(named, str) and named in task_names() and get_task(named).family in SIMULATED:
        return get_task(named), "the dataset's metadata"
    return None, None


def _matmul_config(req: TrainPolicyRequest):
    """The algorithm's default Config with `req.matmul`, or None for XLA's (the defaults)."""
    from dataclasses import fields

    from rtaug import algos
    from rtaug.nets import onednn

    if req.matmul == "xla":
        return None
    if req.matmul not in onednn.MODES:
        raise ValueError(f"--matmul must be one of {', '.join(onednn.MODES)}, got {req.matmul!r}")
    module = algos.get(req.algo)
    if "matmul" not in {f.name for f in fields(module.Config)}:
        raise ValueError(f"--matmul {req.matmul}: {req.algo} has no oneDNN path (cql and bcq have one: "
                         "the compute-bound learners)")
    usable, why = onednn.available()
    if not usable:
        raise ValueError(f"--matmul {req.matmul}: {why}")
    return module.Config(matmul=req.matmul)


def train_policy(req: TrainPolicyRequest, printer=_print) -> dict:
    """What `rtaug train-policy` does: validate the request, train every seed, write summary.json
    next to the run's checkpoint; returns the summary."""
    import json
    from pathlib import Path

    import numpy as np

    from rtaug import algos
    from rtaug.algos.common import infer_domain, offline_action_eval
    from rtaug.data.hdf5 import load_hdf5
    from rtaug.envs.registry import get_task
    from rtaug.fileio import atomic_write_bytes
    from rtaug.train import CHECKPOINT, train

    if req.eval_episodes is not None and not req.eval_every:
        raise ValueError("--eval-episodes needs --eval-every N: without it there is no periodic evaluation")
    if len(set(req.seeds)) != len(req.seeds):
        raise ValueError(f"--seeds must be distinct, got {req.seeds}")
    if req.task is not None:
        get_task(req.task)  # an unknown task is an error before the dataset is read
    config = _matmul_config(req)
    data = load_hdf5(req.dataset)
    if data.discrete_actions:
        raise ValueError(f"{req.dataset}: discrete actions ({data.num_actions} choices); train-policy's "
                         f"learners ({', '.join(algos.ALGOS)}) need continuous (Box) actions")
    task, task_from = _policy_task(req, data)
    if task is not None:
        task.check_dataset(data)
    elif req.eval_episodes is not None:
        raise ValueError("--eval-episodes sets the simulator evaluation's episodes, which needs a task: pass "
                         f"--task (one of `rtaug tasks`); {req.dataset} names none in its metadata")
    if req.domain != "auto":
        domain = req.domain
    else:
        domain = task.family if task is not None else infer_domain(data)
    out = Path(req.out) if req.out else Path("runs") / f"{Path(req.dataset).stem}-{req.algo}"
    if (out / CHECKPOINT).exists() and not req.resume:
        raise ValueError(f"{out} already holds a run ({CHECKPOINT}); pass --resume to continue it "
                         "or choose another --out")
    n_gen = int(data.generated.sum()) if data.generated is not None else 0
    printer(f"{req.algo} on {req.dataset}: {len(data)} transitions ({n_gen} generated), obs {data.obs_dim}, "
            f"act {data.act_dim}, domain {domain}, seeds {list(req.seeds)}, {req.steps} updates -> {out}")

    eval_fn, eval_episodes = None, None
    if req.eval_every and task is not None:
        from rtaug.evaluate import make_eval_fn

        eval_episodes = req.eval_episodes or 10
        eval_fn = make_eval_fn(task, episodes=eval_episodes, seed=0)
        printer(f"evaluation: {task.name} (from {task_from}) in the simulator, {eval_episodes} episodes every "
                f"{req.eval_every} updates; for the final score use `rtaug eval --run {out}` "
                f"({task.evaluation.episodes} episodes)")
    elif req.eval_every:
        eval_fn = offline_action_eval(data)
        printer("evaluation: action MSE to the dataset's actions (no task, so no simulator; pass --task for "
                "normalized scores)")
    t0 = time.perf_counter()
    result = train(data, req.algo, config, steps=req.steps, seeds=req.seeds, out_dir=out, eval_fn=eval_fn,
                   eval_every=req.eval_every, domain=domain, progress=req.progress,
                   chunk=min(req.chunk, req.steps), resume=req.resume)

    summary = {"algo": result.algo, "dataset": str(req.dataset), "domain": domain, "matmul": req.matmul,
               "task": task.name if task is not None else None, "eval_episodes": eval_episodes,
               "steps": result.steps, "seeds": list(result.seeds), "updates_per_s": result.updates_per_s,
               "final": {}}
    for s in result.seeds:
        last = dict(result.metrics[s][-1]) if result.metrics[s] else {}
        if result.evaluations[s]:
            last.update({f"eval_{k}": v for k, v in result.evaluations[s][-1].items() if k != "step"})
        summary["final"][str(s)] = last
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items()
                          if k not in ("step", "updates_per_s") and np.isfinite(v))
        printer(f"  seed {s}: {shown}")
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    ups = result.updates_per_s
    wall = time.perf_counter() - t0
    # the same rate as the bar's and the log line's (updates of each seed per second of this
    # run, evaluations and compilation included), then the compute rate metrics.csv records
    printer(f"done: {result.steps} updates x {len(result.seeds)} seeds in {wall:.0f} s, "
            f"{rate_text(result.steps - result.first_step, wall, 'updates')} per seed"
            + (f" ({rate_text(ups, 1.0, 'updates')} not counting compilation and evaluation)"
               if np.isfinite(ups) else "")
            + f"; checkpoint, run.json, summary.json and seed_*/metrics.csv in {out}")
    return summary


def _fmt(x, spec=".2f"):
    return "n/a" if x is None else format(x, spec)


def evaluate(req: EvalRequest, printer=_print) -> dict:
    """What `rtaug eval` does: evaluate a run's policies (or a reference policy) by the task's
    protocol, print per seed and across seeds, write the JSON; returns the report."""
    import time

    from rtaug.envs.registry import SIMULATED, get_task
    from rtaug.evaluate import (
        ControllerPolicy, FunctionPolicy, evaluate_seeds, load_function, load_run, random_policy,
    )
    from rtaug.fileio import atomic_write_json

    if req.episodes is not None and req.episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {req.episodes}")
    if req.seeds is not None and len(set(req.seeds)) != len(req.seeds):
        raise ValueError(f"--seeds must be distinct, got {req.seeds}")
    if req.task is not None:  # an unknown task is an error before anything is loaded
        get_task(req.task, SIMULATED, "rtaug eval")
    t0 = time.perf_counter()
    if req.run is not None:
        run = load_run(req.run, seeds=req.seeds)
        if req.task is None and run.task is None:
            raise ValueError(f"{req.run}: the run does not record its task (it was trained without --task); "
                             "pass --task (one of `rtaug tasks`)")
        task = get_task(req.task or run.task)
        run.check_task(task)
        policies = run.policies
        about = {"kind": "run", "run": run.path, "algo": run.algo, "step": run.step, "steps": run.steps,
                 "trained_task": run.task}
        shown = (f"{run.path} ({run.algo}, checkpoint at update {run.step}"
                 + (f" of {run.steps}" if run.steps and run.steps != run.step else "")
                 + (f", trained for {run.task}" if run.task and run.task != task.name else "") + ")")
    elif req.policy_fn is not None:
        if req.task is None:
            raise ValueError("--task is required with --policy-fn (one of `rtaug tasks`)")
        if req.seeds is not None:
            raise ValueError("--seeds: a --policy-fn function has no seeds of its own (it is evaluated once, "
                             "as seed 0); --seed sets the episode starts")
        task = get_task(req.task)
        fn_policy = FunctionPolicy(load_function(req.policy_fn), task.act_dim)
        policies = {0: fn_policy}
        about = {"kind": "function", "function": req.policy_fn}
        shown = f"the function {req.policy_fn}"
    else:
        if req.task is None:
            raise ValueError("--task is required with --policy (one of `rtaug tasks`)")
        task = get_task(req.task)
        seeds = req.seeds or [0]
        if req.policy == "random":
            policies = {s: random_policy(s, task.act_dim) for s in seeds}
        elif task.family != "maze2d":
            raise ValueError(f"--policy controller: task {task.name!r} has no controller (it is the maze tasks' "
                             "expert); evaluate --policy random or a --run")
        else:
            policies = {s: ControllerPolicy(task, seed=s) for s in seeds}
        about = {"kind": req.policy}
        shown = {"random": "uniform random actions",
                 "controller": "D4RL's waypoint controller, no action noise (the expert reference)"}[req.policy]
    episodes = req.episodes or task.evaluation.episodes
    ref = task.references
    printer(f"{task.name}: {shown}; seeds {list(policies)}, {episodes} episodes each "
            f"({task.evaluation.max_episode_steps} steps, starts from --seed {req.seed})")
    printer(f"  normalized = 100·(R − random)/(expert − random) with references measured here "
            f"({_fmt(ref.random)}, {_fmt(ref.expert)}); D4RL-normalized with D4RL's published ones "
            f"({ref.d4rl_random}, {ref.d4rl_expert})")
    printer(f"{'seed':>6}  {'return (mean ± std)':>20}  {'normalized':>10}  {'D4RL-normalized':>15}  {'success':>7}")

    def show(row):
        ret = f"{row['return_mean']:.2f} ± {row['return_std']:.2f}"
        printer(f"{row['seed']:>6}  {ret:>20}  {_fmt(row['normalized_mean']):>10}  "
                f"{row['normalized_d4rl_mean']:>15.2f}  {row['success_rate']:>7.2f}")

    report = evaluate_seeds(task, policies, episodes=episodes, seed=req.seed, progress=req.progress,
                            on_seed=show)
    if about["kind"] == "function":
        about["called_with"] = fn_policy.called_with
        printer(f"  {req.policy_fn} was called with "
                + ("a batch of observations per step" if fn_policy.called_with == "batch"
                   else "one observation at a time"))
    report["policy"] = about
    report["wall_time_s"] = time.perf_counter() - t0
    n = len(policies)
    printer(f"across {n} seed{'s' if n > 1 else ''}:")
    for key, label in (("normalized", "normalized"), ("normalized_d4rl", "D4RL-normalized")):
        s = report["summary"][key]
        if s is None:
            printer(f"  {label:<16} n/a (references not measured)")
            continue
        if s["iqm_ci95"] is None:
            printer(f"  {label:<16} mean {s['mean']:.2f}, IQM {s['iqm']:.2f} (one seed: no std, no interval)")
        else:
            lo, hi = s["iqm_ci95"]
            printer(f"  {label:<16} mean {s['mean']:.2f} ± {s['std']:.2f} (std over seeds), "
                    f"IQM {s['iqm']:.2f}, 95% bootstrap CI [{lo:.2f}, {hi:.2f}]")
    note = report["summary"]["normalized_d4rl"].get("note")
    if note and n > 1:  # one seed's lines already say there is no interval
        printer(f"  note: {note}")
    if req.json:
        atomic_write_json(req.json, report)
    printer(f"done in {report['wall_time_s']:.1f} s" + (f"; wrote {req.json}" if req.json else ""))
    return report


__all__ = ["TrainPolicyRequest", "EvalRequest", "train_policy", "evaluate"]
