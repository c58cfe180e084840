"""TD3+BC (Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning", 2021).

TD3 with one change to the actor: maximise λ·Q(s, π(s)) − (π(s) − a)², where λ = α / mean|Q|
rescales the Q term so that α means the same thing whatever the scale of the task's returns.
States are normalised by the dataset's mean and std (done by the training loop, see
`normalize_obs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from rtaug.algos.common import Critics, TanhActor, first_critic, soft_update
from rtaug.ranges import COUNT, FRACTION, NONNEGATIVE, POSITIVE, UNIT_RATE, check_ranges, ranged


@dataclass(frozen=True)
class TD3BCConfig:
    hidden: tuple[int, ...] = ranged(COUNT, (256, 256))  # Fujimoto & Gu 2021, Table 3
    actor_lr: float = ranged(POSITIVE, 3e-4)  # Table 3
    critic_lr: float = ranged(POSITIVE, 3e-4)  # Table 3
    batch_size: int = ranged(COUNT, 256)  # Table 3
    discount: float = ranged(FRACTION, 0.99)  # Table 3
    tau: float = ranged(UNIT_RATE, 0.005)  # Table 3 (target update rate)
    policy_noise: float = ranged(NONNEGATIVE, 0.2)  # Table 3 (target policy noise, max action 1)
    noise_clip: float = ranged(NONNEGATIVE, 0.5)  # Table 3
    policy_freq: int = ranged(COUNT, 2)  # Table 3 (actor and targets updated every 2 critic updates)
    alpha: float = ranged(NONNEGATIVE, 2.5)  # §5, Eq. 3
    normalize_obs: bool = True  # §5, Eq. 4 (with the 1e-3 std offset of the authors' code)

    def __post_init__(self):
        check_ranges(self)

    # The paper reports MuJoCo (and Adroit) only; the same settings are the usual choice elsewhere.
    DOMAIN_DEFAULTS = {}


Config = TD3BCConfig


def bc_lambda(q, alpha):
    """λ = α / mean|Q| of the actor's actions, treated as a constant (no gradient)."""
    return jax.lax.stop_gradient(alpha / jnp.mean(jnp.abs(q)))


def actor_loss(q, pi, actions, alpha):
    """−λ·mean Q(s, π(s)) + mean (π(s) − a)² (Fujimoto & Gu 2021, Eq. 3)."""
    lam = bc_lambda(q, alpha)
    bc = jnp.mean((pi - actions) ** 2)
    return -lam * jnp.mean(q) + bc, (lam, bc)


def _nets(config, act_dim):
    return TanhActor(config.hidden, act_dim), Critics(config.hidden, 2)


def init(config: TD3BCConfig, obs_dim: int, act_dim: int, key):
    actor_net, critic_net = _nets(config, act_dim)
    k_actor, k_critic = jax.random.split(key)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    actor = actor_net.init(k_actor, obs)
    critic = critic_net.init(k_critic, obs, act)
    params = {"actor": actor, "critic": critic}
    return {
        "params": params,
        "target": jax.tree_util.tree_map(jnp.copy, params),
        "opt": {"actor": optax.adam(config.actor_lr).init(actor),
                "critic": optax.adam(config.critic_lr).init(critic)},
        "step": jnp.zeros((), jnp.int32),
    }


def update(config: TD3BCConfig, state, batch, key):
    act_dim = batch["actions"].shape[-1]
    actor_net, critic_net = _nets(config, act_dim)
    params, target, opt = state["params"], state["target"], state["opt"]
    obs, actions = batch["observations"], batch["actions"]

    # Critic: clipped double Q with target policy smoothing (TD3).
    noise = jnp.clip(config.policy_noise * jax.random.normal(key, actions.shape),
                     -config.noise_clip, config.noise_clip)
    next_act = jnp.clip(actor_net.apply(target["actor"], batch["next_observations"]) + noise, -1.0, 1.0)
    next_q = critic_net.apply(target["critic"], batch["next_observations"], next_act).min(axis=0)
    y = batch["rewards"] + config.discount * (1.0 - batch["dones"]) * next_q

    def critic_loss_fn(p):
        q = critic_net.apply(p, obs, actions)
        return jnp.mean(jnp.sum((q - y) ** 2, axis=0)), q

    (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(params["critic"])
    updates, critic_opt = optax.adam(config.critic_lr).update(grads, opt["critic"])
    critic = optax.apply_updates(params["critic"], updates)

    # Actor and targets move only every `policy_freq` critic updates (delayed policy updates).
    # Under a vmap over seeds this cond becomes a select and both branches run; that costs
    # compute, not correctness.
    def actor_step(_):
        def loss_fn(p):
            pi = actor_net.apply(p, obs)
            q_pi = first_critic(config.hidden, critic, obs, pi)
            return actor_loss(q_pi, pi, actions, config.alpha)

        (loss, (lam, bc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params["actor"])
        updates, actor_opt = optax.adam(config.actor_lr).update(grads, opt["actor"])
        actor = optax.apply_updates(params["actor"], updates)
        new_target = soft_update(target, {"actor": actor, "critic": critic}, config.tau)
        return actor, actor_opt, new_target, loss, lam, bc

    def skip(_):
        nan = jnp.asarray(jnp.nan, jnp.float32)
        return params["actor"], opt["actor"], target, nan, nan, nan

    actor, actor_opt, target, a_loss, lam, bc = jax.lax.cond(
        state["step"] % config.policy_freq == 0, actor_step, skip, None)

    state = {
        "params": {"actor": actor, "critic": critic},
        "target": target,
        "opt": {"actor": actor_opt, "critic": critic_opt},
        "step": state["step"] + 1,
    }
    metrics = {"critic_loss": critic_loss, "q_mean": jnp.mean(q), "actor_loss": a_loss,
               "lambda": lam, "bc_mse": bc}
    return state, metrics


def act(config: TD3BCConfig, params, obs):
    act_dim = params["actor"]["params"]["pi"]["out"]["bias"].shape[-1]
    return TanhActor(config.hidden, act_dim).apply(params["actor"], obs)
