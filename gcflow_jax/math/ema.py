"""Exponential moving averages of parameters.

Schedules (d = decay applied at an update):
  constant: d = decay, applied when step % every == 0.
  warmup:   d = min(decay, 1 - (1 + step)^(-power)), applied when
            step % every == 0 (the GC paper's published schedule: decay
            0.9999, power 2/3, every 5 steps). Early on d is small, so the
            EMA tracks the fast-moving online weights, and it then
            saturates at `decay`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["SCHEDULES", "decay_at", "update"]

SCHEDULES = ("constant", "warmup")


def decay_at(step: jax.Array, schedule: str, decay: float,
             power: float = 2.0 / 3.0) -> jax.Array:
  """The decay used by an update at (post-increment) `step`."""
  step = jnp.asarray(step, jnp.float32)
  if schedule == "constant":
    return jnp.full_like(step, decay)
  if schedule == "warmup":
    return jnp.minimum(decay, 1.0 - (1.0 + step) ** (-power))
  raise ValueError(f"ema.schedule={schedule!r} is not one of {SCHEDULES}")


def update(step: jax.Array, ema_params, params, *, schedule: str,
           decay: float, power: float = 2.0 / 3.0, every: int = 1):
  """Returns the EMA after the optimizer update that produced `step`.

  No update (ema unchanged) unless step % every == 0; the branch is a
  `jnp.where`, so the step compiles once.
  """
  d = decay_at(step, schedule, decay, power)
  active = (jnp.asarray(step) % every) == 0
  d = jnp.where(active, d, 1.0)
  return jax.tree_util.tree_map(
      lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema_params,
      params)
