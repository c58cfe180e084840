"""CQL (Kumar, Zhou, Tucker & Levine, "Conservative Q-Learning for Offline RL", 2020), CQL(H)
on top of SAC, as in the authors' D4RL code (github.com/aviralkumar2907/CQL, d4rl/).

Each critic adds α·(log Σ_a exp Q(s, a) − Q(s, a_data)) to its Bellman error: Q is pushed down
on actions the policy or a uniform proposal would pick and up on the dataset's actions. The
log-sum-exp over the continuous action space is estimated by importance sampling from 10
uniform actions and 10 policy actions at s and at s' (min_q_version 3 of the authors' code).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rtaug.algos.common import MLP, Critics, gaussian_log_prob, soft_update
from rtaug.nets.onednn import MODES as MATMULS
from rtaug.ranges import COUNT, FRACTION, NONNEGATIVE, POSITIVE, UNIT_RATE, check_ranges, ranged


@dataclass(frozen=True)
class CQLConfig:
    # Authors' code, cql_mujoco_new.py: layer_size 256, hidden_sizes [M, M, M] for Q and policy.
    hidden: tuple[int, ...] = ranged(COUNT, (256, 256, 256))
    policy_lr: float = ranged(POSITIVE, 1e-4)  # Kumar et al. 2020 App. F; authors' code (--policy_lr)
    critic_lr: float = ranged(POSITIVE, 3e-4)  # authors' code (qf_lr)
    batch_size: int = ranged(COUNT, 256)  # authors' code (algorithm_kwargs.batch_size)
    discount: float = ranged(FRACTION, 0.99)  # authors' code
    tau: float = ranged(UNIT_RATE, 0.005)  # authors' code (soft_target_tau)
    n_actions: int = ranged(COUNT, 10)  # authors' code (num_random)
    temp: float = ranged(POSITIVE, 1.0)  # authors' code (temp)
    # α: "set to 5.0 or 10.0 if not using lagrange" (authors' code, --min_q_weight help).
    cql_weight: float = ranged(NONNEGATIVE, 5.0)
    lagrange: bool = False  # fixed α on MuJoCo (App. F)
    target_action_gap: float = ranged(NONNEGATIVE, 5.0)  # authors' code (--lagrange_thresh default), used if lagrange
    # Policy BC warm-up updates: the authors' --policy_eval_start, 40,000 of their 1M updates.
    # None: the same share (BC_SHARE) of the run's updates, set by `for_budget`; a fixed 40,000 would
    # make a shorter run behaviour cloning throughout (the cpu protocol's 30,000, say).
    bc_steps: int | None = ranged(NONNEGATIVE, None)
    max_target_backup: bool = False  # authors' code (--max_q_backup False)
    backup_entropy: bool = False  # authors' code (--deterministic_backup True, Eq. 3)
    target_entropy: float | None = None  # None: −act_dim (authors' code, SAC default)
    log_std_min: float = -20.0  # rlkit TanhGaussianPolicy (the authors' policy)
    log_std_max: float = 2.0  # rlkit TanhGaussianPolicy
    normalize_obs: bool = False  # authors' code feeds raw states
    reward_scale: float = 1.0
    reward_bias: float = 0.0
    # "xla", or the networks' matmuls through oneDNN: "onednn-bf16" takes this CPU's AMX
    # (bfloat16 products, float32 sums; docs/performance.md). Left out of stage keys at "xla".
    matmul: str = "xla"

    def __post_init__(self):
        check_ranges(self)
        if self.matmul not in MATMULS:
            raise ValueError(f"CQLConfig.matmul must be one of {MATMULS}, got {self.matmul!r}")

    def for_budget(self, steps: int) -> CQLConfig:
        """This config for a run of `steps` updates: `bc_steps` None becomes BC_SHARE of them."""
        return self if self.bc_steps is not None else replace(self, bc_steps=round(BC_SHARE * steps))

    DOMAIN_DEFAULTS = {
        "mujoco": {},
        "maze2d": {},  # not in the paper: MuJoCo settings
        # Authors' cql_antmaze_new.py: rewards (r − 0.5)·4, Lagrangian α with τ = 5
        # (--lagrange_thresh default) and min_q_weight left at its default 1.0.
        "antmaze": {"lagrange": True, "target_action_gap": 5.0, "cql_weight": 1.0,
                    "reward_scale": 4.0, "reward_bias": -2.0},
    }


Config = CQLConfig
BC_SHARE = 40_000 / 1_000_000  # the authors' warm-up as a share of their run


# ------------------------------------------------------------------------------------- the penalty


def cql_logsumexp(q_rand, q_curr, q_next, logp_curr, logp_next, act_dim, temp):
    """Importance-sampled temp·log Σ exp(Q/temp) over actions, per state, shape (..., B).

    q_*: (..., B, N) values at N uniform actions, N policy actions at s, N policy actions at s';
    each proposal's log density is subtracted (uniform on [−1, 1]^d has density 0.5^d).
    """
    uniform_log_density = act_dim * jnp.log(0.5)
    cat = jnp.concatenate([q_rand - uniform_log_density, q_next - logp_next, q_curr - logp_curr], -1)
    return temp * jax.nn.logsumexp(cat / temp, axis=-1)


def cql_penalty(q_rand, q_curr, q_next, logp_curr, logp_next, q_data, act_dim, temp):
    """mean_s[logsumexp] − mean Q(s, a_data), per critic (leading axes kept)."""
    lse = cql_logsumexp(q_rand, q_curr, q_next, logp_curr, logp_next, act_dim, temp)
    return lse.mean(axis=-1) - q_data.mean(axis=-1)


# ------------------------------------------------------------------------------------------ policy


class TanhGaussianActor(nn.Module):
    hidden: tuple
    act_dim: int
    log_std_min: float
    log_std_max: float
    matmul: str = "xla"

    @nn.compact
    def __call__(self, obs):
        out = MLP(self.hidden, 2 * self.act_dim, matmul=self.matmul, name="pi")(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def tanh_log_prob(u, mean, log_std):
    """log density of a = tanh(u), u ~ N(mean, std); log(1 − tanh²u) in its overflow-free form."""
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return gaussian_log_prob(u, mean, log_std) - jnp.sum(log_det, axis=-1)


def sample(mean, log_std, key, n: int | None = None):
    """a = tanh(u), u ~ N(mean, std) and log π(a); with `n`, n samples per state on a new axis -2."""
    if n is not None:
        mean, log_std = mean[..., None, :], log_std[..., None, :]
        shape = mean.shape[:-2] + (n, mean.shape[-1])
    else:
        shape = mean.shape
    u = mean + jnp.exp(log_std) * jax.random.normal(key, shape)
    return jnp.tanh(u), tanh_log_prob(u, mean, log_std)


# ------------------------------------------------------------------------------------------ update


def _nets(config, act_dim):
    actor = TanhGaussianActor(config.hidden, act_dim, config.log_std_min, config.log_std_max, config.matmul)
    return actor, Critics(config.hidden, 2, matmul=config.matmul)


def init(config: CQLConfig, obs_dim: int, act_dim: int, key):
    actor_net, critic_net = _nets(config, act_dim)
    k_a, k_q = jax.random.split(key)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    actor, critic = actor_net.init(k_a, obs), critic_net.init(k_q, obs, act)
    # log α = 0 (α = 1) and log α' = 0 at the start, as in the authors' code.
    log_alpha, log_alpha_prime = jnp.zeros(()), jnp.zeros(())
    return {
        "params": {"actor": actor, "critic": critic, "log_alpha": log_alpha,
                   "log_alpha_prime": log_alpha_prime},
        "target": {"critic": jax.tree_util.tree_map(jnp.copy, critic)},
        "opt": {"actor": optax.adam(config.policy_lr).init(actor),
                "critic": optax.adam(config.critic_lr).init(critic),
                # The authors' code tunes α with the policy's lr and α' with the critics'.
                "log_alpha": optax.adam(config.policy_lr).init(log_alpha),
                "log_alpha_prime": optax.adam(config.critic_lr).init(log_alpha_prime)},
        "step": jnp.zeros((), jnp.int32),
    }


def update(config: CQLConfig, state, batch, key):
    if config.bc_steps is None:
        raise ValueError("CQLConfig.bc_steps is None: set it, or call config.for_budget(steps) "
                         "(rtaug.train.train does this for you)")
    act_dim = batch["actions"].shape[-1]
    actor_net, critic_net = _nets(config, act_dim)
    params, opt = state["params"], state["opt"]
    obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
    B, N = actions.shape[0], config.n_actions
    target_entropy = -float(act_dim) if config.target_entropy is None else config.target_entropy
    k_pi, k_next, k_rand, k_curr_n, k_next_n = jax.random.split(key, 5)

    # Entropy temperature first, so the policy loss sees the updated α (as the authors' code).
    mean, log_std = actor_net.apply(params["actor"], obs)
    _, log_pi = sample(mean, log_std, k_pi)
    alpha_grad = jax.grad(lambda la: -jnp.mean(la * jax.lax.stop_gradient(log_pi + target_entropy)))
    updates, alpha_opt = optax.adam(config.policy_lr).update(alpha_grad(params["log_alpha"]), opt["log_alpha"])
    log_alpha = optax.apply_updates(params["log_alpha"], updates)
    alpha = jnp.exp(log_alpha)

    # Policy: SAC's objective, or a BC warm-up (max log π(a_data)) for the first `bc_steps`.
    def actor_loss_fn(p):
        mean, log_std = actor_net.apply(p, obs)
        a, log_pi = sample(mean, log_std, k_pi)
        q_pi = critic_net.apply(params["critic"], obs, a).min(axis=0)
        sac = jnp.mean(alpha * log_pi - q_pi)
        # atanh of ±1 is infinite; the clip keeps the unused branch finite so where() stays NaN-free.
        clipped = jnp.clip(actions, -1.0 + 1e-6, 1.0 - 1e-6)
        bc = jnp.mean(alpha * log_pi - tanh_log_prob(jnp.arctanh(clipped), mean, log_std))
        return jnp.where(state["step"] < config.bc_steps, bc, sac), (log_pi, q_pi)

    (a_loss, (log_pi, q_pi)), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(params["actor"])
    updates, actor_opt = optax.adam(config.policy_lr).update(grads, opt["actor"])
    actor = optax.apply_updates(params["actor"], updates)

    # Bellman target from the pre-update policy (as the authors' code: all losses, one batch).
    next_mean, next_log_std = actor_net.apply(params["actor"], next_obs)
    if config.max_target_backup:
        # Max over N policy actions per critic, then min over critics (authors' --max_q_backup);
        # no entropy term with this backup, as in the authors' code.
        next_a, _ = sample(next_mean, next_log_std, k_next, N)
        next_q = critic_net.apply(state["target"]["critic"], next_obs[:, None], next_a).max(axis=-1)
        next_q = next_q.min(axis=0)
    else:
        next_a, next_logp = sample(next_mean, next_log_std, k_next)
        next_q = critic_net.apply(state["target"]["critic"], next_obs, next_a).min(axis=0)
    if config.backup_entropy and not config.max_target_backup:
        next_q = next_q - alpha * next_logp
    y = batch["rewards"] + config.discount * (1.0 - batch["dones"]) * next_q

    # Proposal actions for the log-sum-exp, all without gradient (detached in the authors' code).
    rand_a = jax.random.uniform(k_rand, (B, N, act_dim), minval=-1.0, maxval=1.0)
    curr_a, curr_logp = sample(mean, log_std, k_curr_n, N)
    nxt_a, nxt_logp = sample(next_mean, next_log_std, k_next_n, N)
    proposals = jax.lax.stop_gradient(jnp.concatenate([actions[:, None], rand_a, curr_a, nxt_a], axis=1))
    curr_logp, nxt_logp = jax.lax.stop_gradient(curr_logp), jax.lax.stop_gradient(nxt_logp)
    alpha_prime = jnp.clip(jnp.exp(params["log_alpha_prime"]), 0.0, 1e6)

    def critic_loss_fn(p):
        # One critic call on (B, 1 + 3N) actions: the data action and the three proposals share
        # every matmul, which is where CQL spends nearly all its compute.
        q_all = critic_net.apply(p, obs[:, None], proposals)  # (2, B, 1 + 3N)
        q_data = q_all[..., 0]
        q_rand, q_curr, q_next = jnp.split(q_all[..., 1:], 3, axis=-1)
        bellman = jnp.mean((q_data - y) ** 2, axis=-1)  # per critic
        penalty = config.cql_weight * cql_penalty(q_rand, q_curr, q_next, curr_logp, nxt_logp,
                                                  q_data, act_dim, config.temp)
        if config.lagrange:
            penalty_term = jax.lax.stop_gradient(alpha_prime) * (penalty - config.target_action_gap)
        else:
            penalty_term = penalty
        return jnp.sum(bellman + penalty_term), (bellman, penalty, q_data)

    (q_loss, (bellman, penalty, q_data)), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(
        params["critic"])
    updates, critic_opt = optax.adam(config.critic_lr).update(grads, opt["critic"])
    critic = optax.apply_updates(params["critic"], updates)

    log_alpha_prime, alpha_prime_opt = params["log_alpha_prime"], opt["log_alpha_prime"]
    if config.lagrange:
        # α' rises while the penalty exceeds the target gap, falls once it is below.
        gap = jax.lax.stop_gradient(penalty - config.target_action_gap)
        ap_grad = jax.grad(lambda la: -0.5 * jnp.sum(jnp.clip(jnp.exp(la), 0.0, 1e6) * gap))
        updates, alpha_prime_opt = optax.adam(config.critic_lr).update(ap_grad(log_alpha_prime), alpha_prime_opt)
        log_alpha_prime = optax.apply_updates(log_alpha_prime, updates)

    state = {
        "params": {"actor": actor, "critic": critic, "log_alpha": log_alpha,
                   "log_alpha_prime": log_alpha_prime},
        "target": {"critic": soft_update(state["target"]["critic"], critic, config.tau)},
        "opt": {"actor": actor_opt, "critic": critic_opt, "log_alpha": alpha_opt,
                "log_alpha_prime": alpha_prime_opt},
        "step": state["step"] + 1,
    }
    metrics = {"critic_loss": q_loss, "bellman": jnp.mean(bellman), "cql_penalty": jnp.mean(penalty),
               "actor_loss": a_loss, "alpha": alpha, "alpha_prime": alpha_prime,
               "q_data": jnp.mean(q_data), "q_pi": jnp.mean(q_pi), "entropy": -jnp.mean(log_pi)}
    return state, metrics


def act(config: CQLConfig, params, obs):
    """tanh of the policy mean (rlkit's MakeDeterministic)."""
    act_dim = params["actor"]["params"]["pi"]["out"]["bias"].shape[-1] // 2
    mean, _ = _nets(config, act_dim)[0].apply(params["actor"], obs)
    return jnp.tanh(mean)
