"""Data layer: D4RL-layout datasets, HDF5 I/O and episode utilities."""
from rtaug.data.dataset import Dataset, DatasetError
from rtaug.data.episodes import Normalizer, episode_bounds, reward_to_go, window_rows
from rtaug.data.hdf5 import load_hdf5, save_hdf5

__all__ = [
    "Dataset",
    "DatasetError",
    "Normalizer",
    "episode_bounds",
    "reward_to_go",
    "window_rows",
    "load_hdf5",
    "save_hdf5",
]
