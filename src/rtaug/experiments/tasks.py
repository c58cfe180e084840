"""What `rtaug tasks` shows: every task in one table a person can scan, one task in full, or all
of them as JSON for scripts; and what `rtaug reference` measures, a task's random and expert
returns. The registry (`rtaug.envs.registry`) holds the facts; this module lays them out."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from rtaug.envs.registry import get_task, task_names

__all__ = ["ReferenceRequest", "measure_task_references", "show_tasks", "task_details", "task_table", "tasks_json"]

_print = functools.partial(print, flush=True)


def _refs(random, expert) -> str:
    return "–" if random is None or expert is None else f"{random:.1f} / {expert:.1f}"


def task_table() -> str:
    """One row per task: its Gymnasium id, sizes, evaluation protocol and both pairs of references."""
    header = ("task", "gym id", "obs", "act", "evaluation", "references here (random / expert)",
              "D4RL's (random / expert)")
    rows = []
    unmeasured = []
    for name in task_names():
        t = get_task(name)
        ref = t.references
        act = f"{t.act_dim}{' discrete' if t.discrete_actions else ''}"
        if ref.command and (ref.random is None or ref.expert is None):
            unmeasured.append(f"  {name}: {ref.command}")
        rows.append((name, t.gym_id, str(t.obs_dim), act,
                     f"{t.evaluation.episodes} × {t.evaluation.max_episode_steps} steps",
                     _refs(ref.random, ref.expert), _refs(ref.d4rl_random, ref.d4rl_expert)))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    out = "\n".join(lines)
    out += "\n\nScores are normalized with the references measured here; D4RL's are beside them for the papers' scale."
    if unmeasured:
        out += "\nReferences not measured yet (normalizing their scores is refused until they are):\n"
        out += "\n".join(unmeasured)
    out += "\nOne task in full (its data recipe, where the references come from): rtaug tasks NAME"
    return out


def _flatten(about: dict, prefix: str = ""):
    for key, value in about.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def task_details(name: str) -> str:
    """One task: its summary line, then every field of its registry entry as `key: value`."""
    about = get_task(name).describe()
    lines = [f"{about.pop('name')}: {about.pop('summary')}"]
    items = [(k, "–" if v is None else v) for k, v in _flatten(about) if v != ""]
    width = max(len(k) for k, _ in items)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in items]
    return "\n".join(lines)


def tasks_json() -> str:
    """Every task's registry entry, keyed by name (tuples become lists)."""
    return json.dumps({name: get_task(name).describe() for name in task_names()}, indent=2)


def show_tasks(name: str | None = None, as_json: bool = False) -> str:
    """What `rtaug tasks [NAME] [--json]` prints."""
    if as_json:
        if name is None:
            return tasks_json()
        return json.dumps(get_task(name).describe(), indent=2)
    return task_table() if name is None else task_details(name)


@dataclass
class ReferenceRequest:
    task: str
    seed: int = 0
    max_episodes: int = 10_000  # maze2d: the most episodes per policy (it stops at a 1% standard error)
    sac_dir: str | None = None  # locomotion: the finished SAC run whose final actor is the expert
    episodes: int = 100  # locomotion: episodes per policy
    json: str | None = None  # also write the references here
    progress: bool = True


def measure_task_references(req: ReferenceRequest, printer=_print) -> dict:
    """What `rtaug reference` does: a random policy's and the expert's returns on the task, printed
    (and written to `req.json`). Maze2D's expert is the data-collecting controller; a locomotion
    task's is the final actor of the SAC run that made its data."""
    from rtaug.evaluate import measure_references
    from rtaug.fileio import atomic_write_json

    task = get_task(req.task)
    if task.family == "mujoco":
        if req.sac_dir is None:
            raise ValueError(f"{req.task}: --sac-dir is required: the SAC run whose final actor is the expert")
        refs = task.measure_references(req.sac_dir, seed=req.seed, episodes=req.episodes, progress=req.progress)
    else:
        get_task(req.task, "maze2d", "rtaug reference")
        refs = measure_references(req.task, seed=req.seed, max_episodes=req.max_episodes)
    refs = json.loads(json.dumps(refs, default=str))
    printer(json.dumps(refs, indent=2))
    if req.json:
        atomic_write_json(req.json, refs)
    return refs
