"""Reading and writing datasets as D4RL-layout HDF5 files."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from rtaug.data.dataset import Dataset, DatasetError
from rtaug.fileio import replacing

__all__ = ["load_hdf5", "save_hdf5"]

METADATA_ATTR = "rtaug_metadata"
_ROOT_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts",
              "next_observations", "generated", "reliability")
_FILE_REQUIRED = ("observations", "actions", "rewards", "terminals")


def _read_file(path: Path, source: str) -> tuple[dict[str, np.ndarray], dict]:
    if not path.exists():
        raise DatasetError(f"{source}: file not found")
    if not path.is_file() or not h5py.is_hdf5(path):
        raise DatasetError(f"{source}: not an HDF5 file")
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
    metadata = {}
    if raw_meta is not None:
        try:
            metadata = json.loads(raw_meta.decode() if isinstance(raw_meta, bytes) else str(raw_meta))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{source}: key '{METADATA_ATTR}': invalid JSON ({exc})") from exc
        if not isinstance(metadata, dict):
            raise DatasetError(f"{source}: key '{METADATA_ATTR}': expected a JSON object")
    return arrays, metadata


def _derive_next_observations(arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Mirror D4RL's qlearning_dataset for files that lack next_observations.

    D4RL pairs row i with row i+1 and drops rows where timeouts is set (their successor starts
    a new episode) and the file's final row (no successor). Terminal rows are kept with the
    following row as next observation, exactly as D4RL does, since value targets ignore it.
    Dropping a timeout row would merge its segment into the next one, so the row before it
    inherits the timeout flag.
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
    dropped = timeouts.copy()
    dropped[-1] = True
    keep = ~dropped

    before = np.flatnonzero(dropped) - 1
    before = before[before >= 0]
    before = before[keep[before] & ~terminals[before]]
    new_timeouts = timeouts.copy()
    new_timeouts[before] = True

    out = {k: v[keep] for k, v in arrays.items()}
    out["timeouts"] = new_timeouts[keep]
    out["next_observations"] = obs[1:][keep[:-1]]
    return out


def load_hdf5(path) -> Dataset:
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
        arrays = _derive_next_observations(arrays, source)
    return Dataset.from_arrays(arrays, metadata=metadata, source=source)


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
