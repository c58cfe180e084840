"""Dataset collection: online agents whose experience becomes an offline dataset."""

from rtaug.collect.dqn import DQNConfig, collect_boxball

__all__ = ["DQNConfig", "collect_boxball"]
