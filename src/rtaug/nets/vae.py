"""The reliability VAE over transitions x = (s, a, s') (paper Eq. 8).

Its reconstruction error stands in for DIST, the total-variation distance between the true
and the learned dynamics, which cannot be computed without the true dynamics (paper §3.1).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from rtaug.nets.mlp import MLP


class VAE(nn.Module):
    x_dim: int
    latent_dim: int = 8
    hidden: Sequence[int] = (128, 128)

    def setup(self):
        self.encoder = MLP(self.hidden, 2 * self.latent_dim)
        self.decoder = MLP(self.hidden, self.x_dim)

    def encode(self, x):
        mu, log_var = jnp.split(self.encoder(x), 2, axis=-1)
        return mu, jnp.clip(log_var, -10.0, 5.0)

    def decode(self, z):
        return self.decoder(z)

    def __call__(self, x, key):
        mu, log_var = self.encode(x)
        z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape)
        return self.decode(z), mu, log_var


def vae_loss(model: VAE, params, x, key):
    """Eq. 8: −E_q[log p(x|z)] + KL(q(z|x) || N(0, I)), with a unit-variance Gaussian decoder."""
    x_hat, mu, log_var = model.apply(params, x, key)
    recon = 0.5 * jnp.sum((x_hat - x) ** 2, axis=-1)
    kl = -0.5 * jnp.sum(1.0 + log_var - mu**2 - jnp.exp(log_var), axis=-1)
    return jnp.mean(recon + kl)


def reconstruction_error(model: VAE, params, x):
    """DIST(x): mean squared error of the reconstruction through the posterior mean (deterministic)."""
    mu, _ = model.apply(params, x, method=VAE.encode)
    x_hat = model.apply(params, mu, method=VAE.decode)
    return jnp.mean((x_hat - x) ** 2, axis=-1)
