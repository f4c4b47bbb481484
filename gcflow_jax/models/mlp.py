"""MLP for vector data, conditioned on one or two times."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gcflow_jax.models.embeddings import broadcast_time, positional_embedding

__all__ = ["TimeMLP"]


class TimeMLP(nn.Module):
  """x [B, D], times t_i [B] -> [B, D].

  Each time gets a sinusoidal embedding (scaled by `time_scale` so t ∈ [0, 1]
  or c_noise ∈ [-2, 2] spreads over the frequencies) and the embeddings are
  concatenated with x. SiLU activations; the last layer is zero-initialised
  so the network starts at 0 (a flow map starts at the identity).
  """

  hidden: Sequence[int] = (256, 256, 256)
  time_dim: int = 64
  time_scale: float = 1000.0
  dropout: float = 0.0
  zero_init_last: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, *times: jax.Array,
               train: bool = False) -> jax.Array:
    b, d = x.shape
    feats = [x]
    for t in times:
      t = broadcast_time(t, b).astype(x.dtype)
      feats.append(positional_embedding(t * self.time_scale, self.time_dim))
    h = jnp.concatenate(feats, axis=-1)
    for width in self.hidden:
      h = nn.silu(nn.Dense(width)(h))
      if self.dropout > 0:
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
    init = nn.initializers.zeros if self.zero_init_last else (
        nn.initializers.lecun_normal())
    return nn.Dense(d, kernel_init=init)(h)
