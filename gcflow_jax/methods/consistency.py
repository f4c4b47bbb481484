"""Consistency models: iCT with IC / minibatch-OT / GC couplings, and CD.

Paper: Issenhuth et al. (2024), "Improving Consistency Models with
Generator-Induced Flows" (here "GC paper"), built on the improved consistency
training (iCT) of Song & Dhariwal (2024). Methods:

* 'ict': consistency training (GC paper Eq. 6, Alg. 1)
      L = E[λ(σ_i) d(f_θ(x_{i+1}, σ_{i+1}), sg f_θ(x_i, σ_i))],
      x_i = x* + σ_i z, x_{i+1} = x* + σ_{i+1} z,
  where the pair (x*, z) comes from a coupling (`ict.coupling`):
    'ic'  independent: x* ~ data, z ~ N(0, I);
    'ot'  minibatch OT: z permuted to minimise Σ‖x* - z‖² (exact or Sinkhorn);
    'gc'  generator-induced (Eq. 13-15): x* ← sg f(x* + σ_i z, σ_i) with the
          same z, for a fixed ⌊μB⌋ of the batch (mixing, Sec. 5.3), the
          endpoint f being the EMA model ('ema', published), the online model
          ('online') or a frozen pre-trained predictor ('frozen', Sec. 5.2).
* 'cd': consistency distillation (GC paper Eq. 4-5): x_i is replaced by one
  Euler/Heun step of the teacher's PF-ODE from x_{i+1}, with the same
  schedule, weighting, distance and stop-gradient online target as iCT, so
  CT and CD differ only in the velocity estimate (Theorem 1).

Shared iCT machinery (`gcflow_jax.math.edm`): Karras levels, the exponential
curriculum N(k) computed from the traced step on a static s1 + 1 table (no
recompiles), the discrete log-normal pmf over intervals, λ = 1/(σ_{i+1} -
σ_i), pseudo-Huber with c = 0.00054 √d, and the EDM consistency
parameterisation with the σ_min offset. The teacher branch uses the online
parameters under stop-gradient and the *same* dropout key as the student.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from gcflow_jax.math import couplings
from gcflow_jax.math import edm
from gcflow_jax.math import interpolants
from gcflow_jax.methods.base import Method

__all__ = [
    "DISTANCES",
    "WEIGHTINGS",
    "CD_SOLVERS",
    "make_consistency_apply",
    "make_ict_loss",
    "make_cd_loss",
    "make_sampler",
    "RENOISE",
    "sample_renoise",
    "intermediate_sigmas",
    "from_config",
    "validate_config",
    "needs_teacher",
]

DISTANCES = ("pseudo_huber", "l2")
WEIGHTINGS = ("inverse_delta", "uniform")
CD_SOLVERS = ("euler", "heun")


def _bcast(a: jax.Array, x: jax.Array) -> jax.Array:
  return a.reshape(a.shape + (1,) * (x.ndim - a.ndim)).astype(x.dtype)


def make_consistency_apply(apply_fn: Callable[..., jax.Array], *,
                           sigma_min: float = 0.002, sigma_data: float = 0.5
                           ) -> Callable[..., jax.Array]:
  """`f(params, x, sigma, key=None)`: the EDM consistency parameterisation.

  Args:
    apply_fn: network `(params, x, c_noise [B], key=None) -> [B, ...]`.
    sigma_min, sigma_data: parameterisation constants (f(x, σ_min) = x).
  """
  return functools.partial(edm.consistency_fn, apply_fn,
                           sigma_min=sigma_min, sigma_data=sigma_data)


# --------------------------------------------------------------------------
# Shared pieces of the two losses.
# --------------------------------------------------------------------------


def _distance_fn(distance: str, huber_c: float):
  if distance == "pseudo_huber":
    return lambda a, b: edm.pseudo_huber(a, b, huber_c)
  if distance == "l2":
    return edm.squared_l2
  raise ValueError(f"distance={distance!r} is not one of {DISTANCES}")


def _weight_fn(weighting: str):
  if weighting == "inverse_delta":
    return edm.ict_weight
  if weighting == "uniform":
    return lambda s, s_next: jnp.ones_like(s)
  raise ValueError(f"weighting={weighting!r} is not one of {WEIGHTINGS}")


def _draw_levels(key, step, batch, dtype, sched_kw):
  """Draws (σ_i, σ_{i+1}) [B] from the iCT schedule at `step`."""
  sched = edm.ict_schedule(step, dtype=dtype, **sched_kw)
  j = edm.sample_intervals(key, sched.pmf, (batch,))
  return sched.sigmas[j], sched.sigmas[j + 1], sched.num_points


def _consistency_pair_loss(f, params, x_i, sigma_i, x_next, sigma_next,
                           k_drop, dist, weight):
  """λ(σ_i) d(f_θ(x_{i+1}, σ_{i+1}), sg f_θ(x_i, σ_i)) per example, [B]."""
  # Teacher: the online parameters under stop-gradient (iCT drops the EMA
  # target). Stopping the gradient at the parameters (and the output) means
  # no backward pass is ever built for this branch. Same dropout key as the
  # student: both see the same dropout mask (iCT's convention).
  f_i = jax.lax.stop_gradient(
      f(jax.lax.stop_gradient(params), x_i, sigma_i, key=k_drop))
  f_next = f(params, x_next, sigma_next, key=k_drop)
  d = dist(f_next, f_i)
  return weight(sigma_i, sigma_next) * d, d


# --------------------------------------------------------------------------
# iCT (IC / OT / GC).
# --------------------------------------------------------------------------


def make_ict_loss(apply_fn: Callable[..., jax.Array],
                  data_shape: Sequence[int], *, total_steps: int,
                  s0: int = 10, s1: int = 1280, sigma_min: float = 0.002,
                  sigma_max: float = 80.0, sigma_data: float = 0.5,
                  rho: float = 7.0, p_mean: float = -1.1, p_std: float = 2.0,
                  distance: str = "pseudo_huber",
                  huber_c: Optional[float] = None,
                  weighting: str = "inverse_delta", coupling: str = "ic",
                  gc_mu: float = 0.5, gc_source: str = "ema",
                  endpoint_apply_fn: Optional[Callable[..., jax.Array]] = None,
                  endpoint_sigma_min: Optional[float] = None,
                  endpoint_sigma_data: Optional[float] = None,
                  ot_solver: str = "exact", ot_epsilon: float = 0.05,
                  ot_rounding: str = "lsa", ot_threshold: float = 1e-3,
                  ot_max_iterations: int = 2000):
  """Improved consistency training with an IC, OT or GC coupling.

  GC paper Eq. 6 (IC), Eq. 15 + Sec. 5.3 (GC with mixing μ), minibatch OT as
  in Pooladian et al. (2023) / Dou et al. (2024).

  Args:
    apply_fn: network `(params, x, c_noise, key=None)`.
    data_shape: shape of one example (for the pseudo-Huber constant).
    total_steps: K of the curriculum.
    s0, s1, sigma_min, sigma_max, sigma_data, rho, p_mean, p_std: iCT
      schedule and parameterisation (see `gcflow_jax.math.edm`).
    distance: 'pseudo_huber' or 'l2'.
    huber_c: pseudo-Huber c (None: 0.00054 √d).
    weighting: 'inverse_delta' (λ = 1/(σ_{i+1} - σ_i)) or 'uniform'.
    coupling: 'ic', 'ot' or 'gc'.
    gc_mu: GC fraction μ (a fixed ⌊μB⌋ examples per batch).
    gc_source: endpoint predictor 'ema' | 'online' | 'frozen'.
    endpoint_apply_fn: network of the frozen predictor (default `apply_fn`);
      its parameters are `extras["endpoint"]`.
    endpoint_sigma_min, endpoint_sigma_data: the frozen predictor's own
      parameterisation constants (default: this model's).
    ot_solver, ot_epsilon, ot_rounding, ot_threshold, ot_max_iterations:
      minibatch-OT settings (`couplings.ot_permutation`).

  Returns:
    `loss_fn(params, batch, key, *, step, ema_params=None, extras=None)
    -> (loss [B], aux)`. Randomness: `key` is split into the interval draw,
    the noise, the shared dropout key and the online endpoint's dropout key.
  """
  if coupling not in couplings.COUPLINGS:
    raise ValueError(f"coupling={coupling!r} is not one of "
                     f"{couplings.COUPLINGS}")
  if gc_source not in couplings.GC_SOURCES:
    raise ValueError(f"gc_source={gc_source!r} is not one of "
                     f"{couplings.GC_SOURCES}")
  huber_c = edm.default_huber_c(tuple(data_shape)) if huber_c is None else (
      huber_c)
  dist = _distance_fn(distance, huber_c)
  weight = _weight_fn(weighting)
  f = make_consistency_apply(apply_fn, sigma_min=sigma_min,
                             sigma_data=sigma_data)
  f_end = make_consistency_apply(
      endpoint_apply_fn or apply_fn,
      sigma_min=sigma_min if endpoint_sigma_min is None else (
          endpoint_sigma_min),
      sigma_data=sigma_data if endpoint_sigma_data is None else (
          endpoint_sigma_data))
  sched_kw = dict(total_steps=total_steps, s0=s0, s1=s1, sigma_min=sigma_min,
                  sigma_max=sigma_max, rho=rho, p_mean=p_mean, p_std=p_std)

  def endpoint_fn(params, ema_params, extras, k_end):
    """The GC endpoint predictor (x_σ, σ) -> f(x_σ, σ), gradient-free."""
    if gc_source == "ema":
      if ema_params is None:
        raise ValueError("coupling='gc' with gc_source='ema' needs "
                         "ema_params")
      p, fn, k = ema_params, f, None
    elif gc_source == "online":
      # As published: the online network in training mode (own dropout
      # mask); stop-gradient on the parameters, nothing is differentiated.
      p, fn, k = params, f, k_end
    else:
      if not extras or "endpoint" not in extras:
        raise ValueError("gc_source='frozen' needs extras['endpoint'] (the "
                         "pre-trained endpoint predictor's parameters)")
      p, fn, k = extras["endpoint"], f_end, None
    p = jax.lax.stop_gradient(p)
    return lambda x_sigma, sigma: fn(p, x_sigma, sigma, key=k)

  def loss_fn(params, batch, key, *, step, ema_params=None, extras=None):
    x = batch["x"]
    b = x.shape[0]
    k_t, k_z, k_drop, k_end = jax.random.split(key, 4)
    del key
    sigma_i, sigma_next, n_points = _draw_levels(k_t, step, b, x.dtype,
                                                 sched_kw)
    z = jax.random.normal(k_z, x.shape, x.dtype)
    aux = {}
    if coupling == "ot":
      perm = couplings.ot_permutation(
          x, z, ot_solver, epsilon=ot_epsilon, rounding=ot_rounding,
          threshold=ot_threshold, max_iterations=ot_max_iterations)
      aux["coupling/ic_cost"] = couplings.pairing_cost(x, z)
      z = z[perm]
    if coupling == "gc":
      num_gc = couplings.gc_count(gc_mu, b)
      x_star = couplings.mix_endpoints(
          endpoint_fn(params, ema_params, extras, k_end), x, z, sigma_i,
          num_gc)
      aux["coupling/ic_cost"] = couplings.pairing_cost(x, z)
      aux["coupling/gc_fraction"] = jnp.asarray(num_gc / b, jnp.float32)
    else:
      x_star = x
    aux["coupling/cost"] = couplings.pairing_cost(x_star, z)
    x_i = x_star + _bcast(sigma_i, x) * z
    x_next = x_star + _bcast(sigma_next, x) * z
    loss, d = _consistency_pair_loss(f, params, x_i, sigma_i, x_next,
                                     sigma_next, k_drop, dist, weight)
    aux.update({
        "loss/consistency": jnp.mean(loss),
        "ict/distance": jnp.mean(d),
        "ict/num_points": n_points.astype(jnp.float32),
        "ict/sigma_mean": jnp.mean(sigma_i),
    })
    return loss, aux

  return loss_fn


# --------------------------------------------------------------------------
# Consistency distillation.
# --------------------------------------------------------------------------


def make_cd_loss(apply_fn: Callable[..., jax.Array],
                 sigma_velocity: Callable[..., jax.Array],
                 data_shape: Sequence[int], *, total_steps: int,
                 s0: int = 10, s1: int = 1280, sigma_min: float = 0.002,
                 sigma_max: float = 80.0, sigma_data: float = 0.5,
                 rho: float = 7.0, p_mean: float = -1.1, p_std: float = 2.0,
                 distance: str = "pseudo_huber",
                 huber_c: Optional[float] = None,
                 weighting: str = "inverse_delta", solver: str = "heun"):
  """Consistency distillation from a frozen PF-ODE (GC paper Eq. 4-5).

  x_{i+1} = x* + σ_{i+1} z (IC), x_i^Φ = one `solver` step of the teacher's
  dx/dσ = v(x, σ) from σ_{i+1} down to σ_i, and
      L = λ(σ_i) d(f_θ(x_{i+1}, σ_{i+1}), sg f_θ(x_i^Φ, σ_i)).
  Schedule, pmf, weighting, distance and the stop-gradient online target are
  those of `make_ict_loss`, so CT and CD differ only in x_i (Theorem 1).

  Args:
    apply_fn: student network `(params, x, c_noise, key=None)`.
    sigma_velocity: `(teacher_params, x_σ, σ [B]) -> dx_σ/dσ`, e.g.
      `edm.sigma_velocity_from_fm(interp, teacher.velocity)`; its parameters
      are `extras["teacher"]`.
    data_shape, total_steps, s0, ..., weighting: as in `make_ict_loss`.
    solver: 'euler' or 'heun'.
  Returns:
    `loss_fn(params, batch, key, *, step, ema_params=None, extras)`.
  """
  if solver not in CD_SOLVERS:
    raise ValueError(f"cd solver={solver!r} is not one of {CD_SOLVERS}")
  huber_c = edm.default_huber_c(tuple(data_shape)) if huber_c is None else (
      huber_c)
  dist = _distance_fn(distance, huber_c)
  weight = _weight_fn(weighting)
  f = make_consistency_apply(apply_fn, sigma_min=sigma_min,
                             sigma_data=sigma_data)
  sched_kw = dict(total_steps=total_steps, s0=s0, s1=s1, sigma_min=sigma_min,
                  sigma_max=sigma_max, rho=rho, p_mean=p_mean, p_std=p_std)

  def loss_fn(params, batch, key, *, step, ema_params=None, extras=None):
    del ema_params
    if not extras or "teacher" not in extras:
      raise ValueError("method 'cd' needs extras['teacher'] (the frozen "
                       "teacher's parameters)")
    x = batch["x"]
    b = x.shape[0]
    k_t, k_z, k_drop = jax.random.split(key, 3)
    del key
    sigma_i, sigma_next, n_points = _draw_levels(k_t, step, b, x.dtype,
                                                 sched_kw)
    z = jax.random.normal(k_z, x.shape, x.dtype)
    x_next = x + _bcast(sigma_next, x) * z
    # The teacher is frozen: its parameters never receive gradients.
    t_params = jax.lax.stop_gradient(extras["teacher"])
    v = lambda xx, ss: sigma_velocity(t_params, xx, ss)  # noqa: E731
    x_i = jax.lax.stop_gradient(
        edm.pf_ode_step(v, x_next, sigma_next, sigma_i, solver))
    loss, d = _consistency_pair_loss(f, params, x_i, sigma_i, x_next,
                                     sigma_next, k_drop, dist, weight)
    aux = {
        "loss/consistency": jnp.mean(loss),
        "ict/distance": jnp.mean(d),
        "ict/num_points": n_points.astype(jnp.float32),
        "ict/sigma_mean": jnp.mean(sigma_i),
        # How far the ODE step lands from CT's one-sample estimate x* + σ_i z.
        "cd/ct_gap": jnp.mean(edm.squared_l2(x_i, x + _bcast(sigma_i, x) * z)),
    }
    return loss, aux

  return loss_fn


# --------------------------------------------------------------------------
# Sampling.
# --------------------------------------------------------------------------


def intermediate_sigmas(steps: int, sample_sigmas: Sequence[float], *,
                        sigma_min: float = 0.002, sigma_max: float = 80.0,
                        rho: float = 7.0) -> Tuple[float, ...]:
  """The steps - 1 intermediate noise levels of multistep sampling.

  `sample_sigmas` when it has exactly steps - 1 entries (iCT's 2-step
  CIFAR-10 sampler: (0.821,)); otherwise the interior of a Karras schedule
  with steps + 1 levels, descending.
  """
  if steps < 1:
    raise ValueError(f"sampling steps must be >= 1, got {steps}")
  if steps == 1:
    return ()
  if len(sample_sigmas) == steps - 1:
    return tuple(float(s) for s in sample_sigmas)
  # Host arithmetic (this runs while sample_fn is traced).
  lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
  table = [(lo + i / steps * (hi - lo)) ** rho for i in range(steps + 1)]
  return tuple(float(s) for s in table[1:-1][::-1])


RENOISE = ("ic", "ot")


def _ot_paired_noise(x0, noise, chunk, ot_kw):
  """`noise` re-ordered so it is minibatch-OT paired with `x0`, chunk by
  chunk of `chunk` examples (the training batch: the coupling an OT model
  was trained on is OT within a batch of that size)."""
  n = x0.shape[0]
  out = []
  for lo in range(0, n, chunk):  # static: num and chunk are Python ints
    xs, zs = x0[lo:lo + chunk], noise[lo:lo + chunk]
    out.append(zs[couplings.ot_permutation(xs, zs, **ot_kw)])
  return jnp.concatenate(out) if len(out) > 1 else out[0]


def make_sampler(apply_fn: Callable[..., jax.Array],
                 data_shape: Sequence[int], *, sigma_min: float = 0.002,
                 sigma_max: float = 80.0, sigma_data: float = 0.5,
                 rho: float = 7.0, sample_sigmas: Sequence[float] = (),
                 clip_denoised: bool = False, renoise: str = "ic",
                 ot_batch: int = 512, ot_solver: str = "exact",
                 ot_epsilon: float = 0.05, ot_rounding: str = "lsa",
                 ot_threshold: float = 1e-3, ot_max_iterations: int = 2000):
  """Consistency-model sampler (Song et al. 2023, Alg. 1).

  One step: x0 = f(σ_max z, σ_max). Multistep: for each intermediate σ
  (descending), x = x0 + sqrt(σ² - σ_min²) z', x0 = f(x, σ).

  Re-noising must reproduce the noisy marginal the model was trained on.
  `renoise='ic'` draws z' independently of x0: right for IC (and GC, whose
  endpoints are paired with their own noise). A model trained with
  minibatch OT only ever saw x* + σ z with z OT-paired to x*; its f is the
  consistency function of *that* process, whose marginal at σ differs from
  the IC one (1-D Gaussian N(0, s²): std s + σ instead of √(s² + σ²)).
  `renoise='ot'` therefore pairs the fresh z' with the current x0 by the
  same minibatch OT (`couplings.ot_permutation` on ‖x0 - z'‖², per chunk
  of `ot_batch` samples, the training batch size). Pairing unit noise is
  the OT pairing at every σ (see `couplings`). For the exact OT consistency
  function of a 1-D Gaussian the 2-step std is then ≈ s again; with IC
  re-noising it falls to ≈ 0.73 s (tests/methods/test_consistency.py).

  Args:
    apply_fn, data_shape, sigma_min, sigma_max, sigma_data, rho: the model.
    sample_sigmas: intermediate σ's (see `intermediate_sigmas`).
    clip_denoised: clamp each x0 to [-1, 1].
    renoise: 'ic' or 'ot' (see above).
    ot_batch: OT chunk size (the training batch size).
    ot_solver, ot_epsilon, ot_rounding, ot_threshold, ot_max_iterations:
      `couplings.ot_permutation` settings ('ot' only).

  Returns:
    `sample_fn(params, key, num, steps=None, extras=None) -> [num, ...]`.
  """
  if renoise not in RENOISE:
    raise ValueError(f"renoise={renoise!r} is not one of {RENOISE}")
  if ot_batch < 1:
    raise ValueError(f"ot_batch={ot_batch} must be >= 1")
  f = make_consistency_apply(apply_fn, sigma_min=sigma_min,
                             sigma_data=sigma_data)
  shape = tuple(data_shape)
  ot_kw = dict(solver=ot_solver, epsilon=ot_epsilon, rounding=ot_rounding,
               threshold=ot_threshold, max_iterations=ot_max_iterations)

  def denoise(params, x, sigma):
    x0 = f(params, x, jnp.full((x.shape[0],), sigma, x.dtype))
    return jnp.clip(x0, -1.0, 1.0) if clip_denoised else x0

  def sample_fn(params, key, num, steps=None, extras=None):
    del extras
    steps = 1 if steps is None else int(steps)
    levels = intermediate_sigmas(steps, sample_sigmas, sigma_min=sigma_min,
                                 sigma_max=sigma_max, rho=rho)
    keys = jax.random.split(key, steps)
    x0 = denoise(params, sigma_max * jax.random.normal(keys[0],
                                                       (num,) + shape),
                 sigma_max)
    for k, s in zip(keys[1:], levels):
      noise = jax.random.normal(k, x0.shape, x0.dtype)
      if renoise == "ot":
        noise = _ot_paired_noise(jax.lax.stop_gradient(x0), noise,
                                 ot_batch, ot_kw)
      x0 = denoise(params, x0 + math.sqrt(max(s * s - sigma_min ** 2, 0.0))
                   * noise, s)
    return x0

  return sample_fn


# --------------------------------------------------------------------------
# Config adapters.
# --------------------------------------------------------------------------


def needs_teacher(config) -> bool:
  return config.method == "cd"


def _check_choice(name, value, allowed):
  if value not in allowed:
    raise ValueError(f"{name}={value!r} is not one of {tuple(allowed)}")


def validate_config(config) -> None:
  """Raises ValueError naming the offending `config.ict` field."""
  c = config.ict
  _check_choice("method", config.method, ("ict", "cd"))
  _check_choice("ict.coupling", c.coupling, couplings.COUPLINGS)
  _check_choice("ict.gc_source", c.gc_source, couplings.GC_SOURCES)
  _check_choice("ict.ot_solver", c.ot_solver, couplings.OT_SOLVERS)
  _check_choice("ict.ot_rounding", c.ot_rounding, couplings.OT_ROUNDINGS)
  _check_choice("ict.distance", c.distance, DISTANCES)
  _check_choice("ict.weighting", c.weighting, WEIGHTINGS)
  _check_choice("ict.cd_solver", c.cd_solver, CD_SOLVERS)
  if not 0.0 <= float(c.gc_mu) <= 1.0:
    raise ValueError(f"ict.gc_mu={c.gc_mu} must be in [0, 1]")
  if int(c.s0) < 1 or int(c.s1) < int(c.s0):
    raise ValueError(f"need 1 <= ict.s0 <= ict.s1, got s0={c.s0}, "
                     f"s1={c.s1}")
  if not 0.0 < float(c.sigma_min) < float(c.sigma_max):
    raise ValueError(f"need 0 < ict.sigma_min < ict.sigma_max, got "
                     f"{c.sigma_min}, {c.sigma_max}")
  for name in ("sigma_data", "rho", "p_std"):
    if float(c[name]) <= 0:
      raise ValueError(f"ict.{name}={c[name]} must be > 0")
  if float(c.huber_c) < 0:
    raise ValueError(f"ict.huber_c={c.huber_c} must be >= 0 (0 = default "
                     "0.00054·√d)")
  if int(c.curriculum_steps) < 0:
    raise ValueError(f"ict.curriculum_steps={c.curriculum_steps} must be >= "
                     "0 (0 = train.steps)")
  if float(c.ot_epsilon) <= 0 or int(c.ot_max_iterations) < 1:
    raise ValueError("ict.ot_epsilon must be > 0 and ict.ot_max_iterations "
                     ">= 1")
  for s in c.sample_sigmas:
    if not float(c.sigma_min) < float(s) < float(c.sigma_max):
      raise ValueError(f"ict.sample_sigmas entry {s} must lie in "
                       f"(sigma_min, sigma_max)")
  _check_choice("ict.sample_renoise", c.sample_renoise, ("auto",) + RENOISE)
  if int(c.sample_ot_batch) < 0:
    raise ValueError(f"ict.sample_ot_batch={c.sample_ot_batch} must be >= 0 "
                     "(0 = train.batch_size)")
  if tuple(c.sample_sigmas) != tuple(sorted(c.sample_sigmas, reverse=True)):
    raise ValueError(f"ict.sample_sigmas={tuple(c.sample_sigmas)} must be "
                     "descending")
  if (config.method == "ict" and c.coupling == "gc"
      and c.gc_source == "frozen" and not c.gc_endpoint_workdir):
    raise ValueError("ict.gc_source='frozen' needs ict.gc_endpoint_workdir "
                     "(a finished iCT run whose model predicts endpoints)")
  if config.train.batch_size < 1:
    raise ValueError("train.batch_size must be >= 1")


def sample_renoise(config) -> str:
  """The multistep re-noising of `config` ('ic' or 'ot'): 'auto' follows
  the training coupling (OT-trained iCT models re-noise with OT)."""
  r = config.ict.sample_renoise
  if r == "auto":
    return "ot" if (config.method == "ict"
                    and config.ict.coupling == "ot") else "ic"
  return r


def _schedule_kwargs(config):
  c = config.ict
  total = int(c.curriculum_steps) or int(config.train.steps)
  return dict(total_steps=total, s0=int(c.s0), s1=int(c.s1),
              sigma_min=float(c.sigma_min), sigma_max=float(c.sigma_max),
              sigma_data=float(c.sigma_data), rho=float(c.rho),
              p_mean=float(c.p_mean), p_std=float(c.p_std),
              distance=c.distance,
              huber_c=float(c.huber_c) if float(c.huber_c) > 0 else None,
              weighting=c.weighting)


def _endpoint_config(config):
  """The config of the frozen endpoint predictor's run (§5.2)."""
  c = config.ict
  if c.gc_endpoint_config:
    from gcflow_jax import config_utils  # pylint: disable=g-import-not-at-top
    return config_utils.load_config(c.gc_endpoint_config)
  # Default: the same network trained as iCT-IC.
  ecfg = config.copy_and_resolve_references()
  with ecfg.unlocked():
    ecfg.method = "ict"
    ecfg.ict.coupling = "ic"
    ecfg.ict.gc_source = "ema"
  return ecfg


def from_config(config, data_shape, teacher=None) -> Method:
  """Builds the 'ict' or 'cd' Method from `config` (see module docstring)."""
  # Imported here: models import flax, which `math` tests do not need.
  from gcflow_jax.models import make_network  # pylint: disable=g-import-not-at-top
  validate_config(config)
  data_shape = tuple(int(d) for d in data_shape)
  c = config.ict
  _, apply_fn, init_fn = make_network(config.model, data_shape, 1)
  kw = _schedule_kwargs(config)
  info = {"method": config.method, "sigma_max": float(c.sigma_max)}

  endpoint_apply = None
  endpoint_params = None
  endpoint_consts = {}
  if config.method == "ict":
    if c.coupling == "gc" and c.gc_source == "frozen":
      # Restored here, on the host: the trainer traces `init` (eval_shape /
      # jit), where no checkpoint I/O can happen.
      from gcflow_jax import train  # pylint: disable=g-import-not-at-top
      ecfg = _endpoint_config(config)
      _, endpoint_apply, _ = make_network(ecfg.model, data_shape, 1)
      state = train.restore_state(ecfg, c.gc_endpoint_workdir)
      endpoint_params = (state.ema_params if c.gc_endpoint_use_ema
                         else state.params)
      endpoint_consts = dict(endpoint_sigma_min=float(ecfg.ict.sigma_min),
                             endpoint_sigma_data=float(ecfg.ict.sigma_data))
      info.update(gc_endpoint=c.gc_endpoint_workdir)
    loss_fn = make_ict_loss(
        apply_fn, data_shape, coupling=c.coupling, gc_mu=float(c.gc_mu),
        gc_source=c.gc_source, endpoint_apply_fn=endpoint_apply,
        ot_solver=c.ot_solver, ot_epsilon=float(c.ot_epsilon),
        ot_rounding=c.ot_rounding, ot_threshold=float(c.ot_threshold),
        ot_max_iterations=int(c.ot_max_iterations), **endpoint_consts, **kw)
    info.update(coupling=c.coupling, gc_mu=float(c.gc_mu),
                gc_source=c.gc_source)
  else:
    if teacher is None:
      raise ValueError("method='cd' needs a teacher (config.teacher.*)")
    interp = interpolants.get(teacher.interp)
    v_sigma = edm.sigma_velocity_from_fm(interp, teacher.velocity)
    loss_fn = make_cd_loss(apply_fn, v_sigma, data_shape,
                           solver=c.cd_solver, **kw)
    info.update(teacher=teacher.workdir, cd_solver=c.cd_solver,
                teacher_interp=teacher.interp)

  def init(key, example_batch):
    del example_batch
    params = init_fn(key)
    extras = {}
    if config.method == "cd":
      extras["teacher"] = teacher.params
    elif endpoint_params is not None:
      extras["endpoint"] = endpoint_params
    return params, extras

  sample_fn = make_sampler(
      apply_fn, data_shape, sigma_min=float(c.sigma_min),
      sigma_max=float(c.sigma_max), sigma_data=float(c.sigma_data),
      rho=float(c.rho), sample_sigmas=tuple(float(s) for s in
                                            c.sample_sigmas),
      clip_denoised=bool(c.clip_denoised), renoise=sample_renoise(config),
      ot_batch=int(c.sample_ot_batch) or int(config.train.batch_size),
      ot_solver=c.ot_solver, ot_epsilon=float(c.ot_epsilon),
      ot_rounding=c.ot_rounding, ot_threshold=float(c.ot_threshold),
      ot_max_iterations=int(c.ot_max_iterations))
  info.update(sample_renoise=sample_renoise(config))
  return Method(name=config.method, init=init, loss_fn=loss_fn,
                sample_fn=sample_fn, default_sample_steps=1, info=info)
