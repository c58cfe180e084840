"""Reading and writing datasets as D4RL-layout HDF5 files."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from rtaug.data.dataset import Dataset, DatasetError
from rtaug.fileio import replacing

__all__ = ["file_fingerprint", "load_hdf5", "load_hdf5_rows", "load_metadata", "next_row_kept", "save_hdf5"]

METADATA_ATTR = "rtaug_metadata"
_ROOT_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts",
              "next_observations", "generated", "reliability")
_FILE_REQUIRED = ("observations", "actions", "rewards", "terminals")


def _check_file(path: Path, source: str) -> None:
    if not path.exists():
        raise DatasetError(f"{source}: file not found")
    if not path.is_file() or not h5py.is_hdf5(path):
        raise DatasetError(f"{source}: not an HDF5 file")


def _read_file(path: Path, source: str) -> tuple[dict[str, np.ndarray], dict]:
    _check_file(path, source)
    arrays: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            for key in _ROOT_KEYS:
                if isinstance(f.get(key), h5py.Dataset):
                    arrays[key] = f[key][()]
            infos = f.get("infos")
            if isinstance(infos, h5py.Group):
                def grab(name, obj):
                    if isinstance(obj, h5py.Dataset):
                        arrays[f"infos/{name}"] = obj[()]
                infos.visititems(grab)
            raw_meta = f.attrs.get(METADATA_ATTR)
    except OSError as exc:
        raise DatasetError(f"{source}: cannot read HDF5 file ({exc})") from exc
    return arrays, _parse_metadata(raw_meta, source)


def _parse_metadata(raw_meta, source: str) -> dict:
    if raw_meta is None:
        return {}
    try:
        metadata = json.loads(raw_meta.decode() if isinstance(raw_meta, bytes) else str(raw_meta))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{source}: key '{METADATA_ATTR}': invalid JSON ({exc})") from exc
    if not isinstance(metadata, dict):
        raise DatasetError(f"{source}: key '{METADATA_ATTR}': expected a JSON object")
    return metadata


def load_metadata(path) -> dict:
    """A file's rtaug metadata alone (how it was made), without reading its arrays."""
    path = Path(path)
    _check_file(path, str(path))
    try:
        with h5py.File(path, "r") as f:
            raw_meta = f.attrs.get(METADATA_ATTR)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read HDF5 file ({exc})") from exc
    return _parse_metadata(raw_meta, str(path))


def next_row_kept(timeouts: np.ndarray) -> np.ndarray:
    """(N,) bool: the file rows D4RL's qlearning_dataset keeps from a file without next_observations.

    It pairs row i with row i+1, so it drops every row whose timeouts is set (its successor
    starts a new episode) and the file's final row (no successor); terminal rows are kept.
    """
    timeouts = np.asarray(timeouts)
    n = timeouts.shape[0] if timeouts.ndim else 0
    keep = ~(timeouts.reshape(n, -1)[:, 0] != 0) if n else np.zeros(0, bool)
    if n:
        keep[-1] = False
    return keep


def _derive_next_observations(arrays: dict[str, np.ndarray], source: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Mirror D4RL's qlearning_dataset for files that lack next_observations.

    D4RL pairs row i with row i+1 and drops rows where timeouts is set (their successor starts
    a new episode) and the file's final row (no successor). Terminal rows are kept with the
    following row as next observation, exactly as D4RL does, since value targets ignore it.
    Dropping a timeout row would merge its segment into the next one, so the row before it
    inherits the timeout flag.

    Returns the arrays and, for each kept row, its row in the file (int64, increasing).
    """
    obs = np.asarray(arrays["observations"])
    n = obs.shape[0] if obs.ndim else 0
    for key, arr in arrays.items():
        if np.ndim(arr) == 0 or arr.shape[0] != n:
            length = arr.shape[0] if np.ndim(arr) else "scalar"
            raise DatasetError(f"{source}: key '{key}': length {length} does not match observations ({n})")
    if n == 0:
        raise DatasetError(f"{source}: key 'observations': empty dataset (0 rows)")
    terminals = np.asarray(arrays["terminals"]).reshape(n, -1)[:, 0] != 0
    timeouts = np.asarray(arrays["timeouts"]).reshape(n, -1)[:, 0] != 0
    keep = next_row_kept(timeouts)
    dropped = ~keep

    before = np.flatnonzero(dropped) - 1
    before = before[before >= 0]
    before = before[keep[before] & ~terminals[before]]
    new_timeouts = timeouts.copy()
    new_timeouts[before] = True

    out = {k: v[keep] for k, v in arrays.items()}
    out["timeouts"] = new_timeouts[keep]
    out["next_observations"] = obs[1:][keep[:-1]]
    return out, np.flatnonzero(keep).astype(np.int64)


def load_hdf5_rows(path) -> tuple[Dataset, np.ndarray]:
    """`load_hdf5`, and for each row of the Dataset the row of the file it came from.

    The mapping is the identity (`arange(N)`) for a file with next_observations. For a file
    without them (D4RL's maze2d/antmaze layout) the loader drops rows as qlearning_dataset
    does (`next_row_kept`), so Dataset row i is file row `file_rows[i]` (int64, increasing);
    file row file_rows[i] + 1 holds row i's next observation. Writers that must reproduce the
    file around generated rows (`rtaug.generate.merge.write_augmented`) need it.
    """
    source = str(path)
    arrays, metadata = _read_file(Path(path), source)
    for key in _FILE_REQUIRED:
        if key not in arrays:
            raise DatasetError(f"{source}: key '{key}': missing from file")
    if "timeouts" not in arrays:
        # D4RL v0 files predate the timeouts key; they only mark true terminals.
        obs = arrays["observations"]
        arrays["timeouts"] = np.zeros(obs.shape[0] if obs.ndim else 0, bool)
    if "next_observations" not in arrays:
        arrays, file_rows = _derive_next_observations(arrays, source)
    else:
        obs = arrays["observations"]
        file_rows = np.arange(obs.shape[0] if obs.ndim else 0, dtype=np.int64)
    return Dataset.from_arrays(arrays, metadata=metadata, source=source), file_rows


def load_hdf5(path) -> Dataset:
    """A D4RL-layout HDF5 file as a Dataset (files without next_observations: see `load_hdf5_rows`)."""
    return load_hdf5_rows(path)[0]


_FINGERPRINTS: dict = {}  # (resolved path, mtime, size) -> fingerprint


def file_fingerprint(path, data: Dataset | None = None) -> str:
    """`Dataset.fingerprint` of a file, read once per version of it (its path, mtime and size);
    `data`: the file as already loaded, so a caller that has read it does not read it again."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = (data if data is not None else load_hdf5(path)).fingerprint()
    return _FINGERPRINTS[key]


def save_hdf5(dataset: Dataset, path, compression: str | None = None) -> None:
    """Write `dataset` to `path` so that readers see either the old file or the complete new one."""
    path = Path(path)
    try:
        meta_json = json.dumps(dataset.metadata)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{dataset.source}: key 'metadata': not JSON-serialisable ({exc})") from exc
    with replacing(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for key, arr in dataset.to_arrays().items():
                f.create_dataset(key, data=arr, compression=compression)
            f.attrs[METADATA_ATTR] = meta_json
