"""The one-step backward model of Fig. 4: an MLP reverse model with no history.

It factorises one backward step as P(a | s') · P(s | s', a) · P(r | s, a, s') and is
generated from the same start states, for the same lengths, as RT, returning the same
`Generated` record, so every audit and plot treats it exactly like RT. With no attention
there is no weighting: its per-step reliability is the VAE error of the step alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn
import optax
from rtaug.progress import progress_bar

from rtaug.data import Dataset
from rtaug.generate.generation import Generated, GenerationConfig, select_starts
from rtaug.generate.model import A, R_, S, log_prob, sample
from rtaug.generate.reliability import truncate
from rtaug.generate.spec import Spec
from rtaug.generate.train import CHUNK, TrainedVAE, adam_schedule
from rtaug.nets.mlp import MLP
from rtaug.ranges import COUNT, POSITIVE, SEED, check_ranges, ranged


@dataclass
class BackwardMLPConfig:
    hidden: tuple = (256, 256)
    batch_size: int = ranged(COUNT, 256)
    steps: int = ranged(COUNT, 2000)
    lr: float = ranged(POSITIVE, 1e-3)
    seed: int = ranged(SEED, 0)

    def __post_init__(self):
        check_ranges(self)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


class BackwardMLP(nn.Module):
    spec: Spec
    hidden: tuple

    def setup(self):
        sp = self.spec
        state_out = sp.n_displacements if sp.obs_kind == "discrete" else 2 * sp.obs_dim
        action_out = sp.num_actions if sp.act_kind == "discrete" else 2 * sp.act_dim
        reward_out = sp.n_rewards if sp.rew_kind == "discrete" else 2
        self.action_net = MLP(self.hidden, action_out)
        self.state_net = MLP(self.hidden, state_out)
        self.reward_net = MLP(self.hidden, reward_out)

    def _a(self, a):
        sp = self.spec
        if sp.act_kind == "discrete":
            return jax.nn.one_hot(a.astype(jnp.int32), sp.num_actions)
        return sp.act_input(a)

    def action_out(self, s_next):
        return self.action_net(self.spec.obs_input(s_next))

    def state_out(self, s_next, a):
        return self.state_net(jnp.concatenate([self.spec.obs_input(s_next), self._a(a)], -1))

    def reward_out(self, s, a, s_next):
        sp = self.spec
        return self.reward_net(jnp.concatenate([sp.obs_input(s), self._a(a), sp.obs_input(s_next)], -1))

    def __call__(self, s, a, r, s_next):
        """log P(a|s') + log P(s|s',a) + log P(r|s,a,s') per transition."""
        sp = self.spec
        return (
            log_prob(sp, A, self.action_out(s_next), a)
            + log_prob(sp, S, self.state_out(s_next, a), s, s_next)
            + log_prob(sp, R_, self.reward_out(s, a, s_next), r)
        )


@dataclass
class TrainedBackwardMLP:
    spec: Spec
    config: BackwardMLPConfig
    params: dict

    @property
    def model(self) -> BackwardMLP:
        return BackwardMLP(self.spec, tuple(self.config.hidden))


def train_backward_mlp(data: Dataset, spec: Spec, config: BackwardMLPConfig, progress: bool = True) -> TrainedBackwardMLP:
    model = BackwardMLP(spec, tuple(config.hidden))
    arrays = (data.observations, data.actions, data.rewards, data.next_observations)
    rng = np.random.default_rng(config.seed)
    params = jax.jit(model.init)(jax.random.PRNGKey(config.seed), *(x[:2] for x in arrays))
    opt = adam_schedule(config.lr, config.steps, 50, 0.0, 10.0)
    opt_state = opt.init(params)

    def update(carry, batch):
        p, o = carry
        loss, grads = jax.value_and_grad(lambda p: -jnp.mean(model.apply(p, *batch)))(p)
        updates, o = opt.update(grads, o, p)
        return (optax.apply_updates(p, updates), o), loss

    run_chunk = jax.jit(lambda carry, batches: jax.lax.scan(update, carry, batches))
    bar = progress_bar(total=config.steps, desc="train backward MLP", progress=progress, unit="update")
    done = 0
    while done < config.steps:
        n = min(CHUNK * 4, config.steps - done)
        idx = rng.integers(0, len(data), (n, config.batch_size))
        (params, opt_state), losses = run_chunk((params, opt_state), tuple(x[idx] for x in arrays))
        done += n
        bar.update(n)
        bar.set_postfix(loss=f"{float(losses[-1]):.3f}")
    bar.close()
    return TrainedBackwardMLP(spec, config, params)


def generate_backward_mlp(
    data: Dataset,
    trained: TrainedBackwardMLP,
    vae: TrainedVAE,
    start_rows: np.ndarray,
    lengths: np.ndarray,
    seed: int = 0,
    beta: float = 1.0,
) -> Generated:
    """Roll the one-step reverse model back from each start state for exactly `lengths[h]` steps."""
    spec, model, params = trained.spec, trained.model, trained.params
    start_rows = np.asarray(start_rows, np.int64)
    lengths = np.asarray(lengths, np.int64)
    L = max(int(lengths.max()), 1)

    @jax.jit
    def run(s_start, key):
        def one_step(carry, _):
            s_next, key = carry
            k1, k2, k3, key = jax.random.split(key, 4)
            a, _ = sample(spec, A, model.apply(params, s_next, method=BackwardMLP.action_out), k1)
            s, _ = sample(spec, S, model.apply(params, s_next, a, method=BackwardMLP.state_out), k2, s_next)
            r, _ = sample(spec, R_, model.apply(params, s, a, s_next, method=BackwardMLP.reward_out), k3)
            return (s, key), (s, a, r, s_next)

        _, rec = jax.lax.scan(one_step, (s_start, key), None, length=L)
        return tuple(jnp.swapaxes(x, 0, 1) for x in rec)

    s, a, r, s_next = (np.asarray(x) for x in run(jnp.asarray(data.observations[start_rows]), jax.random.PRNGKey(seed)))
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    dist = np.asarray(vae.dist(jnp.asarray(flat(s)), jnp.asarray(flat(a)), jnp.asarray(flat(s_next)))).reshape(s.shape[:2])
    kept = np.arange(L)[None, :] < lengths[:, None]
    return Generated(
        direction="backward",
        observations=s,
        actions=a,
        rewards=r,
        next_observations=s_next,
        dist=dist,
        reliability=dist,
        kept=kept,
        start_rows=start_rows,
        alpha=vae.alpha,
        beta=beta,
        config={"generator": "backward-mlp", **trained.config.to_dict(), "seed": seed},
    )


def generate_backward_mlp_config(
    data: Dataset,
    trained: TrainedBackwardMLP,
    vae: TrainedVAE,
    config: GenerationConfig,
    start_rows: np.ndarray | None = None,
    dynamics=None,
    reward_model=None,
) -> Generated:
    """The baseline under RT's generation settings, for `rtaug augment`: the same start states
    as `generate` draws with the same seed, `max_length` steps, the configured DIST, and, having
    no attention, Γ as the running sum of DIST; α is the same quantile of that sum over real
    trajectories next to the same kind of start states, as for RT. Rewards as `generate` writes
    them (`config.reward`): the reward model's where it is used, else the MLP's own draw."""
    from rtaug.data.episodes import reward_to_go
    from rtaug.generate.generation import _forced_steps, dist_function, resolve_reward, start_kind

    how = start_kind(config, "backward")
    if start_rows is None:
        start_rows = select_starts(data, config.num_trajectories, how, np.random.default_rng(config.seed))
    start_rows = np.asarray(start_rows, np.int64)
    L = config.max_length
    g = generate_backward_mlp(data, trained, vae, start_rows, np.full(len(start_rows), L),
                              seed=config.seed, beta=config.beta)
    dist_fn = dist_function(config.dist, vae, dynamics)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    reward_used = resolve_reward(config.reward, reward_model)
    if reward_used == "model":
        g.rewards = reward_model.predict(flat(g.observations), flat(g.actions),
                                         flat(g.next_observations)).reshape(g.kept.shape)
    g.dist = dist_fn(flat(g.observations), flat(g.actions), flat(g.next_observations)).reshape(g.kept.shape)
    g.reliability = np.cumsum(g.dist, axis=1)
    bounds = data.episodes()
    real_rows = select_starts(data, config.alpha_trajectories, how, np.random.default_rng(config.seed + 1))
    f, valid = _forced_steps(data, reward_to_go(data.rewards, bounds, 0.99), bounds, real_rows, L, "backward")
    nxt = np.concatenate([data.observations[real_rows][:, None], f["s"][:, :-1]], axis=1)
    real_d = dist_fn(flat(f["s"]), flat(f["a"]), flat(nxt)).reshape(valid.shape)
    real_gamma = np.cumsum(np.where(valid, real_d, 0.0), axis=1)[valid]
    if real_gamma.size == 0:
        raise ValueError("α: no real step lies next to the start states; cannot measure the data's reliability")
    g.alpha = float(np.quantile(real_gamma, config.alpha_quantile))
    g.real_reliability = real_gamma
    g.reward_scale = trained.spec.reward_range
    if config.truncation:
        g.kept = truncate(g.reliability, g.alpha)[1]
    g.config = {**g.config, "generation": config.to_dict(), "alpha": g.alpha, "reward_scale": g.reward_scale,
                "reward_used": "model" if reward_used == "model" else "sample"}
    return g
