"""Model-free offline RL learners that consume (augmented) datasets.

One file per algorithm, each with the same names:

    Config                      dataclass of the published defaults (per-domain overrides in
                                `Config.DOMAIN_DEFAULTS`, applied by `common.with_domain`)
    init(config, obs_dim, act_dim, key) -> state     pytree: params, targets, optimiser states
    update(config, state, batch, key) -> (state, metrics)   pure, jit- and vmap-able
    act(config, state["params"], obs) -> action       deterministic, in [-1, 1]

`rtaug.train.train(dataset, "iql", config, ...)` runs any of them: the training loop lives above
the algorithms, which are pure functions and know nothing of it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ALGOS = ("bc", "td3bc", "iql", "cql", "bcq")


def get(name_or_module) -> ModuleType:
    """The algorithm module for a name such as "iql" (a module is returned unchanged)."""
    if isinstance(name_or_module, ModuleType):
        return name_or_module
    name = str(name_or_module).lower().replace("+", "").replace("-", "").replace("_", "")
    if name not in ALGOS:
        raise ValueError(f"unknown algorithm {name_or_module!r}; expected one of {ALGOS}")
    try:
        return importlib.import_module(f"rtaug.algos.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"rtaug.algos.{name}":
            raise ValueError(f"algorithm {name!r} is not implemented yet") from None
        raise


def name_of(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[-1]
