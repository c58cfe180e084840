"""A plain multilayer perceptron."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

INITS = ("lecun", "torch")


def _uniform(bound: float):
    return lambda key, shape, dtype=jax.numpy.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class MLP(nn.Module):
    hidden: Sequence[int]
    out: int
    activation: str = "relu"
    # "lecun": Flax's default (LeCun normal weights, zero biases); "torch": PyTorch nn.Linear's
    # default (weights and biases U(±1/√fan_in), about √3 smaller weights), for learners whose
    # published settings were tuned on it (BCQ's authors' code, docs/decisions.md)
    weight_init: str = "lecun"

    @nn.compact
    def __call__(self, x):
        act = getattr(nn, self.activation)
        for i, h in enumerate(self.hidden):
            x = act(self._dense(h, f"dense{i}", x.shape[-1])(x))
        return self._dense(self.out, "out", x.shape[-1])(x)

    def _dense(self, features: int, name: str, fan_in: int):
        if self.weight_init == "lecun":
            return nn.Dense(features, name=name)
        if self.weight_init == "torch":
            bound = float(fan_in) ** -0.5
            return nn.Dense(features, name=name, kernel_init=_uniform(bound), bias_init=_uniform(bound))
        raise ValueError(f"MLP.weight_init must be one of {INITS}, got {self.weight_init!r}")
