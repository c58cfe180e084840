"""SAC (Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", 2018) in JAX, trained
online on a Gymnasium MuJoCo environment: the agent whose history and policies become the
locomotion datasets (D4RL §5; `rtaug.collect.locomotion` cuts them out of a run).

The update is rlkit's SACTrainer, the code D4RL's locomotion data was made with: twin critics
with Polyak-averaged targets, a tanh-Gaussian actor (CQL's, `rtaug.algos.cql`, itself rlkit's),
the temperature α tuned so the policy's entropy tracks −|A|; α first, then the actor with the new
α, then the critics towards r + γ(min Q′(s′, a′) − α log π(a′|s′)), all from one batch. It is one
pure function, `update`, jitted like the offline learners'. Only the loop around it is online:
the environment steps on the host, each transition goes into the replay buffer, and after
`learning_starts` uniform-random steps every step is followed by one gradient update.

A run can be killed at any moment and resumed to the same result, bit for bit. Its checkpoint
holds everything the rest of the run depends on: the SAC state, the PRNG key (actions, update
noise), the numpy generator (batch indices, warm-up actions), the environment's full integration
state (MuJoCo's mjSTATE_INTEGRATION: qpos, qvel, warm starts; a state restored from it steps
bitwise like the original, where qpos and qvel alone drift by 1e-11 on Walker2d) with the open
episode's step count, and the sums of the update metrics since the last evaluation. Replay rows
are appended to buffer/ in chunks and never rewritten, so a checkpoint costs the new rows only.

Run directory:
    run.json                         the config (total_steps aside: a larger budget continues a
                                     run), observation/action sizes, Gymnasium and MuJoCo versions
    checkpoint.msgpack               the state above, every `checkpoint_every` steps and at the end
    buffer/rows_<lo>_<hi>.npz        every transition, in order: observations, actions, rewards,
                                     next_observations, terminals, timeouts, qpos, qvel (float64,
                                     the simulator state before the step)
    policies/actor_<step>.msgpack    the actor at every evaluation (the medium policy is one of them)
    curve.csv                        the learning curve: every `eval_every` steps, the deterministic
                                     policy's return over `eval_episodes` episodes, and the update
                                     metrics averaged since the previous row
"""
from __future__ import annotations

import io
import json
import os
import shutil
import time
from dataclasses import dataclass, fields, replace
from functools import lru_cache, partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization
from rtaug.progress import progress_bar

from rtaug.algos.cql import TanhGaussianActor, sample
from rtaug.algos.common import Critics, soft_update
from rtaug.fileio import atomic_write_bytes, atomic_write_json

__all__ = [
    "RunMismatch",
    "SACConfig",
    "SACRun",
    "act",
    "init",
    "load_actor",
    "load_buffer",
    "make_actor_policy",
    "read_curve",
    "train_sac",
    "update",
]

FORMAT = 1
CHECKPOINT = "checkpoint.msgpack"
TRAIN_STREAM, EVAL_STREAM = 0, 1  # episode seeds: (seed, stream, episode)
_BUFFER_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "qpos", "qvel")
_METRICS = ("critic_loss", "actor_loss", "alpha", "alpha_loss", "entropy", "q_mean")


class RunMismatch(ValueError):
    """A run directory that holds another run (config, env or versions differ)."""


@dataclass(frozen=True)
class SACConfig:
    env_id: str = "Hopper-v5"
    seed: int = 0
    total_steps: int = 1_000_000  # environment steps (and, after learning_starts, gradient updates)
    hidden: tuple[int, ...] = (256, 256)  # rlkit's SAC, Haarnoja et al. 2018 Table 1
    actor_lr: float = 3e-4  # Table 1
    critic_lr: float = 3e-4  # Table 1
    alpha_lr: float = 3e-4  # rlkit (policy_lr)
    batch_size: int = 256  # Table 1
    discount: float = 0.99  # Table 1
    tau: float = 0.005  # Table 1 (target smoothing)
    target_entropy: float | None = None  # None: −|A| (Table 1)
    log_std_min: float = -20.0  # rlkit TanhGaussianPolicy
    log_std_max: float = 2.0
    buffer_size: int = 1_000_000  # Table 1: batches are drawn from the last buffer_size transitions
    # Uniform random actions and no updates before this many steps (CleanRL's learning_starts;
    # rlkit collects 1,000 random steps, SpinningUp 10,000): the critics start from varied data.
    learning_starts: int = 5000
    update_every: int = 1  # updates come in blocks of this many, every this many steps (1: SAC's)
    max_episode_steps: int = 1000  # D4RL's and Gymnasium's time limit
    eval_every: int = 10_000  # a learning-curve row (and an actor snapshot) every this many steps
    eval_episodes: int = 10
    checkpoint_every: int = 50_000

    def validate(self) -> SACConfig:
        for f in ("total_steps", "batch_size", "buffer_size", "learning_starts", "update_every",
                  "max_episode_steps", "eval_every", "eval_episodes", "checkpoint_every"):
            if int(getattr(self, f)) < 1:
                raise ValueError(f"SACConfig.{f} must be at least 1, got {getattr(self, f)}")
        return self


# ------------------------------------------------------------------------------- the algorithm


def _nets(config: SACConfig, act_dim: int):
    return TanhGaussianActor(tuple(config.hidden), act_dim, config.log_std_min, config.log_std_max), \
        Critics(tuple(config.hidden), 2)


def init(config: SACConfig, obs_dim: int, act_dim: int, key):
    actor_net, critic_net = _nets(config, act_dim)
    k_a, k_q = jax.random.split(key)
    obs, act_ = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    actor, critic = actor_net.init(k_a, obs), critic_net.init(k_q, obs, act_)
    log_alpha = jnp.zeros(())  # α = 1 at the start (rlkit)
    return {
        "params": {"actor": actor, "critic": critic, "log_alpha": log_alpha},
        "target": {"critic": jax.tree_util.tree_map(jnp.copy, critic)},
        "opt": {"actor": optax.adam(config.actor_lr).init(actor),
                "critic": optax.adam(config.critic_lr).init(critic),
                "log_alpha": optax.adam(config.alpha_lr).init(log_alpha)},
        "step": jnp.zeros((), jnp.int32),
    }


def update(config: SACConfig, state, batch, key):
    act_dim = batch["actions"].shape[-1]
    actor_net, critic_net = _nets(config, act_dim)
    params, opt = state["params"], state["opt"]
    obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
    target_entropy = -float(act_dim) if config.target_entropy is None else config.target_entropy
    k_pi, k_next = jax.random.split(key)

    # α first: its loss pulls the policy's entropy towards the target; the policy loss then uses it.
    mean, log_std = actor_net.apply(params["actor"], obs)
    _, log_pi = sample(mean, log_std, k_pi)

    def alpha_loss_fn(la):
        return -jnp.mean(la * jax.lax.stop_gradient(log_pi + target_entropy))

    alpha_loss, grads = jax.value_and_grad(alpha_loss_fn)(params["log_alpha"])
    updates, alpha_opt = optax.adam(config.alpha_lr).update(grads, opt["log_alpha"])
    log_alpha = optax.apply_updates(params["log_alpha"], updates)
    alpha = jnp.exp(log_alpha)

    def actor_loss_fn(p):
        mean, log_std = actor_net.apply(p, obs)
        a, log_pi = sample(mean, log_std, k_pi)
        q_pi = critic_net.apply(params["critic"], obs, a).min(axis=0)
        return jnp.mean(alpha * log_pi - q_pi), log_pi

    (actor_loss, log_pi), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(params["actor"])
    updates, actor_opt = optax.adam(config.actor_lr).update(grads, opt["actor"])
    actor = optax.apply_updates(params["actor"], updates)

    # The soft Bellman target from the pre-update policy and the target critics.
    next_a, next_logp = sample(*actor_net.apply(params["actor"], next_obs), k_next)
    next_q = critic_net.apply(state["target"]["critic"], next_obs, next_a).min(axis=0) - alpha * next_logp
    # Time-limit truncations still bootstrap: only a termination ends the return.
    y = jax.lax.stop_gradient(batch["rewards"] + config.discount * (1.0 - batch["dones"]) * next_q)

    def critic_loss_fn(p):
        q = critic_net.apply(p, obs, actions)
        return jnp.sum(jnp.mean((q - y) ** 2, axis=-1)), q

    (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(params["critic"])
    updates, critic_opt = optax.adam(config.critic_lr).update(grads, opt["critic"])
    critic = optax.apply_updates(params["critic"], updates)

    state = {
        "params": {"actor": actor, "critic": critic, "log_alpha": log_alpha},
        "target": {"critic": soft_update(state["target"]["critic"], critic, config.tau)},
        "opt": {"actor": actor_opt, "critic": critic_opt, "log_alpha": alpha_opt},
        "step": state["step"] + 1,
    }
    metrics = {"critic_loss": critic_loss, "actor_loss": actor_loss, "alpha": alpha, "alpha_loss": alpha_loss,
               "entropy": -jnp.mean(log_pi), "q_mean": jnp.mean(q)}
    return state, metrics


def _act_dim(actor_params) -> int:
    return actor_params["params"]["pi"]["out"]["bias"].shape[-1] // 2  # the actor outputs (μ, log σ)


def act(config: SACConfig, actor_params, obs):
    """The deterministic policy, tanh of the mean (rlkit's MakeDeterministic): for evaluation."""
    mean, _ = _nets(config, _act_dim(actor_params))[0].apply(actor_params, obs)
    return jnp.tanh(mean)


def explore(config: SACConfig, actor_params, obs, key):
    """The stochastic policy: a = tanh(u), u ~ N(μ(s), σ(s)), one action per observation."""
    return sample(*_nets(config, _act_dim(actor_params))[0].apply(actor_params, obs), key)[0]


# ------------------------------------------------------------------ jitted pieces of the loop


# Fields only the loop reads: runs differing in them share one compiled update (a test's short run
# and its resumed continuation, two environments of one size).
_LOOP_FIELDS = ("env_id", "seed", "total_steps", "buffer_size", "learning_starts", "update_every",
                "max_episode_steps", "eval_every", "eval_episodes", "checkpoint_every")


def _hyper(config: SACConfig) -> SACConfig:
    default = SACConfig()
    return replace(config, **{f: getattr(default, f) for f in _LOOP_FIELDS})


def _update_block(config: SACConfig):
    return _update_block_of(_hyper(config))


def _jitted(config: SACConfig):
    return _jitted_of(_hyper(config))


def init_jitted(config: SACConfig, obs_dim: int, act_dim: int, key):
    """`init`, compiled as one program: Flax's eager init dispatches (and compiles) op by op,
    ten seconds on a busy machine, against one compilation of about a second."""
    return _init_of(_hyper(config), int(obs_dim), int(act_dim))(key)


@lru_cache(maxsize=16)
def _init_of(config: SACConfig, obs_dim: int, act_dim: int):
    return jax.jit(partial(init, config, obs_dim, act_dim))


@lru_cache(maxsize=16)
def _update_block_of(config: SACConfig):
    """`update_every` updates in one call (a lax.scan over stacked batches), and the running sums of
    their metrics (the learning curve's columns) carried along, so the host never waits on them."""

    @jax.jit
    def run(state, sums, batches, key):
        def body(carry, batch):
            state, sums, key = carry
            key, k = jax.random.split(key)
            state, m = update(config, state, batch, k)
            return (state, {n: sums[n] + m[n] for n in sums}, key), None

        (state, sums, key), _ = jax.lax.scan(body, (state, sums, key), batches)
        return state, sums, key

    return run


@lru_cache(maxsize=16)
def _jitted_of(config: SACConfig):
    """(act, explore) jitted, and explore that carries its PRNG key, (actions, next key): one
    dispatch per environment step."""

    def explore_step(actor_params, obs, key):
        key, k = jax.random.split(key)
        return explore(config, actor_params, obs, k), key

    return jax.jit(partial(act, config)), jax.jit(partial(explore, config)), jax.jit(explore_step)


def make_actor_policy(config: SACConfig, actor_params, stochastic: bool = False, key=None):
    """The actor as a batch policy obs (B, obs_dim) -> actions (B, act_dim), for `rollout` and
    `rtaug.collect.locomotion.policy_data`: the mean action, or (stochastic) a fresh sample per
    call from a key sequence that starts at `key` (default PRNGKey(0))."""
    deterministic, _, explore_step = _jitted(config)
    if not stochastic:
        return lambda obs: np.asarray(deterministic(actor_params, np.asarray(obs, np.float32)))
    keys = [jax.random.PRNGKey(0) if key is None else key]

    def policy(obs):
        # numpy straight into the jitted call: a jnp.asarray first costs a device_put per step
        a, keys[0] = explore_step(actor_params, np.asarray(obs, np.float32), keys[0])
        return np.asarray(a)

    return policy


# ------------------------------------------------------------------------------ the run on disk


class _Buffer:
    """Every transition of the run, in order, in host memory (a 1M-step Hopper run: ≈ 200 MB)."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, nq: int, nv: int):
        shapes = {"observations": ((obs_dim,), np.float32), "actions": ((act_dim,), np.float32),
                  "rewards": ((), np.float32), "next_observations": ((obs_dim,), np.float32),
                  "terminals": ((), bool), "timeouts": ((), bool), "qpos": ((nq,), np.float64),
                  "qvel": ((nv,), np.float64)}
        self.arrays = {k: np.zeros((capacity, *shape), dtype) for k, (shape, dtype) in shapes.items()}

    def batches(self, idx):
        a = self.arrays
        return {"observations": a["observations"][idx], "actions": a["actions"][idx],
                "rewards": a["rewards"][idx], "next_observations": a["next_observations"][idx],
                "dones": a["terminals"][idx].astype(np.float32)}


def _chunk_name(lo: int, hi: int) -> str:
    return f"rows_{lo:010d}_{hi:010d}.npz"


def _chunks(run_dir: Path) -> list[tuple[int, int, Path]]:
    out = []
    for p in sorted((run_dir / "buffer").glob("rows_*_*.npz")):
        _, lo, hi = p.stem.split("_")
        out.append((int(lo), int(hi), p))
    return out


def load_buffer(run_dir, rows: int | None = None) -> dict[str, np.ndarray]:
    """The run's first `rows` transitions (default: all saved) from buffer/, as arrays."""
    run_dir = Path(run_dir)
    parts, end = [], 0
    for lo, hi, p in _chunks(run_dir):
        if rows is not None and lo >= rows:
            break
        if lo != end:
            raise ValueError(f"{run_dir}/buffer: rows {end}..{lo} are missing (chunk {p.name})")
        with np.load(p) as z:
            parts.append({k: z[k] for k in _BUFFER_KEYS})
        end = hi
    if rows is not None and end < rows:
        raise ValueError(f"{run_dir}/buffer: holds {end} rows, {rows} were asked for")
    if not parts:
        raise ValueError(f"{run_dir}/buffer: no replay rows saved yet")
    out = {k: np.concatenate([p[k] for p in parts]) for k in _BUFFER_KEYS}
    return out if rows is None else {k: v[:rows] for k, v in out.items()}


def _actor_path(run_dir: Path, step: int) -> Path:
    return run_dir / "policies" / f"actor_{step:010d}.msgpack"


def load_actor(run_dir, step: int):
    """The actor's parameters saved at the evaluation after `step` environment steps."""
    path = _actor_path(Path(run_dir), int(step))
    if not path.exists():
        raise FileNotFoundError(f"{path}: no actor saved at step {step} (evaluations are every eval_every steps)")
    return serialization.msgpack_restore(path.read_bytes())


def read_curve(run_dir) -> list[dict]:
    from rtaug.train import _read_rows

    return _read_rows(Path(run_dir) / "curve.csv", max_step=2**62)


def finished_run(run_dir, config: SACConfig | None = None) -> tuple[dict, list[dict]]:
    """The run.json and learning curve of the finished SAC run in `run_dir`; with `config`, checked
    to be that config's run (the same settings, budget and simulator versions). A ValueError says
    what is missing, differs or is unfinished."""
    from rtaug.envs.locomotion import versions

    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file() or not (run_dir / CHECKPOINT).is_file():
        raise ValueError(f"{run_dir}: no SAC run here (run.json and {CHECKPOINT}; `rtaug collect --sac-dir` makes one)")
    info = json.loads((run_dir / "run.json").read_text())
    if config is not None:
        have = info.get("config", {})
        diff = [f"{k} {have.get(k)!r} (wanted {v!r})" for k, v in _config_json(config).items() if have.get(k) != v]
        diff += [f"{k} {info.get(k)!r} (this machine has {v!r})" for k, v in versions().items() if info.get(k) != v]
        if info.get("total_steps") != config.total_steps:
            diff.append(f"total_steps {info.get('total_steps')!r} (wanted {config.total_steps})")
        if diff:
            raise ValueError(f"{run_dir}: another SAC run: {'; '.join(diff)}")
    curve = read_curve(run_dir)
    done = curve[-1]["step"] if curve else 0
    if done != info.get("total_steps"):
        raise ValueError(f"{run_dir}: the SAC run has not finished ({done} of {info.get('total_steps')} steps); "
                         "resume it with the `rtaug collect` that started it")
    return info, curve


def copy_run(src, dst) -> None:
    """A finished run's files (not what commands wrote beside them) into `dst`: the checkpoint, replay
    chunks and actors as hard links where the filesystem allows (a run replaces those files by
    rename, never in place, so resuming the source leaves the links as they were), the rest copied."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("run.json", "curve.csv"):
        shutil.copy2(src / name, dst / name)
    for f in [src / CHECKPOINT, *(p for _, _, p in _chunks(src)), *sorted((src / "policies").glob("actor_*.msgpack"))]:
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)


@dataclass
class SACRun:
    run_dir: Path
    config: SACConfig
    steps: int  # environment steps done
    episodes: int  # episodes started
    state: dict  # the SAC state (params, targets, optimisers)
    curve: list[dict]
    first_step: int = 0  # where this call started (a resumed run: its checkpoint's)
    env_steps_per_s: float = float("nan")  # of this call, evaluations included

    def actor(self):
        return self.state["params"]["actor"]


def _meta(config: SACConfig, obs_dim: int, act_dim: int) -> dict:
    from rtaug.envs.locomotion import versions

    return {"format": FORMAT, "algo": "sac", "config": _config_json(config), "obs_dim": obs_dim, "act_dim": act_dim,
            **versions()}


def _config_json(config: SACConfig) -> dict:
    """The settings a run is identified by, as its run.json stores them (the budget apart: a larger
    one continues the run)."""
    cfg = {f.name: getattr(config, f.name) for f in fields(config) if f.name != "total_steps"}
    cfg["hidden"] = list(cfg["hidden"])
    return cfg


def _save_checkpoint(run_dir: Path, meta: dict, host: dict, state, key, sums) -> None:
    payload = {"meta": json.dumps(meta, sort_keys=True), "host": json.dumps(host, sort_keys=True),
               "state": serialization.to_state_dict(jax.device_get(state)),
               "key": np.asarray(jax.device_get(key)), "sums": jax.device_get(sums)}
    atomic_write_bytes(run_dir / CHECKPOINT, serialization.msgpack_serialize(payload))


def train_sac(config: SACConfig, run_dir, progress: bool = True, log=print) -> SACRun:
    """Train SAC online for `config.total_steps` environment steps in `run_dir`, continuing the run
    already there (from its checkpoint) if any; returns the final state and the learning curve."""
    import mujoco

    from rtaug.envs.locomotion import episode_seed, make_sim, rollout
    from rtaug.train import _CSV, _read_rows

    config = config.validate()
    run_dir = Path(run_dir)
    sim = make_sim(config.env_id)
    obs_dim, act_dim = sim.observation_space.shape[0], sim.action_space.shape[0]
    nq, nv = sim.model.nq, sim.model.nv
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    sim_state = np.zeros(mujoco.mj_stateSize(sim.model, spec))
    meta = _meta(config, obs_dim, act_dim)
    T = int(config.total_steps)

    key, k_init = jax.random.split(jax.random.PRNGKey(config.seed))
    state = init_jitted(config, obs_dim, act_dim, k_init)
    sums = {n: jnp.zeros((), jnp.float32) for n in _METRICS}
    rng = np.random.default_rng(config.seed)
    # host: where the loop stands; with the arrays above, all that the rest of the run depends on
    host = {"t": 0, "episode": 0, "ep_len": 0, "updates_since_eval": 0, "saved_rows": 0, "seconds": 0.0,
            "rng": rng.bit_generator.state, "sim": None, "obs": None}
    buf = _Buffer(T, obs_dim, act_dim, nq, nv)

    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists():
        raw = serialization.msgpack_restore(ckpt_path.read_bytes())
        old = json.loads(raw["meta"])
        if old != meta:
            diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            detail = sorted(k for k in meta["config"] if old.get("config", {}).get(k) != meta["config"][k])
            raise RunMismatch(f"{ckpt_path}: holds another run (differs in {diff}{': ' + str(detail) if detail else ''}); "
                              "choose another run directory")
        host = json.loads(raw["host"])
        if host["t"] > T:
            raise RunMismatch(f"{ckpt_path}: already at step {host['t']} > total_steps={T}")
        state = serialization.from_state_dict(jax.device_get(state), raw["state"])
        state = jax.tree_util.tree_map(jnp.asarray, state)
        key = jnp.asarray(raw["key"])
        sums = {n: jnp.asarray(raw["sums"][n]) for n in _METRICS}
        rng.bit_generator.state = host["rng"]
        if host["t"] == T:  # finished: read, never write (a cached experiment stage is shared and final)
            log(f"SAC {config.env_id}: {run_dir} is finished ({T} steps)")
            return SACRun(run_dir=run_dir, config=config, steps=T, episodes=host["episode"], state=state,
                          curve=_read_rows(run_dir / "curve.csv", T), first_step=T)
        saved = load_buffer(run_dir, host["saved_rows"]) if host["saved_rows"] else None
        for k in _BUFFER_KEYS if saved else ():
            buf.arrays[k][:host["saved_rows"]] = saved[k]
        log(f"SAC {config.env_id}: resuming {run_dir} at step {host['t']} of {T}")
    # Chunks beyond the checkpoint belong to the killed part of a run: this run rewrites them.
    for lo, _, p in _chunks(run_dir):
        if lo >= host["saved_rows"]:
            p.unlink()
    atomic_write_json(run_dir / "run.json", {**meta, "total_steps": T})
    curve_rows = _read_rows(run_dir / "curve.csv", host["t"])
    curve = _CSV(run_dir / "curve.csv", curve_rows)

    update_block = _update_block(config)
    deterministic, _, explore_step = _jitted(config)
    t, episode, ep_len = host["t"], host["episode"], host["ep_len"]
    updates_since_eval = host["updates_since_eval"]
    if ep_len:  # the checkpoint was taken mid-episode: the simulator goes on from its exact state
        mujoco.mj_setState(sim.model, sim.data, np.asarray(host["sim"], np.float64), spec)
        obs = np.asarray(host["obs"], np.float64)
    first_step, t0, seconds0 = t, time.perf_counter(), host["seconds"]
    K, B = int(config.update_every), int(config.batch_size)
    rows = buf.arrays

    def save(t):
        lo = host["saved_rows"]
        if t > lo:  # the new rows first: a checkpoint never names rows that are not on disk
            chunk = io.BytesIO()
            np.savez(chunk, **{k: v[lo:t] for k, v in rows.items()})
            atomic_write_bytes(run_dir / "buffer" / _chunk_name(lo, t), chunk.getvalue())
        mujoco.mj_getState(sim.model, sim.data, sim_state, spec)
        host.update(t=t, episode=episode, ep_len=ep_len, updates_since_eval=updates_since_eval, saved_rows=t,
                    seconds=seconds0 + time.perf_counter() - t0, rng=rng.bit_generator.state,
                    sim=sim_state.tolist() if ep_len else None, obs=obs.tolist() if ep_len else None)
        _save_checkpoint(run_dir, meta, host, state, key, sums)

    def evaluate(t):
        nonlocal sums, updates_since_eval
        actor = state["params"]["actor"]
        res = rollout(config.env_id, lambda o: np.asarray(deterministic(actor, o)),
                      config.eval_episodes, seed=(config.seed, EVAL_STREAM), batch_size=config.eval_episodes,
                      max_episode_steps=config.max_episode_steps, progress=None)
        (run_dir / "policies").mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(_actor_path(run_dir, t), serialization.msgpack_serialize(
            serialization.to_state_dict(jax.device_get(actor))))
        n = updates_since_eval
        means = {k: float(v) / n if n else float("nan") for k, v in jax.device_get(sums).items()}
        r = res["returns"]
        row = {"step": t, "episodes": episode, "updates": int(state["step"]), "return_mean": float(r.mean()),
               "return_std": float(r.std()), "return_min": float(r.min()), "return_max": float(r.max()),
               "length_mean": float(res["lengths"].mean()), **means, "wall_s": seconds0 + time.perf_counter() - t0}
        curve.append(row)
        curve_rows.append(row)
        sums = {k: jnp.zeros((), jnp.float32) for k in _METRICS}
        updates_since_eval = 0
        return row

    bar = progress_bar(total=T, initial=t, desc=f"SAC {config.env_id}", unit="step",
                       progress=progress if t < T else None)  # a finished run: no bar, no log lines
    try:
        while t < T:
            if ep_len == 0:
                obs, _ = sim.reset(seed=episode_seed(config.seed, TRAIN_STREAM, episode))
            if t < config.learning_starts:
                a = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
            else:
                a, key = explore_step(state["params"]["actor"], obs[None], key)
                a = np.asarray(a)[0]
            rows["qpos"][t], rows["qvel"][t] = sim.data.qpos, sim.data.qvel
            next_obs, r, terminated, _, _ = sim.step(a)
            ep_len += 1
            timeout = ep_len >= config.max_episode_steps and not terminated
            rows["observations"][t], rows["actions"][t], rows["rewards"][t] = obs, a, r
            rows["next_observations"][t], rows["terminals"][t], rows["timeouts"][t] = next_obs, terminated, timeout
            t += 1
            obs = next_obs
            if terminated or timeout:
                episode, ep_len = episode + 1, 0
            if t >= config.learning_starts and t % K == 0:
                idx = rng.integers(max(0, t - config.buffer_size), t, size=(K, B))
                state, sums, key = update_block(state, sums, buf.batches(idx), key)
                updates_since_eval += K
            bar.update(1)
            if t % config.eval_every == 0 or t == T:
                row = evaluate(t)
                bar.set_postfix({"eval": f"{row['return_mean']:.0f}", "episodes": episode}, refresh=False)
            if t % config.checkpoint_every == 0 or t == T:
                save(t)
    finally:
        bar.close()
    dt = time.perf_counter() - t0
    return SACRun(run_dir=run_dir, config=config, steps=t, episodes=episode, state=state, curve=curve_rows,
                  first_step=first_step, env_steps_per_s=(t - first_step) / dt if dt > 0 else float("nan"))
