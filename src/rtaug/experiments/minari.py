"""`rtaug minari export` and `rtaug minari import` as calls: a typed request in, the file or the
Minari dataset out. The command line only parses its flags into these requests."""

from __future__ import annotations

import functools
from dataclasses import dataclass

_print = functools.partial(print, flush=True)


@dataclass
class ExportRequest:
    file: str  # an rtaug / D4RL-layout HDF5 file
    id: str  # the Minari dataset id to write, e.g. "rtaug/umaze-sparse-v0"
    task: str | None = None  # the task the data belong to (default: the file's recorded task)
    root: str | None = None  # Minari's datasets root (default: MINARI_DATASETS_PATH or ~/.minari/datasets)


@dataclass
class ImportRequest:
    source: str  # a local Minari dataset id or directory
    out: str  # the HDF5 file to write
    task: str | None = None  # the task the data belong to (default: the one the dataset's env_spec names)
    frame: str | None = None  # "d4rl" | "gymnasium-robotics" (default: the one the env_spec implies)
    relabel: bool = False  # rewrite rewards with the task's reward function
    root: str | None = None


def _check_minari_id(dataset_id) -> str:
    """A valid id's next version (to suggest when the id is taken); a malformed id is an error."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        namespace, name, version = parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        # Checked before Minari sees it: Minari leaves an empty directory behind for a bad id.
        raise ValueError(f"--id {dataset_id!r}: not a Minari dataset id; ids look like "
                         "'namespace/name-v0' or 'name-v0' (letters, digits, '_', '-', '.', ':')") from None
    return (f"{namespace}/" if namespace else "") + f"{name}-v{version + 1}"


def _recorded_task(data):
    """The task a file records in its metadata, when it is one of the registry's (else None)."""
    from rtaug.envs.registry import TASKS

    named = data.recorded_task
    return named if named in TASKS else None


def export_minari(req: ExportRequest, printer=_print) -> None:
    """What `rtaug minari export` does: check the id, the target and the task first, then write."""
    from rtaug.data.hdf5 import load_hdf5
    from rtaug.data.minari_io import STEP_INFOS, dataset_root, save_minari
    from rtaug.envs.registry import get_task

    next_id = _check_minari_id(req.id)
    task = get_task(req.task) if req.task is not None else None
    root = dataset_root(req.root)
    target = root / req.id
    if target.exists():
        delete = (f"MINARI_DATASETS_PATH={req.root} " if req.root else "") + f"minari delete {req.id}"
        raise ValueError(f"Minari dataset {req.id!r} already exists in {root} ({target}); choose another "
                         f"--id (e.g. a new version: {next_id}), another --root, or remove it first (`{delete}`)")
    data = load_hdf5(req.file)
    recorded = _recorded_task(data)
    if task is not None and recorded is not None and recorded != task.name:
        raise ValueError(f"--task {task.name}: {req.file} records task {recorded} (its data, rewards included, "
                         "are that task's); drop --task, or export a file made for this task")
    task = task or (get_task(recorded) if recorded else None)
    if task is not None:
        task.check_dataset(data)
    printer(f"exporting {req.file}: {len(data)} transitions -> Minari dataset {req.id} in {root}"
            + (f" (env_spec {task.gym_id})" if task else ""))
    if task is None:
        printer("note: no task (no --task, none recorded in the file): the dataset gets no env_spec, so "
                "recover_environment() cannot make its env; pass --task (one of `rtaug tasks`) to add it")
    md = save_minari(data, req.id, root=req.root, task=task)
    columns = [k for k in STEP_INFOS if getattr(data, k) is not None]
    ref = task.references if task is not None else None
    printer(f"wrote {req.id}: {md.total_episodes} episodes, {md.total_steps} steps ({target})"
            + (f"; {' and '.join(columns)} as step infos" if columns else "")
            + (f"; reference scores {ref.random} (random), {ref.expert} (expert)"
               if ref is not None and ref.random is not None and ref.expert is not None else ""))


def _import_frame(req, info):
    """The task and frame of an import: the flags, else what the dataset's env_spec says; a flag that
    contradicts the env_spec, or a maze task whose frame cannot be told, is refused."""
    from rtaug.data.minari_io import EXPORT_MARK
    from rtaug.envs.frames import source_of
    from rtaug.envs.registry import get_task

    src = source_of(info["env_spec"], info["description"].startswith(EXPORT_MARK))
    name = info["name"]
    if req.task is not None and src.task is not None and req.task != src.task:
        asked, recorded = get_task(req.task), get_task(src.task)
        same_maze = asked.family == recorded.family == "maze2d" and asked.maze == recorded.maze
        if not same_maze:
            raise ValueError(f"--task {req.task}: {name} was recorded as task {src.task} ({src.basis}); "
                             "drop --task")
        if not req.relabel:
            raise ValueError(f"--task {req.task}: {name}'s rewards are {recorded.reward_type} ({src.basis}); "
                             f"pass --relabel to recompute them as {asked.reward_type}, or drop --task")
    if req.frame is not None and src.frame is not None and req.frame != src.frame:
        raise ValueError(f"--frame {req.frame}: {name}'s observations are in the {src.frame} frame "
                         f"({src.basis}); drop --frame")
    task = req.task or src.task
    frame = req.frame or src.frame
    if task is None:
        if req.frame is not None or req.relabel:
            flag = "--relabel" if req.relabel else f"--frame {req.frame}"
            raise ValueError(f"{flag} needs a task, and {name} names none ({src.why}); "
                             "pass --task (one of `rtaug tasks`)")
        return None, None, src
    if get_task(task).family == "maze2d" and frame is None:
        raise ValueError(f"cannot tell the frame of {name}'s observations ({src.why}); pass --frame d4rl "
                         "(rtaug's and D4RL's) or --frame gymnasium-robotics (gymnasium-robotics' PointMaze)")
    return task, frame or "d4rl", src


def import_minari(req: ImportRequest, printer=_print) -> None:
    """What `rtaug minari import` does: check the flags and that the dataset is local, read its
    env_spec for the task and the frame, then convert."""
    from pathlib import Path

    from rtaug.data.hdf5 import save_hdf5
    from rtaug.data.minari_io import dataset_root, load_minari, local_dataset_ids, minari_info
    from rtaug.envs.frames import as_task
    from rtaug.envs.registry import get_task

    if req.task is not None:
        get_task(req.task)
    root = dataset_root(req.root)
    if not Path(req.source).exists() and not (root / req.source).exists():
        raise ValueError(f"Minari dataset {req.source!r} not found in {root} (and no directory of that "
                         f"name); local datasets: {local_dataset_ids(req.root)}. rtaug never downloads: "
                         "fetch it with `minari download ID`, or pass --root or a dataset directory")
    task, frame, src = _import_frame(req, minari_info(req.source, root=req.root))
    data = load_minari(req.source, root=req.root)
    if task is not None:
        data = as_task(data, task, frame=frame, relabel=req.relabel)
    save_hdf5(data, req.out)
    m = data.metadata.get("minari", {})
    how = ""
    if task is not None:
        told = "--task" if req.task else f"its {src.basis}"
        mapped = "" if get_task(task).family != "maze2d" else (
            f", {frame} frame" + (" mapped to D4RL's" if frame != "d4rl" else ""))
        how = f" (task {task} from {told}{mapped}{', rewards relabelled' if req.relabel else ''})"
    printer(f"wrote {req.out}: {len(data)} transitions, {m.get('total_episodes')} episodes from Minari "
            f"{m.get('dataset_id')}{how}")
    if frame == "gymnasium-robotics" and not req.relabel:
        printer(f"note: the rewards are as recorded in {src.env} (for each episode's own goal, kept as "
                f"infos/goal); --relabel recomputes them for {task}'s fixed evaluation goal")


__all__ = ["ExportRequest", "ImportRequest", "export_minari", "import_minari"]
