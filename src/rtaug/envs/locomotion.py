"""D4RL's locomotion tasks (hopper, walker2d, halfcheetah) on Gymnasium's MuJoCo v5 environments.

D4RL's files cannot be downloaded here, so the data is made here the way D4RL made it (SAC trained
online, `rtaug.collect.sac` and `rtaug.collect.locomotion`), on Gymnasium's v5 environments
(MuJoCo ≥ 3 through the official bindings), not D4RL's v2 ones (mujoco-py): the simulator differs,
so returns here are not D4RL's returns (docs/locomotion.md lists what v5 changed).

The evaluation protocol is D4RL's: episodes of at most 1,000 steps, ended early when the
environment terminates them (hopper and walker2d fall; halfcheetah never terminates), the return
the sum of the environment's rewards. Episode k of an evaluation starts from `reset(seed=
episode_seed(seed, k))`, so the same seed gives the same starts however the episodes are batched.

What a simulator step is, here and in the audit: the unwrapped environment's `step` (its
`do_simulation` with the env's frame skip, its reward and termination), without Gymnasium's
wrappers; the 1,000-step limit is applied by the loops themselves.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
from rtaug.progress import progress_bar

__all__ = [
    "DATASETS",
    "ENV_IDS",
    "MAX_EPISODE_STEPS",
    "VELOCITY_CLIP",
    "episode_seed",
    "evaluate_locomotion",
    "make_env",
    "make_sim",
    "rollout",
    "versions",
]

# Gymnasium ids of D4RL's three locomotion environments (D4RL used hopper-v2 etc. of OpenAI gym).
ENV_IDS = {"hopper": "Hopper-v5", "walker2d": "Walker2d-v5", "halfcheetah": "HalfCheetah-v5"}
DATASETS = ("medium", "medium-replay", "expert", "medium-expert")
MAX_EPISODE_STEPS = 1000  # D4RL's (and Gymnasium's) time limit for all three
# Hopper's and Walker2d's observations clip every joint velocity to ±10 (their v5 `_get_obs`);
# HalfCheetah's do not. A state with a faster joint cannot be restored from its observation.
VELOCITY_CLIP = {"Hopper-v5": 10.0, "Walker2d-v5": 10.0, "HalfCheetah-v5": None}


def versions() -> dict:
    """The simulator's versions, recorded with every dataset and SAC run made on it."""
    import gymnasium
    import mujoco

    return {"gymnasium": gymnasium.__version__, "mujoco": mujoco.__version__}


@contextlib.contextmanager
def _compiler_notices():
    """MuJoCo 3+ warns, when it compiles HalfCheetah's model, that the XML's `settotalmass` is
    deprecated (the model is still built as the XML says), on stderr and in a MUJOCO_LOG.TXT
    it creates in the working directory, once per env made. That one notice is dropped; any
    other MuJoCo warning becomes a Python warning."""
    import mujoco

    previous = mujoco.get_mju_user_warning()

    def notice(message: str) -> None:
        if "'settotalmass' is deprecated" not in message:
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(notice)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def make_env(env_id: str, max_episode_steps: int = MAX_EPISODE_STEPS, **kwargs):
    """The Gymnasium environment as a user would make it (with its time limit)."""
    import gymnasium

    with _compiler_notices():
        return gymnasium.make(env_id, max_episode_steps=max_episode_steps, **kwargs)


def make_sim(env_id: str):
    """The unwrapped MuJoCo environment: `step` is the simulator step, no time limit, no checks."""
    import gymnasium

    with _compiler_notices():
        sim = gymnasium.make(env_id).unwrapped
    low, high = sim.action_space.low, sim.action_space.high
    if not (np.all(low == -1.0) and np.all(high == 1.0)):
        # The SAC actor, the offline learners and D4RL's files all act in [-1, 1].
        raise ValueError(f"{env_id}: action space [{low}, {high}] is not [-1, 1]")
    return sim


def episode_seed(*entropy) -> int:
    """A reset seed from integers (a run's seed, a stream, an episode index; tuples are flattened):
    distinct streams never share a start, and no stream depends on how episodes are batched."""
    flat = [int(x) for e in entropy for x in np.atleast_1d(e)]
    return int(np.random.SeedSequence(flat).generate_state(1)[0])


_SIMS: dict[str, list] = {}


def _sims(env_id: str, n: int) -> list:
    """n simulators of `env_id`, kept between calls: a training loop evaluates every few thousand
    steps, and making a MuJoCo env costs tens of milliseconds. Every episode starts with a seeded
    reset, so what an earlier episode left behind does not matter."""
    pool = _SIMS.setdefault(env_id, [])
    while len(pool) < n:
        pool.append(make_sim(env_id))
    return pool[:n]


def rollout(env_id: str, policy, episodes: int, seed=0, batch_size: int = 10,
            max_episode_steps: int = MAX_EPISODE_STEPS, progress: bool | None = None, desc: str | None = None) -> dict:
    """`episodes` episodes of `policy` (obs (B, obs_dim) float32 -> actions (B, act_dim)), in lockstep
    batches of `batch_size` envs so the policy is called once per step for the batch (a smaller last
    batch is padded with repeated observations, so a jitted policy sees one shape). Returns per
    episode `returns` (float64), `lengths` and `terminated` (the env ended it before the limit)."""
    episodes = int(episodes)
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    B = max(1, min(int(batch_size), episodes))
    sims = _sims(env_id, B)
    act_dim = sims[0].action_space.shape[0]
    out = {"returns": np.zeros(episodes), "lengths": np.zeros(episodes, np.int64),
           "terminated": np.zeros(episodes, bool)}
    bar = progress_bar(total=episodes * max_episode_steps, desc=desc or f"eval {env_id} ({episodes} episodes)",
                       unit="step", unit_scale=True, progress=progress)
    for lo in range(0, episodes, B):
        hi = min(lo + B, episodes)
        b = hi - lo
        obs = np.stack([sims[i].reset(seed=episode_seed(seed, lo + i))[0] for i in range(b)])
        obs = np.concatenate([obs, np.repeat(obs[-1:], B - b, axis=0)])
        if hasattr(policy, "reset"):
            policy.reset(B)
        alive = np.ones(b, bool)
        for _ in range(max_episode_steps):
            act = np.asarray(policy(obs.astype(np.float32)))
            if act.shape != (B, act_dim):
                raise ValueError(f"policy returned actions of shape {act.shape}, expected {(B, act_dim)}")
            bar.update(int(alive.sum()))
            for i in np.flatnonzero(alive):
                obs[i], r, terminated, _, _ = sims[i].step(act[i])
                out["returns"][lo + i] += r
                out["lengths"][lo + i] += 1
                if terminated:
                    alive[i] = False
                    out["terminated"][lo + i] = True
            if not alive.any():
                break
        bar.update(b * max_episode_steps - int(out["lengths"][lo:hi].sum()))  # the fallen episodes' rest
    bar.close()
    return out


def evaluate_locomotion(task, policy, episodes: int | None = None, seed=0, batch_size: int = 10,
                        progress: bool | None = None, desc: str | None = None):
    """D4RL's protocol on a locomotion task: raw returns, our normalized score (when the task's
    references are measured) and D4RL's. `success_rate` is the fraction of episodes that ran to
    the time limit without the environment ending them (the walker did not fall)."""
    from rtaug.evaluate import EvalResult

    n = int(episodes or task.evaluation.episodes)
    res = rollout(task.recipe.env_id, policy, n, seed=seed, batch_size=batch_size,
                  max_episode_steps=task.evaluation.max_episode_steps, progress=progress,
                  desc=desc or f"eval {task.name} ({n} episodes)")
    ret = res["returns"]
    ref = task.references
    norm = task.normalize(ret) if ref.random is not None and ref.expert is not None else None
    return EvalResult(task=task.name, returns=ret, returns_other=np.full(n, np.nan), normalized=norm,
                      normalized_d4rl=task.normalize_d4rl(ret), seed=seed,
                      extra={"success_rate": float(np.mean(~res["terminated"])),
                             "length_mean": float(res["lengths"].mean())})

