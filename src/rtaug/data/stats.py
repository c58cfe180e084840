"""What a dataset holds, in the figures D4RL publishes of its own: rows, episodes and how they end,
episode lengths and returns. Pure numpy; the score of the data under a task's references is the
experiment layer's (it knows the task), `rtaug.experiments.stages.describe_file`."""

from __future__ import annotations

import numpy as np

from rtaug.data.dataset import Dataset
from rtaug.data.episodes import episode_returns

__all__ = ["dataset_stats"]


def _spread(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}


def dataset_stats(data: Dataset) -> dict:
    """Counts and episode statistics of `data`. An episode ends at a terminal or a timeout; rows
    after the last of them are an unfinished episode, counted apart (`unfinished_rows`) and left
    out of the return and length figures, which describe whole episodes as D4RL's do. When the
    data carry RT's `generated` flags the generated rows are counted, with their mean
    reliability Γ."""
    bounds = data.episodes()
    done = data.terminals | data.timeouts
    whole = bounds[done[bounds[:, 1] - 1]] if len(bounds) else bounds
    out = {
        "rows": len(data), "obs_dim": data.obs_dim,
        "act_dim": None if data.discrete_actions else data.act_dim,
        "episodes": len(whole), "terminals": int(data.terminals.sum()), "timeouts": int(data.timeouts.sum()),
        "unfinished_rows": int(len(data) - (whole[-1, 1] if len(whole) else 0)),
        "reward": _spread(data.rewards) if len(data) else None,
        "episode_length": None, "episode_return": None, "generated_rows": None, "generated_reliability": None,
    }
    if len(whole):
        out["episode_length"] = _spread(whole[:, 1] - whole[:, 0])
        out["episode_return"] = _spread(episode_returns(data.rewards, whole))
    if data.generated is not None:
        out["generated_rows"] = int(data.generated.sum())
        if data.reliability is not None and data.generated.any():
            out["generated_reliability"] = float(data.reliability[data.generated].mean())
    return out
