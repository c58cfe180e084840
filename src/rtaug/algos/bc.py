"""Behaviour cloning: a deterministic tanh policy regressed onto the dataset's actions (MSE).

The reference point every offline RL learner has to beat on mixed-quality data: it copies the
average behaviour, good and bad alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from rtaug.algos.common import TanhActor
from rtaug.ranges import COUNT, POSITIVE, check_ranges, ranged


@dataclass(frozen=True)
class BCConfig:
    hidden: tuple[int, ...] = ranged(COUNT, (256, 256))  # CORL any_percent_bc.py; learners.md
    lr: float = ranged(POSITIVE, 3e-4)  # CORL any_percent_bc.py (actor_lr)
    batch_size: int = ranged(COUNT, 256)  # CORL any_percent_bc.py
    normalize_obs: bool = True  # CORL any_percent_bc.py (normalize=True)

    def __post_init__(self):
        check_ranges(self)

    DOMAIN_DEFAULTS = {}  # the same settings are used on every domain


Config = BCConfig


def _actor(config, act_dim):
    return TanhActor(config.hidden, act_dim)


def _opt(config):
    return optax.adam(config.lr)


def init(config: BCConfig, obs_dim: int, act_dim: int, key):
    actor = _actor(config, act_dim).init(key, jnp.zeros((1, obs_dim)))
    return {"params": {"actor": actor}, "opt": {"actor": _opt(config).init(actor)},
            "step": jnp.zeros((), jnp.int32)}


def update(config: BCConfig, state, batch, key):
    del key  # deterministic policy, no sampling
    act_dim = batch["actions"].shape[-1]

    def loss_fn(p):
        pi = _actor(config, act_dim).apply(p, batch["observations"])
        return jnp.mean(jnp.sum((pi - batch["actions"]) ** 2, axis=-1))

    loss, grads = jax.value_and_grad(loss_fn)(state["params"]["actor"])
    updates, opt = _opt(config).update(grads, state["opt"]["actor"])
    actor = optax.apply_updates(state["params"]["actor"], updates)
    state = {"params": {"actor": actor}, "opt": {"actor": opt}, "step": state["step"] + 1}
    return state, {"bc_loss": loss}


def act(config: BCConfig, params, obs):
    act_dim = params["actor"]["params"]["pi"]["out"]["bias"].shape[-1]
    return _actor(config, act_dim).apply(params["actor"], obs)
