"""Alternating training of two networks with one optimizer (GCM's T_f / T_g).

The trainer hands every method one optax transformation; a method whose
parameters are ``{'f': ..., 'g': ...}`` and whose schedule alternates T_f
updates of f with T_g updates of g (paper 000, Algorithm 1) wraps it with
`make_optimizer_wrapper`: one copy per network, each gated by `phase_gate`
so that a frozen network's optimizer state does not advance. Used by
`gcflow_jax.methods.distribution_matching`, which re-exports these names.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["SCHEDULES", "is_f_phase", "PhaseGateState", "phase_gate",
           "make_optimizer_wrapper"]

SCHEDULES = ("alternating", "joint")


def is_f_phase(step: jax.Array, t_f: int, t_g: int) -> jax.Array:
  """True when update number `step` (0-based) belongs to an f phase.

  Update k trains f iff k mod (T_f + T_g) < T_f: T_f updates of f, then T_g
  of g, repeated.

  Args:
    step: int scalar (traced or not), the number of updates done so far.
    t_f: T_f > 0.
    t_g: T_g > 0.
  Returns:
    bool scalar.
  """
  return (jnp.asarray(step) % (t_f + t_g)) < t_f


class PhaseGateState(NamedTuple):
  """State of `phase_gate`: updates seen so far and the inner state."""

  count: jax.Array
  inner_state: Any


def phase_gate(inner: optax.GradientTransformation, t_f: int, t_g: int,
               phase: str) -> optax.GradientTransformationExtraArgs:
  """Runs `inner` only on the updates of one alternation phase.

  On update k (k = `count`, counting every call), the gate is active iff
  `is_f_phase(k, t_f, t_g)` equals `phase == 'f'`. Active: `inner`'s updates
  and new state. Inactive: zero updates and the *old* inner state (so Adam's
  moments and step count are not advanced by the frozen network's
  gradients). Selection is by `jnp.where`: jit-safe, nothing recompiles.

  Args:
    inner: the transformation to gate (e.g. the trainer's Adam).
    t_f, t_g: phase lengths.
    phase: 'f' (active on the first T_f updates of each cycle) or 'g'.
  Returns:
    A GradientTransformationExtraArgs with `PhaseGateState`.
  """
  if phase not in ("f", "g"):
    raise ValueError(f"phase={phase!r} is not one of ('f', 'g')")
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return PhaseGateState(count=jnp.zeros((), jnp.int32),
                          inner_state=inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    f_now = is_f_phase(state.count, t_f, t_g)
    active = f_now if phase == "f" else jnp.logical_not(f_now)
    new_updates, new_inner = inner.update(updates, state.inner_state, params,
                                          **extra_args)
    out = jax.tree_util.tree_map(
        lambda u: jnp.where(active, u, jnp.zeros_like(u)), new_updates)
    kept = jax.tree_util.tree_map(
        lambda n, o: jnp.where(active, n, o), new_inner, state.inner_state)
    return out, PhaseGateState(count=state.count + 1, inner_state=kept)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def make_optimizer_wrapper(t_f: int, t_g: int, schedule: str = "alternating",
                           g_lr_mult: float = 1.0
                           ) -> Callable[[optax.GradientTransformation],
                                         optax.GradientTransformation]:
  """Returns wrap(tx): one copy of `tx` per network over params {'f', 'g'}.

  Each network gets its own copy of the trainer's optimizer (own moments,
  own global-norm clip, own schedule count: in 'alternating' the schedule
  advances per update *of that network*). 'alternating' gates the copies
  with `phase_gate`; 'joint' updates both every step. g's updates are
  multiplied by `g_lr_mult`.
  """
  if schedule not in SCHEDULES:
    raise ValueError(f"gcm.schedule={schedule!r} is not one of {SCHEDULES}")

  def wrap(tx):
    tx_g = tx if g_lr_mult == 1.0 else optax.chain(tx, optax.scale(g_lr_mult))
    if schedule == "alternating":
      branches = {"f": phase_gate(tx, t_f, t_g, "f"),
                  "g": phase_gate(tx_g, t_f, t_g, "g")}
    else:
      branches = {"f": tx, "g": tx_g}
    # {'f': 'f', 'g': 'g'} is a prefix of params {'f': ..., 'g': ...}.
    return optax.partition(branches, {"f": "f", "g": "g"})

  return wrap
