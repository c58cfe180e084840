"""BCQ, continuous actions (Fujimoto, Meger & Precup, "Off-Policy Deep Reinforcement Learning
without Exploration", 2019).

Actions are only ever chosen among candidates a generative model (a conditional VAE) deems
likely under the data, each nudged by a perturbation model ξ_φ(s, a) bounded by Φ·max_action;
the critic's target takes a soft clipped double-Q (λ·min + (1 − λ)·max) over n candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rtaug.algos.common import MLP, Critics, first_critic, soft_update
from rtaug.nets.onednn import MODES as MATMULS
from rtaug.ranges import COUNT, FRACTION, NONNEGATIVE, POSITIVE, UNIT_RATE, check_ranges, ranged


@dataclass(frozen=True)
class BCQConfig:
    vae_hidden: tuple[int, ...] = ranged(COUNT, (750, 750))  # Fujimoto et al. 2019, App. D (VAE)
    latent_scale: int = ranged(COUNT, 2)  # App. D: latent dimension = 2 × action dimension
    latent_clip: float = ranged(POSITIVE, 0.5)  # App. D: z ~ N(0, 1) clipped to [−0.5, 0.5] when sampling
    kl_weight: float = ranged(NONNEGATIVE, 0.5)  # App. D: recon + 0.5·KL
    actor_hidden: tuple[int, ...] = ranged(COUNT, (400, 300))  # App. D (perturbation model)
    critic_hidden: tuple[int, ...] = ranged(COUNT, (400, 300))  # App. D
    phi: float = ranged(NONNEGATIVE, 0.05)  # App. D / §4: perturbation bounded by Φ·max_action
    lmbda: float = ranged(FRACTION, 0.75)  # App. D: λ of the soft clipped double-Q target
    n_samples: int = ranged(COUNT, 10)  # App. D: n actions sampled per state, for targets and for acting
    lr: float = ranged(POSITIVE, 1e-3)  # App. D: Adam, lr 10⁻³ for every network
    batch_size: int = ranged(COUNT, 100)  # App. D
    discount: float = ranged(FRACTION, 0.99)  # App. D
    tau: float = ranged(UNIT_RATE, 0.005)  # App. D
    normalize_obs: bool = False  # authors' code feeds raw states
    # authors' code: PyTorch's nn.Linear initialisation (`MLP.weight_init`); with Flax's, raw Maze2D
    # states start the action decoder's tanh saturated for some seeds (docs/decisions.md)
    weight_init: str = "torch"
    # "xla", or every network's matmuls through oneDNN: "onednn-bf16" takes this CPU's AMX
    # (bfloat16 products, float32 sums; docs/performance.md). Left out of stage keys at "xla".
    matmul: str = "xla"

    def __post_init__(self):
        check_ranges(self)
        if self.matmul not in MATMULS:
            raise ValueError(f"BCQConfig.matmul must be one of {MATMULS}, got {self.matmul!r}")

    # One setting for every domain, raw states included (the authors'). Normalising Maze2D's
    # states also cures the saturated decoder, but cost BCQ half its score on mixed maze data in
    # the first 9k updates (docs/learners.md, "BCQ on Maze2D").
    DOMAIN_DEFAULTS = {}


Config = BCQConfig


def perturb(actions, raw, phi):
    """a + Φ·tanh(raw), clipped to the action box [−1, 1]: at most Φ away from a."""
    return jnp.clip(actions + phi * jnp.tanh(raw), -1.0, 1.0)


class VAE(nn.Module):
    hidden: tuple
    act_dim: int
    latent_dim: int
    weight_init: str = "torch"
    matmul: str = "xla"

    def setup(self):
        self.encoder = MLP(self.hidden, 2 * self.latent_dim, weight_init=self.weight_init, matmul=self.matmul)
        self.decoder = MLP(self.hidden, self.act_dim, weight_init=self.weight_init, matmul=self.matmul)

    def __call__(self, obs, actions, key):
        mean, log_std = jnp.split(self.encoder(jnp.concatenate([obs, actions], -1)), 2, axis=-1)
        log_std = jnp.clip(log_std, -4.0, 15.0)  # authors' code
        z = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        return self.decode(obs, z), mean, log_std

    def decode(self, obs, z):
        return jnp.tanh(self.decoder(jnp.concatenate([obs, z], -1)))


class Perturbation(nn.Module):
    hidden: tuple
    act_dim: int
    phi: float
    weight_init: str = "torch"
    matmul: str = "xla"

    @nn.compact
    def __call__(self, obs, actions):
        raw = MLP(self.hidden, self.act_dim, weight_init=self.weight_init, matmul=self.matmul,
                  name="xi")(jnp.concatenate([obs, actions], -1))
        return perturb(actions, raw, self.phi)


def _nets(config, act_dim):
    vae = VAE(config.vae_hidden, act_dim, config.latent_scale * act_dim, config.weight_init, config.matmul)
    return (vae, Perturbation(config.actor_hidden, act_dim, config.phi, config.weight_init, config.matmul),
            Critics(config.critic_hidden, 2, config.weight_init, config.matmul))


def _sample_candidates(config, vae_net, vae_params, obs, key, n):
    """n VAE actions per state: obs (..., obs_dim) -> (..., n, act_dim), with obs broadcast."""
    latent_dim = config.latent_scale * vae_net.act_dim
    z = jnp.clip(jax.random.normal(key, obs.shape[:-1] + (n, latent_dim)),
                 -config.latent_clip, config.latent_clip)
    obs_n = jnp.broadcast_to(obs[..., None, :], obs.shape[:-1] + (n, obs.shape[-1]))
    return obs_n, vae_net.apply(vae_params, obs_n, z, method=VAE.decode)


def init(config: BCQConfig, obs_dim: int, act_dim: int, key):
    vae_net, actor_net, critic_net = _nets(config, act_dim)
    k_v, k_a, k_q, k_z = jax.random.split(key, 4)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    vae = vae_net.init(k_v, obs, act, k_z)
    actor, critic = actor_net.init(k_a, obs, act), critic_net.init(k_q, obs, act)
    adam = optax.adam(config.lr)
    return {
        "params": {"vae": vae, "actor": actor, "critic": critic},
        "target": {"actor": jax.tree_util.tree_map(jnp.copy, actor),
                   "critic": jax.tree_util.tree_map(jnp.copy, critic)},
        "opt": {"vae": adam.init(vae), "actor": adam.init(actor), "critic": adam.init(critic)},
        "step": jnp.zeros((), jnp.int32),
    }


def update(config: BCQConfig, state, batch, key):
    act_dim = batch["actions"].shape[-1]
    vae_net, actor_net, critic_net = _nets(config, act_dim)
    params, target, opt = state["params"], state["target"], state["opt"]
    obs, actions = batch["observations"], batch["actions"]
    adam = optax.adam(config.lr)
    k_vae, k_next, k_actor = jax.random.split(key, 3)

    # Generative model: reconstruct the data's actions (the order follows the authors' code).
    def vae_loss_fn(p):
        recon, mean, log_std = vae_net.apply(p, obs, actions, k_vae)
        recon_loss = jnp.mean((recon - actions) ** 2)
        kl = -0.5 * jnp.mean(1.0 + 2.0 * log_std - mean**2 - jnp.exp(2.0 * log_std))
        return recon_loss + config.kl_weight * kl, (recon_loss, kl)

    (vae_loss, (recon_loss, kl)), grads = jax.value_and_grad(vae_loss_fn, has_aux=True)(params["vae"])
    updates, vae_opt = adam.update(grads, opt["vae"])
    vae = optax.apply_updates(params["vae"], updates)

    # Critic target: best of n perturbed candidates at s', each scored by λ·min + (1 − λ)·max.
    next_obs_n, next_cand = _sample_candidates(config, vae_net, vae, batch["next_observations"],
                                               k_next, config.n_samples)
    next_a = actor_net.apply(target["actor"], next_obs_n, next_cand)
    next_qs = critic_net.apply(target["critic"], next_obs_n, next_a)  # (2, B, n)
    soft_q = config.lmbda * next_qs.min(axis=0) + (1.0 - config.lmbda) * next_qs.max(axis=0)
    y = batch["rewards"] + config.discount * (1.0 - batch["dones"]) * soft_q.max(axis=-1)

    def critic_loss_fn(p):
        q = critic_net.apply(p, obs, actions)
        return jnp.mean(jnp.sum((q - y) ** 2, axis=0)), q

    (q_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(params["critic"])
    updates, critic_opt = adam.update(grads, opt["critic"])
    critic = optax.apply_updates(params["critic"], updates)

    # Perturbation model: maximise Q1 of the perturbed VAE action.
    cand = jax.lax.stop_gradient(_sample_candidates(config, vae_net, vae, obs, k_actor, 1)[1][:, 0])

    def actor_loss_fn(p):
        return -jnp.mean(first_critic(config.critic_hidden, critic, obs, actor_net.apply(p, obs, cand),
                                      config.matmul))

    a_loss, grads = jax.value_and_grad(actor_loss_fn)(params["actor"])
    updates, actor_opt = adam.update(grads, opt["actor"])
    actor = optax.apply_updates(params["actor"], updates)

    state = {
        "params": {"vae": vae, "actor": actor, "critic": critic},
        "target": soft_update(target, {"actor": actor, "critic": critic}, config.tau),
        "opt": {"vae": vae_opt, "actor": actor_opt, "critic": critic_opt},
        "step": state["step"] + 1,
    }
    metrics = {"vae_loss": vae_loss, "recon_loss": recon_loss, "kl": kl, "critic_loss": q_loss,
               "actor_loss": a_loss, "q_mean": jnp.mean(q)}
    return state, metrics


def act(config: BCQConfig, params, obs, key=None):
    """Highest-Q1 of `n_samples` perturbed VAE candidates. A fixed key by default, so the same
    observation always gets the same action (deterministic evaluation)."""
    act_dim = params["actor"]["params"]["xi"]["out"]["bias"].shape[-1]
    vae_net, actor_net, _ = _nets(config, act_dim)
    key = jax.random.PRNGKey(0) if key is None else key
    obs_n, cand = _sample_candidates(config, vae_net, params["vae"], obs, key, config.n_samples)
    a = actor_net.apply(params["actor"], obs_n, cand)  # (..., n, act_dim)
    q1 = first_critic(config.critic_hidden, params["critic"], obs_n, a, config.matmul)  # (..., n)
    best = jnp.argmax(q1, axis=-1)
    return jnp.take_along_axis(a, best[..., None, None], axis=-2)[..., 0, :]
