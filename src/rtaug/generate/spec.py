"""How each modality of a dataset is encoded for the sequence model.

A `Spec` is fitted once on the training dataset and saved beside the model, so that a model
always reads and writes values in the units of the data it was trained on. It decides, per
modality, whether the model predicts a categorical or a Gaussian (DESIGN §3): discrete
states and actions are categorical, rewards are categorical when the data has only a few
distinct values (BoxBall's 0/1), and the reward-to-go is always categorical over B uniform
bins of its range, because return-tilted sampling (§3.2 of the paper) weights its values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import jax.numpy as jnp

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rtaug.data import Dataset

# Rewards with at most this many distinct values are modelled as a categorical (choice).
MAX_DISCRETE_REWARDS = 16
# Joint categorical over all cells of a discrete state space up to this size; the grid tasks fit.
MAX_JOINT_STATES = 4096


@dataclass
class Spec:
    obs_dim: int
    obs_kind: str  # "continuous" | "discrete"
    obs_mean: list[float]
    obs_std: list[float]
    delta_std: list[float]  # std of s' − s: continuous states are predicted as a difference
    obs_nvec: list[int] = field(default_factory=list)
    # Continuous states: the data's per-dimension range. A generated state is kept inside it, as
    # a generated action is kept inside the action box: past it lie states the system never
    # showed (Maze2D's velocities stop at the simulator's speed clip), which the simulator then
    # does not follow. Empty: no bound (models saved before these fields).
    obs_low: list[float] = field(default_factory=list)
    obs_high: list[float] = field(default_factory=list)
    act_kind: str = "continuous"  # "continuous" | "discrete"
    act_dim: int = 1
    num_actions: int = 0
    act_mean: list[float] = field(default_factory=list)
    act_std: list[float] = field(default_factory=list)
    act_low: list[float] = field(default_factory=list)
    act_high: list[float] = field(default_factory=list)
    rew_kind: str = "continuous"  # "continuous" | "discrete"
    rew_values: list[float] = field(default_factory=list)
    rew_mean: float = 0.0
    rew_std: float = 1.0
    rew_low: float = 0.0
    rew_high: float = 0.0
    gamma: float = 0.99
    rtg_bins: int = 32
    rtg_lo: float = 0.0
    rtg_hi: float = 1.0
    # The data marks true episode ends (BoxBall's goal): a forward model then predicts them, so
    # that a forward rollout stops where the environment would (DESIGN §4, "Length").
    has_terminals: bool = False
    # The data it was fitted on: source (the path as given), rows, recorded task and fingerprint
    # (`Dataset.fingerprint`); generation from other data is then noticed. Empty: models saved
    # before this field.
    dataset: dict = field(default_factory=dict)

    # ---- construction -------------------------------------------------------------
    @classmethod
    def fit(cls, data: Dataset, gamma: float = 0.99, rtg_bins: int = 32) -> "Spec":
        from rtaug.data.episodes import reward_to_go

        obs = data.observations.astype(np.float64)
        spaces = data.metadata.get("spaces", {})
        obs_kind, nvec = _state_space(data)
        if obs_kind == "discrete" and int(np.prod(nvec)) > MAX_JOINT_STATES:
            raise ValueError(
                f"{data.source}: metadata 'spaces.observation': {int(np.prod(nvec))} cells is more "
                f"than the {MAX_JOINT_STATES} a joint categorical state head supports"
            )
        delta = data.next_observations.astype(np.float64) - obs
        spec = cls(
            obs_dim=obs.shape[1],
            obs_kind=obs_kind,
            obs_nvec=nvec,
            obs_mean=obs.mean(0).tolist(),
            obs_std=np.maximum(obs.std(0), 1e-6).tolist(),
            delta_std=np.maximum(delta.std(0), 1e-6).tolist(),
            gamma=gamma,
            rtg_bins=rtg_bins,
            dataset={"source": data.source, "rows": len(data), "task": data.recorded_task,
                     "fingerprint": data.fingerprint()},
        )
        if obs_kind == "continuous":
            both = np.concatenate([obs, data.next_observations.astype(np.float64)])
            spec.obs_low, spec.obs_high = both.min(0).tolist(), both.max(0).tolist()
        if data.discrete_actions:
            spec.act_kind = "discrete"
            spec.num_actions = int(data.num_actions)
            spec.act_dim = 1
        else:
            act = data.actions.astype(np.float64)
            spec.act_kind = "continuous"
            spec.act_dim = act.shape[1]
            spec.act_mean = act.mean(0).tolist()
            spec.act_std = np.maximum(act.std(0), 1e-6).tolist()
            box = spaces.get("action", {})
            spec.act_low = list(box.get("low", act.min(0).tolist()))
            spec.act_high = list(box.get("high", act.max(0).tolist()))
        values = np.unique(data.rewards)
        if len(values) <= MAX_DISCRETE_REWARDS:
            spec.rew_kind = "discrete"
            spec.rew_values = values.astype(float).tolist()
        spec.has_terminals = bool(np.any(data.terminals))
        spec.rew_mean = float(data.rewards.mean())
        spec.rew_std = float(max(data.rewards.std(), 1e-6))
        spec.rew_low, spec.rew_high = float(data.rewards.min()), float(data.rewards.max())
        rtg = reward_to_go(data.rewards, data.episodes(), gamma)
        spec.rtg_lo = float(rtg.min())
        spec.rtg_hi = float(max(rtg.max(), rtg.min() + 1e-6))
        return spec

    def to_dict(self) -> dict:
        return asdict(self)

    def check_fits(self, data: Dataset, model_dir) -> None:
        """Refuse data of another state or action space than the model was fitted on (ValueError
        naming the file's key): its heads could not read them, or would read them wrong."""
        obs_kind, nvec = _state_space(data)
        if data.obs_dim != self.obs_dim or obs_kind != self.obs_kind or nvec != self.obs_nvec:
            raise ValueError(f"{data.source}: key 'observations': {_states(obs_kind, data.obs_dim, nvec)}, but the "
                             f"model in {model_dir} was trained on {_states(self.obs_kind, self.obs_dim, self.obs_nvec)}")
        kind = "discrete" if data.discrete_actions else "continuous"
        if kind != self.act_kind:
            raise ValueError(f"{data.source}: key 'actions': {kind} actions, but the model in {model_dir} was "
                             f"trained on {self.act_kind} actions")
        if kind == "continuous" and data.act_dim != self.act_dim:
            raise ValueError(f"{data.source}: key 'actions': dimension {data.act_dim} does not match the model in "
                             f"{model_dir} (trained on {self.act_dim})")
        if kind == "discrete" and data.num_actions > self.num_actions:
            raise ValueError(f"{data.source}: key 'actions': {data.num_actions} discrete actions, but the model in "
                             f"{model_dir} was trained on {self.num_actions}")

    def trained_on(self, data: Dataset) -> bool | None:
        """Whether these are the data the model was fitted on (None: the model does not say)."""
        fingerprint = self.dataset.get("fingerprint")
        return None if fingerprint is None else fingerprint == data.fingerprint()

    @classmethod
    def from_dict(cls, d: dict) -> "Spec":
        return cls(**d)

    # ---- sizes --------------------------------------------------------------------
    @property
    def n_states(self) -> int:
        return int(np.prod(self.obs_nvec)) if self.obs_kind == "discrete" else 0

    @property
    def n_displacements(self) -> int:
        """Classes of the discrete state head: every displacement from the neighbouring state."""
        return int(np.prod([2 * n - 1 for n in self.obs_nvec])) if self.obs_kind == "discrete" else 0

    @property
    def n_rewards(self) -> int:
        return len(self.rew_values)

    @property
    def reward_range(self) -> float:
        """max − min of the data's rewards: the scale the reliability penalty is measured in."""
        if self.rew_values:
            return float(max(max(self.rew_values) - min(self.rew_values), 1e-6))
        return float(max(self.rew_high - self.rew_low, 1e-6)) if self.rew_high > self.rew_low else float(self.rew_std)

    # ---- encodings (jnp, usable inside jit) ---------------------------------------
    def obs_input(self, s):
        return (s - jnp.asarray(self.obs_mean, jnp.float32)) / jnp.asarray(self.obs_std, jnp.float32)

    def obs_to_index(self, s):
        strides = np.cumprod([1] + self.obs_nvec[::-1][:-1])[::-1]
        return jnp.sum(jnp.round(s).astype(jnp.int32) * jnp.asarray(strides, jnp.int32), axis=-1)

    def index_to_obs(self, idx):
        out = []
        for n in self.obs_nvec[::-1]:
            out.append(idx % n)
            idx = idx // n
        return jnp.stack(out[::-1], axis=-1).astype(jnp.float32)

    def cell_logits(self, displacement_logits, s_anchor):
        """Logits over every cell, read from logits over displacements from s_anchor.

        The head scores moves, not places: what it learns in one part of the grid holds in
        every other, and a cell off the grid cannot be produced at all.
        """
        nvec = np.asarray(self.obs_nvec)
        cells = self.index_to_obs(jnp.arange(self.n_states))  # (n_states, d)
        disp = jnp.round(cells - s_anchor[..., None, :]).astype(jnp.int32) + jnp.asarray(nvec - 1)
        widths = 2 * nvec - 1
        strides = np.cumprod(np.concatenate([[1], widths[::-1][:-1]]))[::-1]
        idx = jnp.sum(disp * jnp.asarray(strides, jnp.int32), axis=-1)
        return jnp.take_along_axis(displacement_logits, idx, axis=-1)

    def delta_to_obs(self, s_anchor, z):
        s = s_anchor + z * jnp.asarray(self.delta_std, jnp.float32)
        if self.obs_low:
            s = jnp.clip(s, jnp.asarray(self.obs_low, jnp.float32), jnp.asarray(self.obs_high, jnp.float32))
        return s

    def obs_to_delta(self, s_anchor, s):
        return (s - s_anchor) / jnp.asarray(self.delta_std, jnp.float32)

    def act_input(self, a):
        """Continuous actions only: normalised."""
        return (a - jnp.asarray(self.act_mean, jnp.float32)) / jnp.asarray(self.act_std, jnp.float32)

    def act_from_normalized(self, z):
        a = z * jnp.asarray(self.act_std, jnp.float32) + jnp.asarray(self.act_mean, jnp.float32)
        return jnp.clip(a, jnp.asarray(self.act_low, jnp.float32), jnp.asarray(self.act_high, jnp.float32))

    def rew_input(self, r):
        return ((r - self.rew_mean) / self.rew_std)[..., None]

    def rew_to_index(self, r):
        values = jnp.asarray(self.rew_values, jnp.float32)
        return jnp.argmin(jnp.abs(r[..., None] - values), axis=-1)

    def index_to_rew(self, idx):
        return jnp.asarray(self.rew_values, jnp.float32)[idx]

    def rtg_input(self, R):
        return ((R - self.rtg_lo) / (self.rtg_hi - self.rtg_lo))[..., None]

    def rtg_to_bin(self, R):
        u = (R - self.rtg_lo) / (self.rtg_hi - self.rtg_lo)
        return jnp.clip(jnp.floor(u * self.rtg_bins), 0, self.rtg_bins - 1).astype(jnp.int32)

    def bin_centres(self):
        return self.rtg_lo + (jnp.arange(self.rtg_bins) + 0.5) / self.rtg_bins * (self.rtg_hi - self.rtg_lo)

    def transition_input(self, s, a, s_next):
        """x = (s, a, s') normalised for the reliability VAE; discrete actions one-hot."""
        if self.act_kind == "discrete":
            a_in = jnp.eye(self.num_actions, dtype=jnp.float32)[a.astype(jnp.int32).reshape(a.shape[:len(s.shape) - 1])]
        else:
            a_in = self.act_input(a)
        return jnp.concatenate([self.obs_input(s), a_in, self.obs_input(s_next)], axis=-1)

    @property
    def transition_dim(self) -> int:
        a = self.num_actions if self.act_kind == "discrete" else self.act_dim
        return 2 * self.obs_dim + a


def _state_space(data: Dataset) -> tuple[str, list[int]]:
    """("discrete", nvec) for states declared multidiscrete in the metadata, else ("continuous", [])."""
    space = data.metadata.get("spaces", {}).get("observation", {})
    if space.get("type") == "multidiscrete":
        return "discrete", [int(n) for n in space.get("nvec", [])]
    return "continuous", []


def _states(kind: str, dim: int, nvec: list[int]) -> str:
    return f"discrete states on a {'x'.join(map(str, nvec))} grid" if kind == "discrete" else f"{dim}-dimensional states"
