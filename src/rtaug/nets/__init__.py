"""Networks: the causal transformer, the reliability VAE, MLPs."""

from rtaug.nets.mlp import MLP
from rtaug.nets.transformer import GPT, KVCache, empty_cache
from rtaug.nets.vae import VAE, vae_loss, reconstruction_error

__all__ = ["MLP", "GPT", "KVCache", "empty_cache", "VAE", "vae_loss", "reconstruction_error"]
