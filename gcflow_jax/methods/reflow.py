"""Reflow, piecewise reflow and the marginal-alignment regulariser (paper 003,
"Beyond Trajectory Matching: Reflow with Marginal Distribution Alignment",
arXiv 2606.29287). Only the abstract is public; the derivation below is ours
and is written out in full in docs/reflow_marginal_alignment.md.

Setting. A frozen teacher velocity b_t(x) was trained by flow matching on
I_t = α_t x0 + β_t x1, x0 ~ N(0, I) (t = 0 noise, t = 1 data); its ODE
ẋ = b_t(x) pushes p_0 = N(0, I) to the teacher marginals p_t. The time axis
is split into K intervals 0 = t_0 < … < t_K = 1 (K = 1: vanilla reflow).

Reflow (trajectory matching, eq. R). Teacher states (x_{t_k}, x_{t_{k+1}})
come from integrating the teacher ODE from noise; the student u_θ is fitted
on the straight line between them:

    L_R(θ) = E_{k, u~U[0,1)} ‖u_θ(x_k + u (x_{k+1} − x_k), τ_k(u))
                               − (x_{k+1} − x_k) / h_k‖²,   h_k = t_{k+1} − t_k.

Knots belong to one interval only (eq. T). The network time of position u
on interval k is τ_k(u) = t_k + (1 − γ_k) u h_k with γ_k = `knot_gap` for
k < K − 1 and γ_{K−1} = 0. Interval k occupies the network times
[t_k, t_{k+1} − γ_k h_k), so the knot t_{k+1} is read only by interval
k + 1 (its u = 0), and no training target is placed in (t_{k+1} − γ h_k,
t_{k+1}): a network that is continuous in t can switch from interval k's
target to interval k + 1's there instead of blending them at the knot,
where the K-step sampler reads. The sampler integrates interval k with
the same map (`make_student_sampler`). K = 1 is unchanged.

Teacher score (interpolant identity, eq. S). With x0 ⟂ x1,
    E[x0 | I_t = x] = (β_t b_t(x) − β'_t x) / (β_t α'_t − α_t β'_t),
    ∇ log p_t(x)    = −E[x0 | I_t = x] / α_t            (singular at α_t = 0).

Marginal alignment (eq. A), on the map that is deployed. The K-step
sampler takes one Euler step per interval, Ψ^θ_k(x) = x + h_k u_θ(x, t_k).
At every interior knot t_{k+1} (k < K − 1) we penalise
KL(Ψ^θ_k # p_{t_k} ‖ p_{t_{k+1}}), with x ~ p_{t_k} the cached teacher state.
For y = Ψ^θ_k(x) (change of variables) and the teacher's own endpoint
ỹ = x_{t_{k+1}} with log-density change Δ^T = log p_{t_{k+1}}(ỹ) −
log p_{t_k}(x):

    log q^θ_k(y)       = log p_{t_k}(x) − log|det(I + h_k ∂u_θ/∂x)|
    log p_{t_{k+1}}(y) = log p_{t_k}(x) + Δ^T
                         + ∫_0^1 s(ỹ + r (y − ỹ))·(y − ỹ) dr

(s = ∇log p_{t_{k+1}}, eq. S), so log p_{t_k}(x) cancels and

    κ(x) = −log|det(I + h ∂u/∂x)| − Δ^T − Σ_j w_j s(ỹ + r_j (y − ỹ))·(y − ỹ)

has E κ = KL_k. Its θ-gradient is that of g = −log|det(I + h ∂u/∂x)| −
sg[s(y)] · y; the per-example objective sg[κ] + g − sg[g] has value κ and
gradient ∇_θ KL_k. Only second derivatives appear (∂u/∂x under ∇_θ). The
log-determinant is exact (D JVPs, low dimensions) or a Hutchinson power
series (`logdet_power_series`: unbiased for its truncation; the truncation
bias is stated there). Consistency with reflow: the reflow optimum for
deterministic teacher pairs is u(x, t_k) = (Φ_k(x) − x)/h_k, whose Euler
step is the teacher map Φ_k, which pushes p_{t_k} to p_{t_{k+1}} exactly:
both terms share that minimiser (KL_k = 0, zero gradient).

K = 1 and the last interval. The last interval ends at the data (t_K = 1),
where α = 0 and the score is singular; aligning at 1 − ε instead compares
with a marginal the reflow optimum does not have (it contradicts reflow).
So the last interval carries no alignment term, and K = 1 has none at all
(`validate_config` refuses align_weight > 0 with num_intervals = 1).

Telescoping bound. With q_k the K-step sampler's marginal after k intervals
(q_0 = p_0), TV is non-expansive under a common push-forward, so
    TV(q_{k+1}, p_{t_{k+1}}) ≤ TV(q_k, p_{t_k}) + TV(Ψ_k # p_{t_k}, p_{t_{k+1}})
and TV(q_K, p_1) ≤ Σ_k ε_k, ε_k ≤ √(KL_k / 2) (Pinsker), with Ψ_k the very
Euler steps the sampler uses. The regulariser controls ε_k for k < K − 1;
ε_{K−1} is controlled by the reflow term only.

Objective per example: L_R + λ(step) · (K − 1) · (sg[κ] + g − sg[g]) / D on
an `align_batch` sub-batch (reweighted by B / n) whose interval is drawn
uniformly from the K − 1 interior ones; (K − 1) · per-interval term is an
unbiased estimate of Σ_{k<K−1} KL_k; / D: nats per dimension. λ(step) is 0
before `align_start_steps`, then ramps linearly to λ_align over
`align_warmup_steps` (switched on once the reflow loss has flattened).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from gcflow_jax.data import pair_cache
from gcflow_jax.math import ode
from gcflow_jax.methods.base import Method
# The regulariser (eq. S, eq. A) and its log-determinants; re-exported.
from gcflow_jax.methods.marginal_alignment import _bc
from gcflow_jax.methods.marginal_alignment import align_schedule
from gcflow_jax.methods.marginal_alignment import denoiser_from_velocity
from gcflow_jax.methods.marginal_alignment import logdet_exact
from gcflow_jax.methods.marginal_alignment import logdet_power_series
from gcflow_jax.methods.marginal_alignment import LOGDETS
from gcflow_jax.methods.marginal_alignment import make_alignment_fn
from gcflow_jax.methods.marginal_alignment import score_from_velocity
from gcflow_jax.methods.marginal_alignment import teacher_interpolant

__all__ = [
    "PAIR_SOURCES", "LOGDETS", "make_knots", "knot_gaps", "network_time",
    "sample_grid", "denoiser_from_velocity", "score_from_velocity",
    "teacher_segments", "logdet_exact", "logdet_power_series",
    "make_alignment_fn", "align_schedule", "make_reflow_loss",
    "make_student_sampler", "make_teacher_sampler", "teacher_interpolant",
    "ensure_teacher_cache", "from_config", "validate_config",
    "needs_teacher",
]

PAIR_SOURCES = ("online", "cache")


# -------------------------------------------------------------- intervals --


def make_knots(num_intervals: int) -> np.ndarray:
  """[K + 1] uniform knots 0 = t_0 < … < t_K = 1 (static, host numpy)."""
  if num_intervals < 1:
    raise ValueError(f"num_intervals={num_intervals} must be >= 1")
  return np.linspace(0.0, 1.0, num_intervals + 1)


def knot_gaps(num_intervals: int, gap: float) -> np.ndarray:
  """[K] gap fractions γ_k of eq. T: `gap` for intervals that end at an
  interior knot, 0 for the last one (nothing follows it)."""
  if not 0.0 <= gap < 1.0:
    raise ValueError(f"knot_gap={gap!r} must be in [0, 1)")
  out = np.full((num_intervals,), float(gap))
  out[-1] = 0.0
  return out


def network_time(knots: np.ndarray, gaps: np.ndarray, k: jax.Array,
                 u: jax.Array) -> jax.Array:
  """Network time τ_k(u) = t_k + (1 − γ_k) u h_k of position u ∈ [0, 1] on
  interval k (eq. T).

  Args:
    knots: [K + 1] static knots; gaps: [K] static γ_k (`knot_gaps`).
    k: int array of interval indices; u: positions, broadcastable to k.
  Returns:
    times with the broadcast shape of (k, u), u's float dtype.
  """
  u = jnp.asarray(u)
  dt = u.dtype if jnp.issubdtype(u.dtype, jnp.floating) else jnp.float32
  t0 = jnp.asarray(knots[:-1], dt)[k]
  h = jnp.asarray(np.diff(knots), dt)[k]
  g = jnp.asarray(gaps, dt)[k]
  return t0 + (1.0 - g) * u * h


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
  return np.concatenate([np.asarray([knots[0]])] + [
      g[1:] for g in _interval_grids(knots, steps)])


def _interval_grids(knots: np.ndarray, steps: int):
  """Per-interval grids of `sample_grid` for steps >= K."""
  k = len(knots) - 1
  per = [steps // k + (1 if j < steps % k else 0) for j in range(k)]
  return [np.linspace(knots[j], knots[j + 1], per[j] + 1) for j in range(k)]


# ------------------------------------------------------- teacher segments --


def teacher_segments(velocity: Callable, x0: jax.Array, knots: np.ndarray,
                     steps: int, method: str = "heun",
                     track_logp: bool = False, divergence: str = "exact",
                     probes: Optional[jax.Array] = None,
                     hutchinson_mode: str = "jvp") -> Dict[str, jax.Array]:
  """Integrates the teacher ODE from noise through all K intervals.

  Args:
    velocity: teacher field b(x, t) (frozen; gradients are stopped here).
    x0: [B, ...] noise, x0 ~ N(0, I).
    knots: [K + 1] static knots.
    steps: teacher steps per interval.
    method: 'euler' | 'heun' | 'rk4'.
    track_logp: also integrate Δ^T_k = −∫_{t_k}^{t_{k+1}} div b (the
      teacher's log-density change over interval k; eq. A's value only).
    divergence, probes, hutchinson_mode: see `ode.integrate_with_logp`.
  Returns:
    dict with 'states' [K + 1, B, ...] (teacher states at the knots;
    states[0] = x0) and 'delta_logp' [K, B] (zeros unless `track_logp`).
  """
  # The teacher is frozen: no gradient flows into its states (or params).
  x = jax.lax.stop_gradient(x0)
  states, deltas = [x], []
  for k in range(len(knots) - 1):
    grid = ode.uniform_grid(float(knots[k]), float(knots[k + 1]), steps)
    if track_logp:
      x, d = ode.integrate_with_logp(velocity, x, grid, method, divergence,
                                     probes, hutchinson_mode)
    else:
      x = ode.integrate(velocity, x, grid, method)
      d = jnp.zeros(x.shape[:1], x.dtype)
    states.append(x)
    deltas.append(d)
  out = {"states": jnp.stack(states), "delta_logp": jnp.stack(deltas)}
  return jax.tree.map(jax.lax.stop_gradient, out)


# ---------------------------------------------------------- reflow loss --


def make_reflow_loss(student_apply: Callable, teacher_velocity: Callable,
                     interp, num_intervals: int = 1, *,
                     teacher_steps: int = 16, teacher_method: str = "heun",
                     knot_gap: float = 0.0, align_weight: float = 0.0,
                     align_start_steps: int = 0, align_warmup_steps: int = 0,
                     align_batch: int = 0, logdet: str = "exact",
                     logdet_terms: int = 4, divergence: str = "exact",
                     num_probes: int = 1, probe: str = "rademacher",
                     hutchinson_mode: str = "jvp", quad_points: int = 2,
                     estimate_value: bool = True,
                     pair_source: str = "online") -> Callable:
  """Returns the trainer's loss_fn for (piecewise) reflow ± alignment.

  Args:
    student_apply: apply_fn(params, x, t, key=None) of the student.
    teacher_velocity: b(teacher_params, x, t) (e.g. `Teacher.velocity`).
    interp: the teacher's interpolant (for the score, eq. S).
    num_intervals: K (1 = vanilla reflow).
    teacher_steps, teacher_method: teacher ODE per interval (online pairs).
    knot_gap: γ of eq. T (intervals ending at an interior knot).
    align_weight: λ_align (0 = no regulariser; needs K >= 2 otherwise).
    align_start_steps, align_warmup_steps: `align_schedule`.
    align_batch: regularised sub-batch size n (0 = all); its term is scaled
      by B / n so the batch mean stays unbiased.
    logdet, logdet_terms: the student's log-determinant (eq. A).
    divergence: the teacher's Δ^T when computed online ('exact' |
      'hutchinson'; value only). num_probes, probe: probes of the power
      series and of a Hutchinson Δ^T. hutchinson_mode: 'jvp' | 'vjp' (Δ^T).
    quad_points, estimate_value: see `make_alignment_fn`.
    pair_source: 'online' (teacher ODE inside the step from fresh noise) or
      'cache' (rows of `extras['pairs']`: 'states' [N, K + 1, ...],
      'delta_logp' [N, K]; see `ensure_teacher_cache`).

  Returns:
    loss_fn(params, batch, key, *, step, ema_params, extras) ->
      (per_example [B], aux). `batch['x']` only sets B and the dtype (reflow
      never sees data); an optional `batch['x0']` [B, ...] fixes the noise.
      extras: {'teacher': params} and, for 'cache', {'pairs': {...}}.
      Random streams: k_x0 (noise, or the cache rows), k_k (intervals),
      k_u (segment positions), k_ka (alignment intervals), k_probe (power
      series probes), k_tprobe (teacher probes), k_drop (dropout).
  """
  if pair_source not in PAIR_SOURCES:
    raise ValueError(f"pair_source={pair_source!r} is not one of "
                     f"{PAIR_SOURCES}")
  if align_weight > 0 and num_intervals < 2:
    raise ValueError("align_weight > 0 needs num_intervals >= 2: the "
                     "regulariser acts at interior knots and K = 1 has none")
  knots = make_knots(num_intervals)
  gaps = knot_gaps(num_intervals, knot_gap)
  use_align = align_weight > 0
  needs_delta = use_align and estimate_value
  if logdet not in LOGDETS:
    raise ValueError(f"logdet={logdet!r} is not one of {LOGDETS}")

  def loss_fn(params, batch, key, *, step=0, ema_params=None, extras=None):
    del ema_params
    x_ref = batch["x"]
    b = x_ref.shape[0]
    dt = x_ref.dtype
    (k_x0, k_k, k_u, k_ka, k_probe, k_tprobe,
     k_drop) = jax.random.split(key, 7)
    del key
    tparams = extras["teacher"]
    velocity = lambda x, t: teacher_velocity(tparams, x, t)

    if pair_source == "online":
      x0 = batch["x0"] if "x0" in batch else jax.random.normal(
          k_x0, x_ref.shape, dt)
      tprobes = (ode.sample_probes(k_tprobe, x0.shape, num_probes, probe, dt)
                 if (needs_delta and divergence == "hutchinson") else None)
      segs = teacher_segments(velocity, x0, knots, teacher_steps,
                              teacher_method, track_logp=needs_delta,
                              divergence=divergence, probes=tprobes,
                              hutchinson_mode=hutchinson_mode)
      states = jnp.moveaxis(segs["states"], 0, 1)        # [B, K + 1, ...]
      deltas = jnp.moveaxis(segs["delta_logp"], 0, 1)    # [B, K]
    else:
      pairs = extras["pairs"]
      idx = jax.random.randint(k_x0, (b,), 0, pairs["states"].shape[0])
      states = pairs["states"][idx].astype(dt)
      deltas = pairs["delta_logp"][idx].astype(dt)

    # Eq. R on eq. T's network times: straight interpolant, constant target.
    rows = jnp.arange(b)
    k = jax.random.randint(k_k, (b,), 0, num_intervals)
    u = jax.random.uniform(k_u, (b,), dt)
    x_s, x_e = states[rows, k], states[rows, k + 1]
    h = jnp.asarray(np.diff(knots), dt)[k]
    x_u = x_s + _bc(u, x_s) * (x_e - x_s)
    v = student_apply(params, x_u, network_time(knots, gaps, k, u),
                      key=k_drop)
    target = (x_e - x_s) / _bc(h, x_s)
    reflow = jnp.mean(jnp.square(v - target).reshape(b, -1), axis=1)
    aux = {"loss/reflow": jnp.mean(reflow)}
    if not use_align:
      return reflow, aux

    def score(x, t):
      return score_from_velocity(interp, velocity(x, t), x, t)

    align = make_alignment_fn(
        lambda p, x, t: student_apply(p, x, t), score, logdet=logdet,
        logdet_terms=logdet_terms, quad_points=quad_points,
        estimate_value=estimate_value)
    n = b if not align_batch or align_batch >= b else align_batch
    # Interior intervals only (the last ends at the data, eq. A).
    ka = jax.random.randint(k_ka, (n,), 0, num_intervals - 1)
    ra = jnp.arange(n)
    kn = jnp.asarray(knots, dt)
    probes = (ode.sample_probes(k_probe, (n,) + x_ref.shape[1:], num_probes,
                                probe, dt) if logdet == "power_series"
              else None)
    obj, parts = align(params, states[ra, ka], states[ra, ka + 1],
                       deltas[ra, ka], kn[ka], kn[ka + 1], probes)
    scale = align_schedule(step, align_start_steps,
                           align_warmup_steps).astype(dt)
    d = math.prod(x_ref.shape[1:])
    # (K − 1) · per-interval KL: unbiased for Σ_{k<K−1} KL_k; / D: nats per
    # dimension; B / n: sub-batch reweighting.
    term = scale * align_weight * (num_intervals - 1) * (b / n) * obj / d
    loss = reflow + jnp.concatenate([term, jnp.zeros((b - n,), dt)])
    aux["loss/align"] = jnp.mean(obj)
    aux["align/weight"] = scale * align_weight
    if estimate_value:
      aux["align/kl_sum"] = (num_intervals - 1) * jnp.mean(parts["kl"])
      for j in range(num_intervals - 1 if num_intervals <= 8 else 0):
        m = (ka == j).astype(dt)
        aux[f"align/kl_{j}"] = (jnp.sum(m * parts["kl"]) /
                                jnp.maximum(jnp.sum(m), 1.0))
    return loss, aux

  return loss_fn


# --------------------------------------------------------------- samplers --


def make_student_sampler(student_apply: Callable, data_shape: Tuple[int, ...],
                         knots: np.ndarray, gaps: Optional[np.ndarray] = None,
                         method: str = "euler"):
  """sample_fn(params, key, num, steps, extras=None): the student ODE from
  N(0, I) on `sample_grid(knots, steps)`.

  steps >= K: interval k is integrated on its own sub-grid with the field
  x ↦ u_θ(x, τ_k(t)), τ_k(t) = t_k + (1 − γ_k)(t − t_k) (eq. T), so every
  evaluation, its end point included, reads interval k's target. steps < K:
  one uniform grid; a time t reads the interval [t_k, t_{k+1}) holding it.
  """
  k_int = len(knots) - 1
  gaps = np.zeros(k_int) if gaps is None else np.asarray(gaps, np.float64)

  def sample_fn(params, key, num, steps, extras=None):
    del extras
    steps = int(steps)
    x = jax.random.normal(key, (num,) + tuple(data_shape))
    dt = x.dtype
    if steps >= k_int:
      for j, grid in enumerate(_interval_grids(knots, steps)):
        t0, g = float(knots[j]), float(gaps[j])
        v = lambda y, t, t0=t0, g=g: student_apply(
            params, y, jnp.full((y.shape[0],), t0 + (1.0 - g) * (t - t0), dt))
        x = ode.integrate(v, x, jnp.asarray(grid, dt), method)
      return x
    kn = jnp.asarray(knots, dt)

    def v(y, t):
      j = jnp.clip(jnp.searchsorted(kn, t, side="right") - 1, 0, k_int - 1)
      tn = kn[j] + (1.0 - jnp.asarray(gaps, dt)[j]) * (t - kn[j])
      return student_apply(params, y, jnp.full((y.shape[0],), tn, dt))

    return ode.integrate(v, x, jnp.asarray(sample_grid(knots, steps), dt),
                         method)

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


# ------------------------------------------------------------- pair cache --


def ensure_teacher_cache(directory: str, teacher, data_shape, *,
                         num_intervals: int, steps: int, method: str,
                         track_logp: bool, divergence: str, num_probes: int,
                         probe: str, hutchinson_mode: str, num_pairs: int,
                         shard_size: int, seed: int = 0,
                         chunk: int = 1024) -> pair_cache.PairCache:
  """Opens the cache of `teacher`'s reflow pairs, generating it if missing.

  The rows are exactly what `teacher_segments` computes online (same knots,
  steps and method; Δ^T tracked when `track_logp`).
  """
  data_shape = tuple(data_shape)
  knots = make_knots(num_intervals)
  tparams = teacher.params
  velocity = lambda x, t: teacher.velocity(tparams, x, t)

  def segments_fn(key, n):
    k_x0, k_probe = jax.random.split(key)
    x0 = jax.random.normal(k_x0, (n,) + data_shape)
    probes = (ode.sample_probes(k_probe, x0.shape, num_probes, probe)
              if track_logp and divergence == "hutchinson" else None)
    return teacher_segments(velocity, x0, knots, steps, method,
                            track_logp=track_logp, divergence=divergence,
                            probes=probes, hutchinson_mode=hutchinson_mode)

  meta = {"num_intervals": num_intervals, "data_shape": list(data_shape),
          "knots": [float(t) for t in knots], "teacher_steps": steps,
          "teacher_method": method,
          "logp": {"track": bool(track_logp),
                   "divergence": divergence if track_logp else "",
                   "num_probes": num_probes if track_logp else 0,
                   "probe": probe if track_logp else ""},
          "teacher_workdir": str(teacher.workdir),
          "teacher_step": int(teacher.step), "seed": seed}
  jitted = jax.jit(segments_fn, static_argnums=1)
  key = jax.random.fold_in(jax.random.key(seed), 0x9A1C)   # cache stream
  # A run without the regulariser can use a cache that also holds Δ^T.
  return pair_cache.generate(directory, jitted, meta, num_pairs, shard_size,
                             key, chunk=chunk,
                             optional_keys=() if track_logp else ("logp",))


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
  if not 0.0 <= r.knot_gap < 1.0:
    raise ValueError(f"reflow.knot_gap={r.knot_gap!r} must be in [0, 1)")
  at_least("align_weight", 0.0)
  if r.align_weight > 0 and r.num_intervals < 2:
    raise ValueError(
        f"reflow.align_weight={r.align_weight!r} needs reflow.num_intervals "
        ">= 2: the regulariser acts at interior knots (K = 1 has none; the "
        "last interval ends at the data, where the score is singular)")
  at_least("align_start_steps", 0)
  at_least("align_warmup_steps", 0)
  at_least("align_batch", 0)
  if r.align_batch > config.train.batch_size:
    raise ValueError(f"reflow.align_batch={r.align_batch} must be <= "
                     f"train.batch_size={config.train.batch_size}")
  choice("logdet", LOGDETS)
  at_least("logdet_terms", 1)
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
  track_logp = r.align_weight > 0 and r.estimate_value

  cache_np = None
  if r.pairs == "cache":
    # cache_dir may name {K} and {seed}: one cache per (K, seed).
    cache = ensure_teacher_cache(
        r.cache_dir.format(K=r.num_intervals, seed=config.seed), teacher,
        data_shape, num_intervals=r.num_intervals, steps=r.teacher_steps,
        method=r.teacher_method, track_logp=track_logp,
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
      knot_gap=r.knot_gap, align_weight=r.align_weight,
      align_start_steps=r.align_start_steps,
      align_warmup_steps=r.align_warmup_steps, align_batch=r.align_batch,
      logdet=r.logdet, logdet_terms=r.logdet_terms, divergence=r.divergence,
      num_probes=r.num_probes, probe=r.probe,
      hutchinson_mode=r.hutchinson_mode, quad_points=r.quad_points,
      estimate_value=r.estimate_value, pair_source=r.pairs)
  return Method(
      name="reflow",
      init=init,
      loss_fn=loss_fn,
      sample_fn=make_student_sampler(apply_fn, data_shape, knots,
                                     knot_gaps(r.num_intervals, r.knot_gap),
                                     r.sample_method),
      default_sample_steps=r.sample_steps or r.num_intervals,
      info={"num_intervals": r.num_intervals, "teacher": teacher.workdir,
            "teacher_interp": getattr(interp, "name", "?"),
            "pairs": r.pairs})
