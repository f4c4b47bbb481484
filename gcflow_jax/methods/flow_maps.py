"""Flow map matching (Boffi, Albergo & Vanden-Eijnden 2024, arXiv:2406.07507).

A two-time flow map X_{s,t}(x) = x + (t − s) v_θ(s, t, x) (so X_{s,s} = id)
is trained by one of four objectives, chosen by `config.fmm.loss`; the maths
lives in `gcflow_jax.math.flow_map`:

* 'lmd' — Lagrangian map distillation from a frozen flow-matching teacher b:
      L = E w_{s,t} |∂_t X_{s,t}(x_s) − b_t(X_{s,t}(x_s))|²,   x_s = I_s.
* 'emd' — Eulerian map distillation:
      L = E w_{s,t} |∂_s X_{s,t}(x_s) + ∇_x X_{s,t}(x_s) b_s(x_s)|².
* 'direct' — flow map matching from data, no teacher:
      L = E w_{s,t} [|∂_t X_{s,t}(X_{t,s}(I_t)) − İ_t|²
                     + λ |X_{s,t}(X_{t,s}(I_t)) − I_t|²].
* 'progressive' — progressive flow map matching. Stage j = 0..J (J =
  log2 K0) trains the K_j-step map, K_j = K0 / 2^j, with w_{s,t} =
  1(|t − s| ≤ 1/K_j):
    - stage 0 (`fmm.progressive_init`): 'lmd' (LMD restricted to the band
      |t − s| ≤ 1/K0, teacher velocity), 'ode' (regression onto the teacher
      ODE solved from s to t with `progressive_ode_steps` Heun steps: the
      base of Salimans & Ho's progressive distillation) or 'direct' (direct
      FMM in the band, no teacher);
    - stage j ≥ 1 distils two steps of the frozen previous map X̌ (the
      stage j−1 model) into one:
          L = E w_{s,t} |X_{s,t}(x_s) − X̌_{u,t}(X̌_{s,u}(x_s))|²,
          u = (s + t)/2,  |t − s| ≤ 1/K_j = 2/K_{j−1},
      so each half step |u − s| ≤ 1/K_{j−1} stays inside the range X̌ was
      trained on; at the last stage K = 1 (one-step map).
  The stage is a traced function of `step` (stage_steps steps each; the
  last stage runs to the end), the band width is traced into the (s, t)
  sampler, the loss switches with `lax.cond`, and `update_extras` copies the
  current (EMA by default) parameters into `extras["prev"]` at each stage
  boundary with `lax.cond`: one compile for the whole schedule. The student
  is not re-initialised at a boundary: it starts each stage equal to its
  own teacher X̌ (as in progressive distillation).

Random streams per step: k_time (s, t), k_x0 (noise), k_z (latent of a
stochastic interpolant, 'direct' with γ ≠ 0), k_drop / k_in / k_out
(dropout of the flow-map network). The teacher and the frozen previous map
run without dropout.

Sampling: `sample_fn(params, key, num, steps)` takes K = `steps` flow-map
steps on a uniform grid from t = 0 (noise) to 1 (data), or on
`fmm.sample_grid` when given (and `steps` is None or len(grid) − 1); the
teacher ODE reference sampler is `make_teacher_ode_sampler`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from gcflow_jax.math import flow_map as fm
from gcflow_jax.math import interpolants as interp_lib
from gcflow_jax.math import ode
from gcflow_jax.methods.base import Method
from gcflow_jax.models import make_network

__all__ = [
    "LOSSES", "PROGRESSIVE_INITS", "PROGRESSIVE_COPIES", "make_lmd_loss",
    "make_emd_loss", "make_direct_loss", "make_progressive_loss",
    "make_progressive_update", "progressive_schedule", "progressive_stage",
    "flow_map_of", "make_sample_fn", "make_teacher_ode_sampler", "from_config",
    "validate_config", "needs_teacher",
]

LOSSES = ("lmd", "emd", "direct", "progressive")
PROGRESSIVE_INITS = ("lmd", "ode", "direct")
PROGRESSIVE_COPIES = ("ema", "params")

# teacher_velocity(teacher_params, x [B, ...], t [B]) -> b_t(x) [B, ...]
TeacherVelocity = Callable[[Any, jax.Array, jax.Array], jax.Array]
Aux = Dict[str, jax.Array]


# ----------------------------------------------------------------------------
# Shared pieces.
# ----------------------------------------------------------------------------


def _make_time_sampler(order: str, diag_fraction: float):
  def draw(key, n, max_gap, dtype):
    return fm.sample_times(key, n, max_gap=max_gap, order=order,
                           diag_fraction=diag_fraction, dtype=dtype)
  return draw


def _noise(key: jax.Array, x1: jax.Array,
           interp: interp_lib.Interpolant) -> Tuple[jax.Array, Any]:
  """x0 ~ N(0, I) and, for stochastic interpolants, z ~ N(0, I)."""
  k_x0, k_z = jax.random.split(key)
  x0 = jax.random.normal(k_x0, x1.shape, x1.dtype)
  z = (jax.random.normal(k_z, x1.shape, x1.dtype) if interp.has_gamma
       else None)
  return x0, z


def _teacher(extras) -> Any:
  if "teacher" not in extras:
    raise ValueError("this flow-map loss needs extras['teacher'] (the frozen "
                     "teacher's parameters); build the method with a teacher")
  return extras["teacher"]


def _lmd_terms(flow_map, teacher_velocity, interp, draw_times, weight,
               stop_grad_target, params, x1, key, extras, max_gap):
  """LMD per-example (weighted loss, raw loss, mean gap)."""
  k_time, k_noise, k_drop = jax.random.split(key, 3)
  del key
  teacher_params = _teacher(extras)
  s, t = draw_times(k_time, x1.shape[0], max_gap, x1.dtype)
  x0, z = _noise(k_noise, x1, interp)
  x_s = interp.x_t(x0, x1, s, z)   # x_s ~ ρ_s, the teacher's marginal
  vel = lambda x, tt: teacher_velocity(teacher_params, x, tt)  # noqa: E731
  r, _ = fm.lagrangian_residual(flow_map, vel, params, x_s, s, t, key=k_drop,
                                stop_grad_target=stop_grad_target)
  raw = fm.per_example_sq(r)
  return weight(s, t) * raw, raw, jnp.abs(t - s)


def _emd_terms(flow_map, teacher_velocity, interp, draw_times, weight,
               params, x1, key, extras, max_gap):
  k_time, k_noise, k_drop = jax.random.split(key, 3)
  del key
  teacher_params = _teacher(extras)
  s, t = draw_times(k_time, x1.shape[0], max_gap, x1.dtype)
  x0, z = _noise(k_noise, x1, interp)
  x_s = interp.x_t(x0, x1, s, z)
  vel = lambda x, tt: teacher_velocity(teacher_params, x, tt)  # noqa: E731
  r, _ = fm.eulerian_residual(flow_map, vel, params, x_s, s, t, key=k_drop)
  raw = fm.per_example_sq(r)
  return weight(s, t) * raw, raw, jnp.abs(t - s)


def _direct_terms(flow_map, interp, draw_times, weight, invertibility_weight,
                  stop_grad_inner, params, x1, key, max_gap):
  """Direct FMM per-example (weighted, Lagrangian part, invertibility part,
  gap)."""
  k_time, k_noise, k_in, k_out = jax.random.split(key, 4)
  del key
  s, t = draw_times(k_time, x1.shape[0], max_gap, x1.dtype)
  x0, z = _noise(k_noise, x1, interp)
  i_t = interp.x_t(x0, x1, t, z)
  di_t = interp.dx_t(x0, x1, t, z)
  r_l, r_i = fm.direct_residuals(flow_map, params, i_t, di_t, s, t,
                                 keys=(k_in, k_out),
                                 stop_grad_inner=stop_grad_inner)
  lag = fm.per_example_sq(r_l)
  inv = fm.per_example_sq(r_i)
  total = lag + invertibility_weight * inv if invertibility_weight else lag
  return weight(s, t) * total, lag, inv, jnp.abs(t - s)


def _weight_fn(weighting: str, eps: float):
  if weighting not in fm.WEIGHTINGS:
    raise ValueError(f"fmm.weighting={weighting!r} is not one of "
                     f"{fm.WEIGHTINGS}")
  return lambda s, t: fm.time_weight(s, t, weighting, eps)


# ----------------------------------------------------------------------------
# Loss factories.
# ----------------------------------------------------------------------------


def make_lmd_loss(flow_map: fm.FlowMap, teacher_velocity: TeacherVelocity,
                  interp: interp_lib.Interpolant, *, order: str = "forward",
                  max_gap: float = 1.0, diag_fraction: float = 0.0,
                  weighting: str = "uniform", weight_eps: float = 1e-2,
                  stop_grad_target: bool = False):
  """Lagrangian map distillation loss (FMM §3, LMD).

      L(X) = ∫∫ w_{s,t} E_{x_s ~ ρ_s} |∂_t X_{s,t}(x_s) − b_t(X_{s,t}(x_s))|²,

  with x_s = I_s (the teacher's interpolant at time s), (s, t) uniform on
  the band |t − s| ≤ max_gap (`order` 'forward': s ≤ t) and ∂_t X from one
  `jax.jvp` in t. Teacher parameters come from `extras['teacher']`
  (frozen: never differentiated); see `fm.lagrangian_residual` for
  `stop_grad_target`.

  Returns:
    loss_fn(params, batch, key, *, extras, **_) -> (per-example loss [B],
    aux {'loss/lmd', 'fmm/gap'}).
  """
  draw_times = _make_time_sampler(order, diag_fraction)
  weight = _weight_fn(weighting, weight_eps)

  def loss_fn(params, batch, key, *, extras, **unused):
    del unused
    per_ex, raw, gap = _lmd_terms(flow_map, teacher_velocity, interp,
                                  draw_times, weight, stop_grad_target,
                                  params, batch["x"], key, extras, max_gap)
    return per_ex, {"loss/lmd": jnp.mean(raw), "fmm/gap": jnp.mean(gap)}

  return loss_fn


def make_emd_loss(flow_map: fm.FlowMap, teacher_velocity: TeacherVelocity,
                  interp: interp_lib.Interpolant, *, order: str = "forward",
                  max_gap: float = 1.0, diag_fraction: float = 0.0,
                  weighting: str = "uniform", weight_eps: float = 1e-2):
  """Eulerian map distillation loss (FMM §3, EMD).

      L(X) = ∫∫ w_{s,t} E_{x_s ~ ρ_s} |∂_s X_{s,t}(x_s)
                                       + ∇_x X_{s,t}(x_s) b_s(x_s)|²,

  every term at the same point x_s = I_s (derivation in
  `fm.eulerian_residual`), one `jax.jvp` in (s, x) with tangents
  (1, b_s(x_s)).

  Returns:
    loss_fn(params, batch, key, *, extras, **_) -> ([B], aux {'loss/emd',
    'fmm/gap'}).
  """
  draw_times = _make_time_sampler(order, diag_fraction)
  weight = _weight_fn(weighting, weight_eps)

  def loss_fn(params, batch, key, *, extras, **unused):
    del unused
    per_ex, raw, gap = _emd_terms(flow_map, teacher_velocity, interp,
                                  draw_times, weight, params, batch["x"],
                                  key, extras, max_gap)
    return per_ex, {"loss/emd": jnp.mean(raw), "fmm/gap": jnp.mean(gap)}

  return loss_fn


def make_direct_loss(flow_map: fm.FlowMap, interp: interp_lib.Interpolant,
                     *, order: str = "both", max_gap: float = 1.0,
                     diag_fraction: float = 0.0, weighting: str = "uniform",
                     weight_eps: float = 1e-2,
                     invertibility_weight: float = 1.0,
                     stop_grad_inner: bool = False):
  """Direct flow map matching from data (FMM §3, the FMM loss), no teacher:

      L(X) = ∫∫ w_{s,t} E [ |∂_t X_{s,t}(X_{t,s}(I_t)) − İ_t|²
                            + λ |X_{s,t}(X_{t,s}(I_t)) − I_t|² ],

  λ = `invertibility_weight` (0 drops the invertibility term). Both maps
  are the trained X (the inner one backward in time when s < t), so
  `order='both'` (the paper's [0, 1]²) trains forward and backward maps on
  the Lagrangian term; see `fm.direct_residuals`.

  Returns:
    loss_fn(params, batch, key, **_) -> ([B], aux {'loss/direct',
    'loss/invertibility', 'fmm/gap'}).
  """
  draw_times = _make_time_sampler(order, diag_fraction)
  weight = _weight_fn(weighting, weight_eps)

  def loss_fn(params, batch, key, **unused):
    del unused
    per_ex, lag, inv, gap = _direct_terms(
        flow_map, interp, draw_times, weight, invertibility_weight,
        stop_grad_inner, params, batch["x"], key, max_gap)
    return per_ex, {"loss/direct": jnp.mean(lag),
                    "loss/invertibility": jnp.mean(inv),
                    "fmm/gap": jnp.mean(gap)}

  return loss_fn


def progressive_schedule(k0: int) -> Tuple[int, ...]:
  """(K0, K0/2, ..., 1): the number of steps of each stage's map."""
  if k0 < 1 or k0 & (k0 - 1):
    raise ValueError(f"fmm.progressive_k0={k0} must be a power of 2 >= 1")
  return tuple(k0 >> j for j in range(int(math.log2(k0)) + 1))


def progressive_stage(step: jax.Array, stage_steps: int,
                      num_stages: int) -> jax.Array:
  """Traced stage index min(step // stage_steps, num_stages − 1), int32."""
  step = jnp.asarray(step, jnp.int32)
  return jnp.clip(step // stage_steps, 0, num_stages - 1)


def make_progressive_loss(flow_map: fm.FlowMap, interp: interp_lib.Interpolant,
                          *, k0: int, stage_steps: int,
                          init: str = "lmd",
                          teacher_velocity: Optional[TeacherVelocity] = None,
                          order: str = "forward", diag_fraction: float = 0.0,
                          weighting: str = "uniform",
                          weight_eps: float = 1e-2,
                          stop_grad_target: bool = False,
                          invertibility_weight: float = 1.0,
                          ode_steps: int = 8, ode_method: str = "heun"):
  """Progressive flow map matching (FMM §3; module docstring for stages).

  Stage j ≥ 1 (two steps of the frozen previous map into one):

      L_j(X) = ∫∫ 1(|t − s| ≤ 1/K_j) w_{s,t}
               E_{x_s ~ ρ_s} |X_{s,t}(x_s) − X̌_{u,t}(X̌_{s,u}(x_s))|²,

  u = (s + t)/2, X̌ = `extras['prev']` under stop_gradient. Stage 0: the
  `init` loss restricted to |t − s| ≤ 1/K0 ('ode': target = teacher ODE
  from s to t). The stage index is traced from `step`, the two branches are
  selected with `lax.cond` (only the active one runs).

  Args:
    flow_map: the trained map X(params, x, s, t, key=None).
    interp: interpolant giving x_s ~ ρ_s (the teacher's when there is one).
    k0: steps of the first stage's map (power of 2).
    stage_steps: training steps per stage (the last stage runs on).
    init: 'lmd' | 'ode' | 'direct'.
    teacher_velocity: needed for init 'lmd' and 'ode'.
    order, diag_fraction, weighting, weight_eps: (s, t) sampler and w_{s,t}.
    stop_grad_target: LMD option of stage 0.
    invertibility_weight: direct-FMM option of stage 0.
    ode_steps, ode_method: teacher ODE solver of the 'ode' stage 0.
  Returns:
    loss_fn(params, batch, key, *, step, extras, **_) -> ([B], aux
    {'loss/progressive', 'loss/stage0', 'fmm/stage', 'fmm/K', 'fmm/gap'}).
  """
  if init not in PROGRESSIVE_INITS:
    raise ValueError(f"fmm.progressive_init={init!r} is not one of "
                     f"{PROGRESSIVE_INITS}")
  if init in ("lmd", "ode") and teacher_velocity is None:
    raise ValueError(f"progressive_init={init!r} needs a teacher velocity")
  ks = progressive_schedule(k0)
  num_stages = len(ks)
  draw_times = _make_time_sampler(order, diag_fraction)
  weight = _weight_fn(weighting, weight_eps)

  def stage0(params, x1, key, extras, h):
    if init == "lmd":
      w, raw, _ = _lmd_terms(flow_map, teacher_velocity, interp, draw_times,
                             weight, stop_grad_target, params, x1, key,
                             extras, h)
      return w, raw
    if init == "direct":
      w, lag, _, _ = _direct_terms(flow_map, interp, draw_times, weight,
                                   invertibility_weight, False, params, x1,
                                   key, h)
      return w, lag
    # 'ode': regress X_{s,t}(x_s) onto the teacher ODE solution.
    k_time, k_noise, k_drop = jax.random.split(key, 3)
    teacher_params = _teacher(extras)
    s, t = draw_times(k_time, x1.shape[0], h, x1.dtype)
    x0, z = _noise(k_noise, x1, interp)
    x_s = interp.x_t(x0, x1, s, z)
    vel = lambda x, tt: teacher_velocity(teacher_params, x, tt)  # noqa: E731
    # Regression target: no gradient (the teacher is frozen anyway).
    target = jax.lax.stop_gradient(
        fm.ode_map(vel, x_s, s, t, ode_steps, ode_method))
    raw = fm.per_example_sq(flow_map(params, x_s, s, t, key=k_drop) - target)
    return weight(s, t) * raw, raw

  def halving(params, x1, key, extras, h):
    k_time, k_noise, k_drop = jax.random.split(key, 3)
    s, t = draw_times(k_time, x1.shape[0], h, x1.dtype)
    x0, z = _noise(k_noise, x1, interp)
    x_s = interp.x_t(x0, x1, s, z)
    # Two steps of the frozen previous-stage map: a regression target, so no
    # gradient flows into it (extras are not trained; explicit for clarity).
    target = jax.lax.stop_gradient(
        fm.composed_map(flow_map, extras["prev"], x_s, s, t, steps=2))
    raw = fm.per_example_sq(flow_map(params, x_s, s, t, key=k_drop) - target)
    return weight(s, t) * raw, raw

  def loss_fn(params, batch, key, *, step, extras, **unused):
    del unused
    x1 = batch["x"]
    stage = progressive_stage(step, stage_steps, num_stages)
    k = jnp.asarray(k0, jnp.int32) >> stage          # K_j = K0 / 2^j
    h = 1.0 / k.astype(x1.dtype)                     # band |t − s| ≤ 1/K_j
    if num_stages == 1:
      per_ex, raw = stage0(params, x1, key, extras, h)
    else:
      per_ex, raw = jax.lax.cond(
          stage == 0,
          lambda: stage0(params, x1, key, extras, h),
          lambda: halving(params, x1, key, extras, h))
    is0 = (stage == 0).astype(x1.dtype)
    mean_raw = jnp.mean(raw)
    return per_ex, {"loss/progressive": mean_raw * (1 - is0),
                    "loss/stage0": mean_raw * is0,
                    "fmm/stage": stage.astype(x1.dtype),
                    "fmm/K": k.astype(x1.dtype),
                    "fmm/gap": h}

  return loss_fn


def make_progressive_update(stage_steps: int, num_stages: int,
                            copy: str = "ema"):
  """update_extras copying params into extras['prev'] at stage boundaries.

  Called with the new step n after the update of step n − 1; when n is the
  first step of stage j ≥ 1 (n = j · stage_steps, j < num_stages), the
  stage-(j−1) model (`copy`: its EMA or raw parameters) becomes the frozen
  map X̌ that stage j distils. `lax.cond`, so nothing recompiles.
  """
  if copy not in PROGRESSIVE_COPIES:
    raise ValueError(f"fmm.progressive_copy={copy!r} is not one of "
                     f"{PROGRESSIVE_COPIES}")

  def update_extras(step, params, ema_params, extras):
    src = ema_params if copy == "ema" else params
    step = jnp.asarray(step, jnp.int32)
    boundary = ((step > 0) & (step % stage_steps == 0)
                & (step // stage_steps < num_stages))
    prev = jax.lax.cond(boundary, lambda: src, lambda: extras["prev"])
    return {**extras, "prev": prev}

  return update_extras


# ----------------------------------------------------------------------------
# Samplers.
# ----------------------------------------------------------------------------


def make_sample_fn(flow_map: fm.FlowMap, shape: Sequence[int],
                   grid: Sequence[float] = (), default_steps: int = 1):
  """sample_fn(params, key, num, steps=None, extras=None) -> [num, *shape].

  K-step flow-map sampling from x0 ~ N(0, I) at t = 0 to t = 1:
  x_{k+1} = X_{t_k, t_{k+1}}(x_k). The grid is `grid` when given and
  `steps` is None or len(grid) − 1, else uniform with K = `steps`
  (`default_steps` when None). K is chosen freely after training.
  """
  grid = tuple(float(g) for g in grid)
  if grid and len(grid) < 2:
    raise ValueError(f"fmm.sample_grid={grid} needs >= 2 times")
  shape = tuple(shape)

  def sample_fn(params, key, num, steps=None, extras=None):
    del extras
    if grid and (steps is None or steps == len(grid) - 1):
      ts = jnp.asarray(grid)
    else:
      ts = fm.uniform_grid(default_steps if steps is None else int(steps))
    x0 = jax.random.normal(key, (num,) + shape)
    return fm.sample(flow_map, params, x0, ts)

  return sample_fn


def make_teacher_ode_sampler(teacher_velocity: TeacherVelocity,
                             shape: Sequence[int], method: str = "heun"):
  """The reference: sample(teacher_params, key, num, steps) integrating the
  teacher ODE ẋ = b_t(x) from the same x0 ~ N(0, I) (same key -> same noise
  as `make_sample_fn`, so the two are compared sample by sample)."""
  shape = tuple(shape)

  def sample(teacher_params, key, num, steps):
    x0 = jax.random.normal(key, (num,) + shape)
    v = lambda x, t: teacher_velocity(  # noqa: E731
        teacher_params, x, jnp.full((x.shape[0],), t, x.dtype))
    return ode.integrate(v, x0, ode.uniform_grid(0.0, 1.0, steps), method)

  return sample


# ----------------------------------------------------------------------------
# Config adapters.
# ----------------------------------------------------------------------------


def needs_teacher(config) -> bool:
  f = config.fmm
  if f.loss in ("lmd", "emd"):
    return True
  if f.loss == "progressive":
    return f.progressive_init in ("lmd", "ode")
  return False


def _stage_steps(config) -> int:
  n = len(progressive_schedule(int(config.fmm.progressive_k0)))
  if config.fmm.progressive_stage_steps > 0:
    return int(config.fmm.progressive_stage_steps)
  return max(1, int(config.train.steps) // n)


def validate_config(config) -> None:
  f = config.fmm

  def one_of(name, value, allowed):
    if value not in allowed:
      raise ValueError(f"fmm.{name}={value!r} is not one of {allowed}")

  one_of("loss", f.loss, LOSSES)
  one_of("time_embedding", f.time_embedding, fm.TIME_EMBEDDINGS)
  one_of("time_order", f.time_order, fm.TIME_ORDERS)
  one_of("weighting", f.weighting, fm.WEIGHTINGS)
  one_of("gamma", f.gamma, interp_lib.GAMMAS)
  one_of("progressive_init", f.progressive_init, PROGRESSIVE_INITS)
  one_of("progressive_copy", f.progressive_copy, PROGRESSIVE_COPIES)
  one_of("progressive_ode_method", f.progressive_ode_method,
         ode.INTEGRATORS)
  if not 0.0 < f.max_gap <= 1.0:
    raise ValueError(f"fmm.max_gap={f.max_gap} must be in (0, 1]")
  if not 0.0 <= f.diag_fraction < 1.0:
    raise ValueError(f"fmm.diag_fraction={f.diag_fraction} must be in "
                     "[0, 1)")
  if f.weight_eps <= 0:
    raise ValueError(f"fmm.weight_eps={f.weight_eps} must be > 0")
  if f.invertibility_weight < 0 or f.gamma_scale < 0:
    raise ValueError("fmm.invertibility_weight and fmm.gamma_scale must be "
                     ">= 0")
  if f.time_scale <= 0:
    raise ValueError(f"fmm.time_scale={f.time_scale} must be > 0")
  if f.sample_steps < 1:
    raise ValueError(f"fmm.sample_steps={f.sample_steps} must be >= 1")
  if f.progressive_ode_steps < 1:
    raise ValueError("fmm.progressive_ode_steps must be >= 1")
  if f.progressive_stage_steps < 0:
    raise ValueError("fmm.progressive_stage_steps must be >= 0 (0: "
                     "train.steps split evenly over the stages)")
  progressive_schedule(int(f.progressive_k0))
  grid = tuple(f.sample_grid)
  if grid:
    if len(grid) < 2 or abs(grid[0]) > 1e-9 or abs(grid[-1] - 1.0) > 1e-9:
      raise ValueError(f"fmm.sample_grid={grid} must start at 0 (noise) and "
                       "end at 1 (data)")
  if f.gamma != "none" and f.gamma_scale > 0 and needs_teacher(config):
    raise ValueError(
        "fmm.gamma adds a latent γ(t) z to the interpolant of direct FMM "
        "only; distillation samples x_s from the teacher's (deterministic) "
        "interpolant. Set fmm.gamma='none' for loss "
        f"{f.loss!r}/progressive_init {f.progressive_init!r}")
  if (config.model.name == "unet" and f.time_embedding == "s_dt"
      and config.model.unet.time_embedding == "s_dt"):
    raise ValueError("fmm.time_embedding='s_dt' and model.unet."
                     "time_embedding='s_dt' would apply t − s twice; set "
                     "one of them to 'st'")


def _network_and_map(config, data_shape):
  _, apply_fn, init_fn = make_network(config.model, tuple(data_shape), 2)
  return init_fn, fm.make_flow_map(apply_fn, config.fmm.time_embedding,
                                   config.fmm.time_scale)


def flow_map_of(config, data_shape) -> fm.FlowMap:
  """The trained map X(params, x, s, t, key=None) of `config` (the network
  of config.model wrapped as in training), for analyses that evaluate
  X_{s,t} at chosen (s, t) rather than through `sample_fn`."""
  return _network_and_map(config, data_shape)[1]


def from_config(config, data_shape, teacher=None) -> Method:
  """Builds the flow-map Method of `config.fmm` (see configs/base.py)."""
  validate_config(config)
  f = config.fmm
  data_shape = tuple(data_shape)
  if needs_teacher(config) and teacher is None:
    raise ValueError(f"fmm.loss={f.loss!r} (progressive_init="
                     f"{f.progressive_init!r}) needs a teacher")
  init_fn, flow_map = _network_and_map(config, data_shape)
  if teacher is not None and needs_teacher(config):
    # x_s ~ ρ_s must be the teacher's marginal: use its interpolant.
    interp = interp_lib.get(teacher.interp)
    teacher_velocity = teacher.velocity
  else:
    interp = interp_lib.get(config.interp.name, f.gamma, f.gamma_scale)
    teacher_velocity = None
  common = dict(order=f.time_order, diag_fraction=f.diag_fraction,
                weighting=f.weighting, weight_eps=f.weight_eps)
  update_extras = None
  info = {"loss": f.loss, "time_embedding": f.time_embedding,
          "interp": interp.name}
  if f.loss == "lmd":
    loss_fn = make_lmd_loss(flow_map, teacher_velocity, interp,
                            max_gap=f.max_gap,
                            stop_grad_target=f.stop_grad_target, **common)
  elif f.loss == "emd":
    loss_fn = make_emd_loss(flow_map, teacher_velocity, interp,
                            max_gap=f.max_gap, **common)
  elif f.loss == "direct":
    loss_fn = make_direct_loss(
        flow_map, interp, max_gap=f.max_gap,
        invertibility_weight=f.invertibility_weight,
        stop_grad_inner=f.stop_grad_inner, **common)
  else:
    stage_steps = _stage_steps(config)
    ks = progressive_schedule(int(f.progressive_k0))
    loss_fn = make_progressive_loss(
        flow_map, interp, k0=int(f.progressive_k0), stage_steps=stage_steps,
        init=f.progressive_init, teacher_velocity=teacher_velocity,
        stop_grad_target=f.stop_grad_target,
        invertibility_weight=f.invertibility_weight,
        ode_steps=int(f.progressive_ode_steps),
        ode_method=f.progressive_ode_method, **common)
    update_extras = make_progressive_update(stage_steps, len(ks),
                                            f.progressive_copy)
    info.update(progressive_ks=ks, progressive_stage_steps=stage_steps,
                progressive_init=f.progressive_init)
  if teacher is not None:
    info["teacher"] = teacher.workdir

  def init(key, example_batch):
    del example_batch
    params = init_fn(key)
    extras = {}
    if teacher is not None and needs_teacher(config):
      extras["teacher"] = teacher.params
    if f.loss == "progressive":
      # Placeholder for the frozen previous-stage map (unused in stage 0).
      extras["prev"] = jax.tree_util.tree_map(jnp.array, params)
    return params, extras

  grid = tuple(f.sample_grid)
  default_steps = len(grid) - 1 if grid else int(f.sample_steps)
  return Method(
      name="fmm", init=init, loss_fn=loss_fn,
      sample_fn=make_sample_fn(flow_map, data_shape, grid, default_steps),
      update_extras=update_extras, default_sample_steps=default_steps,
      info=info)
