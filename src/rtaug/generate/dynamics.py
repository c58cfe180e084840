"""An ensemble of one-step forward dynamics models P(s' | s, a), for a sharper DIST.

RT scores a generated transition (s, a, s') by DIST, its distance from what the true
dynamics would do (paper §3.1). The paper estimates DIST by the reliability VAE's
reconstruction error, which separates real from corrupted transitions only weakly (ROC AUC
about 0.6 on our audits): an autoencoder of (s, a, s') reconstructs any point near the data
manifold, whether or not s' follows from (s, a). A forward model asks exactly that question,
and a backward generator never consulted it, so its verdict is an independent check of a
backward step (CABI's "double check"); the ensemble's disagreement, with the aleatoric spread
it predicts, is the uncertainty MOPO and TATU penalise. Members differ in their initial
weights and in their bootstrap minibatches, and are trained at once, vmapped over a leading
member axis, so one ensemble costs about one network's dispatch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn
import optax
from flax import serialization
from rtaug.progress import progress_bar

from rtaug.data import Dataset
from rtaug.fileio import atomic_write_bytes, atomic_write_json
from rtaug.generate.io import read_config, read_weights
from rtaug.generate.model import LOG_STD_MAX, LOG_STD_MIN, S, log_prob
from rtaug.generate.spec import Spec
from rtaug.generate.train import CHUNK, adam_schedule
from rtaug.nets.mlp import MLP
from rtaug.ranges import COUNT, POSITIVE, SEED, check_ranges, ranged

KINDS = ("forward", "disagreement")
CONFIG_FILE, WEIGHTS_FILE = "dynamics.json", "dynamics.msgpack"


@dataclass
class DynamicsConfig:
    members: int = ranged(COUNT, 5)  # E
    hidden: tuple = (200, 200)
    batch_size: int = ranged(COUNT, 256)
    steps: int = ranged(COUNT, 3000)
    lr: float = ranged(POSITIVE, 1e-3)
    seed: int = ranged(SEED, 0)

    def __post_init__(self):
        check_ranges(self)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


class ForwardModel(nn.Module):
    """One member: P(s' | s, a), in the parametrisation of RT's own state head.

    Continuous states: a Gaussian over the normalised difference (s' − s) / delta_std, so the
    member learns the step, not the place. Discrete states: logits over displacements, read
    as a categorical over cells by `Spec.cell_logits`.
    """

    spec: Spec
    hidden: tuple

    @nn.compact
    def __call__(self, s, a):
        sp = self.spec
        if sp.act_kind == "discrete":
            a_in = jax.nn.one_hot(a.astype(jnp.int32).reshape(s.shape[:-1]), sp.num_actions)
        else:
            a_in = sp.act_input(a)
        out = sp.n_displacements if sp.obs_kind == "discrete" else 2 * sp.obs_dim
        return MLP(tuple(self.hidden), out, name="net")(jnp.concatenate([sp.obs_input(s), a_in], -1))


def _member_keys(config: DynamicsConfig):
    return jax.random.split(jax.random.PRNGKey(config.seed), config.members)


def _init_fn(model: ForwardModel):
    return jax.vmap(model.init, in_axes=(0, None, None))


def _example_inputs(spec: Spec):
    s = np.zeros((1, spec.obs_dim), np.float32)
    a = np.zeros((1,), np.int64) if spec.act_kind == "discrete" else np.zeros((1, spec.act_dim), np.float32)
    return s, a


@dataclass
class TrainedDynamics:
    spec: Spec
    config: DynamicsConfig
    params: dict  # every leaf stacked on a leading member axis of length E

    @property
    def model(self) -> ForwardModel:
        return ForwardModel(self.spec, tuple(self.config.hidden))

    # Jitted once per ensemble and kind, with the weights as an argument: scoring a whole
    # dataset eagerly would dispatch the vmapped MLP op by op. Inside a caller's jit they inline.
    _jitted: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _fn(self, name: str):
        if name not in self._jitted:
            spec, model = self.spec, self.model
            if name == "predict":
                self._jitted[name] = jax.jit(lambda p, s, a: _predict(spec, model, p, s, a))
            else:
                self._jitted[name] = jax.jit(lambda p, s, a, s_next: _dist(spec, model, name, p, s, a, s_next))
        return self._jitted[name]

    def predict(self, s, a):
        """Each member's prediction for s' (jnp, jit-friendly).

        Continuous states: (mean, log_std) of the normalised delta (s' − s) / delta_std, each
        (E, N, obs_dim), log_std clipped to [LOG_STD_MIN, LOG_STD_MAX] as in training.
        Discrete states: log-probabilities over every cell, (E, N, n_states).
        """
        return self._fn("predict")(self.params, s, a)

    def dist(self, s, a, s_next, kind: str = "forward"):
        """DIST of transitions (s, a, s'): (N,) float32, >= 0, larger = further from the dynamics.

        With E members, P_e their predictions, P̄ = (1/E) Σ_e P_e, and in the continuous case
        μ_e, σ_e the mean and std of member e's normalised delta, μ̄ = (1/E) Σ_e μ_e, and
        z = (s' − s) / delta_std; RMS_d(x) = sqrt(mean over state dimensions d of x_d²):

        kind="forward" (the double check: does s' follow from (s, a)?)
            continuous:  RMS_d(z − μ̄)  =  RMS_d((s' − (s + μ̄·delta_std)) / delta_std)
            discrete:    1 − P̄(s' | s, a), the total-variation distance between the point
                         mass at s' and the ensemble's prediction (1 for a cell off the grid)
        kind="disagreement" (MOPO/TATU: how unsure is the ensemble at (s, a)?; s' unused)
            continuous:  max_e RMS_d(μ_e − μ̄)  +  RMS_d((1/E) Σ_e σ_e)
                         epistemic (spread of the means) + aleatoric (predicted std), both in
                         delta-std units, after MOPO's max-norm of the predicted std
            discrete:    (1/E) Σ_e TV(P_e, P̄),  TV(P, Q) = ½ Σ_cells |P − Q|
        """
        if kind not in KINDS:
            raise ValueError(f"kind: unknown DIST kind {kind!r} (expected one of {', '.join(KINDS)})")
        return self._fn(kind)(self.params, s, a, s_next)


def _predict(spec: Spec, model: ForwardModel, params, s, a):
    s = jnp.asarray(s, jnp.float32)
    out = jax.vmap(model.apply, in_axes=(0, None, None))(params, s, jnp.asarray(a))
    if spec.obs_kind == "discrete":
        return jax.nn.log_softmax(jax.vmap(lambda o: spec.cell_logits(o, s))(out), axis=-1)
    mean, log_std = jnp.split(out, 2, axis=-1)
    return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


def _dist(spec: Spec, model: ForwardModel, kind: str, params, s, a, s_next):
    """TrainedDynamics.dist's formulas (documented there)."""
    s, s_next = jnp.asarray(s, jnp.float32), jnp.asarray(s_next, jnp.float32)
    rms = lambda x: jnp.sqrt(jnp.mean(jnp.square(x), axis=-1))
    if spec.obs_kind == "discrete":
        p = jnp.exp(_predict(spec, model, params, s, a))  # (E, N, n_states)
        if kind == "forward":
            # A cell off the grid has probability 0; its flat index would alias a real cell.
            cell = jnp.round(s_next)
            on_grid = jnp.all((cell >= 0) & (cell < jnp.asarray(spec.obs_nvec, jnp.float32)), axis=-1)
            idx = jnp.where(on_grid, spec.obs_to_index(s_next), 0)
            p_next = jnp.take_along_axis(p, jnp.broadcast_to(idx[None, :, None], p.shape[:2] + (1,)), axis=-1)[..., 0]
            d = jnp.where(on_grid, 1.0 - jnp.mean(p_next, axis=0), 1.0)
        else:
            d = jnp.mean(0.5 * jnp.sum(jnp.abs(p - jnp.mean(p, axis=0)), axis=-1), axis=0)
    else:
        mean, log_std = _predict(spec, model, params, s, a)
        mean_bar = jnp.mean(mean, axis=0)
        if kind == "forward":
            d = rms(spec.obs_to_delta(s, s_next) - mean_bar)
        else:
            d = jnp.max(rms(mean - mean_bar), axis=0) + rms(jnp.mean(jnp.exp(log_std), axis=0))
    # 1 − P̄ can round a hair below zero when P̄ is 1 in float32
    return jnp.maximum(d, 0.0).astype(jnp.float32)


def train_dynamics(data: Dataset, spec: Spec, config: DynamicsConfig, progress: bool = True) -> TrainedDynamics:
    """Fit E forward models by maximum likelihood of s' given (s, a), each on its own bootstrap.

    Each member draws its own minibatch indices (with replacement) at every update, so members
    see different resamplings of the data; the update, optimiser state included, is vmapped
    over members, so they are trained exactly as E separate models would be.
    """
    if config.members < 1:
        raise ValueError(f"config.members: need at least 1 member, got {config.members}")
    model = ForwardModel(spec, tuple(config.hidden))
    arrays = (data.observations, data.actions, data.next_observations)
    params = jax.jit(_init_fn(model))(_member_keys(config), data.observations[:2], data.actions[:2])
    opt = adam_schedule(config.lr, config.steps, 50, 0.0, 10.0)
    opt_state = jax.vmap(opt.init)(params)
    rng = np.random.default_rng(config.seed)

    def member_update(p, o, batch):
        s, a, s_next = batch
        loss, grads = jax.value_and_grad(lambda p: -jnp.mean(log_prob(spec, S, model.apply(p, s, a), s_next, s)))(p)
        updates, o = opt.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    def update(carry, batch):  # batch leaves: (E, B, ...)
        p, o, loss = jax.vmap(member_update)(*carry, batch)
        return (p, o), loss

    run_chunk = jax.jit(lambda carry, batches: jax.lax.scan(update, carry, batches))
    bar = progress_bar(total=config.steps, desc="train dynamics ensemble", progress=progress, unit="update")
    done = 0
    while done < config.steps:
        n = min(CHUNK * 4, config.steps - done)
        idx = rng.integers(0, len(data), (n, config.members, config.batch_size))
        (params, opt_state), losses = run_chunk((params, opt_state), tuple(x[idx] for x in arrays))
        done += n
        bar.update(n)
        bar.set_postfix(nll=f"{float(jnp.mean(losses[-1])):.3f}")
    bar.close()
    return TrainedDynamics(spec, config, params)


# ---- saving and loading (JSON + msgpack, no pickle) ---------------------------------
def save_dynamics(out_dir, trained: TrainedDynamics) -> None:
    """Write dynamics.json (the config) and dynamics.msgpack (the stacked weights)."""
    out = Path(out_dir)
    atomic_write_json(out / CONFIG_FILE, {"config": trained.config.to_dict()})
    atomic_write_bytes(out / WEIGHTS_FILE, serialization.to_bytes(trained.params))


def load_dynamics(out_dir, spec: Spec) -> TrainedDynamics | None:
    """The ensemble saved in out_dir, or None if none was (the ensemble is optional)."""
    d = Path(out_dir)
    path = d / CONFIG_FILE
    if not path.exists():
        return None
    config, _ = read_config(path, DynamicsConfig, "dynamics")
    # Only the structure is needed: eval_shape traces the vmapped init without running it.
    template = jax.eval_shape(_init_fn(ForwardModel(spec, config.hidden)), _member_keys(config), *_example_inputs(spec))
    params = read_weights(d / WEIGHTS_FILE, template, f"an ensemble of {config.members} for this spec")
    return TrainedDynamics(spec, config, params)
