"""A plain multilayer perceptron."""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax

from rtaug.nets import onednn

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
    # "xla": flax's Dense; "onednn" / "onednn-bf16": the same parameters, the matmuls through
    # oneDNN in float32 / with bfloat16 products (AMX; rtaug.nets.onednn)
    matmul: str = "xla"

    @nn.compact
    def __call__(self, x):
        act = getattr(nn, self.activation)
        for i, h in enumerate(self.hidden):
            x = act(self._dense(h, f"dense{i}", x.shape[-1])(x))
        return self._dense(self.out, "out", x.shape[-1])(x)

    def _dense(self, features: int, name: str, fan_in: int):
        layer = dense_layer(self.matmul, "MLP.matmul")
        if self.weight_init == "lecun":
            return layer(features, name=name)
        if self.weight_init == "torch":
            bound = float(fan_in) ** -0.5
            return layer(features, name=name, kernel_init=_uniform(bound), bias_init=_uniform(bound))
        raise ValueError(f"MLP.weight_init must be one of {INITS}, got {self.weight_init!r}")


def dense_layer(matmul: str, where: str = "matmul"):
    """The Dense layer class for a `matmul` mode: flax's for "xla", else OnednnDense (same
    parameters, so checkpoints move between the modes); ValueError naming `where` otherwise."""
    if matmul not in onednn.MODES:
        raise ValueError(f"{where} must be one of {onednn.MODES}, got {matmul!r}")
    return nn.Dense if matmul == "xla" else functools.partial(OnednnDense, bf16=matmul == "onednn-bf16")


class OnednnDense(nn.Module):
    """nn.Dense's parameters (names, shapes, initialisers), its matmul through oneDNN."""

    features: int
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()
    bf16: bool = True

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        return onednn.matmul(x, kernel, bf16=self.bf16) + bias
