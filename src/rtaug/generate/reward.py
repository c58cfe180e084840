"""A reward model fitted on every real transition: the reward written on generated steps.

RT's sequence model predicts each step's reward with its own head, conditioned on the whole
window. Measured against the task's true reward of the generated states (maze2d-medium-sparse,
docs/reliability.md), that head is wrong on 4% of generated rows, most of them in the goal
region near its edge, where backward generation starts (the last goal state of an episode lies
0.41-0.46 from the goal, the reward's radius is 0.5). The misses are not the head's size: an MLP
fitted on every real (s, a, s′) is still wrong on 1.4%, while one that sees s′ alone is wrong
on 0.1%. A reward that is a function of the state after the step can only be blurred by also
reading s and a: on real data they are nearly redundant with s′, on generated steps they carry
the generator's own errors. So the model's inputs are the reward's arguments: `next_state` (s′)
where the dataset's task pays for where a step leads (rtaug's mazes and BoxBall), `transition`
(s, a, s′) otherwise (locomotion's rewards pay for actions too).

Discrete rewards (few distinct values) are a categorical over the data's values and the model's
prediction is its expectation; continuous rewards are regressed (squared error, standardised).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import jax
import jax.numpy as jnp
import optax
from flax import serialization
from rtaug.progress import progress_bar

from rtaug.data import Dataset
from rtaug.fileio import atomic_write_bytes, atomic_write_json
from rtaug.generate.io import read_config, read_weights
from rtaug.generate.spec import Spec
from rtaug.nets.mlp import MLP
from rtaug.ranges import COUNT, POSITIVE, SEED, check_ranges, ranged

INPUTS = ("auto", "next_state", "transition")
CONFIG_FILE, WEIGHTS_FILE = "reward.json", "reward.msgpack"
HELD_OUT = 0.01  # share of rows kept out of training to report the fit


@dataclass
class RewardConfig:
    # "next_state": r(s′); "transition": r(s, a, s′); "auto": the dataset's (`reward_inputs_for`)
    inputs: str = "auto"
    hidden: tuple = (256, 256)
    batch_size: int = ranged(COUNT, 1024)
    steps: int = ranged(COUNT, 4000)
    lr: float = ranged(POSITIVE, 1e-3)
    seed: int = ranged(SEED, 0)

    def __post_init__(self):
        if self.inputs not in INPUTS:
            raise ValueError(f"RewardConfig.inputs must be one of {INPUTS}, got {self.inputs!r}")
        check_ranges(self)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


def reward_inputs_for(data: Dataset) -> str:
    """"next_state" when the dataset's recorded task pays its reward for the state after the step
    (BoxBall; rtaug's mazes, unless collected with D4RL's off-by-one `reward_on="current"`),
    else "transition" (the safe choice for a dataset whose reward is not known)."""
    from rtaug.envs.registry import TASKS

    task = TASKS.get(data.recorded_task)
    return "next_state" if task is not None and task.reward_of_next_state else "transition"


def _features(spec: Spec, inputs: str, s, a, s_next):
    s_next = jnp.asarray(s_next, jnp.float32)
    if inputs == "next_state":
        return spec.obs_input(s_next)
    return spec.transition_input(jnp.asarray(s, jnp.float32), jnp.asarray(a), s_next)


def _net(spec: Spec, config: RewardConfig) -> MLP:
    return MLP(tuple(config.hidden), spec.n_rewards if spec.rew_kind == "discrete" else 1)


def _expected(spec: Spec, out):
    """The prediction in data units: the categorical's mean, or the de-standardised regression."""
    if spec.rew_kind == "discrete":
        return jax.nn.softmax(out, axis=-1) @ jnp.asarray(spec.rew_values, jnp.float32)
    return out[..., 0] * spec.rew_std + spec.rew_mean


def _loss(spec: Spec, out, r):
    if spec.rew_kind == "discrete":
        return optax.softmax_cross_entropy_with_integer_labels(out, spec.rew_to_index(r)).mean()
    return jnp.mean(jnp.square(out[..., 0] - (r - spec.rew_mean) / spec.rew_std))


@dataclass
class TrainedReward:
    spec: Spec
    config: RewardConfig
    params: dict
    fit: dict = field(default_factory=dict)  # held-out fit: accuracy or RMSE of the expectation
    _jitted: object = field(default=None, init=False, repr=False, compare=False)

    def predict(self, s, a, s_next) -> np.ndarray:
        """Expected reward of transitions (N,), in data units (numpy; batched over large N)."""
        if self._jitted is None:
            spec, net, inputs = self.spec, _net(self.spec, self.config), self.config.inputs
            self._jitted = jax.jit(lambda p, s, a, n: _expected(spec, net.apply(p, _features(spec, inputs, s, a, n))))
        out = [np.asarray(self._jitted(self.params, s[i:i + 65536], a[i:i + 65536], s_next[i:i + 65536]))
               for i in range(0, len(s_next), 65536)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def _fit_summary(spec: Spec, pred: np.ndarray, r: np.ndarray) -> dict:
    if spec.rew_kind == "discrete":
        values = np.asarray(spec.rew_values)
        nearest = values[np.argmin(np.abs(pred[:, None] - values[None]), axis=1)]
        return {"held_out_rows": int(len(r)), "accuracy": float(np.mean(nearest == r))}
    return {"held_out_rows": int(len(r)), "rmse": float(np.sqrt(np.mean(np.square(pred - r))))}


def train_reward(data: Dataset, spec: Spec, config: RewardConfig, progress: bool = True) -> TrainedReward:
    """Fit the reward model on all but a held-out 1% of the data's transitions (its fit on those
    is recorded in `TrainedReward.fit`); inputs "auto" become the dataset's (`reward_inputs_for`)."""
    if config.inputs == "auto":
        config = replace(config, inputs=reward_inputs_for(data))
    rng = np.random.default_rng(config.seed)
    n = len(data)
    perm = rng.permutation(n)
    n_out = int(round(HELD_OUT * n)) if n >= 200 else 0
    held, train_rows = perm[:n_out], perm[n_out:]
    net = _net(spec, config)
    feats = jax.jit(lambda s, a, n: _features(spec, config.inputs, s, a, n))
    x = np.concatenate([np.asarray(feats(data.observations[i:i + 65536], data.actions[i:i + 65536],
                                         data.next_observations[i:i + 65536])) for i in range(0, n, 65536)])
    r = np.asarray(data.rewards, np.float32)
    params = net.init(jax.random.PRNGKey(config.seed), x[:1])
    opt = optax.adam(optax.cosine_decay_schedule(config.lr, config.steps, 0.01))
    opt_state = opt.init(params)

    def update(carry, idx):
        p, o = carry
        loss, g = jax.value_and_grad(lambda p: _loss(spec, net.apply(p, x_dev[idx]), r_dev[idx]))(p)
        u, o = opt.update(g, o, p)
        return (optax.apply_updates(p, u), o), loss

    x_dev, r_dev = jnp.asarray(x), jnp.asarray(r)
    run_chunk = jax.jit(lambda carry, idx: jax.lax.scan(update, carry, idx))
    bar = progress_bar(total=config.steps, desc=f"train reward model r({'s′' if config.inputs == 'next_state' else 's, a, s′'})",
               progress=progress, unit="update")
    done, chunk = 0, 200
    while done < config.steps:
        m = min(chunk, config.steps - done)
        idx = train_rows[rng.integers(0, len(train_rows), (m, config.batch_size))]
        (params, opt_state), losses = run_chunk((params, opt_state), jnp.asarray(idx))
        done += m
        bar.update(m)
        bar.set_postfix(loss=f"{float(losses[-1]):.4f}")
    bar.close()
    trained = TrainedReward(spec, config, params)
    if n_out:
        trained.fit = _fit_summary(spec, trained.predict(data.observations[held], data.actions[held],
                                                         data.next_observations[held]), r[held])
    return trained


def save_reward(out_dir, trained: TrainedReward) -> None:
    out = Path(out_dir)
    atomic_write_json(out / CONFIG_FILE, {"config": trained.config.to_dict(), "fit": trained.fit})
    atomic_write_bytes(out / WEIGHTS_FILE, serialization.to_bytes(trained.params))


def load_reward(out_dir, spec: Spec) -> TrainedReward | None:
    """The reward model saved in out_dir, or None if there is none (it is optional)."""
    d = Path(out_dir)
    path = d / CONFIG_FILE
    if not path.exists():
        return None
    config, meta = read_config(path, RewardConfig, "reward model")
    x = jax.eval_shape(lambda: _features(spec, config.inputs, jnp.zeros((1, spec.obs_dim)),
                                         jnp.zeros((1,) if spec.act_kind == "discrete" else (1, spec.act_dim)),
                                         jnp.zeros((1, spec.obs_dim))))
    template = jax.eval_shape(_net(spec, config).init, jax.random.PRNGKey(0), jnp.zeros(x.shape, x.dtype))
    params = read_weights(d / WEIGHTS_FILE, template, "this reward model and spec")
    return TrainedReward(spec, config, params, meta.get("fit", {}))
