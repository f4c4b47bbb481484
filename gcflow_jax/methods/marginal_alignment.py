"""The marginal-alignment regulariser of reflow (paper 003, eq. A) and what
it is built from: the teacher score from its velocity (eq. S), the student
Euler step's log-determinant (exact or a Hutchinson power series) and the
per-example objective whose gradient is that of KL(Ψ^θ_k # p_{t_k} ‖
p_{t_{k+1}}).

The derivation is in the docstring of `gcflow_jax.methods.reflow` (which
re-exports these names and adds them to the reflow loss) and in full in
docs/reflow_marginal_alignment.md.
"""

from __future__ import annotations

import math
from typing import Callable, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from gcflow_jax.math import interpolants as interp_lib

__all__ = [
    "LOGDETS", "denoiser_from_velocity", "score_from_velocity",
    "teacher_interpolant", "logdet_exact", "logdet_power_series",
    "make_alignment_fn", "align_schedule",
]

LOGDETS = ("exact", "power_series")


# ---------------------------------------------------------- teacher score --


def _bc(a: jax.Array, x: jax.Array) -> jax.Array:
  """[B] or scalar coefficients -> broadcastable against x [B, ...]."""
  a = jnp.asarray(a, x.dtype)
  return a.reshape(a.shape + (1,) * (x.ndim - a.ndim)) if a.ndim else a


def denoiser_from_velocity(interp, b: jax.Array, x: jax.Array,
                           t: jax.Array) -> jax.Array:
  """E[x0 | I_t = x] from the marginal velocity b_t(x) (eq. S).

  From x = α E[x0|x] + β E[x1|x] and b = α' E[x0|x] + β' E[x1|x]:
  E[x0|x] = (β b − β' x) / (β α' − α β'). The denominator is −1 for the
  linear interpolant and −π/2 for the trigonometric one (never zero).

  Args:
    interp: interpolant with alpha/beta/dalpha/dbeta.
    b: [B, ...] velocity at (x, t).
    x: [B, ...] states.
    t: scalar or [B] times.
  Returns:
    [B, ...] posterior mean of the noise.
  """
  a, be = interp.alpha(t), interp.beta(t)
  da, db = interp.dalpha(t), interp.dbeta(t)
  den = be * da - a * db
  return (_bc(be, x) * b - _bc(db, x) * x) / _bc(den, x)


def score_from_velocity(interp, b: jax.Array, x: jax.Array,
                        t: jax.Array) -> jax.Array:
  """∇ log p_t(x) = −E[x0 | I_t = x] / α_t (eq. S; Tweedie for x0 ~ N(0,I)).

  p_t(x) = ∫ N(x; β x1, α² I) p(dx1), so ∇log p_t = −E[x − β x1 | x]/α² =
  −E[x0|x]/α. Singular at α_t = 0 (t = 1 here); the regulariser only
  evaluates it at interior knots.
  """
  return -denoiser_from_velocity(interp, b, x, t) / _bc(interp.alpha(t), x)


def teacher_interpolant(teacher) -> interp_lib.Interpolant:
  """The interpolant the teacher was trained on (for eq. S)."""
  return interp_lib.get(teacher.interp)


# ------------------------------------------------------- log-determinants --


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
  return (a * b).reshape(a.shape[0], -1).sum(axis=1)


def logdet_exact(field: Callable, x: jax.Array, h: jax.Array
                 ) -> Tuple[jax.Array, jax.Array]:
  """log|det(I + h ∂u/∂x)| per example, from the full Jacobian.

  D basis JVPs (vectorised), then a D × D slogdet per example; examples
  must not interact inside `field`. Low dimensions (and reference values).

  Args:
    field: u(x) -> [B, ...] (per-example times already bound).
    x: [B, ...] states.
    h: scalar or [B] step sizes.
  Returns:
    (u(x) [B, ...], logdet [B]).
  """
  b = x.shape[0]
  d = math.prod(x.shape[1:])
  ux, lin = jax.linearize(field, x)
  eye = jnp.eye(d, dtype=x.dtype).reshape((d, 1) + x.shape[1:])
  cols = jax.vmap(lin)(jnp.broadcast_to(eye, (d,) + x.shape))
  jac = jnp.transpose(cols.reshape(d, b, d), (1, 2, 0))   # [B, out, in]
  mat = jnp.eye(d, dtype=x.dtype) + _bc(h, jac) * jac
  return ux, jnp.linalg.slogdet(mat)[1]


def logdet_power_series(field: Callable, x: jax.Array, h: jax.Array,
                        probes: jax.Array, terms: int
                        ) -> Tuple[jax.Array, jax.Array]:
  """Hutchinson power-series estimate of log|det(I + A)|, A = h ∂u/∂x.

  With a per-example scalar c > 0, I + A = c (I + B), B = (A − (c − 1) I)/c,
  and for spectral radius ρ(B) < 1

      log det(I + A) = D log c + Σ_{n≥1} (−1)^{n+1} tr(Bⁿ) / n,

  each tr(Bⁿ) estimated by εᵀ Bⁿ ε (Hutchinson; one JVP per power, shared
  by all n). c_i = 1 + (mean over the *other* examples of εᵀ A ε) / D,
  clipped to [0.2, 5] and held constant (stop-gradient): it centres the
  spectrum of B on that of a typical example, so the series converges
  faster than with c = 1, and since c_i does not depend on example i's
  probes, εᵢᵀ Bⁿ εᵢ stays unbiased for tr(Bⁿ). The estimate (and its
  θ-gradient) is unbiased for the `terms`-term truncation; the truncation
  bias is |Σ_{n>N} (−1)^{n+1} tr(Bⁿ)/n| ≤ D ρ(B)^{N+1} / ((N + 1)(1 − ρ(B)))
  (benchmarks/reflow_regulariser_cost.py measures it against
  `logdet_exact` on the digits student). Diverges if ρ(B) ≥ 1.

  Args:
    field: u(x) -> [B, ...] (per-example times already bound).
    x: [B, ...] states.
    h: scalar or [B] step sizes.
    probes: [P, B, ...] Hutchinson probes (E[ε εᵀ] = I).
    terms: N, powers of B kept (N JVPs per probe).
  Returns:
    (u(x) [B, ...], logdet estimate [B]).
  """
  if probes.shape[1:] != x.shape:
    raise ValueError(f"probes must have shape [P, *x.shape], got "
                     f"{probes.shape} for x {x.shape}")
  if terms < 1:
    raise ValueError(f"terms={terms} must be >= 1")
  b = x.shape[0]
  d = math.prod(x.shape[1:])
  ux, lin = jax.linearize(field, x)
  hb = lambda w: _bc(h, w) * w
  apply_a = jax.vmap(lambda w: hb(lin(w)))        # [P, B, ...] -> A w
  a_eps = apply_a(probes)
  quad1 = jax.vmap(_dot)(probes, a_eps).mean(axis=0)          # εᵀ A ε, [B]
  if b > 1:
    tot = jnp.sum(quad1)
    c = 1.0 + jax.lax.stop_gradient((tot - quad1) / (b - 1)) / d
  else:
    c = jnp.ones_like(quad1)
  c = jnp.clip(c, 0.2, 5.0)
  cb = lambda w: c.reshape((1, b) + (1,) * (w.ndim - 2))   # [P, B, ...]
  w = (a_eps - (cb(probes) - 1.0) * probes) / cb(probes)      # B ε
  est = d * jnp.log(c)
  for n in range(1, terms + 1):
    if n > 1:
      w = (apply_a(w) - (cb(w) - 1.0) * w) / cb(w)            # Bⁿ ε
    quad = jax.vmap(_dot)(probes, w).mean(axis=0)
    est = est + ((-1.0) ** (n + 1) / n) * quad
  return ux, est


# ----------------------------------------------------- alignment (eq. A) --


def _gauss_legendre01(n: int) -> Tuple[np.ndarray, np.ndarray]:
  """n-point Gauss–Legendre nodes and weights on [0, 1] (exact for
  polynomials of degree 2n − 1; n = 1 is exact for Gaussian p_t)."""
  r, w = np.polynomial.legendre.leggauss(n)
  return 0.5 * (r + 1.0), 0.5 * w


def make_alignment_fn(student_apply: Callable, teacher_score: Callable, *,
                      logdet: str = "exact", logdet_terms: int = 4,
                      quad_points: int = 2,
                      estimate_value: bool = True) -> Callable:
  """Returns the per-example marginal-alignment objective of eq. A.

  Args:
    student_apply: u(params, x, t) -> [B, ...], t a [B] array (network
      time; the Euler step of interval k reads t_k).
    teacher_score: s(x, t) -> ∇log p_t(x) [B, ...] (frozen teacher; eq. S).
    logdet: 'exact' | 'power_series' (`logdet_exact`, `logdet_power_series`).
    logdet_terms: powers kept by the power series.
    quad_points: Gauss–Legendre points of the score line integral (value).
    estimate_value: compute κ (needs Δ^T and `quad_points` teacher
      evaluations); if False the objective's value is 0, its gradient is
      unchanged.

  Returns:
    align(params, x_s, x_e, delta_teacher, s, e, probes=None)
      -> (objective [n], aux) with x_s [n, ...] teacher states at t_k
      (~ p_{t_k}), x_e [n, ...] the teacher's states at t_{k+1} from them,
      delta_teacher [n] their Δ^T, s, e [n] the knots t_k, t_{k+1}, probes
      [P, n, ...] for the power series. objective = sg[κ] + g − sg[g]:
      value κ (unbiased for KL(Ψ^θ_k # p_{t_k} ‖ p_{t_{k+1}}) in nats),
      gradient ∇_θ of that KL. aux: 'kl' κ [n], 'logdet' [n], 'y' [n, ...].
  """
  if logdet not in LOGDETS:
    raise ValueError(f"logdet={logdet!r} is not one of {LOGDETS}")
  r_nodes, r_weights = _gauss_legendre01(quad_points)

  def align(params, x_s, x_e, delta_teacher, s, e, probes=None):
    dt = x_s.dtype
    s = jnp.asarray(s, dt)
    e = jnp.asarray(e, dt)
    h = e - s
    field = lambda x: student_apply(params, x, s)
    if logdet == "exact":
      u, ld = logdet_exact(field, x_s, h)
    else:
      if probes is None:
        raise ValueError("logdet='power_series' needs probes [P, n, ...]")
      u, ld = logdet_power_series(field, x_s, h, probes, logdet_terms)
    # The deployed map: one Euler step of the K-step sampler.
    y = x_s + _bc(h, x_s) * u
    # Gradient surrogate: ∇_θ g = −∇_θ log|det| − s(y) · ∂_θ y = ∇_θ KL. The
    # score is a frozen value (stop_gradient on input and output): log p(y)
    # depends on θ only through y.
    score_y = jax.lax.stop_gradient(
        teacher_score(jax.lax.stop_gradient(y), e))
    g = -ld - _dot(score_y, y)
    if estimate_value:
      # κ = −log|det| − Δ^T − ∫_0^1 s(ỹ + r (y − ỹ)) · (y − ỹ) dr, the line
      # integral being log p(y) − log p(ỹ). Value only: its gradient is g's.
      diff = jax.lax.stop_gradient(y) - x_e
      line = 0.0
      for r, w in zip(r_nodes, r_weights):
        sc = teacher_score(x_e + float(r) * diff, e)
        line = line + float(w) * _dot(sc, diff)
      kl = jax.lax.stop_gradient(-ld - delta_teacher - line)
    else:
      kl = jnp.zeros(x_s.shape[:1], dt)
    objective = kl + g - jax.lax.stop_gradient(g)
    return objective, {"kl": kl, "logdet": jax.lax.stop_gradient(ld),
                       "y": jax.lax.stop_gradient(y)}

  return align


def align_schedule(step: jax.Array, start: int, warmup: int) -> jax.Array:
  """λ multiplier in [0, 1]: 0 before `start`, then a linear ramp over
  `warmup` steps (a step function at `start` when warmup = 0)."""
  step = jnp.asarray(step, jnp.float32)
  if warmup > 0:
    return jnp.clip((step - start) / warmup, 0.0, 1.0)
  return (step >= start).astype(jnp.float32)
