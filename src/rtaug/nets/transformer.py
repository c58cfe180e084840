"""A causal GPT small enough to read in one sitting, with a key/value cache.

The same weights serve teacher-forced training (a whole window at once) and incremental
decoding (one token at a time, keys and values of earlier tokens kept in a cache), and both
return the last layer's attention weights, because RT's reliability Γ (paper Eq. 3) is
weighted by them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import flax.linen as nn

from rtaug.nets import onednn
from rtaug.nets.mlp import dense_layer

# A finite "minus infinity": a fully masked row (a left-padding query) then gives a uniform
# softmax instead of NaN, and its output is never used.
_MASKED = -1e9


class KVCache(NamedTuple):
    """Keys and values of every layer for a batch of sequences: per layer (B, heads, T, head_dim).

    One array per layer, not one stacked array: a decoded token then updates each layer's
    buffer in place, where stacking the layers' new keys would copy the whole cache per token
    (at RT's default size, a quarter of a gigabyte per token of a 1,024-row batch).

    With `prefix_k` (per layer (B/G, heads, head_dim, P): transposed, which makes its product
    with a group's queries a plain matmul, 2.3x faster) and `prefix_v` ((B/G, heads, P,
    head_dim)), positions 0..P−1 are one prefix shared by each group of G consecutive rows, and
    `k`/`v` hold positions P.. of every row. Decoding is bound by reading the cache (every token
    reads all of it); rows that continue one context (RT's candidates) then read its keys once
    per group, not once per row.
    """

    k: tuple
    v: tuple
    prefix_k: tuple = ()
    prefix_v: tuple = ()


def empty_cache(n_layer: int, batch: int, max_len: int, n_head: int, d_model: int) -> KVCache:
    shape = (batch, n_head, max_len, d_model // n_head)
    return KVCache(tuple(jnp.zeros(shape, jnp.float32) for _ in range(n_layer)),
                   tuple(jnp.zeros(shape, jnp.float32) for _ in range(n_layer)))


def share_prefix(prefix: KVCache, rows: int, max_len: int) -> KVCache:
    """A cache whose first positions are `prefix`'s (B rows, its whole length P), shared by
    groups of rows // B consecutive rows, followed by max_len − P empty positions per row."""
    b, n_head, p, hd = prefix.k[0].shape
    if rows % b:
        raise ValueError(f"share_prefix: {rows} rows are not whole groups of the prefix's {b}")
    shape = (rows, n_head, max_len - p, hd)
    empty = tuple(jnp.zeros(shape, jnp.float32) for _ in prefix.k)
    return KVCache(empty, empty, tuple(jnp.swapaxes(k, 2, 3) for k in prefix.k), prefix.v)


def _bmm(a, b, transpose_b: bool, matmul: str):
    """a @ b, or a @ bᵀ, over the leading (batch, heads) axes of a cached attention: XLA's batched
    dot, or for a model whose matmuls go through oneDNN, oneDNN's batched matmul in float32
    (decoding takes no gradient), which generates faster here (docs/performance.md)."""
    if matmul != "xla":
        return onednn.batched_matmul(a, b, transpose_b=transpose_b)
    return jnp.einsum("bhqd,bhkd->bhqk" if transpose_b else "bhqk,bhkd->bhqd", a, b)


class SelfAttention(nn.Module):
    n_head: int
    matmul: str = "xla"

    @nn.compact
    def __call__(self, x, key_valid, start, cache_kv):
        """x: (B, t, d) new tokens at positions start..start+t-1.

        key_valid: (B, T) which positions may be attended to at all (left padding is not).
        cache_kv: None (training: the keys are x's own), (k, v) of shape (B, H, T, hd), or
        (k, v, prefix_k, prefix_v) of a KVCache with a shared prefix (T = its P + k's length;
        the new tokens come after the prefix).
        Returns (output, attention (B, H, t, T_keys), new (k, v) or None).
        """
        b, t, d = x.shape
        hd = d // self.n_head
        # (B, heads, t, hd): heads lead, so both attention products are plain batched matmuls
        # over (B, heads) and never transpose the cache. Split before the transpose: slicing one
        # stacked (3, B, heads, t, hd) array costs its gradient a strided copy of the whole block
        q, k, v = (z.reshape(b, t, self.n_head, hd).transpose(0, 2, 1, 3)
                   for z in jnp.split(dense_layer(self.matmul)(3 * d, name="qkv")(x), 3, axis=-1))
        prefix_k = prefix_v = None
        p = 0  # positions held by a shared prefix
        if cache_kv is None:
            keys, values, new_kv = k, v, None
        else:
            if len(cache_kv) > 2:
                prefix_k, prefix_v = cache_kv[2:]
                p = prefix_k.shape[3]
            keys = jax.lax.dynamic_update_slice_in_dim(cache_kv[0], k, start - p, axis=2)
            values = jax.lax.dynamic_update_slice_in_dim(cache_kv[1], v, start - p, axis=2)
            new_kv = (keys, values)
        n_keys = p + keys.shape[2]
        q_pos = start + jnp.arange(t)
        k_pos = jnp.arange(n_keys)
        allowed = (k_pos[None, :] <= q_pos[:, None])[None, None] & key_valid[:, None, None, :n_keys]
        scale = jnp.sqrt(hd).astype(x.dtype)
        if cache_kv is None:
            logits = jnp.einsum("bhqd,bhkd->bhqk", q, keys) / scale
            attn = jax.nn.softmax(jnp.where(allowed, logits, _MASKED), axis=-1)
            out = jnp.einsum("bhqk,bhkd->bqhd", attn, values)
        elif prefix_k is None:
            logits = _bmm(q, keys, True, self.matmul) / scale
            attn = jax.nn.softmax(jnp.where(allowed, logits, _MASKED), axis=-1)
            out = _bmm(attn, values, False, self.matmul).transpose(0, 2, 1, 3)
        else:
            # the shared prefix's keys meet the queries of all G rows of a group as one matrix
            # per (group, head): XLA's batched dot ran 2.7x faster that way than with G as a free axis
            g = b // prefix_k.shape[0]
            nh = self.n_head
            grouped = q.reshape(b // g, g, nh, t, hd).transpose(0, 2, 1, 3, 4).reshape(b // g, nh, g * t, hd)
            shared = (_bmm(grouped, prefix_k, False, self.matmul).reshape(b // g, nh, g, t, p)
                      .transpose(0, 2, 1, 3, 4).reshape(b, nh, t, p))
            logits = jnp.concatenate([shared, _bmm(q, keys, True, self.matmul)], axis=-1) / scale
            attn = jax.nn.softmax(jnp.where(allowed, logits, _MASKED), axis=-1)
            a_shared = attn[..., :p].reshape(b // g, g, nh, t, p).transpose(0, 2, 1, 3, 4).reshape(b // g, nh, g * t, p)
            out = (_bmm(a_shared, prefix_v, False, self.matmul).reshape(b // g, nh, g, t, hd)
                   .transpose(0, 2, 3, 1, 4).reshape(b, t, nh, hd)
                   + _bmm(attn[..., p:], values, False, self.matmul).transpose(0, 2, 1, 3))
        out = out.reshape(b, t, d)
        return dense_layer(self.matmul)(d, name="proj")(out), attn, new_kv


class Block(nn.Module):
    n_head: int
    matmul: str = "xla"

    @nn.compact
    def __call__(self, x, key_valid, start, cache_kv):
        h, attn, new_kv = SelfAttention(self.n_head, self.matmul, name="attn")(
            nn.LayerNorm(name="ln1")(x), key_valid, start, cache_kv
        )
        x = x + h
        d = x.shape[-1]
        dense = dense_layer(self.matmul)
        m = dense(4 * d, name="fc")(nn.LayerNorm(name="ln2")(x))
        x = x + dense(d, name="fc_out")(nn.gelu(m))
        return x, attn, new_kv


class GPT(nn.Module):
    """Pre-LayerNorm causal transformer over already-embedded tokens."""

    n_layer: int
    n_head: int
    # "xla", or the blocks' four matmuls through oneDNN ("onednn-bf16": bfloat16 products on
    # AMX; rtaug.nets.onednn); attention's products are XLA's batched dots in training and
    # oneDNN's float32 ones while decoding (`_bmm`)
    matmul: str = "xla"

    @nn.compact
    def __call__(self, x, key_valid=None, start=0, cache: KVCache | None = None):
        """x: (B, t, d). Returns (hidden (B, t, d), last-layer attention (B, H, t, T), cache)."""
        b, t, _ = x.shape
        if key_valid is None:
            n_keys = t if cache is None else cache.k[0].shape[2] + (cache.prefix_k[0].shape[3] if cache.prefix_k else 0)
            key_valid = jnp.ones((b, n_keys), bool)
        ks, vs = [], []
        attn = None
        for i in range(self.n_layer):
            layer_kv = None if cache is None else (cache.k[i], cache.v[i], *(
                (cache.prefix_k[i], cache.prefix_v[i]) if cache.prefix_k else ()))
            x, attn, new_kv = Block(self.n_head, self.matmul, name=f"block{i}")(x, key_valid, start, layer_kv)
            if new_kv is not None:
                ks.append(new_kv[0])
                vs.append(new_kv[1])
        new_cache = None if cache is None else KVCache(tuple(ks), tuple(vs), cache.prefix_k, cache.prefix_v)
        return nn.LayerNorm(name="ln_f")(x), attn, new_cache
