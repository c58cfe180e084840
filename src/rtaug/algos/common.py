"""Pieces every learner shares: networks, target updates, data preparation.

Kept deliberately small: each algorithm file should still read top to bottom on its own, so
only what is identical across algorithms lives here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields, replace
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rtaug.data import Dataset
from rtaug.data.episodes import episode_returns as _returns
from rtaug.nets.mlp import MLP  # noqa: F401  (re-exported: the learners build on it)
from rtaug.nets.onednn import recorded

DOMAINS = ("mujoco", "maze2d", "antmaze")


# ---------------------------------------------------------------------------------------- networks


class Critics(nn.Module):
    """`n` independent Q(s, a) networks evaluated as one batched matmul per layer.

    Stacking the ensemble's weights (nn.vmap) instead of calling n separate MLPs lets XLA issue
    one (n, B, in) x (n, in, out) product per layer, which is what keeps twin critics cheap on CPU.
    """

    hidden: Sequence[int]
    n: int = 2
    weight_init: str = "lecun"  # `MLP.weight_init`
    matmul: str = "xla"  # `MLP.matmul`

    @nn.compact
    def __call__(self, obs, act):
        # obs may carry size-1 axes where act has several actions per state.
        lead = jnp.broadcast_shapes(obs.shape[:-1], act.shape[:-1])
        obs = jnp.broadcast_to(obs, lead + obs.shape[-1:])
        act = jnp.broadcast_to(act, lead + act.shape[-1:])
        # Rows flattened to one axis: XLA's CPU dot on a 2-D operand is ~11% faster than on
        # (B, N, d) (CQL's critic step, one core: 198 ms against 222; docs/learners.md).
        x = jnp.concatenate([obs, act], axis=-1).reshape(-1, obs.shape[-1] + act.shape[-1])
        ensemble = nn.vmap(MLP, variable_axes={"params": 0}, split_rngs={"params": True},
                           in_axes=None, out_axes=0, axis_size=self.n)
        q = ensemble(self.hidden, 1, weight_init=self.weight_init, matmul=self.matmul, name="q")(x)[..., 0]
        return q.reshape((self.n,) + lead)  # (n, ...)


def first_critic(hidden: Sequence[int], critic_params, obs, act, matmul: str = "xla"):
    """Q₁(s, a) alone, from the parameters of a `Critics` ensemble.

    TD3's and BCQ's actor losses (and BCQ's action selection) read only the first critic;
    evaluating the whole stacked ensemble and dropping the rest would double that matmul work
    in the forward and the backward pass.
    """
    first = jax.tree_util.tree_map(lambda x: x[0], critic_params["params"]["q"])
    lead = jnp.broadcast_shapes(obs.shape[:-1], act.shape[:-1])
    x = jnp.concatenate([jnp.broadcast_to(obs, lead + obs.shape[-1:]),
                         jnp.broadcast_to(act, lead + act.shape[-1:])], axis=-1)
    return MLP(tuple(hidden), 1, matmul=matmul).apply({"params": first}, x)[..., 0]


class ValueNet(nn.Module):
    hidden: Sequence[int]

    @nn.compact
    def __call__(self, obs):
        return MLP(self.hidden, 1, name="v")(obs)[..., 0]


class TanhActor(nn.Module):
    """Deterministic policy with outputs in [-1, 1]."""

    hidden: Sequence[int]
    act_dim: int

    @nn.compact
    def __call__(self, obs):
        return jnp.tanh(MLP(self.hidden, self.act_dim, name="pi")(obs))


def soft_update(target, online, tau: float):
    return jax.tree_util.tree_map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def gaussian_log_prob(x, mean, log_std):
    """Diagonal Gaussian log density, summed over the last axis."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z * z - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


# ----------------------------------------------------------------------------------------- configs


def with_domain(config, domain: str | None, given=None):
    """`config` with the per-domain overrides of its class (`DOMAIN_DEFAULTS`) applied.

    The fields named in `given` (the ones a caller set explicitly) are kept; without it, the
    fields that differ from the class defaults, so `with_domain(IQLConfig(expectile=0.8),
    "antmaze")` still has expectile 0.8. Pass `given` where it is known: a field set explicitly
    to its class default (`learner.normalize_obs=false` on Maze2D) is otherwise taken for unset.
    """
    if domain is None:
        return config
    table = getattr(type(config), "DOMAIN_DEFAULTS", {})
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    if given is not None:
        changed = set(given)
    else:
        base = type(config)()
        changed = {f.name for f in fields(config) if getattr(config, f.name) != getattr(base, f.name)}
    overrides = {k: v for k, v in table.get(domain, {}).items() if k not in changed}
    return replace(config, **overrides)


def config_record(config) -> dict:
    """`config` as recorded in a run or a stage key: JSON values, `matmul` left out at its
    default (rtaug.nets.onednn.recorded)."""
    return recorded(json.loads(json.dumps(asdict(config), default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))))


def for_budget(config, steps: int):
    """`config` for a run of `steps` updates: the fields that scale with the run's length and were
    left None filled in by the algorithm's Config (IQL's `decay_steps`, CQL's `bc_steps`)."""
    resolve = getattr(config, "for_budget", None)
    return config if resolve is None else resolve(int(steps))


# ------------------------------------------------------------------------------------ data prepare


def episode_returns(dataset: Dataset) -> np.ndarray:
    return _returns(dataset.rewards, dataset.episodes())


def reward_transform(dataset: Dataset, config) -> tuple[float, float]:
    """(scale, bias): the learner trains on r·scale + bias, so its critic's values are in those
    units (what `prepare` applies; a critic read against true returns needs the same)."""
    scale = 1.0
    if getattr(config, "return_normalize", False):
        returns = episode_returns(dataset)
        spread = returns.max() - returns.min()
        if spread > 0:
            scale = 1000.0 / spread
    return float(scale * getattr(config, "reward_scale", 1.0)), float(getattr(config, "reward_bias", 0.0))


def prepare(dataset: Dataset, config) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Training arrays and the state normaliser (mean, std) the policy must apply when acting.

    Reward changes read from the config (fields absent from a config mean "off"):
    `return_normalize` multiplies by 1000 / (max − min episode return) (IQL on MuJoCo), then
    `reward_scale` and `reward_bias` give r·scale + bias (e.g. IQL's −1 shift on AntMaze).
    """
    if dataset.discrete_actions:
        raise ValueError(f"{dataset.source}: the offline RL learners need continuous actions")
    outside = np.abs(dataset.actions) > 1.0 + 1e-5
    if outside.any():
        row = int(np.flatnonzero(outside.any(axis=1))[0])
        raise ValueError(f"{dataset.source}: key 'actions': action at row {row} ({dataset.actions[row].tolist()}) "
                         "is outside [-1, 1]; the learners' policies are tanh-bounded, so rescale the "
                         "dataset's actions to [-1, 1] first")
    obs, next_obs = dataset.observations, dataset.next_observations
    if getattr(config, "normalize_obs", False):
        mean = obs.mean(axis=0)
        # 1e-3 as in the TD3+BC authors' code: keeps constant state dimensions finite.
        std = obs.std(axis=0) + 1e-3
    else:
        mean = np.zeros(dataset.obs_dim, np.float32)
        std = np.ones(dataset.obs_dim, np.float32)
    scale, bias = reward_transform(dataset, config)
    rewards = dataset.rewards.astype(np.float64) * scale + bias
    mean, std = mean.astype(np.float32), std.astype(np.float32)
    arrays = {
        "observations": ((obs - mean) / std).astype(np.float32),
        "actions": dataset.actions.astype(np.float32),
        "rewards": rewards.astype(np.float32),
        "next_observations": ((next_obs - mean) / std).astype(np.float32),
        # Time-outs still bootstrap: the episode was cut, the state after it was not terminal.
        "dones": dataset.terminals.astype(np.float32),
    }
    return arrays, mean, std


# ------------------------------------------------------------------------------- domain and checks


def infer_domain(dataset: Dataset) -> str:
    """"antmaze", "maze2d" or "mujoco" from the task named in the metadata or the file name."""
    meta = dataset.metadata or {}
    names = [str(meta.get(k, "")) for k in ("task", "env", "env_name", "env_id", "dataset_name", "name")]
    text = " ".join(names + [dataset.source]).lower()
    if "antmaze" in text:
        return "antmaze"
    if "maze2d" in text or "pointmaze" in text:
        return "maze2d"
    return "mujoco"


def offline_action_eval(dataset: Dataset, n: int = 2048, seed: int = 0):
    """An evaluation that needs no simulator: the policy's mean squared distance (per action
    dimension) to the dataset's own actions on a fixed sample of real (not generated) states.

    It says how far the policy has moved from the behaviour, not how good it is; simulator
    evaluation (normalized score) needs the task's environment.
    """
    rows = np.arange(len(dataset))
    if dataset.generated is not None and not dataset.generated.all():
        rows = rows[~dataset.generated]
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(rows, size=min(n, len(rows)), replace=False))
    obs, actions = dataset.observations[rows], dataset.actions[rows].astype(np.float32)

    def evaluate(policy) -> dict:
        pred = np.asarray(policy(obs), np.float32)
        return {"action_mse": float(np.mean((pred - actions) ** 2))}

    return evaluate
