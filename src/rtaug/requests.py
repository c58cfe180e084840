"""What every `rtaug` command checks about its request before it works.

Each subcommand declares the roles of its path arguments (`In` and `Out`, in its parser's
`paths` default) and the checks of its flags (`checks`: `Num` for a numeric flag's range, and
functions for combinations of flags). `check_request` runs after parsing and before the
command's function, so a request that would read a missing file, destroy an input or run with
a flag out of range is refused in one line before any minutes of work, and nothing on disk is
touched by a refused request.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from rtaug.ranges import Range, range_of

FILE, DIR = "file", "directory"


class RequestError(ValueError):
    """A request refused before the command ran: one line naming the flag or path and the problem."""


@dataclass(frozen=True)
class In:
    """An input path: `arg` is an option as typed ("--dataset") or a positional's dest ("file")."""

    arg: str
    kind: str = FILE
    noun: str | None = None  # what a missing one is called ("run directory"); default: its kind


@dataclass(frozen=True)
class Out:
    """An output path. `reuse`: True when an existing output is the normal case (a re-run reuses
    or regenerates it), or the dest of the flag that makes it so ("resume"); otherwise an
    existing output needs --overwrite. `shared`: other processes may write into the directory
    at the same time (a stage cache, a Minari root), so leftovers inside it are not ours."""

    arg: str
    kind: str = FILE
    reuse: bool | str = False
    shared: bool = False


@dataclass(frozen=True)
class Num:
    """A numeric flag and the range of its values (every value, for a flag that takes several)."""

    arg: str
    rule: Range

    def __call__(self, args) -> None:
        value = getattr(args, _dest(self.arg), None)
        for v in value if isinstance(value, list) else [value]:
            problem = None if v is None else self.rule.problem(v)
            if problem:  # the value as typed: 2, not argparse's 2.0
                raise RequestError(f"{self.arg} {format(v, 'g') if isinstance(v, float) else v}: {problem}")


def flags_of(cls, *fields: str, **flags: str) -> tuple[Num, ...]:
    """`Num` checks of flags that set fields of the config dataclass `cls`, by the ranges the
    fields declare (`rtaug.ranges`): a field in `fields` is set by --its-name, a `field="--flag"`
    by that flag."""
    named = {**{f: "--" + f.replace("_", "-") for f in fields}, **flags}
    checks = []
    for name, flag in named.items():
        rule = range_of(cls, name)
        if rule is None:
            raise TypeError(f"{cls.__name__}.{name} declares no range")
        checks.append(Num(flag, rule))
    return tuple(checks)


@dataclass(frozen=True)
class TaskOf:
    """--task against the task the input `arg` records: a dataset's metadata (`recorded_task`),
    or a run directory's summary.json. They must name the same maze: another maze (or family)
    reads the states against other walls and another goal. With `rewards`, the reward type must
    match too, for a command that uses the file's rewards under --task's name (audit checks them,
    train-policy learns from them); evaluating a policy (`rewards=False`) may count its returns
    in the maze's other reward. An input that records no task rtaug knows is not compared, and a
    dataset must fit --task's spaces either way."""

    arg: str
    rewards: bool = True

    def __call__(self, args) -> None:
        from rtaug.envs.registry import TASKS, TaskError

        given, value = TASKS.get(getattr(args, "task", None)), getattr(args, _dest(self.arg), None)
        if given is None or value is None:
            return  # no --task, or one the command itself names as unknown
        if Path(value).is_dir():
            data, recorded, where = None, _run_task(Path(value)), f"the run {value} was trained for"
        else:
            data = read_dataset(value)
            recorded, where = data.recorded_task, f"{value} records task"
        recorded = TASKS.get(recorded)
        if recorded is not None and recorded.name != given.name:
            same_maze = getattr(recorded, "maze", None) is not None and getattr(given, "maze", None) == recorded.maze
            if not same_maze:
                raise RequestError(f"--task {given.name}: {where} {recorded.name}")
            if self.rewards:
                raise RequestError(f"--task {given.name}: {where} {recorded.name} (the same maze, but its "
                                   f"rewards are the {recorded.reward_type} ones)")
        if data is not None:
            try:
                given.check_dataset(data)
            except TaskError as e:
                raise RequestError(str(e)) from None


def _run_task(run: Path) -> str | None:
    """The task a `train-policy` run recorded (summary.json), or None (a killed run has none; a
    damaged summary is the command's to report)."""
    import json

    try:
        return json.loads((run / "summary.json").read_text()).get("task")
    except (OSError, ValueError, AttributeError):
        return None


def read_dataset(path):
    """The dataset file at `path`, for a check that reads it: a malformed file is refused with the
    loader's message (it names the file, the key and the problem)."""
    from rtaug.data.dataset import DatasetError
    from rtaug.data.hdf5 import load_hdf5

    try:
        return load_hdf5(path)
    except DatasetError as e:
        raise RequestError(str(e)) from None


def _dest(arg: str) -> str:
    return arg.lstrip("-").replace("-", "_")


def _label(arg: str, value) -> str:
    # a positional is named by its path alone; an option by the flag the user typed
    return f"{arg} {value}" if arg.startswith("-") else str(value)


def _kind_of(path: Path) -> str | None:
    if path.is_dir():
        return DIR
    if path.exists():
        return FILE
    return None


def _same(a: Path, b: Path) -> bool:
    """One file by either name (links included), or one path for what does not exist yet."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve()) and not _same(path, directory)


def _nonempty(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def _check_input(role: In, value) -> tuple[Path, str]:
    path = Path(value)
    label = _label(role.arg, value)
    kind = _kind_of(path)
    if kind is None:
        raise RequestError(f"{label}: no such {role.noun or role.kind}")
    if kind != role.kind:
        raise RequestError(f"{label}: is a {kind}, not a {role.kind}")
    mode = os.R_OK | (os.X_OK if kind == DIR else 0)
    if not os.access(path, mode):
        raise RequestError(f"{label}: not readable (permission denied)")
    return path, label


def _check_parent(label: str, path: Path) -> None:
    """The directory that will hold `path` exists or can be made, and takes new entries."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        if ancestor.is_symlink():  # a dangling link cannot be made into a directory
            raise RequestError(f"{label}: {ancestor} is a broken link")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RequestError(f"{label}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RequestError(f"{label}: cannot write in {ancestor} (permission denied)")


def _reused(role: Out, args) -> bool:
    return role.reuse is True or (isinstance(role.reuse, str) and bool(getattr(args, role.reuse, False)))


def _check_output(role: Out, value, args, inputs: list[tuple[In, Path, str]]) -> Path:
    path = Path(value)
    label = _label(role.arg, value)
    kind = _kind_of(path)
    if kind is not None and kind != role.kind:
        raise RequestError(f"{label}: is a {kind}, not a {role.kind}")
    reused = _reused(role, args)
    for _, source, source_label in inputs:
        if _same(path, source):
            raise RequestError(f"{label}: is also the input {source_label}; choose another path")
        if source.is_dir() and path.exists() and _inside(path, source) and not reused:
            raise RequestError(f"{label}: is part of the input {source_label}; choose another path")
        if role.kind == DIR and not reused and _inside(source, path):
            raise RequestError(f"{label}: holds the input {source_label}; choose another directory")
    _check_parent(label, path)
    if kind is not None and not reused and _nonempty(path) and not getattr(args, "overwrite", False):
        if isinstance(role.reuse, str):
            flag = "--" + role.reuse.replace("_", "-")
            raise RequestError(f"{label}: exists; pass {flag} to continue it, or choose another path")
        raise RequestError(f"{label}: exists; pass --overwrite to replace it")
    return path


def check_request(args) -> None:
    """Refuse the request (RequestError) if a declared path or check fails; then remove what a
    killed earlier run left beside (and, for directories no one else writes, inside) its outputs."""
    outputs = _check_paths(args)
    for check in getattr(args, "checks", ()):
        check(args)
    # Only once the whole request passed: a refused request changes nothing on disk.
    for role, path in outputs:
        remove_leftovers(path, inside=role.kind == DIR and not role.shared)


def _check_paths(args) -> list[tuple[Out, Path]]:
    """The declared inputs and outputs checked; the outputs with their roles."""
    roles = getattr(args, "paths", ())
    inputs = []
    for role in roles:
        if isinstance(role, In) and getattr(args, _dest(role.arg), None) is not None:
            inputs.append((role, *_check_input(role, getattr(args, _dest(role.arg)))))
    outputs = []
    for role in roles:
        if isinstance(role, Out) and getattr(args, _dest(role.arg), None) is not None:
            outputs.append((role, _check_output(role, getattr(args, _dest(role.arg)), args, inputs)))
    return outputs


# rtaug.fileio's temporary names: "." + target name + "." + mkstemp's 8 random characters
# (+ ".old" for a directory moved aside) + ".tmp", or the target's own suffix for figures.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(?:\.old)?(?P<suffix>\.[^.]+)$")


def is_leftover(name: str, target: str | None = None) -> bool:
    """Whether `name` is a temporary of rtaug.fileio (of the entry `target`, if given)."""
    m = _TEMPORARY.match(name)
    if m is None or (target is not None and m["name"] != target):
        return False
    return m["suffix"] == ".tmp" or m["suffix"] == Path(m["name"]).suffix


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_leftovers(path, inside: bool = False) -> list[Path]:
    """Remove the temporaries a killed writer of `path` left beside it (and with `inside`, those
    anywhere under the directory `path`); returns what was removed."""
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for entry in path.parent.iterdir():
            if is_leftover(entry.name, path.name):
                _remove(entry)
                removed.append(entry)
    if inside and path.is_dir():
        for folder, dirs, files in os.walk(path):
            for name in [*files, *dirs]:
                if is_leftover(name):
                    _remove(Path(folder) / name)
                    removed.append(Path(folder) / name)
            dirs[:] = [d for d in dirs if not is_leftover(d)]
    return removed


__all__ = ["DIR", "FILE", "In", "Num", "Out", "RequestError", "TaskOf", "check_request", "flags_of",
           "is_leftover", "read_dataset", "remove_leftovers"]
