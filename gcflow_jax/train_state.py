"""The train state every method shares."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax

__all__ = ["TrainState"]


class TrainState(flax.struct.PyTreeNode):
  """step: int32 scalar, number of optimizer updates done.
  params: trainable pytree (all networks of the method).
  ema_params: EMA copy of params (evaluation, GC endpoints).
  opt_state: optax state.
  extras: method state that is not trained (target copies, frozen teacher
    params, stage counters); checkpointed with the rest.
  """

  step: jax.Array
  params: Any
  ema_params: Any
  opt_state: Any
  extras: Any
