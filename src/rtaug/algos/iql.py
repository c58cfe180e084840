"""IQL (Kostrikov, Nair & Levine, "Offline Reinforcement Learning with Implicit Q-Learning", 2022).

Never queries Q at actions outside the dataset: V(s) is fitted as an upper expectile of Q(s, a)
over the dataset's actions, Q(s, a) regresses onto r + γ V(s'), and the policy is extracted by
advantage-weighted regression, weights exp(β·(Q − V)) clipped at 100.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rtaug.algos.common import MLP, Critics, ValueNet, gaussian_log_prob, soft_update
from rtaug.ranges import COUNT, FRACTION, NONNEGATIVE, OPEN_FRACTION, POSITIVE, UNIT_RATE, check_ranges, ranged


@dataclass(frozen=True)
class IQLConfig:
    hidden: tuple[int, ...] = ranged(COUNT, (256, 256))  # Kostrikov et al. 2022, App. B
    actor_lr: float = ranged(POSITIVE, 3e-4)  # App. B
    critic_lr: float = ranged(POSITIVE, 3e-4)  # App. B
    value_lr: float = ranged(POSITIVE, 3e-4)  # App. B
    batch_size: int = ranged(COUNT, 256)  # App. B
    discount: float = ranged(FRACTION, 0.99)  # App. B
    tau: float = ranged(UNIT_RATE, 0.005)  # App. B (target critic update rate)
    expectile: float = ranged(OPEN_FRACTION, 0.7)  # App. B, MuJoCo
    temperature: float = ranged(NONNEGATIVE, 3.0)  # App. B, MuJoCo (β, inverse temperature of the AWR weights)
    max_weight: float = ranged(POSITIVE, 100.0)  # authors' code: exp(β·A) clipped at 100
    # The actor's lr is cosine-decayed to 0 over training (authors' code, opt_decay_schedule).
    # None: the number of steps given to rtaug.train.train.
    decay_steps: int | None = ranged(COUNT, None)
    log_std_min: float = -5.0  # authors' code (NormalTanhPolicy)
    log_std_max: float = 2.0  # authors' code
    normalize_obs: bool = False  # authors' code feeds raw states
    return_normalize: bool = True  # App. B: MuJoCo rewards × 1000 / (max − min episode return)
    reward_scale: float = 1.0
    reward_bias: float = 0.0

    def __post_init__(self):
        check_ranges(self)

    def for_budget(self, steps: int) -> IQLConfig:
        """This config for a run of `steps` updates: `decay_steps` None becomes `steps`."""
        return self if self.decay_steps is not None else replace(self, decay_steps=steps)

    DOMAIN_DEFAULTS = {
        "mujoco": {},
        # Maze2D is not in the paper; re-implementations (CORL) use the MuJoCo expectile and
        # temperature, leave the (sparse) rewards unscaled and normalise states (CORL's
        # `normalize=True`). The states matter: on raw maze states (velocities up to ±5 beside
        # positions in 1..3) IQL scored 58 against BC's 99 on expert data; normalised, 100
        # (docs/decisions.md).
        "maze2d": {"return_normalize": False, "normalize_obs": True},
        # App. B: τ = 0.9, β = 10, rewards shifted by −1.
        "antmaze": {"expectile": 0.9, "temperature": 10.0, "return_normalize": False,
                    "reward_bias": -1.0},
    }


Config = IQLConfig


def expectile_loss(diff, expectile):
    """L₂^τ(u) = |τ − 1(u < 0)|·u², the asymmetric square of Eq. 5, with u = Q − V."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


def awr_weights(adv, temperature, max_weight):
    return jnp.minimum(jnp.exp(temperature * adv), max_weight)


class GaussianActor(nn.Module):
    """tanh-bounded mean and a state-independent log std (the authors' policy for MuJoCo)."""

    hidden: tuple
    act_dim: int
    log_std_min: float
    log_std_max: float

    @nn.compact
    def __call__(self, obs):
        mean = jnp.tanh(MLP(self.hidden, self.act_dim, name="pi")(obs))
        log_std = self.param("log_std", nn.initializers.zeros, (self.act_dim,))
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def _nets(config, act_dim):
    actor = GaussianActor(config.hidden, act_dim, config.log_std_min, config.log_std_max)
    return actor, Critics(config.hidden, 2), ValueNet(config.hidden)


def _actor_opt(config):
    if config.decay_steps is None:
        raise ValueError("IQLConfig.decay_steps is None: set it to the training length "
                         "(rtaug.train.train does this for you)")
    return optax.adam(optax.cosine_decay_schedule(config.actor_lr, config.decay_steps))


def init(config: IQLConfig, obs_dim: int, act_dim: int, key):
    actor_net, critic_net, value_net = _nets(config, act_dim)
    k_a, k_q, k_v = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    actor, critic, value = actor_net.init(k_a, obs), critic_net.init(k_q, obs, act), value_net.init(k_v, obs)
    return {
        "params": {"actor": actor, "critic": critic, "value": value},
        "target": {"critic": jax.tree_util.tree_map(jnp.copy, critic)},
        "opt": {"actor": _actor_opt(config).init(actor),
                "critic": optax.adam(config.critic_lr).init(critic),
                "value": optax.adam(config.value_lr).init(value)},
        "step": jnp.zeros((), jnp.int32),
    }


def update(config: IQLConfig, state, batch, key):
    del key  # every IQL loss is deterministic given the batch
    act_dim = batch["actions"].shape[-1]
    actor_net, critic_net, value_net = _nets(config, act_dim)
    params, opt = state["params"], state["opt"]
    obs, actions = batch["observations"], batch["actions"]

    # The order follows the authors' code: V from the target critic, then the actor with the
    # new V, then Q towards r + γ·V'(s') with the new V.
    q_target = critic_net.apply(state["target"]["critic"], obs, actions).min(axis=0)

    def value_loss_fn(p):
        v = value_net.apply(p, obs)
        return jnp.mean(expectile_loss(q_target - v, config.expectile)), v

    (v_loss, v), grads = jax.value_and_grad(value_loss_fn, has_aux=True)(params["value"])
    updates, value_opt = optax.adam(config.value_lr).update(grads, opt["value"])
    value = optax.apply_updates(params["value"], updates)

    adv = q_target - value_net.apply(value, obs)
    weights = awr_weights(adv, config.temperature, config.max_weight)

    def actor_loss_fn(p):
        mean, log_std = actor_net.apply(p, obs)
        return -jnp.mean(weights * gaussian_log_prob(actions, mean, log_std))

    a_loss, grads = jax.value_and_grad(actor_loss_fn)(params["actor"])
    updates, actor_opt = _actor_opt(config).update(grads, opt["actor"])
    actor = optax.apply_updates(params["actor"], updates)

    next_v = value_net.apply(value, batch["next_observations"])
    y = batch["rewards"] + config.discount * (1.0 - batch["dones"]) * next_v

    def critic_loss_fn(p):
        q = critic_net.apply(p, obs, actions)
        return jnp.mean(jnp.sum((q - y) ** 2, axis=0)), q

    (q_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(params["critic"])
    updates, critic_opt = optax.adam(config.critic_lr).update(grads, opt["critic"])
    critic = optax.apply_updates(params["critic"], updates)

    state = {
        "params": {"actor": actor, "critic": critic, "value": value},
        "target": {"critic": soft_update(state["target"]["critic"], critic, config.tau)},
        "opt": {"actor": actor_opt, "critic": critic_opt, "value": value_opt},
        "step": state["step"] + 1,
    }
    metrics = {"value_loss": v_loss, "critic_loss": q_loss, "actor_loss": a_loss,
               "v_mean": jnp.mean(v), "q_mean": jnp.mean(q), "adv_mean": jnp.mean(adv),
               "weight_mean": jnp.mean(weights)}
    return state, metrics


def act(config: IQLConfig, params, obs):
    """The policy's mean: the deterministic action used for evaluation."""
    act_dim = params["actor"]["params"]["log_std"].shape[-1]
    actor_net = GaussianActor(config.hidden, act_dim, config.log_std_min, config.log_std_max)
    return actor_net.apply(params["actor"], obs)[0]
