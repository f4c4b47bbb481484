"""Reflow, piecewise reflow and the marginal-alignment regulariser (paper 003,
"Beyond Trajectory Matching: Reflow with Marginal Distribution Alignment",
arXiv 2606.29287). Only the abstract is public; the derivation below is ours
and is written out in full in docs/reflow_marginal_alignment.md.

Setting. A frozen teacher velocity b_t(x) was trained by flow matching on
I_t = α_t x0 + β_t x1, x0 ~ N(0, I) (t = 0 noise, t = 1 data); its ODE
ẋ = b_t(x) pushes p_0 = N(0, I) to the teacher marginals p_t. The time axis
is split into K intervals 0 = t_0 < … < t_K = 1 (K = 1: vanilla reflow).

Reflow (trajectory matching, eq. R). Teacher pairs (x_{t_k}, x_{t_{k+1}})
come from integrating the teacher ODE from noise; the student u_θ is fitted
on the straight line between them:

    L_R(θ) = E_{k, s~U[0,1)} ‖u_θ(x_k + s (x_{k+1} − x_k), t_k + s h_k)
                               − (x_{k+1} − x_k) / h_k‖²,   h_k = t_{k+1} − t_k.

Teacher score (interpolant identity, eq. S). With x0 ⟂ x1,
    E[x0 | I_t = x] = (β_t b_t(x) − β'_t x) / (β_t α'_t − α_t β'_t),
    ∇ log p_t(x)    = −E[x0 | I_t = x] / α_t            (singular at α_t = 0).

Marginal alignment (eq. A). On interval k the student flow Ψ^θ_k maps the
teacher marginal p_{t_k} to q^θ_k = Ψ^θ_k # p_{t_k}; we penalise
KL(q^θ_k ‖ p_{τ_k}) at τ_k = min(t_{k+1}, 1 − ε) (the clamp keeps α_τ > 0).
For x ~ p_{t_k}, y = Ψ^θ_k(x) and the teacher's own endpoint ỹ = Φ_k(x):

    log q^θ_k(y) = log p_{t_k}(x) + Δ^θ(x),   Δ^θ = −∫ div u_θ  (student ODE)
    log p_τ(ỹ)   = log p_{t_k}(x) + Δ^T(x),   Δ^T = −∫ div b    (teacher ODE)
    log p_τ(y)   = log p_τ(ỹ) + ∫_0^1 ∇log p_τ(ỹ + r (y − ỹ)) · (y − ỹ) dr

so log p_{t_k}(x) cancels and the per-sample estimator

    κ(x) = Δ^θ(x) − Δ^T(x) − Σ_j w_j ∇log p_τ(ỹ + r_j (y − ỹ)) · (y − ỹ)

(Gauss–Legendre nodes r_j, weights w_j) has E_x κ = KL(q^θ_k ‖ p_τ). Its
θ-gradient only needs the score at y (the line integral's θ-dependence is
log p_τ(y)):

    ∇_θ KL = E_x[∇_θ Δ^θ(x) − ∇log p_τ(y) · ∂_θ y],

which is the gradient of the surrogate g(x) = Δ^θ(x) − sg[∇log p_τ(y)] · y.
The per-example objective sg[κ] + g − sg[g] therefore has value κ (an
unbiased KL estimate) and gradient the exact KL gradient (of the discretised
student ODE; unbiased with Hutchinson divergences). No auxiliary network, no
adversary; only the student's log-density change and the teacher's score.

Telescoping bound. With q_k the student's marginal after k intervals
(q_0 = p_0), TV is non-expansive under any push-forward, so
    TV(q_{k+1}, p_{t_{k+1}}) ≤ TV(Ψ_k # q_k, Ψ_k # p_{t_k})
                                + TV(Ψ_k # p_{t_k}, p_{t_{k+1}})
                              ≤ TV(q_k, p_{t_k}) + ε_k,
hence TV(q_K, p_1) ≤ Σ_k ε_k ≤ Σ_k √(KL_k / 2) (Pinsker) ≤ √(K/2 · Σ_k KL_k).

The training objective per example (interval k drawn uniformly) is
    L_R + λ_align · w(step) · K · (sg[κ] + g − sg[g]) / D
(K · per-interval term: an unbiased estimate of Σ_k KL_k; / D: nats per
dimension so λ transfers across data sizes; w: linear warm-up).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from gcflow_jax.math import interpolants as interp_lib
from gcflow_jax.math import ode
from gcflow_jax.methods.base import Method

__all__ = [
    "PAIR_SOURCES", "make_knots", "make_align_ends", "sample_grid",
    "denoiser_from_velocity", "score_from_velocity", "teacher_segments",
    "make_alignment_fn", "make_pair_loss", "make_reflow_loss",
    "make_student_sampler", "make_teacher_sampler", "teacher_interpolant",
    "from_config", "validate_config", "needs_teacher",
]

PAIR_SOURCES = ("online", "cache")


# -------------------------------------------------------------- intervals --


def make_knots(num_intervals: int) -> np.ndarray:
  """[K + 1] uniform knots 0 = t_0 < … < t_K = 1 (static, host numpy)."""
  if num_intervals < 1:
    raise ValueError(f"num_intervals={num_intervals} must be >= 1")
  return np.linspace(0.0, 1.0, num_intervals + 1)


def make_align_ends(knots: np.ndarray, eps: float) -> np.ndarray:
  """[K] alignment times τ_k = min(t_{k+1}, 1 − ε): the teacher score is
  −E[x0|x]/α_t, singular where α_t = 0 (t = 1), so the last interval is
  aligned at 1 − ε instead (eq. A, clamp)."""
  knots = np.asarray(knots, np.float64)
  return np.minimum(knots[1:], 1.0 - eps)


def sample_grid(knots: np.ndarray, steps: int) -> np.ndarray:
  """Sampling times for `steps` student steps.

  With steps >= K every interval gets ⌊steps/K⌋ uniform sub-steps (the first
  steps mod K intervals one more), so interval boundaries are grid points and
  K × m steps is the piecewise sampler. With steps < K (e.g. one step for a
  K = 2 student) the grid is uniform on [0, 1] and crosses the knots.
  """
  k = len(knots) - 1
  if steps < 1:
    raise ValueError(f"steps={steps} must be >= 1")
  if steps < k:
    return np.linspace(0.0, 1.0, steps + 1)
  per = [steps // k + (1 if j < steps % k else 0) for j in range(k)]
  pts = [np.asarray([knots[0]])]
  for j in range(k):
    pts.append(np.linspace(knots[j], knots[j + 1], per[j] + 1)[1:])
  return np.concatenate(pts)


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
  −E[x0|x]/α. Singular at α_t = 0 (t = 1 here): callers keep t ≤ 1 − ε.
  """
  return -denoiser_from_velocity(interp, b, x, t) / _bc(interp.alpha(t), x)


def teacher_interpolant(teacher) -> interp_lib.Interpolant:
  """The interpolant the teacher was trained on (for eq. S)."""
  return interp_lib.get(teacher.interp)


# ------------------------------------------------------- teacher segments --


def teacher_segments(velocity: Callable, x0: jax.Array, knots: np.ndarray,
                     align_ends: np.ndarray, steps: int, method: str = "heun",
                     track_logp: bool = False, divergence: str = "exact",
                     probes: Optional[jax.Array] = None,
                     hutchinson_mode: str = "jvp") -> Dict[str, jax.Array]:
  """Integrates the teacher ODE from noise through all K intervals.

  Interval k is integrated from t_k to τ_k in `steps` steps (tracking the
  log-density change when `track_logp`), then, if τ_k < t_{k+1} (the clamped
  last interval), one more step of the same method from τ_k to t_{k+1}.

  Args:
    velocity: teacher field b(x, t) (frozen; gradients are stopped here).
    x0: [B, ...] noise, x0 ~ N(0, I).
    knots: [K + 1] static knots.
    align_ends: [K] static alignment times τ_k (`make_align_ends`).
    steps: teacher steps per interval.
    method: 'euler' | 'heun' | 'rk4'.
    track_logp: also integrate Δ^T = −∫ div b over [t_k, τ_k].
    divergence, probes, hutchinson_mode: see `ode.integrate_with_logp`.
  Returns:
    dict with 'states' [K + 1, B, ...] (teacher states at the knots;
    states[0] = x0), 'align_states' [K, B, ...] (states at τ_k) and
    'delta_logp' [K, B] (Δ^T over [t_k, τ_k]; zeros unless `track_logp`).
  """
  # The teacher is frozen: no gradient flows into its states (or params).
  x = jax.lax.stop_gradient(x0)
  states, aligns, deltas = [x], [], []
  for k in range(len(knots) - 1):
    grid = ode.uniform_grid(float(knots[k]), float(align_ends[k]), steps)
    if track_logp:
      y, d = ode.integrate_with_logp(velocity, x, grid, method, divergence,
                                     probes, hutchinson_mode)
    else:
      y = ode.integrate(velocity, x, grid, method)
      d = jnp.zeros(x.shape[:1], x.dtype)
    aligns.append(y)
    deltas.append(d)
    if align_ends[k] < knots[k + 1]:
      y = ode.step(velocity, y, jnp.asarray(align_ends[k], x.dtype),
                   jnp.asarray(knots[k + 1], x.dtype), method)
    x = y
    states.append(x)
  out = {"states": jnp.stack(states), "align_states": jnp.stack(aligns),
         "delta_logp": jnp.stack(deltas)}
  return jax.tree.map(jax.lax.stop_gradient, out)


# ----------------------------------------------------- alignment (eq. A) --


def _gauss_legendre01(n: int) -> Tuple[np.ndarray, np.ndarray]:
  """n-point Gauss–Legendre nodes and weights on [0, 1] (exact for
  polynomials of degree 2n − 1; n = 1 is exact for Gaussian p_τ)."""
  r, w = np.polynomial.legendre.leggauss(n)
  return 0.5 * (r + 1.0), 0.5 * w


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
  return (a * b).reshape(a.shape[0], -1).sum(axis=1)


def make_alignment_fn(student_velocity: Callable, teacher_score: Callable, *,
                      steps: int = 4, method: str = "rk4",
                      divergence: str = "exact",
                      hutchinson_mode: str = "jvp", quad_points: int = 2,
                      estimate_value: bool = True) -> Callable:
  """Returns the per-example marginal-alignment objective of eq. A.

  Args:
    student_velocity: u(params, x, t) -> [B, ...], t a [B] array.
    teacher_score: s(x, t) -> ∇log p_t(x) [B, ...] (frozen teacher; eq. S).
    steps, method: student ODE steps/integrator over each interval. A
      coarse solve biases the tracked log-density (e.g. one Heun step over
      [0, 0.95] by ~0.4 nats on the checkerboard teacher) and training
      exploits the bias: keep it accurate (RK4, ~4 steps over [0, 1]).
    divergence, hutchinson_mode: log-density tracking of the student ODE.
    quad_points: Gauss–Legendre points of the score line integral (value).
    estimate_value: compute κ (needs the teacher's Δ^T and `quad_points`
      teacher evaluations); if False the objective's value is 0 but its
      gradient is unchanged.

  Returns:
    align(params, x_s, s, tau, y_teacher, delta_teacher, probes=None)
      -> (objective [B], aux) where x_s [B, ...] ~ p_s (teacher states),
      s, tau [B] interval start / alignment time, y_teacher [B, ...] the
      teacher's state at tau from x_s, delta_teacher [B] its Δ^T, probes
      [P, B, ...] for Hutchinson. objective = sg[κ] + g − sg[g]: value κ
      (an unbiased estimate of KL(q_τ ‖ p_τ) in nats), gradient ∇_θ KL.
      aux: 'kl' κ [B], 'delta_student' Δ^θ [B], 'y' [B, ...].
  """
  r_nodes, r_weights = _gauss_legendre01(quad_points)

  def align(params, x_s, s, tau, y_teacher, delta_teacher, probes=None):
    s = jnp.asarray(s, x_s.dtype)
    h = jnp.asarray(tau, x_s.dtype) - s

    # Student ODE in the unit time r ∈ [0, 1], t = s + r h (per-example
    # intervals on one shared grid): dx/dr = h u(x, s + r h); its divergence
    # h · div u is what `integrate_with_logp` integrates.
    def v_unit(x, r):
      return _bc(h, x) * student_velocity(params, x, s + r * h)

    y, delta_student = ode.integrate_with_logp(
        v_unit, x_s, ode.uniform_grid(0.0, 1.0, steps), method, divergence,
        probes, hutchinson_mode)

    # Gradient surrogate: ∇_θ g = ∇_θ Δ^θ − ∇log p_τ(y) · ∂_θ y = ∇_θ KL.
    # The score is a frozen *value* here (stop_gradient on its input and
    # output): the dependence of log p_τ(y) on θ is only through y.
    score_y = jax.lax.stop_gradient(
        teacher_score(jax.lax.stop_gradient(y), tau))
    g = delta_student - _dot(score_y, y)

    if estimate_value:
      # κ = Δ^θ − Δ^T − ∫_0^1 ∇log p_τ(ỹ + r (y − ỹ)) · (y − ỹ) dr: the
      # line integral is log p_τ(y) − log p_τ(ỹ). Value only (stop_gradient):
      # its gradient is supplied by g above.
      y_sg = jax.lax.stop_gradient(y)
      diff = y_sg - y_teacher
      line = 0.0
      for r, w in zip(r_nodes, r_weights):
        sc = teacher_score(y_teacher + float(r) * diff, tau)
        line = line + float(w) * _dot(sc, diff)
      kl = jax.lax.stop_gradient(delta_student - delta_teacher - line)
    else:
      kl = jnp.zeros(x_s.shape[:1], x_s.dtype)
    objective = kl + g - jax.lax.stop_gradient(g)
    return objective, {"kl": kl,
                       "delta_student": jax.lax.stop_gradient(delta_student),
                       "y": jax.lax.stop_gradient(y)}

  return align


# ---------------------------------------------------------- reflow loss --


def make_pair_loss(student_apply: Callable, teacher_score: Callable,
                   knots: np.ndarray, align_ends: np.ndarray, *,
                   align_weight: float = 0.0, align_steps: int = 4,
                   align_method: str = "rk4", divergence: str = "exact",
                   hutchinson_mode: str = "jvp", quad_points: int = 2,
                   estimate_value: bool = True,
                   align_batch: int = 0) -> Callable:
  """The reflow loss (eq. R) plus λ_align · alignment (eq. A) on given pairs.

  All randomness is explicit, so tests can feed sigma points and chosen
  intervals.

  Args:
    student_apply: apply_fn(params, x, t, key=None) of the student.
    teacher_score: s(x, t), the frozen teacher's score (eq. S).
    knots, align_ends: static [K + 1] knots and [K] alignment times.
    align_weight: λ_align (0 = vanilla / piecewise reflow, no regulariser).
    align_steps, align_method, divergence, hutchinson_mode, quad_points,
      estimate_value: see `make_alignment_fn`.
    align_batch: regularise only the first n examples of the batch (0 = all);
      their term is scaled by B / n so the batch mean stays an unbiased
      estimate (a static sub-batch: no recompiles, n× cheaper).

  Returns:
    pair_loss(params, x_s, x_e, y_teacher, delta_teacher, k, u, probes=None,
              drop_key=None, align_scale=1.0) -> (loss [B], parts) with
      x_s, x_e [B, ...] teacher states at t_k and t_{k+1}, y_teacher [B, ...]
      at τ_k, delta_teacher [B] (Δ^T over [t_k, τ_k]), k [B] int32 interval
      indices, u [B] in [0, 1) positions on the segment, align_scale a traced
      multiplier (warm-up). parts: 'reflow' [B], 'align' [n] (objective),
      'kl' [n] (κ in nats) on the regularised sub-batch (zeros [B] when
      align_weight == 0).
  """
  num_k = len(knots) - 1
  knots_c = np.asarray(knots, np.float64)
  ends_c = np.asarray(align_ends, np.float64)
  align = None
  if align_weight > 0:
    align = make_alignment_fn(
        lambda p, x, t: student_apply(p, x, t), teacher_score,
        steps=align_steps, method=align_method, divergence=divergence,
        hutchinson_mode=hutchinson_mode, quad_points=quad_points,
        estimate_value=estimate_value)

  def pair_loss(params, x_s, x_e, y_teacher, delta_teacher, k, u,
                probes=None, drop_key=None, align_scale=1.0):
    dt = x_s.dtype
    b = x_s.shape[0]
    s = jnp.asarray(knots_c, dt)[k]
    e = jnp.asarray(knots_c, dt)[k + 1]
    h = e - s
    # Eq. R: straight interpolant between the teacher pair, constant target.
    x_u = x_s + _bc(u, x_s) * (x_e - x_s)
    target = (x_e - x_s) / _bc(h, x_s)
    v = student_apply(params, x_u, s + u * h, key=drop_key)
    reflow = jnp.mean(jnp.square(v - target).reshape(b, -1), axis=1)
    zeros = jnp.zeros((b,), dt)
    if align is None:
      return reflow, {"reflow": reflow, "align": zeros, "kl": zeros}
    n = b if not align_batch or align_batch >= b else align_batch
    tau = jnp.asarray(ends_c, dt)[k]
    if probes is not None:
      probes = probes[:, :n]
    obj, aux = align(params, x_s[:n], s[:n], tau[:n], y_teacher[:n],
                     delta_teacher[:n], probes)
    d = math.prod(x_s.shape[1:])
    # K · per-interval KL: an unbiased estimate of Σ_k KL_k (the telescoping
    # bound's sum); / D: nats per dimension; b / n: sub-batch reweighting.
    term = align_scale * align_weight * num_k * (b / n) * obj / d
    loss = reflow + jnp.concatenate([term, jnp.zeros((b - n,), dt)])
    return loss, {"reflow": reflow, "align": obj, "kl": aux["kl"]}

  return pair_loss


def make_reflow_loss(student_apply: Callable, teacher_velocity: Callable,
                     interp, num_intervals: int = 1, *,
                     teacher_steps: int = 16, teacher_method: str = "heun",
                     align_weight: float = 0.0, align_eps: float = 0.05,
                     align_steps: int = 4, align_method: str = "rk4",
                     divergence: str = "exact", num_probes: int = 1,
                     probe: str = "rademacher", hutchinson_mode: str = "jvp",
                     quad_points: int = 2, estimate_value: bool = True,
                     align_warmup_steps: int = 0, align_batch: int = 0,
                     pair_source: str = "online") -> Callable:
  """Returns the trainer's loss_fn for (piecewise) reflow ± alignment.

  Args:
    student_apply: apply_fn(params, x, t, key=None) of the student.
    teacher_velocity: b(teacher_params, x, t) (e.g. `Teacher.velocity`).
    interp: the teacher's interpolant (for the score, eq. S).
    num_intervals: K (1 = vanilla reflow).
    teacher_steps, teacher_method: teacher ODE per interval (online pairs).
    align_weight: λ_align; align_eps: ε of the clamp τ_K = 1 − ε.
    align_steps, align_method: student ODE for the regulariser.
    divergence, num_probes, probe, hutchinson_mode: log-density tracking.
    quad_points, estimate_value: see `make_alignment_fn`.
    align_warmup_steps: λ ramps linearly from 0 over these steps (traced).
    align_batch: regularised sub-batch size (0 = all; `make_pair_loss`).
    pair_source: 'online' (teacher ODE inside the step from fresh noise) or
      'cache' (pairs from `extras['pairs']`, see `gcflow_jax.data.
      pair_cache`).

  Returns:
    loss_fn(params, batch, key, *, step, ema_params, extras) ->
      (per_example [B], aux). `batch['x']` only sets B and the dtype (reflow
      never sees data); an optional `batch['x0']` [B, ...] fixes the noise.
      extras: {'teacher': params} and, for 'cache', {'pairs': {...}}.
      Random streams: k_x0 (noise, or the cache rows), k_k (intervals),
      k_u (segment positions), k_probe (student probes), k_tprobe (teacher
      probes), k_drop (dropout).
  """
  if pair_source not in PAIR_SOURCES:
    raise ValueError(f"pair_source={pair_source!r} is not one of "
                     f"{PAIR_SOURCES}")
  knots = make_knots(num_intervals)
  # The clamp also applies without the regulariser (pairs then still end at
  # t = 1 through one extra step), so vanilla and aligned runs see the very
  # same teacher pairs and can share a pair cache.
  ends = make_align_ends(knots, align_eps)
  needs_delta = align_weight > 0 and estimate_value
  hutch = divergence == "hutchinson"

  def loss_fn(params, batch, key, *, step=0, ema_params=None, extras=None):
    del ema_params
    x_ref = batch["x"]
    b = x_ref.shape[0]
    dt = x_ref.dtype
    k_x0, k_k, k_u, k_probe, k_tprobe, k_drop = jax.random.split(key, 6)
    del key
    tparams = extras["teacher"]
    velocity = lambda x, t: teacher_velocity(tparams, x, t)

    def score(x, t):
      return score_from_velocity(interp, velocity(x, t), x, t)

    k = jax.random.randint(k_k, (b,), 0, num_intervals)
    u = jax.random.uniform(k_u, (b,), dt)
    if pair_source == "online":
      x0 = batch["x0"] if "x0" in batch else jax.random.normal(
          k_x0, x_ref.shape, dt)
      tprobes = (ode.sample_probes(k_tprobe, x0.shape, num_probes, probe, dt)
                 if (needs_delta and hutch) else None)
      segs = teacher_segments(velocity, x0, knots, ends, teacher_steps,
                              teacher_method, track_logp=needs_delta,
                              divergence=divergence, probes=tprobes,
                              hutchinson_mode=hutchinson_mode)
      rows = jnp.arange(b)
      x_s = segs["states"][k, rows]
      x_e = segs["states"][k + 1, rows]
      y_t = segs["align_states"][k, rows]
      d_t = segs["delta_logp"][k, rows]
    else:
      pairs = extras["pairs"]
      idx = jax.random.randint(k_x0, (b,), 0, pairs["states"].shape[0])
      x_s = pairs["states"][idx, k].astype(dt)
      x_e = pairs["states"][idx, k + 1].astype(dt)
      y_t = pairs["align_states"][idx, k].astype(dt)
      d_t = pairs["delta_logp"][idx, k].astype(dt)
    probes = (ode.sample_probes(k_probe, x_s.shape, num_probes, probe, dt)
              if hutch and align_weight > 0 else None)
    if align_warmup_steps > 0:
      scale = jnp.minimum(1.0, jnp.asarray(step, dt) / align_warmup_steps)
    else:
      scale = jnp.asarray(1.0, dt)
    pair_loss = make_pair_loss(
        student_apply, score, knots, ends, align_weight=align_weight,
        align_steps=align_steps, align_method=align_method,
        divergence=divergence, hutchinson_mode=hutchinson_mode,
        quad_points=quad_points, estimate_value=estimate_value,
        align_batch=align_batch)
    loss, parts = pair_loss(params, x_s, x_e, y_t, d_t, k, u, probes,
                            drop_key=k_drop, align_scale=scale)
    aux = {"loss/reflow": jnp.mean(parts["reflow"])}
    if align_weight > 0:
      aux["loss/align"] = jnp.mean(parts["align"])
      aux["align/weight"] = scale * align_weight
      if estimate_value:
        # Mean κ estimates (1/K) Σ_k KL_k; per interval via masked means.
        aux["align/kl_sum"] = num_intervals * jnp.mean(parts["kl"])
        k_a = k[:parts["kl"].shape[0]]
        for j in range(num_intervals if num_intervals <= 8 else 0):
          m = (k_a == j).astype(dt)
          aux[f"align/kl_{j}"] = (jnp.sum(m * parts["kl"]) /
                                  jnp.maximum(jnp.sum(m), 1.0))
    return loss, aux

  return loss_fn


# --------------------------------------------------------------- samplers --


def make_student_sampler(student_apply: Callable, data_shape: Tuple[int, ...],
                         knots: np.ndarray, method: str = "euler"):
  """sample_fn(params, key, num, steps, extras=None): the student ODE from
  N(0, I) on `sample_grid(knots, steps)` (K × m steps for piecewise)."""

  def sample_fn(params, key, num, steps, extras=None):
    del extras
    x0 = jax.random.normal(key, (num,) + tuple(data_shape))
    grid = jnp.asarray(sample_grid(knots, int(steps)), x0.dtype)
    v = lambda x, t: student_apply(params, x, jnp.full((x.shape[0],), t))
    return ode.integrate(v, x0, grid, method)

  return sample_fn


def make_teacher_sampler(teacher_velocity: Callable,
                         data_shape: Tuple[int, ...], method: str = "heun"):
  """sample_fn(teacher_params, key, num, steps): the teacher ODE (reference).
  """

  def sample_fn(tparams, key, num, steps, extras=None):
    del extras
    x0 = jax.random.normal(key, (num,) + tuple(data_shape))
    v = lambda x, t: teacher_velocity(tparams, x, t)
    return ode.integrate(v, x0, ode.uniform_grid(0.0, 1.0, int(steps)),
                         method)

  return sample_fn


# --------------------------------------------------------------- adapters --


def needs_teacher(config) -> bool:
  del config
  return True


def validate_config(config) -> None:
  """Raises ValueError naming the first invalid `reflow.*` field."""
  r = config.reflow

  def choice(name, allowed):
    if getattr(r, name) not in allowed:
      raise ValueError(f"reflow.{name}={getattr(r, name)!r} is not one of "
                       f"{tuple(allowed)}")

  def at_least(name, lo):
    if not getattr(r, name) >= lo:
      raise ValueError(f"reflow.{name}={getattr(r, name)!r} must be >= {lo}")

  at_least("num_intervals", 1)
  at_least("teacher_steps", 1)
  choice("teacher_method", ode.INTEGRATORS)
  at_least("align_weight", 0.0)
  if not 0.0 <= r.align_eps < 0.5:
    raise ValueError(f"reflow.align_eps={r.align_eps!r} must be in [0, 0.5)")
  if r.align_weight > 0 and r.align_eps <= 0:
    raise ValueError("reflow.align_eps must be > 0 when reflow.align_weight "
                     "> 0: the teacher score −E[x0|x]/α_t is singular at t=1")
  at_least("align_steps", 1)
  choice("align_method", ode.INTEGRATORS)
  at_least("align_warmup_steps", 0)
  at_least("align_batch", 0)
  if r.align_batch > config.train.batch_size:
    raise ValueError(f"reflow.align_batch={r.align_batch} must be <= "
                     f"train.batch_size={config.train.batch_size}")
  choice("divergence", ode.DIVERGENCES)
  at_least("num_probes", 1)
  choice("probe", ode.PROBES)
  choice("hutchinson_mode", ode.HUTCHINSON_MODES)
  at_least("quad_points", 1)
  choice("pairs", PAIR_SOURCES)
  if r.pairs == "cache" and not r.cache_dir:
    raise ValueError("reflow.pairs='cache' needs reflow.cache_dir")
  at_least("cache_num_pairs", 1)
  at_least("cache_shard_size", 1)
  at_least("cache_buffer", 0)
  choice("sample_method", ode.INTEGRATORS)
  at_least("sample_steps", 0)
  if not config.teacher.workdir:
    raise ValueError("method='reflow' distils a teacher: set "
                     "teacher.workdir (and teacher.config)")


def _same_structure(a, b) -> bool:
  sa = jax.tree_util.tree_structure(a)
  sb = jax.tree_util.tree_structure(b)
  if sa != sb:
    return False
  return all(x.shape == y.shape for x, y in zip(jax.tree_util.tree_leaves(a),
                                                jax.tree_util.tree_leaves(b)))


def from_config(config, data_shape, teacher) -> Method:
  """Builds the reflow `Method` (reads `config.reflow`; see configs/base.py).
  """
  from gcflow_jax.models import make_network  # pylint: disable=g-import-not-at-top
  if teacher is None:
    raise ValueError("method='reflow' needs a teacher (teachers.load)")
  r = config.reflow
  data_shape = tuple(data_shape)
  _, apply_fn, init_fn = make_network(config.model, data_shape, 1)
  interp = teacher_interpolant(teacher)
  knots = make_knots(r.num_intervals)

  cache_np = None
  if r.pairs == "cache":
    from gcflow_jax.data import pair_cache  # pylint: disable=g-import-not-at-top
    # cache_dir may name {K} and {seed}: one cache per (K, seed).
    cache = pair_cache.ensure_teacher_cache(
        r.cache_dir.format(K=r.num_intervals, seed=config.seed), teacher,
        data_shape, num_intervals=r.num_intervals, align_eps=r.align_eps,
        steps=r.teacher_steps, method=r.teacher_method,
        track_logp=r.align_weight > 0 and r.estimate_value,
        divergence=r.divergence, num_probes=r.num_probes, probe=r.probe,
        hutchinson_mode=r.hutchinson_mode, num_pairs=r.cache_num_pairs,
        shard_size=r.cache_shard_size, seed=config.seed)
    cache_np = cache.load(r.cache_buffer or None)

  def init(key, example_batch):
    del example_batch
    if r.init_from_teacher:
      if not _same_structure(init_fn(key), teacher.params):
        raise ValueError(
            "reflow.init_from_teacher=True but the student network "
            "(config.model) differs from the teacher's "
            "(teacher config's model); use the same model or set "
            "reflow.init_from_teacher=False")
      params = jax.tree.map(jnp.array, teacher.params)   # a copy
    else:
      params = init_fn(key)
    extras = {"teacher": teacher.params}
    if cache_np is not None:
      extras["pairs"] = {k: jnp.asarray(v) for k, v in cache_np.items()}
    return params, extras

  loss_fn = make_reflow_loss(
      apply_fn, teacher.velocity, interp, r.num_intervals,
      teacher_steps=r.teacher_steps, teacher_method=r.teacher_method,
      align_weight=r.align_weight, align_eps=r.align_eps,
      align_steps=r.align_steps, align_method=r.align_method,
      divergence=r.divergence, num_probes=r.num_probes, probe=r.probe,
      hutchinson_mode=r.hutchinson_mode, quad_points=r.quad_points,
      estimate_value=r.estimate_value,
      align_warmup_steps=r.align_warmup_steps, align_batch=r.align_batch,
      pair_source=r.pairs)
  return Method(
      name="reflow",
      init=init,
      loss_fn=loss_fn,
      sample_fn=make_student_sampler(apply_fn, data_shape, knots,
                                     r.sample_method),
      default_sample_steps=r.sample_steps or r.num_intervals,
      info={"num_intervals": r.num_intervals, "teacher": teacher.workdir,
            "teacher_interp": getattr(interp, "name", "?"),
            "pairs": r.pairs})
