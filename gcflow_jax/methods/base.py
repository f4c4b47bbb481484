"""The contract between a method and the one trainer (`gcflow_jax.train`).

A method is a small bundle of pure functions. The trainer owns the loop, the
mesh, the optimizer, EMA, checkpoints and evaluation; the method owns the maths.

* ``init(key, example_batch) -> (params, extras)``
    ``params``: the trainable pytree (the optimizer sees all of it; a method with
    several networks returns a dict such as ``{"f": ..., "g": ...}``).
    ``extras``: non-trainable, checkpointed state (target copies, a frozen
    teacher's parameters, a stage counter). ``{}`` when unused. Runs on the
    host, outside jit, so it may load a teacher checkpoint.

* ``loss_fn(params, batch, key, *, step, ema_params, extras)
        -> (per_example_loss [B], aux: dict[str, scalar])``
    Pure and jit-traceable. ``step`` is the traced int32 step (for curricula),
    ``ema_params`` the EMA copy of ``params`` (e.g. the GC endpoint predictor),
    ``extras`` the method state. Gradients are taken w.r.t. ``params`` only.
    ``batch`` is a dict; ``batch["x"]`` holds data ``[B, ...]``.

* ``sample_fn(params, key, num, steps, extras=None) -> samples [num, ...]``
    ``params`` are the parameters to sample with (the trainer passes the EMA
    copy). ``steps`` is a static Python int (number of network evaluations /
    sampling steps; ``None`` means the method's default).

* ``update_extras(step, params, ema_params, extras) -> extras`` (optional)
    Runs inside the compiled train step right after the optimizer update, with
    the *new* ``params``/``ema_params`` and the new (incremented) ``step``.
    Use ``lax.cond``/``jnp.where`` on ``step`` for periodic syncs: no recompiles.

* ``wrap_optimizer(tx) -> tx`` (optional)
    Lets a method alter the optimizer, e.g. freeze one network on alternating
    phases (distribution matching) with ``optax`` state that is jit-safe.

* ``eval_params(params, ema_params) -> params`` (optional)
    Which parameters the trainer samples with; default: the EMA copy.

Methods never see a ConfigDict: ``gcflow_jax.methods.get`` reads the config
once and calls each family's ``make_*`` factories with plain values.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

__all__ = ["Method", "ApplyFn"]

# apply_fn(params, x, *times, key=None) -> output with x's shape. A key turns
# dropout on (training mode); None means deterministic evaluation.
ApplyFn = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Method:
  """A training method: the pure functions the trainer composes."""

  name: str
  init: Callable[..., Any]
  loss_fn: Callable[..., Any]
  sample_fn: Callable[..., Any]
  update_extras: Optional[Callable[..., Any]] = None
  wrap_optimizer: Optional[Callable[..., Any]] = None
  eval_params: Optional[Callable[..., Any]] = None
  # Number of network evaluations `sample_fn` uses when `steps=None`.
  default_sample_steps: int = 1
  # Free-form static info the trainer logs (e.g. teacher source).
  info: dict = dataclasses.field(default_factory=dict)
