"""Atomic file writes: a temporary file in the target's directory, then a rename.

A reader (or a crash) never sees a half-written file, and an existing file at the target
is replaced only once the new one is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
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
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes files owner-only; give ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
