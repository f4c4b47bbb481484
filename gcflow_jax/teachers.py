"""Frozen teachers for the distillation methods.

A teacher is a trained flow-matching velocity field b_t(x) in the convention
of `gcflow_jax.math.interpolants` (t = 0 noise, t = 1 data), restored from a
run directory by `gcflow_jax.train.restore_teacher(config, data_shape)`, which
trains it first when the directory has no checkpoint and
`config.teacher.train_if_missing` is set, so one command runs a whole
distillation pipeline. This module only defines the frozen object: it sits
below the methods and the trainer and imports neither.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

__all__ = ["Teacher"]


@dataclasses.dataclass(frozen=True)
class Teacher:
  """A frozen velocity field.

  Attributes:
    apply_fn: network `(params, x, t) -> v` (one time input, t in [0, 1]).
    params: the frozen parameters (EMA copy by default).
    interp: the name of the interpolant it was trained with.
    config: the teacher's own ConfigDict (for reference / logging).
    workdir: where it was restored from.
    step: the training step of the restored checkpoint (identifies the
      teacher in pair caches, next to `workdir`).
  """

  apply_fn: Callable[..., Any]
  params: Any
  interp: str
  config: Any
  workdir: str
  step: int = -1

  def velocity(self, params, x, t):
    """b_t(x) with t a scalar or [B]; pure, so it can be jitted and
    differentiated (teacher params are passed explicitly so they can live in
    the train state's `extras` and be placed on the mesh)."""
    t = jax.numpy.broadcast_to(jax.numpy.asarray(t, x.dtype), x.shape[:1])
    return self.apply_fn(params, x, t)
