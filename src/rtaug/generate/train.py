"""Training of RT's two learned parts: the sequence model (Alg. 1 lines 1-5) and the
reliability VAE with its threshold α (lines 6-11).

Both updates are pure functions, jitted and run in `lax.scan` chunks: batches for a chunk are
gathered in numpy up front, so Python is touched once per chunk, not once per update.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import jax
import jax.numpy as jnp
import optax
from rtaug.progress import progress_bar

from rtaug.data import Dataset
from rtaug.data.episodes import reward_to_go, window_rows
from rtaug.generate.model import RTConfig, RTModel
from rtaug.generate.spec import Spec
from rtaug.nets.vae import VAE, reconstruction_error, vae_loss
from rtaug.ranges import COUNT, POSITIVE, QUANTILE, SEED, check_ranges, ranged

CHUNK = 50  # updates per jitted scan: long enough to hide dispatch, short enough for a live progress bar


@dataclass
class TrainedRT:
    spec: Spec
    config: RTConfig
    params: dict
    history: list  # (step, loss, per-modality NLL) records

    @property
    def model(self) -> RTModel:
        return RTModel(self.spec, self.config)


def training_windows(data: Dataset, rtg: np.ndarray, bounds, start_rows, K: int, direction: str):
    """Windows of K steps in reading order, with each step's neighbouring state (its anchor).

    Backward, a step's anchor is its successor, the row's own `next_observations`, so the first
    step of a window has one too (it was once given its own state, a fake zero move). Forward,
    the anchor is the state of the row before, which a window starting an episode lacks.
    """
    rows, mask = window_rows(start_rows.reshape(-1), bounds, K, direction)
    shape = start_rows.shape + (K,)
    take = lambda x, r=rows: x[r].reshape(shape + x.shape[1:])
    if direction == "backward":
        anchor, anchor_valid = take(data.next_observations), mask
    else:
        ep_start = bounds[np.searchsorted(bounds[:, 1], rows[:, 0], side="right"), 0]
        prev = rows - 1
        anchor_valid = mask & (prev >= ep_start[:, None])
        anchor = take(data.observations, np.maximum(prev, 0))
    return (take(data.observations), take(data.actions), take(data.rewards), take(rtg), mask.reshape(shape),
            anchor, anchor_valid.reshape(shape), take(data.terminals))


def adam_schedule(lr, steps, warmup, weight_decay, grad_clip):
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(1, min(warmup, steps // 2)), max(steps, 2), lr * 0.1)
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adamw(schedule, weight_decay=weight_decay))


def train_sequence_model(data: Dataset, config: RTConfig, progress: bool = True, spec: Spec | None = None) -> TrainedRT:
    """Maximise Σ log P over windows of K steps read in `config.direction` (Eq. 2 or Eq. 10)."""
    spec = spec or Spec.fit(data, gamma=config.gamma, rtg_bins=config.rtg_bins)
    model = RTModel(spec, config)
    bounds = data.episodes()
    rtg = reward_to_go(data.rewards, bounds, config.gamma)
    rng = np.random.default_rng(config.seed)
    K, B = config.context_steps, config.batch_size

    init_batch = training_windows(data, rtg, bounds, rng.integers(0, len(data), (B,)), K, config.direction)
    # Jitted: an eager init dispatches the transformer op by op, seconds on every run.
    params = jax.jit(model.init)(jax.random.PRNGKey(config.seed), *init_batch)
    opt = adam_schedule(config.lr, config.steps, config.warmup, config.weight_decay, config.grad_clip)
    opt_state = opt.init(params)

    def loss_fn(p, batch):
        lp = model.apply(p, *batch)  # (4, B, K)
        n = jnp.maximum(batch[4].sum(), 1)
        nll = -lp.sum(axis=(1, 2)) / n  # per modality, per step
        return nll.sum(), nll

    def update(carry, batch):
        p, o = carry
        (loss, nll), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, batch)
        updates, o = opt.update(grads, o, p)
        return (optax.apply_updates(p, updates), o), (loss, nll)

    run_chunk = jax.jit(lambda carry, batches: jax.lax.scan(update, carry, batches))

    history = []
    done = 0
    bar = progress_bar(total=config.steps, desc=f"train RT ({config.direction})", progress=progress, unit="update")
    while done < config.steps:
        n = min(CHUNK, config.steps - done)
        batches = training_windows(data, rtg, bounds, rng.integers(0, len(data), (n, B)), K, config.direction)
        (params, opt_state), (losses, nlls) = run_chunk((params, opt_state), batches)
        done += n
        loss = float(losses[-1])
        history.append({"step": done, "loss": loss, **{f"nll_{k}": float(v) for k, v in zip(("s", "a", "r", "R"), nlls[-1])}})
        bar.update(n)
        bar.set_postfix(loss=f"{loss:.3f}")
    bar.close()
    return TrainedRT(spec, config, params, history)


# ---- the reliability VAE and α (Eq. 8, Alg. 1 lines 6-11) ---------------------------
@dataclass
class VAEConfig:
    latent_dim: int = ranged(COUNT, 8)
    hidden: tuple = (128, 128)
    batch_size: int = ranged(COUNT, 256)
    steps: int = ranged(COUNT, 2000)
    lr: float = ranged(POSITIVE, 1e-3)
    # 1.0 = the paper's maximum error over the data (choice: quantile)
    alpha_quantile: float = ranged(QUANTILE, 1.0)
    seed: int = ranged(SEED, 0)

    def __post_init__(self):
        check_ranges(self)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


@dataclass
class TrainedVAE:
    spec: Spec
    config: VAEConfig
    params: dict
    alpha: float

    @property
    def model(self) -> VAE:
        return VAE(self.spec.transition_dim, self.config.latent_dim, tuple(self.config.hidden))

    def dist(self, s, a, s_next):
        """DIST of transitions (s, a, s'): the VAE's reconstruction error (jnp, jit-friendly)."""
        return reconstruction_error(self.model, self.params, self.spec.transition_input(s, a, s_next))


def train_vae(data: Dataset, spec: Spec, config: VAEConfig, progress: bool = True) -> TrainedVAE:
    x_all = np.asarray(spec.transition_input(jnp.asarray(data.observations), jnp.asarray(data.actions), jnp.asarray(data.next_observations)))
    model = VAE(spec.transition_dim, config.latent_dim, tuple(config.hidden))
    key = jax.random.PRNGKey(config.seed)
    params = jax.jit(model.init)(key, x_all[:2], key)
    opt = adam_schedule(config.lr, config.steps, 50, 0.0, 10.0)
    opt_state = opt.init(params)
    rng = np.random.default_rng(config.seed)

    def update(carry, inp):
        p, o = carry
        x, k = inp
        loss, grads = jax.value_and_grad(lambda p: vae_loss(model, p, x, k))(p)
        updates, o = opt.update(grads, o, p)
        return (optax.apply_updates(p, updates), o), loss

    run_chunk = jax.jit(lambda carry, xs, ks: jax.lax.scan(update, carry, (xs, ks)))
    bar = progress_bar(total=config.steps, desc="train VAE", progress=progress, unit="update")
    done = 0
    while done < config.steps:
        n = min(CHUNK * 4, config.steps - done)
        xs = x_all[rng.integers(0, len(x_all), (n, config.batch_size))]
        key, sub = jax.random.split(key)
        (params, opt_state), losses = run_chunk((params, opt_state), xs, jax.random.split(sub, n))
        done += n
        bar.update(n)
        bar.set_postfix(loss=f"{float(losses[-1]):.4f}")
    bar.close()
    errors = np.concatenate([
        np.asarray(jax.jit(lambda x: reconstruction_error(model, params, x))(x_all[i:i + 65536]))
        for i in range(0, len(x_all), 65536)
    ])
    alpha = float(np.quantile(errors, config.alpha_quantile))
    return TrainedVAE(spec, config, params, alpha)
