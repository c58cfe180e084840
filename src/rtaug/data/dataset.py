"""The in-memory transition dataset (D4RL layout) and its validation."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from rtaug.data.episodes import episode_bounds

__all__ = ["DatasetError", "Dataset"]

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "next_observations")
_NUMERIC_KINDS = "biuf"


class DatasetError(ValueError):
    """Malformed input; the message always names the file, the key and the problem."""


def _as_flag(x: np.ndarray) -> np.ndarray:
    """0/1 ints or floats become bool; anything else is left for validate() to reject with a message."""
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dtype.kind in "iuf" and x.size and np.all((x == 0) | (x == 1)):
        return x.astype(bool)
    if x.dtype.kind in "iuf" and x.size == 0:
        return x.astype(bool)
    return x


def _as_float32(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "iuf" and x.dtype != np.float32:
        return x.astype(np.float32)
    return x


def _first_bad_row(bad: np.ndarray) -> int:
    """Row index of the first True in a (N, ...) mask."""
    return int(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0])


@dataclass(eq=False)  # element-wise array comparison makes a generated __eq__ meaningless
class Dataset:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    next_observations: np.ndarray
    generated: np.ndarray | None = None
    reliability: np.ndarray | None = None
    infos: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    source: str = "<memory>"

    def __post_init__(self):
        self.source = str(self.source)
        self.observations = _as_float32(np.asarray(self.observations))
        self.next_observations = _as_float32(np.asarray(self.next_observations))
        rewards = np.asarray(self.rewards)
        if rewards.ndim == 2 and rewards.shape[1] == 1:
            rewards = rewards[:, 0]
        self.rewards = _as_float32(rewards)
        actions = np.asarray(self.actions)
        if actions.dtype.kind in "iu":
            if actions.ndim == 2 and actions.shape[1] == 1:
                actions = actions[:, 0]
            actions = actions.astype(np.int64)
        else:
            actions = _as_float32(actions)
        self.actions = actions
        self.terminals = _as_flag(np.asarray(self.terminals))
        self.timeouts = _as_flag(np.asarray(self.timeouts))
        if self.generated is not None:
            self.generated = _as_flag(np.asarray(self.generated))
        if self.reliability is not None:
            rel = np.asarray(self.reliability)
            if rel.ndim == 2 and rel.shape[1] == 1:
                rel = rel[:, 0]
            self.reliability = _as_float32(rel)
        self.infos = {str(k): np.asarray(v) for k, v in dict(self.infos).items()}
        self.metadata = dict(self.metadata or {})
        self.validate()

    # ------------------------------------------------------------------ validation

    def _error(self, key: str, problem: str) -> DatasetError:
        return DatasetError(f"{self.source}: key '{key}': {problem}")

    def _named_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "observations": self.observations,
            "actions": self.actions,
            "rewards": self.rewards,
            "terminals": self.terminals,
            "timeouts": self.timeouts,
            "next_observations": self.next_observations,
        }
        if self.generated is not None:
            arrays["generated"] = self.generated
        if self.reliability is not None:
            arrays["reliability"] = self.reliability
        for k, v in self.infos.items():
            arrays[f"infos/{k}"] = v
        return arrays

    def validate(self) -> None:
        arrays = self._named_arrays()
        # dtype before shape: a string array's shape says nothing useful about the problem.
        for key, arr in arrays.items():
            if arr.dtype.kind not in _NUMERIC_KINDS:
                raise self._error(key, f"unsupported dtype {arr.dtype} (expected a real numeric array)")
            if arr.ndim == 0:
                raise self._error(key, "is a scalar, expected an array with one row per transition")

        obs = self.observations
        n = obs.shape[0]
        if n == 0:
            raise self._error("observations", "empty dataset (0 rows)")
        if obs.ndim != 2:
            raise self._error("observations", f"wrong shape {obs.shape}, expected 2-D (N, obs_dim)")
        for key, arr in arrays.items():
            if arr.shape[0] != n:
                raise self._error(key, f"length {arr.shape[0]} does not match observations ({n})")

        if obs.dtype != np.float32:
            raise self._error("observations", f"wrong dtype {obs.dtype}, expected float32")
        if self.next_observations.dtype != np.float32:
            raise self._error("next_observations",
                              f"wrong dtype {self.next_observations.dtype}, expected float32")
        if self.next_observations.shape != obs.shape:
            raise self._error("next_observations",
                              f"wrong shape {self.next_observations.shape}, expected {obs.shape} "
                              "like observations")
        if self.rewards.ndim != 1:
            raise self._error("rewards", f"wrong shape {self.rewards.shape}, expected 1-D (N,)")
        if self.rewards.dtype != np.float32:
            raise self._error("rewards", f"wrong dtype {self.rewards.dtype}, expected float32")
        for key in ("terminals", "timeouts", "generated"):
            arr = arrays.get(key)
            if arr is None:
                continue
            if arr.ndim != 1:
                raise self._error(key, f"wrong shape {arr.shape}, expected 1-D (N,)")
            if arr.dtype != bool:
                raise self._error(key, f"wrong dtype {arr.dtype}, expected bool or 0/1 values")
        if self.reliability is not None:
            if self.reliability.ndim != 1:
                raise self._error("reliability", f"wrong shape {self.reliability.shape}, expected 1-D (N,)")
            if self.reliability.dtype != np.float32:
                raise self._error("reliability", f"wrong dtype {self.reliability.dtype}, expected float32")

        act = self.actions
        if act.dtype.kind == "i":
            if act.ndim != 1:
                raise self._error("actions", f"wrong shape {act.shape}, discrete actions must be 1-D (N,)")
            if np.any(act < 0):
                row = int(np.flatnonzero(act < 0)[0])
                raise self._error("actions", f"negative discrete action {int(act[row])} at row {row}")
        elif act.dtype == np.float32:
            if act.ndim != 2:
                raise self._error("actions",
                                  f"wrong shape {act.shape}, continuous actions must be 2-D (N, act_dim)")
        else:
            raise self._error("actions", f"wrong dtype {act.dtype}, expected integer or float actions")

        for key, arr in arrays.items():
            if arr.dtype.kind == "f":
                bad = ~np.isfinite(arr)
                if bad.any():
                    row = _first_bad_row(bad)
                    what = "NaN" if np.isnan(arr[row]).any() else "inf"
                    raise self._error(key, f"non-finite value ({what}) at row {row}")

        spaces = self.metadata.get("spaces")
        if spaces is not None:
            self._check_spaces(spaces)

    def _check_spaces(self, spaces) -> None:
        if not isinstance(spaces, dict):
            raise self._error("metadata['spaces']", f"must be a dict, got {type(spaces).__name__}")
        if spaces.get("action") is not None:
            self._check_action_space(spaces["action"])
        if spaces.get("observation") is not None:
            for key in ("observations", "next_observations"):
                self._check_observation_space(key, spaces["observation"])

    def _check_action_space(self, space: dict) -> None:
        act = self.actions
        kind = space.get("type")
        if kind == "discrete":
            if act.dtype.kind != "i":
                raise self._error("actions", "continuous actions but the action space is discrete "
                                             "(wrong dtype)")
            n = int(space["n"])
            if np.any(act >= n):
                row = int(np.flatnonzero(act >= n)[0])
                raise self._error("actions", f"action {int(act[row])} at row {row} is outside the "
                                             f"discrete action space (n={n})")
        elif kind == "box":
            if act.dtype.kind != "f":
                raise self._error("actions", "discrete actions but the action space is a box (wrong dtype)")
            low = np.broadcast_to(np.asarray(space["low"], np.float32), act.shape[1:])
            high = np.broadcast_to(np.asarray(space["high"], np.float32), act.shape[1:])
            bad = (act < low) | (act > high)
            if bad.any():
                row = _first_bad_row(bad)
                raise self._error("actions", f"action at row {row} is outside the box action space "
                                             f"bounds [{low.tolist()}, {high.tolist()}]")
        else:
            raise self._error("metadata['spaces']", f"unknown action space type {kind!r}")

    def _check_observation_space(self, key: str, space: dict) -> None:
        obs = getattr(self, key)
        kind = space.get("type")
        if kind == "box":
            # low/high are optional for observations: most D4RL tasks have unbounded boxes.
            bad = np.zeros(obs.shape, bool)
            if space.get("low") is not None:
                bad |= obs < np.asarray(space["low"], np.float32)
            if space.get("high") is not None:
                bad |= obs > np.asarray(space["high"], np.float32)
            if bad.any():
                raise self._error(key, f"row {_first_bad_row(bad)} is outside the box observation space bounds")
        elif kind == "multidiscrete":
            nvec = np.asarray(space["nvec"], np.float32)
            if obs.shape[1] != nvec.shape[0]:
                raise self._error(key, f"wrong shape: obs_dim {obs.shape[1]} does not match the "
                                       f"multidiscrete observation space nvec of length {nvec.shape[0]}")
            bad = (obs != np.round(obs)) | (obs < 0) | (obs >= nvec)
            if bad.any():
                raise self._error(key, f"row {_first_bad_row(bad)} is outside the multidiscrete "
                                       f"observation space (nvec={nvec.astype(int).tolist()})")
        else:
            raise self._error("metadata['spaces']", f"unknown observation space type {kind!r}")

    # ------------------------------------------------------------------ shape info

    def __len__(self) -> int:
        return int(self.observations.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def discrete_actions(self) -> bool:
        return self.actions.dtype.kind == "i"

    @property
    def act_dim(self) -> int:
        return 1 if self.discrete_actions else int(self.actions.shape[1])

    @property
    def num_actions(self) -> int:
        if not self.discrete_actions:
            return self.act_dim
        space = (self.metadata.get("spaces") or {}).get("action") or {}
        if space.get("type") == "discrete":
            return int(space["n"])
        return int(self.actions.max()) + 1

    def episodes(self) -> np.ndarray:
        return episode_bounds(self.terminals, self.timeouts)

    @property
    def recorded_task(self) -> str | None:
        """The task the data say they belong to: metadata `task` (rtaug's maze collectors and
        imports write it), else `env` (BoxBall's collector writes only that); None if neither."""
        for key in ("task", "env"):
            if isinstance(self.metadata.get(key), str):
                return self.metadata[key]
        return None

    def fingerprint(self) -> str:
        """A hash of the transitions (arrays, dtypes and shapes): equal for the same data however
        the file was written or named; what a trained model or policy records of its data."""
        h = hashlib.blake2b(digest_size=16)
        for key in ("observations", "actions", "rewards", "terminals", "next_observations"):
            arr = np.ascontiguousarray(getattr(self, key))
            h.update(f"{key}{arr.dtype}{arr.shape}".encode())
            h.update(arr.data)
        return h.hexdigest()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_arrays(cls, arrays: dict, metadata=None, source="<memory>") -> "Dataset":
        for key in REQUIRED_KEYS:
            if key not in arrays:
                raise DatasetError(f"{source}: key '{key}': missing (required)")
        obs = np.asarray(arrays["observations"])
        timeouts = arrays.get("timeouts")
        if timeouts is None:
            timeouts = np.zeros(obs.shape[0] if obs.ndim else 0, bool)
        infos = {k[len("infos/"):]: v for k, v in arrays.items() if k.startswith("infos/")}
        return cls(
            observations=obs,
            actions=arrays["actions"],
            rewards=arrays["rewards"],
            terminals=arrays["terminals"],
            timeouts=timeouts,
            next_observations=arrays["next_observations"],
            generated=arrays.get("generated"),
            reliability=arrays.get("reliability"),
            infos=infos,
            metadata=dict(metadata or {}),
            source=source,
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        return dict(self._named_arrays())

    def subset(self, idx) -> "Dataset":
        idx = np.asarray(idx)
        return Dataset(
            observations=self.observations[idx],
            actions=self.actions[idx],
            rewards=self.rewards[idx],
            terminals=self.terminals[idx],
            timeouts=self.timeouts[idx],
            next_observations=self.next_observations[idx],
            generated=None if self.generated is None else self.generated[idx],
            reliability=None if self.reliability is None else self.reliability[idx],
            infos={k: v[idx] for k, v in self.infos.items()},
            metadata=dict(self.metadata),
            source=self.source,
        )

    def concat(self, other: "Dataset") -> "Dataset":
        if self.discrete_actions != other.discrete_actions:
            raise self._error("actions", f"cannot concatenate discrete and continuous actions "
                                         f"({other.source})")
        if self.obs_dim != other.obs_dim:
            raise self._error("observations", f"obs_dim {self.obs_dim} does not match {other.obs_dim} "
                                              f"of {other.source}")
        if self.actions.shape[1:] != other.actions.shape[1:]:
            raise self._error("actions", f"shape {self.actions.shape[1:]} does not match "
                                         f"{other.actions.shape[1:]} of {other.source}")

        def both(a, b, n_a, n_b, fill, dtype):
            if a is None and b is None:
                return None
            a = np.full(n_a, fill, dtype) if a is None else a
            b = np.full(n_b, fill, dtype) if b is None else b
            return np.concatenate([a, b])

        metadata = dict(self.metadata)
        if "generator" in other.metadata:
            metadata["generator"] = other.metadata["generator"]
        # An info with different per-row shapes on the two sides cannot be stacked, so it is dropped.
        shared = [k for k in self.infos
                  if k in other.infos and self.infos[k].shape[1:] == other.infos[k].shape[1:]]
        return Dataset(
            observations=np.concatenate([self.observations, other.observations]),
            actions=np.concatenate([self.actions, other.actions]),
            rewards=np.concatenate([self.rewards, other.rewards]),
            terminals=np.concatenate([self.terminals, other.terminals]),
            timeouts=np.concatenate([self.timeouts, other.timeouts]),
            next_observations=np.concatenate([self.next_observations, other.next_observations]),
            generated=both(self.generated, other.generated, len(self), len(other), False, bool),
            reliability=both(self.reliability, other.reliability, len(self), len(other), 0.0, np.float32),
            infos={k: np.concatenate([self.infos[k], other.infos[k]]) for k in shared},
            metadata=metadata,
            source=self.source,
        )
