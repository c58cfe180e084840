"""A plain multilayer perceptron."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn


class MLP(nn.Module):
    hidden: Sequence[int]
    out: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, x):
        act = getattr(nn, self.activation)
        for i, h in enumerate(self.hidden):
            x = act(nn.Dense(h, name=f"dense{i}")(x))
        return nn.Dense(self.out, name="out")(x)
