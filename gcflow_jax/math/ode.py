"""ODE integrators (Euler, Heun, RK4) for samplers and teachers, with optional
log-density tracking.

Pure JAX. A velocity field is `v(x, t) -> dx/dt` with x [B, ...] and t a
scalar (or [B] where the field accepts per-example times). Time grids are
static-length arrays so one compile serves any values.

Log-density tracking (instantaneous change of variables, Chen et al. 2018,
"Neural ODEs", Thm. 1): along a trajectory of dx/dt = v(x, t),

    d log p_t(x_t) / dt = -div v(x_t, t) = -tr(∂v/∂x)(x_t, t).

`integrate_with_logp` integrates the augmented state (x, Δ) with
dΔ/dt = -div v using the *same* Runge–Kutta step as `integrate`, so
Δ(T) = log p_T(x_T) - log p_0(x_0). The divergence is either exact (D
Jacobian-vector products, for low dimensions) or Hutchinson's estimator
(Hutchinson 1989; Grathwohl et al. 2019, "FFJORD"):

    div v(x) = E_ε[εᵀ (∂v/∂x) ε],  E[ε εᵀ] = I,

with Rademacher or Gaussian probes ε, evaluated with a JVP ((∂v/∂x) ε, forward
mode) or a VJP (εᵀ (∂v/∂x), reverse mode). The probes are drawn once per solve
and held fixed along the trajectory (as in FFJORD), so the estimate of the
integral is unbiased and the ODE right-hand side stays deterministic.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp

__all__ = [
    "INTEGRATORS", "NFE_PER_STEP", "DIVERGENCES", "HUTCHINSON_MODES",
    "PROBES", "step", "integrate", "uniform_grid", "divergence_exact",
    "divergence_hutchinson", "velocity_and_divergence", "sample_probes",
    "integrate_with_logp", "std_normal_logpdf",
]

INTEGRATORS = ("euler", "heun", "rk4")
# Network evaluations per step, to compare samplers at equal cost.
NFE_PER_STEP = {"euler": 1, "heun": 2, "rk4": 4}
DIVERGENCES = ("exact", "hutchinson")
HUTCHINSON_MODES = ("jvp", "vjp")
PROBES = ("rademacher", "gaussian")
# Exact divergence: vectorise the D basis JVPs up to this dimension.
_EXACT_VMAP_MAX_DIM = 16


def uniform_grid(t0: float, t1: float, steps: int) -> jax.Array:
  """[steps + 1] equally spaced times from t0 to t1."""
  return jnp.linspace(t0, t1, steps + 1)


def _axpy(z, h, k):
  """z + h * k on pytrees (h a scalar or broadcastable array)."""
  return jax.tree.map(lambda a, b: a + h * b, z, k)


def _rk_step(f: Callable, z: Any, t: jax.Array, t_next: jax.Array,
             method: str) -> Any:
  """One explicit Runge–Kutta step for a pytree state z, dz/dt = f(z, t)."""
  h = t_next - t
  if method == "euler":
    return _axpy(z, h, f(z, t))
  if method == "heun":
    k1 = f(z, t)
    k2 = f(_axpy(z, h, k1), t_next)
    return jax.tree.map(lambda a, b, c: a + 0.5 * h * (b + c), z, k1, k2)
  if method == "rk4":
    k1 = f(z, t)
    k2 = f(_axpy(z, 0.5 * h, k1), t + 0.5 * h)
    k3 = f(_axpy(z, 0.5 * h, k2), t + 0.5 * h)
    k4 = f(_axpy(z, h, k3), t_next)
    return jax.tree.map(
        lambda a, b, c, d, e: a + h / 6.0 * (b + 2 * c + 2 * d + e),
        z, k1, k2, k3, k4)
  raise ValueError(f"ODE method {method!r} is not one of {INTEGRATORS}")


def step(v: Callable, x: jax.Array, t: jax.Array, t_next: jax.Array,
         method: str = "euler") -> jax.Array:
  """One step of size h = t_next - t of an explicit Runge–Kutta method.

  Args:
    v: velocity field v(x, t).
    x: state at time t, [B, ...].
    t, t_next: scalar times.
    method: 'euler' (order 1), 'heun' (order 2) or 'rk4' (order 4).
  Returns:
    state at t_next, same shape as x.
  """
  return _rk_step(v, x, t, t_next, method)


def integrate(v: Callable, x0: jax.Array, ts: jax.Array,
              method: str = "euler", return_path: bool = False):
  """Integrates dx/dt = v(x, t) along the time grid `ts` [K + 1].

  Returns the final state, or (final, path [K + 1, B, ...]) if
  `return_path`. Uses `lax.scan`, so the grid length is static and the values
  are traced (no recompiles for new grids of the same length).
  """
  if method not in INTEGRATORS:
    raise ValueError(f"ODE method {method!r} is not one of {INTEGRATORS}")
  ts = jnp.asarray(ts, x0.dtype)

  def body(x, tt):
    x_next = step(v, x, tt[0], tt[1], method)
    return x_next, (x_next if return_path else None)

  pairs = jnp.stack([ts[:-1], ts[1:]], axis=1)
  x1, path = jax.lax.scan(body, x0, pairs)
  if return_path:
    return x1, jnp.concatenate([x0[None], path], axis=0)
  return x1


# ------------------------------------------------------------ divergence --


def _sum_nonbatch(a: jax.Array) -> jax.Array:
  return a.reshape(a.shape[0], -1).sum(axis=1)


def divergence_exact(v: Callable, x: jax.Array, t: jax.Array
                     ) -> Tuple[jax.Array, jax.Array]:
  """Exact divergence tr(∂v/∂x) per example, by D forward-mode JVPs.

  Each JVP pushes the basis direction e_j (the same for every example) through
  the whole batch, so the cost is D batched linearised passes; examples must
  not interact inside v (no batch statistics). Up to D = 16 the passes are
  vectorised; above, they run sequentially with rematerialisation (memory of
  one pass, also under differentiation). For low-dimensional data only.

  Args:
    v: velocity field v(x, t) -> [B, ...].
    x: [B, ...] states.
    t: scalar or [B] time.
  Returns:
    (v(x, t) [B, ...], div [B]).
  """
  b = x.shape[0]
  d = math.prod(x.shape[1:])
  # Linearise once; each basis tangent then costs one linear (JVP) pass.
  vx, lin = jax.linearize(lambda y: v(y, t), x)
  if d <= _EXACT_VMAP_MAX_DIM:
    # Tangents e_j, the same for every example: [D, B, ...], vectorised.
    eye = jnp.eye(d, dtype=x.dtype).reshape((d, 1) + x.shape[1:])
    tangents = jnp.broadcast_to(eye, (d,) + x.shape)
    cols = jax.vmap(lin)(tangents).reshape(d, b, d)  # cols[j] = (∂v/∂x) e_j
    return vx, jnp.trace(cols, axis1=0, axis2=2)     # Σ_j ∂v_j/∂x_j, [B]

  # Larger D: one tangent at a time, rematerialised in the backward pass, so
  # differentiating the divergence w.r.t. parameters keeps O(1) copies of
  # the tangent activations instead of D (a vmap over D tangents needs D×).
  @jax.checkpoint
  def diag_j(j):
    tangent = jnp.broadcast_to(
        jax.nn.one_hot(j, d, dtype=x.dtype).reshape(x.shape[1:]), x.shape)
    return lin(tangent).reshape(b, d)[:, j]

  def body(acc, j):
    return acc + diag_j(j), None

  div, _ = jax.lax.scan(body, jnp.zeros((b,), x.dtype), jnp.arange(d))
  return vx, div


def divergence_hutchinson(v: Callable, x: jax.Array, t: jax.Array,
                          probes: jax.Array, mode: str = "jvp"
                          ) -> Tuple[jax.Array, jax.Array]:
  """Hutchinson estimate of tr(∂v/∂x): mean over probes of εᵀ (∂v/∂x) ε.

  Args:
    v: velocity field v(x, t) -> [B, ...].
    x: [B, ...] states.
    t: scalar or [B] time.
    probes: [P, B, ...] probe vectors with E[ε εᵀ] = I (see `sample_probes`).
    mode: 'jvp' (forward mode, (∂v/∂x) ε; one linearised pass per probe) or
      'vjp' (reverse mode, εᵀ (∂v/∂x); one linearisation, P cotangent passes).
  Returns:
    (v(x, t) [B, ...], div estimate [B]), unbiased for the exact divergence.
  """
  if probes.shape[1:] != x.shape:
    raise ValueError(f"probes must have shape [P, *x.shape] = [P, "
                     f"{', '.join(map(str, x.shape))}], got {probes.shape}")
  f = lambda y: v(y, t)
  if mode == "jvp":
    vx, lin = jax.linearize(f, x)
    jeps = jax.vmap(lin)(probes)             # (∂v/∂x) ε for every probe
  elif mode == "vjp":
    vx, vjp = jax.vjp(f, x)
    jeps = jax.vmap(lambda e: vjp(e)[0])(probes)   # εᵀ (∂v/∂x)
  else:
    raise ValueError(f"hutchinson mode {mode!r} is not one of "
                     f"{HUTCHINSON_MODES}")
  quad = jax.vmap(_sum_nonbatch)(jeps * probes)    # [P, B]
  return vx, quad.mean(axis=0)


def velocity_and_divergence(v: Callable, x: jax.Array, t: jax.Array,
                            divergence: str = "exact",
                            probes: Optional[jax.Array] = None,
                            hutchinson_mode: str = "jvp"
                            ) -> Tuple[jax.Array, jax.Array]:
  """Dispatches to `divergence_exact` or `divergence_hutchinson`."""
  if divergence == "exact":
    return divergence_exact(v, x, t)
  if divergence == "hutchinson":
    if probes is None:
      raise ValueError("divergence='hutchinson' needs probes [P, B, ...]")
    return divergence_hutchinson(v, x, t, probes, hutchinson_mode)
  raise ValueError(f"divergence {divergence!r} is not one of {DIVERGENCES}")


def sample_probes(key: jax.Array, shape: Tuple[int, ...], num_probes: int,
                  kind: str = "rademacher", dtype=jnp.float32) -> jax.Array:
  """[num_probes, *shape] probes with zero mean and identity covariance.

  Rademacher (±1) probes give the smaller Hutchinson variance
  (2 Σ_{i≠j} J_ij² versus 2 ‖J‖_F² for symmetric parts with Gaussians).
  """
  shape = (num_probes,) + tuple(shape)
  if kind == "rademacher":
    return jax.random.rademacher(key, shape, dtype=dtype)
  if kind == "gaussian":
    return jax.random.normal(key, shape, dtype=dtype)
  raise ValueError(f"probe {kind!r} is not one of {PROBES}")


def integrate_with_logp(v: Callable, x0: jax.Array, ts: jax.Array,
                        method: str = "euler", divergence: str = "exact",
                        probes: Optional[jax.Array] = None,
                        hutchinson_mode: str = "jvp",
                        return_path: bool = False):
  """Integrates x and its log-density change along the grid `ts` [K + 1].

  Augmented ODE d/dt (x, Δ) = (v(x, t), -div v(x, t)), Δ(ts[0]) = 0, solved
  with the same Runge–Kutta step as `integrate` (so x_T is bit-identical in
  exact arithmetic to `integrate(v, x0, ts, method)`). Then

      log p_T(x_T) = log p_0(x_0) + Δ(T)

  for the density transported by the flow of v (an order-`method` estimate in
  the step size; with Hutchinson probes an unbiased estimate of it).

  Args:
    v: velocity field v(x, t) -> [B, ...]; differentiable in x.
    x0: [B, ...] initial states.
    ts: [K + 1] time grid (increasing or decreasing).
    method: 'euler' | 'heun' | 'rk4'.
    divergence: 'exact' | 'hutchinson'.
    probes: [P, B, ...] fixed probes for 'hutchinson' (`sample_probes`).
    hutchinson_mode: 'jvp' | 'vjp'.
    return_path: also return the states and Δ at every grid time.
  Returns:
    (x_T [B, ...], Δ [B]); with `return_path` also
    (path [K + 1, B, ...], delta_path [K + 1, B]).
  """
  if method not in INTEGRATORS:
    raise ValueError(f"ODE method {method!r} is not one of {INTEGRATORS}")
  if divergence not in DIVERGENCES:
    raise ValueError(f"divergence {divergence!r} is not one of "
                     f"{DIVERGENCES}")
  ts = jnp.asarray(ts, x0.dtype)

  def f(z, t):
    vx, div = velocity_and_divergence(v, z[0], t, divergence, probes,
                                      hutchinson_mode)
    return (vx, -div)

  def body(z, tt):
    z_next = _rk_step(f, z, tt[0], tt[1], method)
    return z_next, (z_next if return_path else None)

  z0 = (x0, jnp.zeros(x0.shape[:1], x0.dtype))
  pairs = jnp.stack([ts[:-1], ts[1:]], axis=1)
  (x1, delta), path = jax.lax.scan(body, z0, pairs)
  if return_path:
    xs = jnp.concatenate([x0[None], path[0]], axis=0)
    ds = jnp.concatenate([z0[1][None], path[1]], axis=0)
    return x1, delta, xs, ds
  return x1, delta


def std_normal_logpdf(x: jax.Array) -> jax.Array:
  """log N(x; 0, I) summed over the non-batch axes, [B]."""
  d = math.prod(x.shape[1:])
  return -0.5 * _sum_nonbatch(x * x) - 0.5 * d * math.log(2 * math.pi)
