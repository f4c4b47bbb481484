"""Frozen teachers for the distillation methods.

A teacher is a trained flow-matching velocity field b_t(x) in the convention
of `gcflow_jax.math.interpolants` (t = 0 noise, t = 1 data), restored from a
run directory. `load(config, data_shape)` trains it first when the directory
has no checkpoint and `config.teacher.train_if_missing` is set, so one
command runs a whole distillation pipeline.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax

__all__ = ["Teacher", "load"]


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


def load(config, data_shape) -> Teacher:
  """Restores (training it first if needed) the teacher of `config`."""
  # Imported here: train imports methods, which import this module.
  from gcflow_jax import config_utils, train  # pylint: disable=g-import-not-at-top
  from gcflow_jax.models import make_network  # pylint: disable=g-import-not-at-top

  tcfg = config.teacher
  if not tcfg.workdir:
    raise ValueError(
        f"method={config.method!r} needs a teacher: set "
        "--config.teacher.workdir=DIR (a finished flow-matching run, or an "
        "empty dir to train one there with --config.teacher.config)")
  teacher_config = config_utils.load_config(tcfg.config)
  if teacher_config.method != "flow_matching":
    raise ValueError(f"teacher.config={tcfg.config!r} has method="
                     f"{teacher_config.method!r}; teachers are "
                     "'flow_matching' velocity fields")
  command = (f"`python -m gcflow_jax.main --config={tcfg.config} "
             f"--workdir={tcfg.workdir}`")
  step = train.latest_step(tcfg.workdir)
  if step is None:
    if not tcfg.train_if_missing:
      raise FileNotFoundError(
          f"teacher.workdir={tcfg.workdir!r} has no checkpoint and "
          f"teacher.train_if_missing=False; train it with {command}")
    print(f"[teacher] no checkpoint in {tcfg.workdir}: training "
          f"{tcfg.config} there first", flush=True)
    train.train_and_evaluate(teacher_config, tcfg.workdir)
  elif step < teacher_config.train.steps:
    # An interrupted teacher run: distilling from it would silently give a
    # different (worse) teacher than the config names.
    if not tcfg.train_if_missing:
      raise ValueError(
          f"teacher.workdir={tcfg.workdir!r} stops at step {step} of "
          f"{tcfg.config}'s train.steps={teacher_config.train.steps} (an "
          f"interrupted run); finish it with {command} (it resumes), or set "
          "teacher.train_if_missing=True to finish it here")
    print(f"[teacher] {tcfg.workdir} stops at step {step} of "
          f"{teacher_config.train.steps}: resuming {tcfg.config} there "
          "first", flush=True)
    train.train_and_evaluate(teacher_config, tcfg.workdir)
  state = train.restore_state(teacher_config, tcfg.workdir)
  _, apply_fn, _ = make_network(teacher_config.model,
                                train.data_shape_of(teacher_config), 1)
  if tuple(train.data_shape_of(teacher_config)) != tuple(data_shape):
    raise ValueError(
        f"teacher data shape {train.data_shape_of(teacher_config)} != "
        f"student data shape {tuple(data_shape)}: use a teacher config "
        "with the same data.name/image_size/channels")
  params = state.ema_params if tcfg.use_ema else state.params
  return Teacher(apply_fn=apply_fn, params=params,
                 interp=teacher_config.interp.name, config=teacher_config,
                 workdir=os.path.abspath(tcfg.workdir),
                 step=int(state.step))
