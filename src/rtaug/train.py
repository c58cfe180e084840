"""The offline training loop shared by every learner in `rtaug.algos`.

Shape of a run:

* the dataset is prepared once (state normalisation, reward scaling as the algorithm's config
  asks) and put on the device whole; each update draws its batch inside the jitted step from
  the run's PRNG key, so Python is touched once per chunk of `chunk` updates, not per update;
* the PRNG key is part of the carried (and checkpointed) state: batches and update noise are a
  pure function of (seed, step), which is what lets a killed run resume to the same parameters;
* several seeds train at once by a `jax.vmap` over the state (a leading seed axis);
* chunk boundaries sit on a fixed grid of absolute steps (multiples of `chunk`, `eval_every`,
  `checkpoint_every`), so a resumed run executes the very same compiled programs on the very
  same inputs as an uninterrupted one;
* checkpoints are flax msgpack (no pickle: loading one cannot run code), written to a temporary
  file and renamed into place, so a kill during a save leaves the previous checkpoint intact.

Output directory layout (when `out_dir` is given):

    run.json                 algorithm, config, seeds, dataset fingerprint
    checkpoint.msgpack       latest state of all seeds + PRNG keys + state normaliser
    seed_<s>/metrics.csv     training metrics, one row per chunk (chunk means)
    seed_<s>/eval.csv        results of `eval_fn`, one row per evaluation
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization
from rtaug.progress import progress_bar

from rtaug import algos
from rtaug.algos.common import config_record, for_budget, prepare, with_domain
from rtaug.data import Dataset
from rtaug.fileio import atomic_write_bytes

__all__ = ["TrainResult", "train", "make_policy", "load_checkpoint", "CheckpointMismatch"]

FORMAT = 1
CHECKPOINT = "checkpoint.msgpack"


class CheckpointMismatch(ValueError):
    """An existing checkpoint belongs to a different run (algorithm, config, seeds or data)."""


# --------------------------------------------------------------------------------------- results


@lru_cache(maxsize=32)
def _jitted_act(module, config):
    # Cached so that periodic evaluations reuse one compiled policy instead of retracing it.
    return jax.jit(lambda params, obs, mean, std: module.act(config, params, (obs - mean) / std))


def make_policy(module, config, params, obs_mean, obs_std) -> Callable[[np.ndarray], np.ndarray]:
    """obs (obs_dim,) or (B, obs_dim) in raw dataset units -> deterministic action in [-1, 1]."""
    fn = _jitted_act(module, config)
    mean, std = jnp.asarray(obs_mean), jnp.asarray(obs_std)

    def policy(obs):
        return np.asarray(fn(params, jnp.asarray(obs, jnp.float32), mean, std))

    return policy


@dataclass
class TrainResult:
    algo: str
    config: Any
    seeds: tuple[int, ...]
    steps: int
    state: Any  # pytree, every leaf with a leading seed axis
    obs_mean: np.ndarray
    obs_std: np.ndarray
    metrics: dict[int, list[dict]] = field(default_factory=dict)  # seed -> chunk rows
    evaluations: dict[int, list[dict]] = field(default_factory=dict)  # seed -> eval rows
    first_step: int = 0  # where this call started (a resumed run: its checkpoint's step)
    updates_per_s: float = float("nan")  # per seed (the seeds update together), compile time excluded
    out_dir: Path | None = None

    @property
    def module(self):
        return algos.get(self.algo)

    def params(self, i: int = 0):
        """Online parameters of the i-th seed (index into `seeds`, not the seed value)."""
        return jax.tree_util.tree_map(lambda x: x[i], self.state["params"])

    def policy(self, i: int = 0):
        return make_policy(self.module, self.config, self.params(i), self.obs_mean, self.obs_std)


# ------------------------------------------------------------------------------------ checkpoints


def _save_checkpoint(path: Path, meta: dict, step: int, state, keys, obs_mean, obs_std) -> None:
    payload = {
        "meta": json.dumps(meta, sort_keys=True),
        "step": int(step),
        "state": serialization.to_state_dict(jax.device_get(state)),
        "keys": np.asarray(jax.device_get(keys)),
        "obs_mean": np.asarray(obs_mean),
        "obs_std": np.asarray(obs_std),
    }
    atomic_write_bytes(path, serialization.msgpack_serialize(payload))


def load_checkpoint(path, template_state=None) -> dict:
    """Read a checkpoint; with `template_state` the state comes back as that pytree structure.
    A damaged or truncated file (a disk filled mid-write by another program, a copy cut short)
    is a ValueError naming it: msgpack and JSON alone raise a variety of types that do not."""
    try:
        raw = serialization.msgpack_restore(Path(path).read_bytes())
        out = {"meta": json.loads(raw["meta"]), "step": int(raw["step"]), "keys": raw["keys"],
               "obs_mean": raw["obs_mean"], "obs_std": raw["obs_std"], "state": raw["state"]}
    except Exception as exc:
        raise ValueError(f"{path}: not a readable rtaug checkpoint ({type(exc).__name__}: {exc})") from exc
    if template_state is not None:
        out["state"] = serialization.from_state_dict(template_state, raw["state"])
    return out


# ------------------------------------------------------------------------------------------ CSVs


def _read_rows(path: Path, max_step: int) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        # counts stay integers: a resumed run rewrites its rows, and "70" must not come back as "70.0"
        parsed = {k: (float("nan") if v in ("", None) else int(v) if v.lstrip("-").isdigit() else float(v))
                  for k, v in row.items()}
        parsed["step"] = int(parsed["step"])
        if parsed["step"] <= max_step:
            out.append(parsed)
    return out


class _CSV:
    """Append-only CSV whose columns are fixed by its first row (later extra keys are dropped)."""

    def __init__(self, path: Path, rows: list[dict]):
        self.path = path
        self.fields = list(rows[0].keys()) if rows else None
        # Rewrite what survives the resume point, dropping rows from after the checkpoint.
        if path.exists() or rows:
            buf = io.StringIO()
            if rows:
                w = csv.DictWriter(buf, self.fields, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
            atomic_write_bytes(path, buf.getvalue().encode())

    def append(self, row: dict) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row.keys())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


# ------------------------------------------------------------------------------------------ loop


@lru_cache(maxsize=32)  # one compiled program per (algorithm, config, seeds): a resumed run reuses it
def make_runner(module, config, n_seeds: int, batch_size: int):
    def one(state, key, data):
        key, k_idx, k_update = jax.random.split(key, 3)
        idx = jax.random.randint(k_idx, (batch_size,), 0, data["rewards"].shape[0])
        batch = jax.tree_util.tree_map(lambda x: x[idx], data)
        state, metrics = module.update(config, state, batch, k_update)
        return state, key, metrics

    if n_seeds == 1:
        # No vmap for a single seed: a vmapped lax.cond (TD3+BC's delayed actor update)
        # would turn into a select that computes both branches.
        def all_seeds(state, keys, data):
            squeeze = partial(jax.tree_util.tree_map, lambda x: x[0])
            expand = partial(jax.tree_util.tree_map, lambda x: x[None])
            state, key, metrics = one(squeeze(state), keys[0], data)
            return expand(state), key[None], expand(metrics)
    else:
        all_seeds = jax.vmap(one, in_axes=(0, 0, None))

    @partial(jax.jit, static_argnums=3)
    def run(state, keys, data, length):
        def body(carry, _):
            state, keys = carry
            state, keys, metrics = all_seeds(state, keys, data)
            return (state, keys), metrics

        (state, keys), metrics = jax.lax.scan(body, (state, keys), None, length=length)
        # Chunk means only: the host never needs per-update values. nanmean because some
        # metrics exist only on some updates (TD3+BC's delayed actor loss is NaN otherwise).
        return state, keys, jax.tree_util.tree_map(lambda m: jnp.nanmean(m, axis=0), metrics)

    return run


def _boundaries(start: int, steps: int, *periods) -> list[int]:
    """Chunk end points in (start, steps]: every multiple of any period, and `steps`."""
    points = {steps}
    for p in periods:
        if p:
            points.update(range(p * (start // p + 1), steps, p))
    return sorted(x for x in points if start < x <= steps)


def train(
    dataset: Dataset,
    algo,
    config=None,
    steps: int = 1_000_000,
    seeds=(0,),
    out_dir=None,
    eval_fn: Callable[[Callable], dict] | None = None,
    eval_every: int | None = None,
    chunk: int = 1000,
    progress: bool = True,
    domain: str | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
) -> TrainResult:
    """Train `algo` ("bc", "td3bc", "iql", ... or a module) on `dataset` for `steps` updates.

    `config`: the algorithm's Config (defaults when None); `domain` ("mujoco", "maze2d",
    "antmaze") applies the per-domain published settings on top. All `seeds` train at once.
    `eval_fn(policy) -> dict` is called every `eval_every` updates and at the end, once per
    seed, with a deterministic policy taking raw observations. With `out_dir`, checkpoints are
    written every `checkpoint_every` updates (default: `eval_every`, else 10 chunks) and at the
    end, and an existing checkpoint of the same run is resumed from when `resume` is true.
    """
    module = algos.get(algo)
    name = algos.name_of(module)
    config = with_domain(config if config is not None else module.Config(), domain)
    config = for_budget(config, steps)  # IQL's schedule, CQL's warm-up: as long as this run
    seeds = tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be non-empty and distinct, got {seeds}")
    steps, chunk = int(steps), int(chunk)
    if steps < 0 or chunk <= 0:
        raise ValueError(f"need steps >= 0 and chunk > 0, got steps={steps}, chunk={chunk}")
    if eval_fn is not None and not eval_every:
        eval_every = None  # evaluate at the end only
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and not checkpoint_every:
        checkpoint_every = eval_every or 10 * chunk

    arrays, obs_mean, obs_std = prepare(dataset, config)
    data = {k: jnp.asarray(v) for k, v in arrays.items()}
    obs_dim, act_dim = dataset.obs_dim, dataset.act_dim

    per_seed = [jax.random.split(jax.random.PRNGKey(s)) for s in seeds]  # (init key, run key)
    states = [module.init(config, obs_dim, act_dim, k[0]) for k in per_seed]
    state = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)
    keys = jnp.stack([k[1] for k in per_seed])
    step = 0

    meta = {"format": FORMAT, "algo": name, "config": config_record(config), "seeds": list(seeds),
            "dataset": dataset.fingerprint(), "n_transitions": len(dataset)}
    metrics_rows = {s: [] for s in seeds}
    eval_rows = {s: [] for s in seeds}
    if out is not None:
        ckpt_path = out / CHECKPOINT
        if resume and ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path, jax.device_get(state))
            if ckpt["meta"] != meta:
                diff = sorted(k for k in meta if ckpt["meta"].get(k) != meta[k])
                raise CheckpointMismatch(f"{ckpt_path}: belongs to another run (differs in {diff}); "
                                         "use another out_dir or resume=False")
            if ckpt["step"] > steps:
                raise CheckpointMismatch(f"{ckpt_path}: already at step {ckpt['step']} > steps={steps}")
            step = ckpt["step"]
            state = jax.tree_util.tree_map(jnp.asarray, ckpt["state"])
            keys = jnp.asarray(ckpt["keys"])
            for s in seeds:
                metrics_rows[s] = _read_rows(out / f"seed_{s}" / "metrics.csv", step)
                eval_rows[s] = _read_rows(out / f"seed_{s}" / "eval.csv", step)
        atomic_write_bytes(out / "run.json", json.dumps({**meta, "steps": steps}, indent=2).encode())
        metric_csv = {s: _CSV(out / f"seed_{s}" / "metrics.csv", metrics_rows[s]) for s in seeds}
        eval_csv = {s: _CSV(out / f"seed_{s}" / "eval.csv", eval_rows[s]) for s in seeds}

    def evaluate(at_step):
        for i, s in enumerate(seeds):
            params = jax.tree_util.tree_map(lambda x: x[i], state["params"])
            res = eval_fn(make_policy(module, config, params, obs_mean, obs_std))
            row = {"step": at_step, **{k: float(v) for k, v in dict(res).items()}}
            eval_rows[s].append(row)
            if out is not None:
                eval_csv[s].append(row)

    run = make_runner(module, config, len(seeds), int(config.batch_size))
    first_step = step
    bar = progress_bar(total=steps, initial=step, unit="update", progress=progress,
               desc=f"{name} x{len(seeds)} seeds")
    timed_updates, timed_seconds = 0, 0.0
    compiled = set()  # chunk lengths already compiled: the first chunk of each length is not timed
    try:
        for end in _boundaries(step, steps, chunk, eval_every, checkpoint_every):
            length = end - step
            t0 = time.perf_counter()
            state, keys, metrics = run(state, keys, data, length)
            metrics = jax.device_get(metrics)  # blocks: the timing below is the real compute time
            dt = time.perf_counter() - t0
            if length in compiled:
                timed_updates, timed_seconds = timed_updates + length, timed_seconds + dt
            compiled.add(length)
            step = end
            ups = length / dt
            for i, s in enumerate(seeds):
                row = {"step": step, "updates_per_s": ups,
                       **{k: float(np.asarray(v)[i]) for k, v in sorted(metrics.items())}}
                metrics_rows[s].append(row)
                if out is not None:
                    metric_csv[s].append(row)
            bar.update(length)
            shown = {k: float(np.nanmean(v)) for k, v in list(sorted(metrics.items()))[:3]}
            bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)
            if eval_fn is not None and ((eval_every and step % eval_every == 0) or step == steps):
                evaluate(step)
            if out is not None and (step % checkpoint_every == 0 or step == steps):
                _save_checkpoint(out / CHECKPOINT, meta, step, state, keys, obs_mean, obs_std)
    finally:
        bar.close()

    return TrainResult(
        algo=name, config=config, seeds=seeds, steps=step, first_step=first_step, state=state,
        obs_mean=obs_mean, obs_std=obs_std, metrics=metrics_rows, evaluations=eval_rows,
        updates_per_s=timed_updates / timed_seconds if timed_seconds > 0 else math.nan, out_dir=out,
    )
