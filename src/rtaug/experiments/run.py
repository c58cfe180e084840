"""`rtaug run`: one experiment (task × generator × learner × seeds) as a chain of cached stages.

    trajectories ──> data ──> model ──> generated ──> policy (per seed) ──> evaluation (per seed)
                                 └─> mlp ─┘    └──> audit

(trajectories: a maze's collection, shared by its -sparse and -dense tasks; data: the task's
rewards; mlp: only for the backward-mlp generator, RT's model directory plus the one-step MLP;
with `generator.relabel=simulator`, a `relabelled` stage after `generated`, read by the policies
and the audit in its place.)

A locomotion task (hopper/walker2d/halfcheetah-*) starts with `sac` instead of `trajectories`:
one SAC run per environment, keyed by the environment, its SACConfig and seed (not the dataset),
so the medium, medium-replay, expert and medium-expert data of one environment share it; `data`
cuts the task's dataset out of it (`rtaug.collect.locomotion`). SAC checkpoints itself in the
stage's work directory, so a killed `sac` stage resumes where it stopped.

Every stage's output lives in the cache under `<cache>/<stage>/<key>/`, the key a hash of
everything the stage depends on: its own config section, the keys of the stages it reads, and
the stage's version. So a re-run reuses every finished stage, a changed field recomputes exactly
the stages downstream of it, and two experiments that share a stage (the same data, the same RT
model for rt, rt-f3 and rt-f5) compute it once. A stage is built in `<key>.partial/` and renamed
when whole (its `stage.json` is written last); a killed policy stage resumes from its checkpoint,
any other killed stage starts over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from rtaug.experiments.config import FIXED_LENGTH, ExperimentConfig, digest, dump_yaml, to_dict
from rtaug.fileio import atomic_write_bytes, atomic_write_json
from rtaug.nets import onednn

# Bump a stage's version when what it computes changes: its cached outputs are then recomputed.
VERSIONS = {"sac": 1, "trajectories": 1, "data": 2, "model": 1, "mlp": 1, "generated": 1, "relabelled": 1, "audit": 2,
            "policy": 1, "evaluation": 1}
DONE = "stage.json"
ATTEMPTS = ".attempts.json"  # a resumable stage's attempts, kept in its .partial directory


@dataclass
class Stage:
    name: str  # one of VERSIONS
    key: str
    spec: dict  # what the key hashes
    deps: dict  # role -> Stage it reads
    compute: Callable  # (work_dir: Path, inputs: {role: Path}, log) -> dict (recorded in stage.json)
    label: str = ""  # shown in logs, e.g. "policy seed 1"
    resumable: bool = False  # a killed run continues in its .partial directory

    def path(self, cache: Path) -> Path:
        return Path(cache) / self.name / self.key

    def done(self, cache: Path) -> bool:
        return (self.path(cache) / DONE).exists()

    def partial(self, cache: Path) -> Path:
        """Where the stage is built (renamed to `path` when whole; a resumable stage's killed work)."""
        return Path(cache) / self.name / f"{self.key}.partial"

    def lock(self, cache: Path) -> Path:
        """Held by the process building the stage."""
        return Path(cache) / self.name / f".{self.key}.lock"


def _stage(name: str, spec: dict, deps: dict, compute, label: str = "", resumable: bool = False) -> Stage:
    spec = {"stage": name, "version": VERSIONS[name], **spec, **{f"{r}_key": d.key for r, d in deps.items()}}
    return Stage(name, digest(spec), spec, deps, compute, label or name, resumable)


# ------------------------------------------------------------------------- the stages


def _trajectories_stage(cfg: ExperimentConfig) -> Stage:
    """The collection, keyed by the maze rather than the task: the controller never sees the reward,
    so a maze's -sparse and -dense tasks share one (D4RL's 1M-4M simulator steps, the costliest
    stage of a run without a generator)."""
    from rtaug.envs.registry import get_task

    maze = get_task(cfg.task).maze
    spec = {"maze": maze, **{k: v for k, v in to_dict(cfg.data).items() if k != "recipe"}}  # recipe: locomotion's

    def compute(work: Path, inputs, log):
        from rtaug.collect.waypoint import collect_maze2d
        from rtaug.data.hdf5 import save_hdf5

        data = collect_maze2d(f"maze2d-{maze}-sparse", steps=cfg.data.steps, seed=cfg.data.seed,
                              progress=log.progress, timeouts=cfg.data.timeouts)
        save_hdf5(data, work / "data.hdf5")
        return {"transitions": len(data), "episodes": int(len(data.episodes()))}

    return _stage("trajectories", spec, {}, compute, f"trajectories (maze2d-{maze})")


def _data_stage(cfg: ExperimentConfig, trajectories: Stage) -> Stage:
    def compute(work: Path, inputs, log):
        from rtaug.collect.waypoint import with_reward_type
        from rtaug.data.hdf5 import load_hdf5, save_hdf5

        data = with_reward_type(load_hdf5(inputs["trajectories"] / "data.hdf5"), cfg.task)
        save_hdf5(data, work / "data.hdf5")
        return {"transitions": len(data), "episodes": int(len(data.episodes())), "fingerprint": data.fingerprint()}

    return _stage("data", {"task": cfg.task}, {"trajectories": trajectories}, compute, f"data ({cfg.task})")


def _file_data_stage(cfg: ExperimentConfig) -> Stage:
    """`data.file`: the given file is the task's data, copied into the cache (the run never writes
    near its input). Keyed by the file's content: the same data under another name or on another
    machine is the same stage, an edited file a new one."""
    from rtaug.data.hdf5 import file_fingerprint

    path = Path(cfg.data.file).resolve()
    fingerprint = file_fingerprint(path)  # read when the config was validated

    def compute(work: Path, inputs, log):
        from rtaug.data.hdf5 import load_hdf5, save_hdf5

        data = load_hdf5(path)
        if data.fingerprint() != fingerprint:
            raise RuntimeError(f"data.file: {path} changed since the run was planned; run it again")
        save_hdf5(data, work / "data.hdf5")
        return {"transitions": len(data), "episodes": len(data.episodes()), "fingerprint": fingerprint,
                "file": str(path)}

    return _stage("data", {"task": cfg.task, "file": fingerprint}, {}, compute, f"data ({cfg.task}, {path.name})")


def _sac_stage(cfg: ExperimentConfig) -> Stage:
    """SAC trained online on the task's environment: keyed by the environment and the SAC config
    (seed and budget included), not by the dataset, so one run serves an environment's four datasets.
    Resumable: the run directory (`sac/`) checkpoints itself inside the stage's work directory."""
    from rtaug.collect.locomotion import sac_settings
    from rtaug.envs.registry import get_task

    task = get_task(cfg.task)
    _, config = sac_settings(task, cfg.data.seed, cfg.data.recipe)
    spec = {"env": task.env, "sac": {**dataclasses.asdict(config), "hidden": list(config.hidden)}}
    source = cfg.data.sac_run(task.env)
    if source is not None:
        # Another run of the same config is not bitwise this one (another machine, a resumed budget):
        # the key names the imported run by its final checkpoint, never passing it off as a trained one.
        spec["imported"] = hashlib.sha256((Path(source) / "checkpoint.msgpack").read_bytes()).hexdigest()[:16]

    def compute(work: Path, inputs, log):
        from rtaug.collect.sac import copy_run, finished_run, train_sac

        if source is not None:
            finished_run(source, config)
            log(f"SAC ({task.recipe.env_id}): the finished run in {source} (data.sac_dir)")
            copy_run(source, work / "sac")
        run = train_sac(config, work / "sac", progress=log.progress, log=log)  # an imported run: read only
        last = run.curve[-1] if run.curve else {}
        return {"steps": config.total_steps, "final_return": last.get("return_mean"), "evaluations": len(run.curve),
                "imported_from": None if source is None else str(Path(source).resolve())}

    return _stage("sac", spec, {}, compute, f"SAC ({task.recipe.env_id}, seed {config.seed})", resumable=True)


def _locomotion_data_stage(cfg: ExperimentConfig, sac: Stage) -> Stage:
    """The task's dataset cut out of the SAC run (medium: the actor at a third of the expert's
    return; medium-replay: the buffer up to it; expert: the final actor; medium-expert: both)."""
    from rtaug.collect.locomotion import sac_settings
    from rtaug.envs.registry import get_task

    task = get_task(cfg.task)
    recipe, _ = sac_settings(task, cfg.data.seed, cfg.data.recipe)
    spec = {"task": cfg.task, "recipe": dataclasses.asdict(recipe), "steps": cfg.data.steps, "seed": cfg.data.seed}

    def compute(work: Path, inputs, log):
        from rtaug.collect.locomotion import collect_locomotion
        from rtaug.data.hdf5 import save_hdf5

        # the SAC stage is finished and shared by the environment's datasets: read it, write here
        data = collect_locomotion(task, steps=cfg.data.steps, seed=cfg.data.seed, progress=log.progress,
                                  sac_dir=inputs["sac"] / "sac", rows_dir=work / "drawn", log=log,
                                  **cfg.data.recipe)
        save_hdf5(data, work / "data.hdf5")
        # a SAC run differs across machines (docs/decisions.md), so the same key can name other
        # data elsewhere: the fingerprint says which file a result stands on
        return {"transitions": len(data), "episodes": len(data.episodes()),
                "cut": data.metadata["collector"].get("cut"), "fingerprint": data.fingerprint()}

    return _stage("data", spec, {"sac": sac}, compute, f"data ({cfg.task})")


def _direction(kind: str) -> str:
    return "forward" if kind == "ft" else "backward"


def _model_stage(cfg: ExperimentConfig, data: Stage) -> Stage:
    m = cfg.generator.model
    sequence = replace(m.sequence, direction=_direction(cfg.generator.kind))
    # `matmul` at its default is left out, so models keyed before the field keep their key
    spec = {"sequence": onednn.recorded(to_dict(sequence)), "vae": to_dict(m.vae),
            "dynamics": to_dict(m.dynamics) if m.dynamics else None,
            "reward": to_dict(m.reward) if m.reward else None, "backward_mlp": None}

    def compute(work: Path, inputs, log):
        from rtaug.experiments.stages import train_model

        out = train_model(inputs["data"] / "data.hdf5", work / "model", sequence, m.vae, None, progress=log.progress,
                          log=log, dynamics_config=m.dynamics, reward_config=m.reward)
        return {"train_seconds": json.loads((out / "train_seconds.json").read_text())}

    return _stage("model", spec, {"data": data}, compute, f"model ({sequence.direction})")


def _mlp_stage(cfg: ExperimentConfig, data: Stage, model: Stage) -> Stage:
    """The one-step backward MLP beside RT's own model (its VAE, dynamics and reward model, which
    the baseline's α, DIST and rewards use), so the baseline never retrains the transformer."""
    mlp = cfg.generator.model.backward_mlp

    def compute(work: Path, inputs, log):
        from rtaug.data.hdf5 import load_hdf5
        from rtaug.generate.baselines import train_backward_mlp
        from rtaug.generate.io import load_generator, save_backward_mlp

        shutil.copytree(inputs["model"] / "model", work / "model")
        spec = load_generator(work / "model")[0].spec
        t0 = time.perf_counter()
        trained = train_backward_mlp(load_hdf5(inputs["data"] / "data.hdf5"), spec, mlp, progress=log.progress)
        save_backward_mlp(work / "model", trained)
        return {"train_seconds": {"backward MLP": time.perf_counter() - t0}}

    return _stage("mlp", {"backward_mlp": to_dict(mlp)}, {"data": data, "model": model}, compute,
                  "model (backward MLP)")


def generation_config(cfg: ExperimentConfig):
    gen = cfg.generator.generation
    if cfg.generator.kind in FIXED_LENGTH:
        gen = replace(gen, fixed_length=FIXED_LENGTH[cfg.generator.kind])
    return gen


def _generated_stage(cfg: ExperimentConfig, data: Stage, model: Stage) -> Stage:
    gen = generation_config(cfg)
    kind = cfg.generator.kind
    samples = cfg.generator.samples_per_start
    spec = {"kind": kind, "generation": to_dict(gen), **({"samples_per_start": samples} if samples != 1 else {})}

    def compute(work: Path, inputs, log):
        from rtaug.experiments.stages import augment_file

        made = augment_file(inputs["data"] / "data.hdf5", inputs["model"] / "model", work / "data.hdf5", gen,
                            progress=log.progress, log=log, samples_per_start=samples,
                            generator="backward-mlp" if kind == "backward-mlp" else "sequence")
        return {"generation": made}

    return _stage("generated", spec, {"data": data, "model": model}, compute, f"generated ({kind})")


def _relabel_stage(cfg: ExperimentConfig, generated: Stage) -> Stage:
    """`generator.relabel=simulator`: the generated file with its generated rows' next state, reward
    and termination the simulator's (a diagnostic; the task's `relabel_file`)."""
    def compute(work: Path, inputs, log):
        from rtaug.envs.registry import get_task

        made = get_task(cfg.task).relabel_file(inputs["generated"] / "data.hdf5", work / "data.hdf5",
                                               progress=log.progress)
        log(f"[relabel] {made['relabelled_rows']} generated rows take the simulator's next state, reward and "
            f"termination (their mean error was {made['mean_error_before']:.3g})")
        generation = json.loads((inputs["generated"] / DONE).read_text())["generation"]
        return {"generation": generation, "relabel": made}

    return _stage("relabelled", {"task": cfg.task, "by": "simulator"}, {"generated": generated}, compute,
                  "generated rows relabelled by the simulator")


# The audit stage replays every generated row and this many of the augmented file's real rows:
# the real rows are the collected data (audited when collected) and Eq. 11's copies of them, 4M+
# rows on maze2d-large, where replaying them all cost more than a policy; the sample still shows
# that real rows audit at numerical precision.
AUDIT_REAL_ROWS = 100_000


def _audit_stage(cfg: ExperimentConfig, generated: Stage) -> Stage:
    def compute(work: Path, inputs, log):
        from rtaug.envs.registry import get_task
        from rtaug.experiments.report import plot_generated

        task = get_task(cfg.task)
        # the task's own audit (maze: reset to s, step; locomotion: restore qpos/qvel, step)
        summary = task.audit_file(inputs["generated"] / "data.hdf5", json_out=work / "audit.json",
                                  progress=log.progress, real_rows=AUDIT_REAL_ROWS)
        if task.family == "maze2d":  # the picture is of the maze's walls
            plot_generated(inputs["generated"] / "data.hdf5", cfg.task, work / "generated.png")
        return {"audit": summary}

    return _stage("audit", {"task": cfg.task, "real_rows": AUDIT_REAL_ROWS}, {"generated": generated}, compute,
                  "audit of the generated rows")


def learner_config(cfg: ExperimentConfig):
    """The algorithm's Config as trained: the task domain's published settings, then the config's fields."""
    from rtaug import algos
    from rtaug.algos.common import for_budget, with_domain
    from rtaug.envs.registry import get_task

    module = algos.get(cfg.learner.algo)
    config = with_domain(module.Config(**cfg.learner.params), get_task(cfg.task).family, given=cfg.learner.params)
    return for_budget(config, cfg.learner.steps)


def _shorter_run(work: Path, spec: dict):
    """(steps, directory) of the longest finished policy whose spec differs from `spec` only in
    having fewer updates, or None. Its run is this one's beginning: a run is a pure function of
    (seed, step), the guarantee that makes `rtaug.train` resume to identical parameters, so a
    larger budget continues from its checkpoint. Only where its chunk and evaluation boundaries
    fall on this run's; where the budget enters the algorithm (IQL's schedule decays over it) it
    is part of the config and the specs differ."""
    rest = {k: v for k, v in spec.items() if k != "steps"}
    best = None
    for done in Path(work).parent.glob(f"*/{DONE}"):
        other = json.loads(done.read_text()).get("spec", {})
        n = other.get("steps")
        if not isinstance(n, int) or not 0 < n < spec["steps"] or n % spec["chunk"]:
            continue
        if spec["eval_every"] and n % spec["eval_every"]:
            continue
        if {k: v for k, v in other.items() if k != "steps"} == rest and (best is None or n > best[0]):
            best = (n, done.parent)
    return best


def _policy_stage(cfg: ExperimentConfig, dataset: Stage, seed: int) -> Stage:
    from rtaug.algos.common import config_record

    lr = cfg.learner
    config = learner_config(cfg)
    spec = {"task": cfg.task, "algo": lr.algo, "config": config_record(config),
            "steps": lr.steps, "chunk": lr.chunk, "eval_every": lr.eval_every, "eval_episodes": lr.eval_episodes,
            "eval_seed": cfg.evaluation.seed, "seed": seed, **({"data": lr.data} if lr.data != "all" else {})}

    def compute(work: Path, inputs, log):
        import numpy as np

        from rtaug.data.hdf5 import load_hdf5
        from rtaug.evaluate import make_eval_fn
        from rtaug.train import CHECKPOINT, train

        data = load_hdf5(inputs["dataset"] / "data.hdf5")
        if lr.data == "generated":  # D_model: the rows the generator appended after the input's
            first = json.loads((inputs["dataset"] / DONE).read_text())["generation"]["input_rows"]
            data = data.subset(np.arange(first, len(data)))
            log(f"learner data: the {len(data)} rows of the generated trajectories only")
        eval_fn = make_eval_fn(cfg.task, episodes=lr.eval_episodes, seed=cfg.evaluation.seed) if lr.eval_every else None
        shorter = None if (work / "run" / CHECKPOINT).exists() else _shorter_run(work, stage.spec)
        if shorter is not None:
            shutil.copytree(shorter[1] / "run", work / "run", dirs_exist_ok=True)
            log(f"[policy] {stage.label}: continuing the finished {shorter[0]}-update run {shorter[1].name}")
        res = train(data, lr.algo, config, steps=lr.steps, seeds=[seed], out_dir=work / "run", eval_fn=eval_fn,
                    eval_every=lr.eval_every, chunk=min(lr.chunk, lr.steps), progress=log.progress, resume=True)
        curve = [{k: r[k] for k in ("step", "normalized_mean", "return_mean", "success_rate") if k in r}
                 for r in res.evaluations[seed]]
        last = res.metrics[seed][-1] if res.metrics[seed] else {}
        return {"updates_per_s": res.updates_per_s, "curve": curve, "final_metrics": last, "train_rows": len(data),
                "continued_from": None if shorter is None else {"key": shorter[1].name, "steps": shorter[0]}}

    stage = _stage("policy", spec, {"dataset": dataset}, compute, f"policy {lr.algo} seed {seed}", resumable=True)
    return stage  # named: compute reads its full spec (the shorter-run search)


def _evaluation_stage(cfg: ExperimentConfig, policy: Stage, seed: int) -> Stage:
    spec = {"task": cfg.task, "episodes": cfg.evaluation.episodes, "seed": cfg.evaluation.seed}

    def compute(work: Path, inputs, log):
        from rtaug.evaluate import evaluate_seeds, load_run

        run = load_run(inputs["policy"] / "run")
        report = evaluate_seeds(cfg.task, run.policies, episodes=cfg.evaluation.episodes, seed=cfg.evaluation.seed,
                                progress=log.progress)
        row = report["per_seed"][0]
        atomic_write_json(work / "evaluation.json", report)
        return {k: row[k] for k in ("episodes", "return_mean", "return_std", "normalized_mean",
                                     "normalized_d4rl_mean", "success_rate")}

    return _stage("evaluation", spec, {"policy": policy}, compute, f"evaluation seed {seed}")


@dataclass
class Plan:
    config: ExperimentConfig
    stages: list  # every stage, each after the ones it reads
    policies: dict = field(default_factory=dict)  # seed -> policy Stage
    evaluations: dict = field(default_factory=dict)  # seed -> evaluation Stage
    data: Stage | None = None  # the task's real data (a generator's rows are added downstream)
    generated: Stage | None = None
    audit: Stage | None = None


def plan(cfg: ExperimentConfig) -> Plan:
    """The stages of one experiment, in an order that respects what each reads."""
    from rtaug.envs.registry import get_task

    if cfg.data.file is not None:
        data = _file_data_stage(cfg)
        stages = [data]
    elif get_task(cfg.task).family == "mujoco":
        source = _sac_stage(cfg)
        data = _locomotion_data_stage(cfg, source)
        stages = [source, data]
    else:
        source = _trajectories_stage(cfg)
        data = _data_stage(cfg, source)
        stages = [source, data]
    dataset = data
    generated = audit = None
    if cfg.generator.kind != "none":
        model = _model_stage(cfg, data)
        stages.append(model)
        if cfg.generator.kind == "backward-mlp":
            model = _mlp_stage(cfg, data, model)
            stages.append(model)
        generated = _generated_stage(cfg, data, model)
        stages.append(generated)
        if cfg.generator.relabel == "simulator":
            generated = _relabel_stage(cfg, generated)  # what the learner and the audit read
            stages.append(generated)
        dataset = generated
        if cfg.evaluation.audit:
            audit = _audit_stage(cfg, generated)
            stages.append(audit)
    p = Plan(cfg, stages, data=data, generated=generated, audit=audit)
    for s in cfg.seeds:
        p.policies[s] = _policy_stage(cfg, dataset, s)
        p.evaluations[s] = _evaluation_stage(cfg, p.policies[s], s)
        stages += [p.policies[s], p.evaluations[s]]
    return p


# ------------------------------------------------------------------------- executing a stage


class Log:
    """Where a stage's lines go; `progress` says whether bars are shown."""

    def __init__(self, progress: bool = True, printer=None):
        self.progress, self._print = progress, printer

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        if self._print is None:
            print(line, flush=True)
        else:
            self._print(line)


def _checkout_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[3]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


# Read when this process loads the code, not when a stage ends: a run of hours outlives commits made
# to the checkout meanwhile, and its results must name the code it loaded, not the newest.
_LOADED_COMMIT = _checkout_commit()


def commit() -> str | None:
    """The git commit of the code this process runs, as it was when loaded (None outside a checkout)."""
    return _LOADED_COMMIT


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on `path` (two processes never build the same stage at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _earlier_attempts_s(work: Path) -> float:
    """Seconds that killed attempts at a resumable stage computed, each from its start to the last
    file it wrote in `work` (what it did after that is lost and done again), so that a resumed
    stage's `wall_s` is what the whole stage cost; this attempt's start is recorded for the next."""
    path = work / ATTEMPTS
    attempts = json.loads(path.read_text()) if path.exists() else []  # [start, last write] per attempt
    if attempts and attempts[-1][1] is None:
        written = [f.stat().st_mtime for f in work.rglob("*") if f.is_file() and f.name != ATTEMPTS]
        attempts[-1][1] = max(written, default=attempts[-1][0])
    atomic_write_json(path, attempts + [[time.time(), None]])
    return float(sum(max(0.0, last - start) for start, last in attempts))


def stage_state(stage: Stage, cache) -> tuple[str, str | None]:
    """Where a stage stands, without building it: ("cached", None) when built; ("running", progress)
    when another process holds its lock now; ("resumable", progress) when a killed attempt left a
    resumable `.partial` directory; else ("to run", None). progress: a policy's "update N of M"
    from its checkpoint, where it has one (what a resumed run continues from)."""
    from rtaug.train import CHECKPOINT, load_checkpoint

    if stage.done(cache):
        return "cached", None
    work, lock = stage.partial(cache), stage.lock(cache)
    running = False
    if lock.exists():
        with open(lock, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh, fcntl.LOCK_UN)
            except OSError:
                running = True
    if not running and not (work.is_dir() and stage.resumable):
        return "to run", None
    progress = None
    if stage.name == "policy" and (work / "run" / CHECKPOINT).is_file():
        try:
            step = load_checkpoint(work / "run" / CHECKPOINT)["step"]
            progress = f"update {step:,} of {stage.spec['steps']:,}"
        except ValueError:  # being replaced this instant, or damaged: the run itself will say
            pass
    return ("running" if running else "resumable"), progress


def read_stage(stage: Stage, cache) -> dict:
    return json.loads((stage.path(cache) / DONE).read_text())


def execute(stage: Stage, cache, log: Log, claim=None) -> dict:
    """Build `stage` unless the cache has it (its inputs must be built); return its stage.json.

    `claim`, where given, is called once this process holds the stage's lock and will compute it,
    and what it returns is closed when the computing ends: a sweep's worker claims its core there,
    so that a worker waiting for another process to finish the same stage holds no core."""
    cache = Path(cache)
    final = stage.path(cache)
    if (final / DONE).exists():
        record = read_stage(stage, cache)
        return {**record, "cached": True}
    with _locked(stage.lock(cache)):
        if (final / DONE).exists():  # another process built it while we waited
            return {**read_stage(stage, cache), "cached": True}
        missing = [d.label for d in stage.deps.values() if not d.done(cache)]
        if missing:
            raise RuntimeError(f"{stage.label}: its inputs are not built ({', '.join(missing)})")
        work = stage.partial(cache)
        if work.exists() and not stage.resumable:
            shutil.rmtree(work)  # left by a killed run: start over
        work.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a directory without stage.json: an interrupted rename's leftovers
            shutil.rmtree(final)
        held = claim() if claim is not None else None
        try:
            log(f"[{stage.name}] {stage.label}: computing -> {final}")
            earlier = _earlier_attempts_s(work) if stage.resumable else 0.0
            t0 = time.perf_counter()
            info = stage.compute(work, {r: d.path(cache) for r, d in stage.deps.items()}, log)
            wall = time.perf_counter() - t0
            host_cpus = len(os.sched_getaffinity(0))
        finally:
            if held is not None:
                held.close()
        (work / ATTEMPTS).unlink(missing_ok=True)
        record = {"stage": stage.name, "key": stage.key, "label": stage.label, "spec": stage.spec,
                  "wall_s": wall + earlier, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": commit(),
                  "host_cpus": host_cpus, **info}
        if earlier:
            record["earlier_attempts_s"] = earlier
        atomic_write_json(work / DONE, record)
        os.replace(work, final)
        log(f"[{stage.name}] {stage.label}: done in {wall:.0f} s")
        return {**record, "cached": False}


# ------------------------------------------------------------------------- one experiment


def default_cache() -> Path:
    return Path(os.environ.get("RTAUG_CACHE", "runs/cache"))


def run_experiment(cfg: ExperimentConfig, out, cache=None, progress: bool = True, printer=None,
                   command: str | None = None) -> dict:
    """Run (or reuse) every stage of `cfg`, then write `out/result.json` and `out/config.yaml`.

    This is what `rtaug run CONFIG` calls (`command`, its command line, is recorded in the result).
    Returns the result (see `collect_result`).
    """
    out = Path(out)
    cache = Path(cache) if cache is not None else default_cache()
    log = Log(progress, printer)
    p = plan(cfg)
    _prepare_out(out, cfg)
    log(f"{cfg.label} on {cfg.task}, seeds {cfg.seeds}: {len(p.stages)} stages, cache {cache}")
    t0 = time.perf_counter()
    records = {}
    for stage in p.stages:
        rec = execute(stage, cache, log)
        if rec["cached"]:
            log(f"[{stage.name}] {stage.label}: cached ({stage.path(cache)})")
        records[stage.key] = rec
    result = collect_result(p, cache, records, wall_s=time.perf_counter() - t0, command=command)
    write_result(out, result)
    log(format_result(result))
    log(f"wrote {out / 'result.json'}")
    return result


def _prepare_out(out: Path, cfg: ExperimentConfig) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "config.yaml", dump_yaml(cfg).encode())


def collect_result(p: Plan, cache, records: dict | None = None, wall_s: float | None = None,
                   command: str | None = None) -> dict:
    """The experiment's numbers and the evidence behind them, from its finished stages (`command`:
    the command line that ran them, recorded)."""
    from rtaug.evaluate import summarize_seeds

    cache = Path(cache)
    records = dict(records or {})

    def rec(stage):  # each stage.json read once
        if stage.key not in records:
            records[stage.key] = {**read_stage(stage, cache), "cached": True}
        return records[stage.key]

    cfg = p.config
    per_seed = {}
    for s in cfg.seeds:
        ev, pol = rec(p.evaluations[s]), rec(p.policies[s])
        per_seed[str(s)] = {**{k: ev[k] for k in ("return_mean", "normalized_mean", "normalized_d4rl_mean",
                                                  "success_rate", "episodes")},
                            "curve": [dict(c) for c in pol.get("curve", [])], "updates_per_s": pol.get("updates_per_s")}
    _score_late(per_seed, cfg.task)
    summary = {}
    for key in ("normalized_mean", "normalized_d4rl_mean", "return_mean"):
        values = [per_seed[str(s)][key] for s in cfg.seeds]
        summary[key.removesuffix("_mean")] = None if any(v is None for v in values) else summarize_seeds(values)
    evidence = {}
    if p.generated is not None:
        evidence["generation"] = rec(p.generated).get("generation")
        if rec(p.generated).get("relabel") is not None:
            evidence["relabel"] = rec(p.generated)["relabel"]
    if p.audit is not None:
        evidence["audit"] = rec(p.audit).get("audit")
    evidence["data"] = {"fingerprint": data_fingerprint(rec(p.data), p.data.path(cache))}
    stages = [{"stage": s.name, "label": s.label, "key": s.key, "path": str(s.path(cache)),
               "cached": rec(s).get("cached", True), "wall_s": rec(s).get("wall_s")} for s in p.stages]
    return {"label": cfg.label, "task": cfg.task, "generator": cfg.generator.kind, "algo": cfg.learner.algo,
            "seeds": list(cfg.seeds), "learner_steps": cfg.learner.steps, "config": to_dict(cfg),
            "commit": commit(), "per_seed": per_seed, "summary": summary, "evidence": evidence,
            "stages": stages, "wall_s": wall_s, "command": command, "references": _references(cfg.task),
            "compute_s": sum(r["wall_s"] or 0.0 for r in stages)}


def _score_late(per_seed: dict, task_name: str) -> None:
    """Fill in, from the raw returns, the normalized scores that stages run before the task's
    references were measured could not give (hopper's expert finished after its Table 1 row had
    run). The score is linear in the return, so the normalized mean return is the mean of the
    episodes' normalized scores: the cached stages need not run again."""
    from rtaug.envs.registry import get_task

    task = get_task(task_name)
    if task.references.random is None or task.references.expert is None:
        return
    for row in per_seed.values():
        for point in (row, *row.get("curve", [])):
            if point.get("normalized_mean") is None and point.get("return_mean") is not None:
                point["normalized_mean"] = float(task.normalize(point["return_mean"]))


def data_fingerprint(record: dict, path: Path) -> str | None:
    """The real data's `Dataset.fingerprint`: recorded by its stage, or read from the stage's file
    where a stage built before the record was kept still has it (None if neither)."""
    if record.get("fingerprint") is None and (path / "data.hdf5").is_file():
        from rtaug.data.hdf5 import file_fingerprint

        return file_fingerprint(path / "data.hdf5")
    return record.get("fingerprint")


def _references(task_name: str) -> dict:
    """The task's references as the scores used them: `normalized` is None where they are unmeasured."""
    from rtaug.envs.registry import get_task

    ref = get_task(task_name).references
    return {"random": ref.random, "expert": ref.expert, "measured": ref.random is not None and ref.expert is not None,
            "command": ref.command, "d4rl_random": ref.d4rl_random, "d4rl_expert": ref.d4rl_expert}


def _reference_note(result: dict) -> str:
    from rtaug.envs.registry import get_task

    task = get_task(result["task"])
    sac = next((x for x in result["stages"] if x["stage"] == "sac"), None)
    if sac is not None:  # the run's own SAC (its final actor is the expert)
        return f"`rtaug reference {task.env}-medium --sac-dir {sac['path']}/sac` measures them"
    command = task.references.command
    return f"`{command}` measures them" if command else "none are defined"


def write_result(out, result: dict) -> None:
    atomic_write_json(Path(out) / "result.json", result)


def format_result(result: dict) -> str:
    s = result["summary"]["normalized"]
    lines = [f"{result['label']} on {result['task']} ({len(result['seeds'])} seeds, {result['learner_steps']} updates):"]
    for seed, row in result["per_seed"].items():
        norm = "–" if row["normalized_mean"] is None else f"{row['normalized_mean']:.1f}"
        lines.append(f"  seed {seed}: normalized {norm}, D4RL-normalized {row['normalized_d4rl_mean']:.1f}, "
                     f"return {row['return_mean']:.1f}, success {row['success_rate']:.2f}")
    if s is None:  # references not measured here yet: D4RL's published ones and raw returns only
        d, r = result["summary"]["normalized_d4rl"], result["summary"]["return"]
        lines.append(f"  normalized: – (this simulator's references are not measured yet; {_reference_note(result)})")
        lines.append(f"  D4RL-normalized {d['mean']:.1f}" + (f" ± {d['std']:.1f}" if d["std"] is not None else "")
                     + f", return {r['mean']:.1f}" + (f" ± {r['std']:.1f}" if r["std"] is not None else ""))
    else:
        spread = f" ± {s['std']:.1f}" if s["std"] is not None else ""
        ci = (f", IQM {s['iqm']:.1f} [{s['iqm_ci95'][0]:.1f}, {s['iqm_ci95'][1]:.1f}]"
              if s["iqm_ci95"] else "")
        lines.append(f"  normalized {s['mean']:.1f}{spread}{ci}")
    built = [x for x in result["stages"] if not x["cached"]]
    lines.append(f"  stages: {len(result['stages']) - len(built)} cached, {len(built)} computed"
                 + (f" ({sum(x['wall_s'] for x in built):.0f} s)" if built else ""))
    return "\n".join(lines)


__all__ = ["Stage", "Plan", "plan", "execute", "run_experiment", "collect_result", "write_result",
           "format_result", "learner_config", "generation_config", "default_cache", "commit", "VERSIONS"]
