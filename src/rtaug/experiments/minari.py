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
    task: str | None = None  # the task the data belongs to (checked against the file; recorded)
    root: str | None = None  # Minari's datasets root (default: MINARI_DATASETS_PATH or ~/.minari/datasets)


@dataclass
class ImportRequest:
    source: str  # a local Minari dataset id or directory
    out: str  # the HDF5 file to write
    task: str | None = None  # the task whose frame mapping and rewards apply
    frame: str = "d4rl"  # "d4rl" or "gymnasium-robotics": the frame of the dataset's observations
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


def export_minari(req: ExportRequest, printer=_print) -> None:
    """What `rtaug minari export` does: check the id, the target and the task first, then write."""
    from rtaug.data.hdf5 import load_hdf5
    from rtaug.data.minari_io import dataset_root, save_minari
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
    if task is not None:
        task.check_dataset(data)
    printer(f"exporting {req.file}: {len(data)} transitions -> Minari dataset {req.id} in {root}")
    md = save_minari(data, req.id, root=req.root, task=task.name if task is not None else None)
    printer(f"wrote {req.id}: {md.total_episodes} episodes, {md.total_steps} steps ({target})")


def import_minari(req: ImportRequest, printer=_print) -> None:
    """What `rtaug minari import` does: check the flags and that the dataset is local, then convert."""
    from pathlib import Path

    from rtaug.data.hdf5 import save_hdf5
    from rtaug.data.minari_io import dataset_root, load_minari, local_dataset_ids
    from rtaug.envs.frames import as_task
    from rtaug.envs.registry import get_task

    if req.task is None and (req.frame != "d4rl" or req.relabel):
        raise ValueError("--frame gymnasium-robotics and --relabel need --task: the frame mapping and the "
                         "rewards are the task's (one of `rtaug tasks`)")
    if req.task is not None:
        get_task(req.task, "maze2d", "--task (the frame mapping and the rewards)")
    root = dataset_root(req.root)
    if not Path(req.source).exists() and not (root / req.source).exists():
        raise ValueError(f"Minari dataset {req.source!r} not found in {root} (and no directory of that "
                         f"name); local datasets: {local_dataset_ids(req.root)}. rtaug never downloads: "
                         "fetch it with `minari download ID`, or pass --root or a dataset directory")
    data = load_minari(req.source, root=req.root)
    if req.task is not None:
        data = as_task(data, req.task, frame=req.frame, relabel=req.relabel)
    save_hdf5(data, req.out)
    m = data.metadata.get("minari", {})
    how = f" (task {req.task}, {req.frame} frame{', rewards relabelled' if req.relabel else ''})" if req.task else ""
    printer(f"wrote {req.out}: {len(data)} transitions, {m.get('total_episodes')} episodes from Minari "
            f"{m.get('dataset_id')}{how}")


__all__ = ["ExportRequest", "ImportRequest", "export_minari", "import_minari"]
