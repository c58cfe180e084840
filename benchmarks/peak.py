"""This CPU's float32 matmul peak, the yardstick every benchmark here reports against."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp


def matmul_peak(sizes=(1024, 2048, 4096), repeats=5) -> float:
    """Best FLOP/s of a large jitted float32 matmul (XLA, all cores), over sizes and repeats."""
    best = 0.0
    f = jax.jit(lambda x, y: x @ y)
    for n in sizes:
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
        f(a, b).block_until_ready()
        for _ in range(repeats):
            t = time.perf_counter()
            f(a, b).block_until_ready()
            best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best
