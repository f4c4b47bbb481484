"""Exponential moving averages of parameters.

An update runs after the optimizer update that produced (post-increment)
`step`; c = step - 1 is that optimizer update's index counted from 0 (the
published code's `ema.update()` call index).

Schedules (d = decay applied at an update):
  constant: d = decay, applied when step % every == 0.
  warmup:   the GC paper's published EMA (its code uses `ema_pytorch.EMA`
            with beta = decay, power = 2/3, update_every = 5,
            update_after_step = start; 0 on CIFAR-10, 10,000 on ImageNet-32),
            reproduced call for call:
              * updates only at calls c with c % every == 0;
              * copy (d = 0) at those calls while c <= start, and at the
                first one after start (the EMA's initialisation);
              * afterwards d = min(decay, 1 - (1 + c - start)^(-power)).
            With start = 0 and every = 5: copies at calls 0 and 5, then
            d(1 + c) at calls 10, 15, ... Early on d is small, so the EMA
            tracks the fast-moving online weights; it then saturates at
            `decay`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["SCHEDULES", "decay_at", "is_active", "update"]

SCHEDULES = ("constant", "warmup")


def is_active(step: jax.Array, schedule: str, every: int = 1) -> jax.Array:
  """Whether the update at (post-increment) `step` changes the EMA."""
  step = jnp.asarray(step)
  if schedule == "constant":
    return step % every == 0
  if schedule == "warmup":
    return (step - 1) % every == 0
  raise ValueError(f"ema.schedule={schedule!r} is not one of {SCHEDULES}")


def decay_at(step: jax.Array, schedule: str, decay: float,
             power: float = 2.0 / 3.0, every: int = 1,
             start: int = 0) -> jax.Array:
  """The decay of an active update at (post-increment) `step` (0 = copy)."""
  step = jnp.asarray(step)
  if schedule == "constant":
    if start:
      raise ValueError(f"ema.start={start} applies to ema.schedule='warmup' "
                       "only")
    return jnp.full(step.shape, decay, jnp.result_type(float))
  if schedule == "warmup":
    c = step - 1
    # The first active call after `start` initialises (copies) the EMA.
    copy = c - every <= start
    epoch = jnp.maximum(c - start, 0).astype(jnp.result_type(float))
    d = 1.0 - (1.0 + epoch) ** (-power)
    return jnp.where(copy, 0.0, jnp.minimum(decay, d))
  raise ValueError(f"ema.schedule={schedule!r} is not one of {SCHEDULES}")


def update(step: jax.Array, ema_params, params, *, schedule: str,
           decay: float, power: float = 2.0 / 3.0, every: int = 1,
           start: int = 0):
  """Returns the EMA after the optimizer update that produced `step`.

  No update (ema unchanged) unless `is_active`; the branch is a
  `jnp.where`, so the step compiles once.
  """
  d = decay_at(step, schedule, decay, power, every, start)
  d = jnp.where(is_active(step, schedule, every), d, 1.0)
  return jax.tree_util.tree_map(
      lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema_params,
      params)
