"""EDM / iCT schedules, weights and the consistency parameterisation.

Pure JAX. Everything here follows the improved consistency training (iCT) of
Song & Dhariwal (2024), "Improved techniques for training consistency
models", as used by Issenhuth et al. (2024), "Improving Consistency Models with
Generator-Induced Flows" (appendix C), with the exact formulas of their
published implementation:

* Karras noise levels (ascending), ρ = 7 on [σ_min, σ_max] = [0.002, 80]:
  σ_i = (σ_min^{1/ρ} + i/(N-1) (σ_max^{1/ρ} - σ_min^{1/ρ}))^ρ, i = 0..N-1.
* Discretisation curriculum N(k) = min(s0 2^⌊k/K'⌋, s1) + 1 with
  K' = ⌊K / (log2⌊s1/s0⌋ + 1)⌋ (N counts noise levels, N-1 intervals).
* Interval j ∈ {0..N-2} drawn with probability ∝
  erf((ln σ_{j+1} - P_mean)/(√2 P_std)) - erf((ln σ_j - P_mean)/(√2 P_std)).
* Weight λ_j = 1 / (σ_{j+1} - σ_j).
* Pseudo-Huber distance d(a, b) = sqrt(‖a - b‖² + c²) - c, c = 0.00054 √dim.
* Consistency parameterisation f(x, σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x,
  c_noise(σ)) with c_skip = σd² / ((σ - σ_min)² + σd²),
  c_out = σd (σ - σ_min) / √(σ² + σd²), c_in = 1 / √(σ² + σd²),
  c_noise = ln(σ) / 4, σd = 0.5; hence f(x, σ_min) = x exactly.

Static shapes: the curriculum changes N while training, so the noise table is
always built at the static maximum length `s1 + 1` from a *traced* N and the
interval pmf is zero beyond N - 2. Nothing recompiles when N changes.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp

__all__ = [
    "karras_sigmas",
    "curriculum_period",
    "curriculum_num_points",
    "masked_karras_sigmas",
    "lognormal_interval_pmf",
    "sample_intervals",
    "ict_weight",
    "pseudo_huber",
    "squared_l2",
    "default_huber_c",
    "consistency_scalings",
    "denoiser_scalings",
    "consistency_fn",
    "edm_denoiser_fn",
    "ICTSchedule",
    "ict_schedule",
    "interp_time_of_sigma",
    "sigma_velocity_from_fm",
    "sigma_velocity_from_denoiser",
    "pf_ode_step",
]

ArrayLike = Union[jax.Array, float, int]


def _bcast(a: jax.Array, x: jax.Array) -> jax.Array:
  """Reshapes per-example [B] coefficients to broadcast against x [B, ...]."""
  a = jnp.asarray(a, x.dtype)
  if a.ndim == 0:
    return a
  return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


# --------------------------------------------------------------------------
# Noise levels and the discretisation curriculum.
# --------------------------------------------------------------------------


def karras_sigmas(num_points: int, sigma_min: float = 0.002,
                  sigma_max: float = 80.0, rho: float = 7.0,
                  dtype: Any = None) -> jax.Array:
  """The Karras et al. (2022) noise levels, ascending.

  Args:
    num_points: static number of levels N >= 2 (N - 1 intervals).
    sigma_min, sigma_max: endpoints σ_0 and σ_{N-1}.
    rho: the schedule's exponent ρ.
    dtype: output dtype (default: JAX's default float).
  Returns:
    [N] array σ_i = (σ_min^{1/ρ} + i/(N-1)(σ_max^{1/ρ} - σ_min^{1/ρ}))^ρ.
  """
  if num_points < 2:
    raise ValueError(f"karras_sigmas needs num_points >= 2, got {num_points}")
  dtype = dtype or jnp.result_type(float)
  ramp = jnp.arange(num_points, dtype=dtype) / (num_points - 1)
  lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
  return (lo + ramp * (hi - lo)) ** rho


def curriculum_period(total_steps: int, s0: int, s1: int) -> int:
  """K' = ⌊K / (log2⌊s1/s0⌋ + 1)⌋ of iCT's exponential curriculum (>= 1).

  The published formula takes log2 of the *floored* ratio and does not floor
  the logarithm. K' is clamped to 1 so very short runs (K < stages) still
  have a well-defined schedule.
  """
  if s0 < 1 or s1 < s0:
    raise ValueError(f"need 1 <= s0 <= s1, got s0={s0}, s1={s1}")
  if total_steps < 1:
    raise ValueError(f"total_steps must be >= 1, got {total_steps}")
  return max(1, int(math.floor(
      total_steps / (math.log2(math.floor(s1 / s0)) + 1))))


def curriculum_num_points(step: ArrayLike, total_steps: int, s0: int = 10,
                          s1: int = 1280) -> jax.Array:
  """iCT's N(k) = min(s0 · 2^⌊k/K'⌋, s1) + 1: noise levels at step k.

  Works on a traced int step (no recompiles as N changes). With s0 == s1 the
  discretisation is fixed at N = s1 + 1 (the paper's "fixed number of
  timesteps" variant of Sec. 5.1).

  Args:
    step: training step k (Python int or traced int32 scalar).
    total_steps: K, the total number of training steps (static).
    s0, s1: initial and final number of intervals (static).
  Returns:
    int32 scalar N(k) in [s0 + 1, s1 + 1].
  """
  period = curriculum_period(total_steps, s0, s1)
  # Enough doublings to reach s1; clamping the exponent keeps s0 * 2^stage
  # inside int32 for any step.
  max_stage = max(0, int(math.ceil(math.log2(s1 / s0))))
  stage = jnp.minimum(jnp.asarray(step, jnp.int32) // period, max_stage)
  n = s0 * jnp.left_shift(jnp.int32(1), stage.astype(jnp.int32))
  return jnp.minimum(n, s1).astype(jnp.int32) + 1


def masked_karras_sigmas(num_points: ArrayLike, max_points: int,
                         sigma_min: float = 0.002, sigma_max: float = 80.0,
                         rho: float = 7.0, dtype: Any = None) -> jax.Array:
  """Karras levels for a traced N, padded to the static length `max_points`.

  Entries i < N equal `karras_sigmas(N)[i]`; entries i >= N repeat σ_max
  (they are never sampled: `lognormal_interval_pmf` gives them mass 0).

  Args:
    num_points: N (int or traced int scalar), 2 <= N <= max_points.
    max_points: static table length (s1 + 1).
    sigma_min, sigma_max, rho: as in `karras_sigmas`.
    dtype: output dtype.
  Returns:
    [max_points] ascending array.
  """
  dtype = dtype or jnp.result_type(float)
  n = jnp.asarray(num_points, jnp.int32)
  i = jnp.minimum(jnp.arange(max_points, dtype=jnp.int32), n - 1)
  ramp = i.astype(dtype) / (n - 1).astype(dtype)
  lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
  return (lo + ramp * (hi - lo)) ** rho


def lognormal_interval_pmf(sigmas: jax.Array, num_points: ArrayLike,
                           p_mean: float = -1.1, p_std: float = 2.0
                           ) -> jax.Array:
  """iCT's discrete log-normal distribution over the intervals [σ_j, σ_{j+1}].

  p(j) ∝ erf((ln σ_{j+1} - P_mean)/(√2 P_std)) - erf((ln σ_j - P_mean)/(√2
  P_std)) for j < N - 1, and 0 for the padded intervals j >= N - 1.

  Args:
    sigmas: [M] ascending levels (e.g. from `masked_karras_sigmas`).
    num_points: N (int or traced), the number of valid levels.
    p_mean, p_std: the log-normal's P_mean and P_std.
  Returns:
    [M - 1] probabilities summing to 1.
  """
  s = (jnp.log(sigmas) - p_mean) / (math.sqrt(2.0) * p_std)
  cdf = jax.scipy.special.erf(s)
  w = cdf[1:] - cdf[:-1]
  valid = jnp.arange(w.shape[0]) < (jnp.asarray(num_points) - 1)
  w = jnp.where(valid, jnp.maximum(w, 0.0), 0.0)
  return w / jnp.sum(w)


def sample_intervals(key: jax.Array, pmf: jax.Array,
                     shape: Tuple[int, ...]) -> jax.Array:
  """Draws interval indices j ~ pmf by inverse-CDF sampling.

  O(M + B log M), unlike a Gumbel-max over M entries per sample.

  Args:
    key: PRNG key.
    pmf: [M - 1] probabilities (zeros allowed).
    shape: output shape, e.g. (B,).
  Returns:
    int32 indices with the given shape, never pointing at a zero-mass entry.
  """
  cdf = jnp.cumsum(pmf)
  u = jax.random.uniform(key, shape, dtype=cdf.dtype) * cdf[-1]
  j = jnp.searchsorted(cdf, u, side="right")
  # Guard the u == cdf[-1] edge and round-off: clip to the last positive bin.
  last = jnp.max(jnp.where(pmf > 0, jnp.arange(pmf.shape[0]), 0))
  return jnp.minimum(j, last).astype(jnp.int32)


def ict_weight(sigma_i: jax.Array, sigma_next: jax.Array) -> jax.Array:
  """λ(σ_i) = 1 / (σ_{i+1} - σ_i) (Song & Dhariwal, 2024)."""
  return 1.0 / (sigma_next - sigma_i)


# --------------------------------------------------------------------------
# Distances.
# --------------------------------------------------------------------------


def default_huber_c(data_shape: Tuple[int, ...]) -> float:
  """iCT's pseudo-Huber constant c = 0.00054 √d for data of `data_shape`."""
  return 0.00054 * math.sqrt(math.prod(data_shape))


def squared_l2(a: jax.Array, b: jax.Array) -> jax.Array:
  """‖a - b‖² per example: [B, ...] x [B, ...] -> [B]."""
  d = (a - b).reshape(a.shape[0], -1)
  return jnp.sum(d * d, axis=-1)


def pseudo_huber(a: jax.Array, b: jax.Array, c: float) -> jax.Array:
  """Pseudo-Huber distance sqrt(‖a - b‖² + c²) - c per example, [B].

  ≈ ‖a - b‖²/(2c) for ‖a - b‖ ≪ c and ≈ ‖a - b‖ - c for ‖a - b‖ ≫ c.
  """
  return jnp.sqrt(squared_l2(a, b) + c * c) - c


# --------------------------------------------------------------------------
# Parameterisations.
# --------------------------------------------------------------------------


def consistency_scalings(sigma: jax.Array, sigma_min: float = 0.002,
                         sigma_data: float = 0.5
                         ) -> Tuple[jax.Array, jax.Array, jax.Array,
                                    jax.Array]:
  """EDM scalings with the consistency boundary offset σ_min.

  Args:
    sigma: noise levels, any shape.
    sigma_min: σ at which f must be the identity.
    sigma_data: σ_d.
  Returns:
    (c_skip, c_out, c_in, c_noise) with c_skip(σ_min) = 1, c_out(σ_min) = 0.
  """
  c_skip = sigma_data ** 2 / ((sigma - sigma_min) ** 2 + sigma_data ** 2)
  c_out = sigma_data * (sigma - sigma_min) / jnp.sqrt(sigma ** 2
                                                      + sigma_data ** 2)
  c_in = 1.0 / jnp.sqrt(sigma ** 2 + sigma_data ** 2)
  c_noise = jnp.log(sigma) / 4.0
  return c_skip, c_out, c_in, c_noise


def denoiser_scalings(sigma: jax.Array, sigma_data: float = 0.5
                      ) -> Tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Plain EDM preconditioning (Karras et al. 2022, Table 1), no offset."""
  c_skip = sigma_data ** 2 / (sigma ** 2 + sigma_data ** 2)
  c_out = sigma * sigma_data / jnp.sqrt(sigma ** 2 + sigma_data ** 2)
  c_in = 1.0 / jnp.sqrt(sigma ** 2 + sigma_data ** 2)
  c_noise = jnp.log(sigma) / 4.0
  return c_skip, c_out, c_in, c_noise


def consistency_fn(apply_fn: Callable[..., jax.Array], params: Any,
                   x: jax.Array, sigma: ArrayLike, *,
                   sigma_min: float = 0.002, sigma_data: float = 0.5,
                   key: Optional[jax.Array] = None) -> jax.Array:
  """f_θ(x, σ) = c_skip(σ) x + c_out(σ) F_θ(c_in(σ) x, c_noise(σ)).

  Args:
    apply_fn: network `(params, x, c_noise [B], key=None) -> [B, ...]`.
    params: network parameters.
    x: [B, ...] noisy inputs.
    sigma: scalar or [B] noise levels.
    sigma_min, sigma_data: parameterisation constants.
    key: dropout key (None = deterministic). The same key gives the same
      dropout mask, which iCT needs for its teacher/student pair.
  Returns:
    [B, ...] the consistency function's output; equals x at σ = σ_min.
  """
  sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
  c_skip, c_out, c_in, c_noise = consistency_scalings(sigma, sigma_min,
                                                      sigma_data)
  out = apply_fn(params, _bcast(c_in, x) * x, c_noise, key=key)
  return _bcast(c_skip, x) * x + _bcast(c_out, x) * out.astype(x.dtype)


def edm_denoiser_fn(apply_fn: Callable[..., jax.Array], params: Any,
                    x: jax.Array, sigma: ArrayLike, *,
                    sigma_data: float = 0.5,
                    key: Optional[jax.Array] = None) -> jax.Array:
  """EDM denoiser D(x, σ) = c_skip x + c_out F(c_in x, c_noise), [B, ...]."""
  sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
  c_skip, c_out, c_in, c_noise = denoiser_scalings(sigma, sigma_data)
  out = apply_fn(params, _bcast(c_in, x) * x, c_noise, key=key)
  return _bcast(c_skip, x) * x + _bcast(c_out, x) * out.astype(x.dtype)


# --------------------------------------------------------------------------
# One call for the whole per-step schedule.
# --------------------------------------------------------------------------


class ICTSchedule(NamedTuple):
  """The iCT discretisation at one training step.

  Attributes:
    num_points: int32 N(k).
    sigmas: [s1 + 1] padded ascending levels.
    pmf: [s1] interval probabilities (0 beyond N - 2).
  """

  num_points: jax.Array
  sigmas: jax.Array
  pmf: jax.Array


def ict_schedule(step: ArrayLike, *, total_steps: int, s0: int = 10,
                 s1: int = 1280, sigma_min: float = 0.002,
                 sigma_max: float = 80.0, rho: float = 7.0,
                 p_mean: float = -1.1, p_std: float = 2.0,
                 dtype: Any = None) -> ICTSchedule:
  """N(k), the padded Karras table and the interval pmf at step k.

  All shapes depend only on the static s1, so a jitted train step compiles
  once for the whole curriculum.
  """
  n = curriculum_num_points(step, total_steps, s0, s1)
  sigmas = masked_karras_sigmas(n, s1 + 1, sigma_min, sigma_max, rho, dtype)
  pmf = lognormal_interval_pmf(sigmas, n, p_mean, p_std)
  return ICTSchedule(n, sigmas, pmf)


# --------------------------------------------------------------------------
# PF-ODE in σ-space from a flow-matching velocity or a denoiser.
# --------------------------------------------------------------------------


def interp_time_of_sigma(interp_name: str, sigma: jax.Array) -> jax.Array:
  """The interpolant time t whose noise-to-signal ratio α(t)/β(t) is σ.

  For x_t = α(t) z + β(t) x* (t = 0 noise, t = 1 data) the rescaled point
  x_t / β(t) = x* + (α/β) z is the VE point x_σ with σ = α(t)/β(t):
  linear (α = 1 - t, β = t): t = 1 / (1 + σ);
  trigonometric (α = cos πt/2, β = sin πt/2): t = (2/π) arctan(1/σ).
  """
  if interp_name == "linear":
    return 1.0 / (1.0 + sigma)
  if interp_name == "trigonometric":
    return (2.0 / math.pi) * jnp.arctan(1.0 / sigma)
  raise ValueError(f"interp.name={interp_name!r} has no σ-space map; "
                   "expected 'linear' or 'trigonometric'")


def sigma_velocity_from_fm(interp: Any, velocity: Callable[..., jax.Array]
                           ) -> Callable[..., jax.Array]:
  """PF-ODE dx_σ/dσ = E[z | x_σ] from a flow-matching velocity field.

  Change of variables. A flow-matching teacher b(x_t, t) = E[α' z + β' x* |
  x_t] is trained on x_t = α(t) z + β(t) x*. With σ = α/β and x_σ = x_t / β
  (`interp_time_of_sigma`), x_σ = x* + σ z is the VE process of consistency
  models, and conditioning on x_σ is conditioning on x_t. Writing
  ζ = E[z | x_t] and D = E[x* | x_t], the two linear relations
  x_t = α ζ + β D and b = α' ζ + β' D give

      ζ = (β b - β' x_t) / (α' β - α β'),

  and the VE probability-flow ODE is dx_σ/dσ = E[z | x_σ] = ζ (equivalently
  (x_σ - D)/σ). For the linear interpolant (α' β - α β' = -1) this is
  ζ = x_t - t b with x_t = x_σ / (1 + σ), t = 1/(1 + σ).

  Args:
    interp: an `interpolants.Interpolant` (name 'linear' or 'trigonometric').
    velocity: `(params, x_t [B, ...], t [B]) -> b [B, ...]`.
  Returns:
    `(params, x_sigma [B, ...], sigma [B]) -> dx_σ/dσ [B, ...]`.
  """

  def v_sigma(params, x_sigma, sigma):
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x_sigma.dtype),
                             x_sigma.shape[:1])
    t = interp_time_of_sigma(interp.name, sigma)
    a, b = interp.alpha(t), interp.beta(t)
    da, db = interp.dalpha(t), interp.dbeta(t)
    x_t = _bcast(b, x_sigma) * x_sigma
    vel = velocity(params, x_t, t).astype(x_sigma.dtype)
    num = _bcast(b, x_t) * vel - _bcast(db, x_t) * x_t
    return num / _bcast(da * b - a * db, x_t)

  return v_sigma


def sigma_velocity_from_denoiser(denoiser: Callable[..., jax.Array]
                                 ) -> Callable[..., jax.Array]:
  """dx_σ/dσ = (x_σ - D(x_σ, σ)) / σ from an EDM denoiser D(params, x, σ)."""

  def v_sigma(params, x_sigma, sigma):
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x_sigma.dtype),
                             x_sigma.shape[:1])
    d = denoiser(params, x_sigma, sigma)
    return (x_sigma - d) / _bcast(sigma, x_sigma)

  return v_sigma


def pf_ode_step(v_sigma: Callable[[jax.Array, jax.Array], jax.Array],
                x: jax.Array, sigma: jax.Array, sigma_next: jax.Array,
                solver: str = "heun") -> jax.Array:
  """One Euler or Heun step of dx/dσ = v(x, σ) from σ to σ_next (both [B]).

  Heun is EDM's 2nd-order step (Karras et al. 2022, Alg. 1) with the
  corrector always applied (σ_next >= σ_min > 0 here).
  """
  h = _bcast(sigma_next - sigma, x)
  d1 = v_sigma(x, sigma)
  x_euler = x + h * d1
  if solver == "euler":
    return x_euler
  if solver == "heun":
    d2 = v_sigma(x_euler, sigma_next)
    return x + 0.5 * h * (d1 + d2)
  raise ValueError(f"cd solver={solver!r} is not one of ('euler', 'heun')")
