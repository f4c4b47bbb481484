"""Time / noise-level embeddings for one or two times."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["positional_embedding", "fourier_embedding", "FourierFeatures",
           "broadcast_time"]


def broadcast_time(t, batch: int) -> jax.Array:
  """Returns `t` as a float array of shape [batch] (scalars are broadcast)."""
  t = jnp.asarray(t, jnp.result_type(float))
  if t.ndim == 0:
    return jnp.full((batch,), t)
  if t.shape != (batch,):
    raise ValueError(f"time must be a scalar or have shape [{batch}], got "
                     f"{t.shape}")
  return t


def positional_embedding(t: jax.Array, dim: int, max_positions: int = 10000,
                         endpoint: bool = True) -> jax.Array:
  """Sinusoidal embedding as in DDPM++/EDM's `PositionalEmbedding`.

  Args:
    t: [B] scalar inputs (e.g. c_noise(σ)).
    dim: even embedding width.
    max_positions: frequency range.
    endpoint: EDM's convention (frequencies include 1/max_positions).
  Returns:
    [B, dim] embedding, cos half first then sin half.
  """
  half = dim // 2
  freqs = jnp.arange(half, dtype=t.dtype) / (half - (1 if endpoint else 0))
  freqs = (1.0 / max_positions) ** freqs
  x = t[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=-1)


def fourier_embedding(t: jax.Array, freqs: jax.Array) -> jax.Array:
  """Random Fourier features: [cos(2π f t), sin(2π f t)], [B, 2 * len(f)]."""
  x = 2 * math.pi * t[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=-1)


class FourierFeatures(nn.Module):
  """Fixed random Fourier features (NCSN++ style). The frequencies are a
  deterministic function of `seed` (constant-folded by XLA), not a variable, so
  every collection a network has is trainable `params`."""

  dim: int
  scale: float = 16.0
  seed: int = 0

  @nn.compact
  def __call__(self, t: jax.Array) -> jax.Array:
    freqs = jax.random.normal(jax.random.key(self.seed),
                              (self.dim // 2,), t.dtype) * self.scale
    return fourier_embedding(t, freqs)
