"""Atomic file writes: a temporary file in the target's directory, then a rename.

A reader (or a crash) never sees a half-written file, and an existing file at the target
is replaced only once the new one is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def replacing(path, suffix: str = ".tmp"):
    """Yield a temporary path beside `path`; on success it becomes `path`, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # same directory as the target, so os.replace is a rename within one filesystem
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        _ordinary_permissions(tmp, 0o666)  # mkstemp makes files owner-only
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _ordinary_permissions(path, mode: int) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, mode & ~mask)


@contextlib.contextmanager
def replacing_dir(path):
    """Yield a temporary directory beside `path`; on success it becomes `path` whole (an old
    directory there is moved aside, then deleted), on failure it is removed and `path` is left as
    it was. A reader never sees a mixture of an old and a new directory's files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        yield Path(tmp)
        _ordinary_permissions(tmp, 0o777)
        if path.is_dir() and any(path.iterdir()):
            # POSIX renames onto an empty directory only: two renames, a moment apart
            old = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old.tmp")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path, data: bytes) -> Path:
    with replacing(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_json(path, obj) -> Path:
    return atomic_write_bytes(path, json.dumps(obj, indent=2).encode())


def atomic_savefig(fig, path, **kwargs) -> Path:
    """matplotlib's savefig, atomically (the format comes from the target's suffix)."""
    with replacing(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, **kwargs)
    return Path(path)
