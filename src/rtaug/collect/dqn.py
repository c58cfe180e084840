"""BoxBall dataset by online DQN (paper §4.3: "we use DQN to collect a dataset").

The dataset is the agent's whole experience, exploration included, so it mixes near-random
early episodes with late near-optimal ones, which is what the paper's offline models see.

Speed: a Python loop over a numpy env is unavoidable, so each step makes at most one jitted
call: the TD update and the greedy action for the next state are fused into one function.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from rtaug.progress import progress_bar

from rtaug.envs.boxball import ACTIONS, GRID, BoxBallEnv
from rtaug.nets.mlp import MLP

__all__ = ["DQNConfig", "collect_boxball"]

BOXBALL_SPACES = {
    "observation": {"type": "multidiscrete", "nvec": [GRID, GRID]},
    "action": {"type": "discrete", "n": len(ACTIONS)},
}


@dataclass
class DQNConfig:
    total_steps: int = 20_000
    seed: int = 0
    lr: float = 1e-3
    gamma: float = 0.99
    batch_size: int = 64
    buffer_size: int = 20_000
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_decay_fraction: float = 0.5  # of total_steps, linear
    target_update_period: int = 250
    learning_starts: int = 500
    train_every: int = 1
    hidden: Sequence[int] = (64, 64)
    double_q: bool = True
    max_grad_norm: float = 10.0


def _features(obs):
    # One-hot x and y: on a 10-cell axis a raw coordinate forces the net to carve the wall's
    # edges out of a linear input, which it learns slowly; one-hot makes each cell a feature.
    obs = obs.astype(jnp.int32)
    return jnp.concatenate([jax.nn.one_hot(obs[..., 0], GRID), jax.nn.one_hot(obs[..., 1], GRID)], axis=-1)


def _build(config: DQNConfig):
    net = MLP(hidden=tuple(config.hidden), out=len(ACTIONS))
    opt = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr))

    def q(params, obs):
        return net.apply(params, _features(obs))

    def loss_fn(params, target_params, b):
        q_sa = jnp.take_along_axis(q(params, b["obs"]), b["act"][:, None], axis=1)[:, 0]
        q_next_t = q(target_params, b["next_obs"])
        if config.double_q:
            a_next = jnp.argmax(q(params, b["next_obs"]), axis=1)
            v_next = jnp.take_along_axis(q_next_t, a_next[:, None], axis=1)[:, 0]
        else:
            v_next = q_next_t.max(axis=1)
        # Bootstrap through time-limit truncations: only reaching the goal ends the return.
        target = b["rew"] + config.gamma * (1.0 - b["term"]) * jax.lax.stop_gradient(v_next)
        return optax.huber_loss(q_sa, target).mean()

    @jax.jit
    def update_and_act(params, target_params, opt_state, b, obs):
        grads = jax.grad(loss_fn)(params, target_params, b)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, jnp.argmax(q(params, obs))

    @jax.jit
    def act(params, obs):
        return jnp.argmax(q(params, obs))

    def init(key):
        params = net.init(key, _features(jnp.zeros((1, 2), jnp.int32)))
        return params, opt.init(params)

    return init, update_and_act, act


def collect_boxball(config: DQNConfig | None = None, progress: bool = True):
    """Run online DQN on BoxBall for `config.total_steps` steps and return every transition as a Dataset.

    terminals mark reaching the goal, timeouts the 50-step limit; a run that stops mid-episode
    leaves its last episode open. Deterministic given `config.seed`.
    """
    from rtaug.data import Dataset  # lazy: the data layer is optional for importing this module

    config = config or DQNConfig()
    n = int(config.total_steps)
    if n <= 0:
        raise ValueError(f"DQNConfig.total_steps must be positive, got {config.total_steps}")
    rng = np.random.default_rng(config.seed)
    init, update_and_act, act = _build(config)
    params, opt_state = init(jax.random.PRNGKey(config.seed))
    target_params = params
    env = BoxBallEnv()

    obs = np.zeros((n, 2), np.int32)
    next_obs = np.zeros((n, 2), np.int32)
    acts = np.zeros(n, np.int32)
    rews = np.zeros(n, np.float32)
    terms = np.zeros(n, bool)
    touts = np.zeros(n, bool)

    decay_steps = max(1, int(config.eps_decay_fraction * n))
    eps = np.maximum(config.eps_end, config.eps_start + (config.eps_end - config.eps_start) * np.arange(n) / decay_steps)
    explore = rng.random(n) < eps
    random_actions = rng.integers(0, len(ACTIONS), n)

    s, _ = env.reset(seed=config.seed)
    greedy = int(act(params, s))
    ep_return, ep_len = 0.0, 0
    outcomes: list[bool] = []
    bar = progress_bar(total=n, desc="DQN BoxBall", unit="step", progress=progress)
    for t in range(n):
        a = int(random_actions[t]) if explore[t] else greedy
        s2, r, term, trunc, _ = env.step(a)
        obs[t], acts[t], rews[t], next_obs[t], terms[t] = s, a, r, s2, term
        touts[t] = trunc and not term
        ep_return += r
        ep_len += 1
        if term or trunc:
            outcomes.append(bool(term))
            bar.update(ep_len)
            bar.set_postfix(ret=f"{ep_return:.0f}", success=f"{np.mean(outcomes[-20:]):.2f}", refresh=False)
            s, _ = env.reset()
            ep_return, ep_len = 0.0, 0
        else:
            s = s2

        if t + 1 >= config.learning_starts and (t + 1) % config.train_every == 0:
            lo = max(0, t + 1 - config.buffer_size)
            idx = rng.integers(lo, t + 1, config.batch_size)
            batch = {"obs": obs[idx], "act": acts[idx], "rew": rews[idx],
                     "next_obs": next_obs[idx], "term": terms[idx].astype(np.float32)}
            params, opt_state, g = update_and_act(params, target_params, opt_state, batch, s)
            greedy = int(g)
        else:
            greedy = int(act(params, s))
        if (t + 1) % config.target_update_period == 0:
            target_params = params
    bar.update(ep_len)
    bar.close()

    meta_config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
    return Dataset(
        observations=obs.astype(np.float32),
        actions=acts.astype(np.int64),
        rewards=rews,
        terminals=terms,
        timeouts=touts,
        next_observations=next_obs.astype(np.float32),
        metadata={
            "env": "boxball",
            "spaces": BOXBALL_SPACES,
            "collector": {"algo": "dqn", **meta_config},
            "episodes_reaching_goal": int(terms.sum()),
            # A trailing open episode is still an episode of the data.
            "episodes": len(outcomes) + int(ep_len > 0),
        },
        source="dqn:boxball",
    )
