"""Two-time flow maps: parameterisation, residuals of the flow-map PDEs,
K-step sampling, (s, t) samplers and weights. Pure JAX.

Reference: Boffi, Albergo & Vanden-Eijnden (2024), "Flow map matching with
stochastic interpolants" (arXiv:2406.07507), written FMM below.

Let b_t(x) be a velocity field (t = 0 noise, t = 1 data). Its two-time flow
map X_{s,t} sends the state of ẋ_t = b_t(x_t) at time s to its state at time
t: X_{s,t}(x_s) = x_t, for any s, t ∈ [0, 1] (backward maps for t < s). It
satisfies (FMM §2, the Lagrangian and Eulerian characterisations)

    Lagrangian:  ∂_t X_{s,t}(x) = b_t(X_{s,t}(x)),                X_{s,s} = id,
    Eulerian:    ∂_s X_{s,t}(x) + ∇_x X_{s,t}(x) b_s(x) = 0,      X_{t,t} = id,
    semigroup:   X_{u,t}(X_{s,u}(x)) = X_{s,t}(x),  X_{t,s}(X_{s,t}(x)) = x.

We parameterise (FMM §2, the 'tangent condition' parameterisation)

    X_{s,t}(x) = x + (t − s) v_{s,t}(x),

so X_{s,s} = id holds by construction for any network v, and
lim_{t→s} ∂_t X_{s,t}(x) = v_{s,s}(x) = b_s(x) (the tangent condition).

Flow maps are plain callables `flow_map(params, x, s, t, key=None)` with x
[B, ...] and s, t [B] (or scalars); residual functions return [B, ...]
arrays shaped like x. All derivatives are forward-mode `jax.jvp` (no finite
differences): the Lagrangian time derivative is one JVP in t, the Eulerian
residual is one JVP in (s, x) jointly.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp

from gcflow_jax.math import interpolants as interp_lib
from gcflow_jax.math import ode

__all__ = [
    "FlowMap", "Velocity", "TIME_EMBEDDINGS", "TIME_ORDERS", "WEIGHTINGS",
    "bcast", "per_example_sq", "make_flow_map", "lagrangian_residual",
    "eulerian_residual", "direct_residuals", "composed_map", "ode_map",
    "sample", "uniform_grid", "sample_times", "time_weight",
    "gaussian_flow_map",
]

# flow_map(params, x [B, ...], s [B], t [B], key=None) -> X_{s,t}(x) [B, ...]
FlowMap = Callable[..., jax.Array]
# velocity(x [B, ...], t [B]) -> b_t(x) [B, ...] (parameters already bound)
Velocity = Callable[[jax.Array, jax.Array], jax.Array]

TIME_EMBEDDINGS = ("st", "s_dt")
TIME_ORDERS = ("forward", "both")
WEIGHTINGS = ("uniform", "inv_gap", "inv_gap_sq")


def bcast(a: jax.Array, x: jax.Array) -> jax.Array:
  """Reshapes a scalar or [B] coefficient to broadcast against x [B, ...]."""
  a = jnp.asarray(a, x.dtype)
  if a.ndim == 0:
    return a
  if a.shape != x.shape[:1]:
    raise ValueError(f"coefficient of shape {a.shape} does not match the "
                     f"batch of x {x.shape}")
  return a.reshape(a.shape + (1,) * (x.ndim - 1))


def per_example_sq(r: jax.Array) -> jax.Array:
  """Mean over the data dimensions of r², [B, ...] -> [B].

  The paper writes |·|² (a sum over dimensions); the mean only rescales the
  loss by 1/D and keeps image and toy losses on one scale.
  """
  return jnp.mean(jnp.square(r).reshape(r.shape[0], -1), axis=1)


def _batch_time(t, x: jax.Array) -> jax.Array:
  t = jnp.asarray(t, x.dtype)
  return jnp.broadcast_to(t, x.shape[:1]) if t.ndim == 0 else t


def make_flow_map(apply_fn: Callable[..., jax.Array],
                  time_embedding: str = "st",
                  time_scale: float = 1.0) -> FlowMap:
  """Wraps a two-time network v into the flow map X = x + (t − s) v.

  Args:
    apply_fn: network `(params, x, time_a, time_b, key=None) -> [B, ...]`.
    time_embedding: which two times the network sees: 'st' -> (s, t),
      's_dt' -> (s, t − s). (A network with its own 's_dt' option, e.g. the
      UNet's `time_embedding`, must then be given 'st' here, and vice versa.)
    time_scale: multiplies both network times (e.g. 1000 for positional
      embeddings of t ∈ [0, 1], the DDPM++ convention); X itself is unchanged.
  Returns:
    flow_map(params, x [B, ...], s, t, key=None) -> X_{s,t}(x) [B, ...], with
    s, t scalars or [B]. X_{s,s}(x) = x exactly, for any params.
  """
  if time_embedding not in TIME_EMBEDDINGS:
    raise ValueError(f"time_embedding={time_embedding!r} is not one of "
                     f"{TIME_EMBEDDINGS}")

  def flow_map(params, x, s, t, key=None):
    s = _batch_time(s, x)
    t = _batch_time(t, x)
    second = t if time_embedding == "st" else t - s
    v = apply_fn(params, x, time_scale * s, time_scale * second, key=key)
    return x + bcast(t - s, x) * v

  return flow_map


# ----------------------------------------------------------------------------
# Residuals of the flow-map equations.
# ----------------------------------------------------------------------------


def lagrangian_residual(flow_map: FlowMap, velocity: Velocity, params: Any,
                        x_s: jax.Array, s: jax.Array, t: jax.Array, *,
                        key: Optional[jax.Array] = None,
                        stop_grad_target: bool = False
                        ) -> Tuple[jax.Array, jax.Array]:
  """Lagrangian map distillation (LMD) residual (FMM §3, LMD loss).

      r = ∂_t X_{s,t}(x_s) − b_t(X_{s,t}(x_s)),   x_s ~ ρ_s,

  zero for every x iff X solves the Lagrangian equation. ∂_t X comes from
  one forward-mode pass: `jax.jvp` in t with tangent 1 (x_s and s held
  fixed); its primal output is X_{s,t}(x_s) itself, reused in the target.

  Args:
    flow_map: X(params, x, s, t, key=None).
    velocity: the (frozen) teacher b(x, t).
    params: flow-map parameters (differentiated by the caller).
    x_s: points at time s, [B, ...].
    s, t: times, [B].
    key: dropout key of the flow map (None: deterministic).
    stop_grad_target: stop the gradient through X_{s,t} inside b_t(·).
      The paper's objective differentiates through it (default); the
      semi-gradient skips backpropagating through the teacher network. Both
      have the same zero-residual minimiser.
  Returns:
    (residual [B, ...], X_{s,t}(x_s) [B, ...]).
  """
  # primal: X_{s,t}(x_s); tangent: ∂X_{s,t}(x_s)/∂t (w.r.t. t only).
  x_st, dt_x_st = jax.jvp(
      lambda tt: flow_map(params, x_s, s, tt, key=key), (t,),
      (jnp.ones_like(t),))
  # The teacher is frozen (its params are not differentiated); optionally
  # also stop the gradient through its input X_{s,t}(x_s).
  y = jax.lax.stop_gradient(x_st) if stop_grad_target else x_st
  return dt_x_st - velocity(y, t), x_st


def eulerian_residual(flow_map: FlowMap, velocity: Velocity, params: Any,
                      x: jax.Array, s: jax.Array, t: jax.Array, *,
                      key: Optional[jax.Array] = None
                      ) -> Tuple[jax.Array, jax.Array]:
  """Eulerian map distillation (EMD) residual (FMM §3, EMD loss).

      r = ∂_s X_{s,t}(x) + ∇_x X_{s,t}(x) b_s(x),   x ~ ρ_s  (x = I_s).

  Derivation of the evaluation points: along a trajectory x_s of ẋ = b_s(x),
  X_{s,t}(x_s) = x_t does not depend on s, so

      0 = d/ds X_{s,t}(x_s) = ∂_s X_{s,t}(x_s) + ∇_x X_{s,t}(x_s) ẋ_s
                            = ∂_s X_{s,t}(x_s) + ∇_x X_{s,t}(x_s) b_s(x_s).

  Every term is evaluated at the *same* point x = x_s and the same time s:
  the map's argument, its Jacobian and the teacher b_s all see x (not
  X_{s,t}(x), and not b at time t); the Jacobian acts on b_s as a
  Jacobian-vector product (column space, J b, not Jᵀ b). Mixing points —
  e.g. b_s(X_{s,t}(x)) or b_t(x) — leaves a non-zero residual at the exact
  flow map (tests/methods/test_flow_maps.py checks both the correct residual
  and that these variants do not vanish).

  Both derivatives come from ONE `jax.jvp` in (s, x) with tangents
  (1, b_s(x)): the tangent output is ∂_s X + ∇_x X · b_s(x).

  Args:
    flow_map: X(params, x, s, t, key=None).
    velocity: the (frozen) teacher b(x, t).
    params: flow-map parameters.
    x: points at time s, [B, ...].
    s, t: times, [B].
    key: dropout key of the flow map.
  Returns:
    (residual [B, ...], X_{s,t}(x) [B, ...]).
  """
  # The tangent direction b_s(x) depends only on the frozen teacher and the
  # data point: no gradient flows through it (stop_gradient for clarity).
  b_s = jax.lax.stop_gradient(velocity(x, s))
  # primal: X_{s,t}(x); tangent: ∂_s X_{s,t}(x)·1 + ∇_x X_{s,t}(x)·b_s(x).
  x_st, tangent = jax.jvp(
      lambda ss, xx: flow_map(params, xx, ss, t, key=key), (s, x),
      (jnp.ones_like(s), b_s))
  return tangent, x_st


def direct_residuals(flow_map: FlowMap, params: Any, i_t: jax.Array,
                     di_t: jax.Array, s: jax.Array, t: jax.Array, *,
                     keys: Tuple[Optional[jax.Array], Optional[jax.Array]] = (
                         None, None),
                     stop_grad_inner: bool = False
                     ) -> Tuple[jax.Array, jax.Array]:
  """Residuals of direct flow map matching from data (FMM §3, the FMM
  loss with its invertibility term), no teacher:

      r_L = ∂_t X_{s,t}(y) − İ_t,     r_I = X_{s,t}(y) − I_t,
      y   = X_{t,s}(I_t)              (the backward map to time s),

  L = E[w_{s,t} (|r_L|² + λ |r_I|²)]. ∂_t X_{s,t}(y) is the partial
  derivative in the map's second time argument at fixed y: one `jax.jvp` in
  t of the outer map, whose primal X_{s,t}(y) is the invertibility residual's
  composite, so both terms cost one forward-mode pass of the outer map plus
  one plain pass of the inner map.

  At the exact flow map r_I ≡ 0 and ∂_t X_{s,t}(y) = b_t(I_t), so the first
  term equals E|b_t(I_t) − İ_t|² (the flow-matching variance, zero only for
  deterministic couplings) and its parameter gradient vanishes in
  expectation, because b_t(x) = E[İ_t | I_t = x].

  The paper writes the invertibility term as |X_{s,t}(X_{t,s}(I_t)) − I_t|²;
  with (s, t) drawn symmetrically this equals |X_{t,s}(X_{s,t}(I_s)) − I_s|²
  in expectation (rename s <-> t).

  Args:
    flow_map: X(params, x, s, t, key=None).
    params: flow-map parameters.
    i_t: interpolant I_t, [B, ...].
    di_t: its time derivative İ_t, [B, ...].
    s, t: times, [B].
    keys: dropout keys of the inner (X_{t,s}) and outer (X_{s,t}) maps.
    stop_grad_inner: stop the gradient through y = X_{t,s}(I_t). The paper
      differentiates through both maps (default False).
  Returns:
    (r_L [B, ...], r_I [B, ...]).
  """
  k_inner, k_outer = keys
  y = flow_map(params, i_t, t, s, key=k_inner)
  if stop_grad_inner:
    # Semi-gradient variant: the inner (backward) map is treated as data.
    y = jax.lax.stop_gradient(y)
  # primal: X_{s,t}(y); tangent: ∂X_{s,t}(y)/∂t at fixed y.
  x_back, dt_x = jax.jvp(lambda tt: flow_map(params, y, s, tt, key=k_outer),
                         (t,), (jnp.ones_like(t),))
  return dt_x - di_t, x_back - i_t


def composed_map(flow_map: FlowMap, params: Any, x: jax.Array, s: jax.Array,
                 t: jax.Array, steps: int = 2) -> jax.Array:
  """`steps` uniform steps of a flow map from s to t (FMM §3, progressive
  flow map matching):

      X_{t_{n−1},t} ∘ ⋯ ∘ X_{s,t_1}(x),   t_k = s + (k/n)(t − s),

  the progressive-distillation target of one step of size t − s. Equal to
  X_{s,t}(x) for an exact flow map (semigroup property).

  Args:
    flow_map: X(params, x, s, t, key=None) (evaluated without dropout).
    params: parameters of the map being composed.
    x: [B, ...]; s, t: [B] (or scalars).
    steps: n >= 1, static.
  Returns:
    [B, ...].
  """
  s = _batch_time(s, x)
  t = _batch_time(t, x)
  for k in range(steps):
    a = s + (t - s) * (k / steps)
    b = t if k == steps - 1 else s + (t - s) * ((k + 1) / steps)
    x = flow_map(params, x, a, b)
  return x


def ode_map(velocity: Velocity, x: jax.Array, s: jax.Array, t: jax.Array,
            steps: int, method: str = "heun") -> jax.Array:
  """X_{s,t}(x) of ẋ = b_t(x) by an ODE solver, per-example s, t [B].

  Reparameterises time as τ ∈ [0, 1], u(τ) = t_τ = s + τ (t − s), so
  dx/dτ = (t − s) b_{u(τ)}(x) and one scalar grid serves every example.

  Args:
    velocity: b(x, t) with t [B].
    x: [B, ...] states at time s.
    s, t: [B].
    steps: solver steps (static).
    method: 'euler' | 'heun' | 'rk4'.
  Returns:
    [B, ...] states at time t.
  """
  s = _batch_time(s, x)
  t = _batch_time(t, x)
  gap = bcast(t - s, x)

  def v(xx, tau):
    return gap * velocity(xx, s + tau * (t - s))

  return ode.integrate(v, x, ode.uniform_grid(0.0, 1.0, steps), method)


# ----------------------------------------------------------------------------
# Sampling.
# ----------------------------------------------------------------------------


def uniform_grid(steps: int, t0: float = 0.0, t1: float = 1.0) -> jax.Array:
  """[steps + 1] equally spaced times from t0 (noise) to t1 (data)."""
  return jnp.linspace(t0, t1, steps + 1)


def sample(flow_map: FlowMap, params: Any, x0: jax.Array, ts: jax.Array,
           return_path: bool = False):
  """K-step flow-map sampling x_{k+1} = X_{t_k, t_{k+1}}(x_k) (FMM §2: any
  number of steps, chosen after training).

  Args:
    flow_map: X(params, x, s, t, key=None).
    params: flow-map parameters.
    x0: [B, ...] base samples at ts[0].
    ts: [K + 1] time grid (any monotone or not grid; K static, values
      traced, so one compile serves every grid of a given length).
    return_path: also return the states [K + 1, B, ...].
  Returns:
    x_K [B, ...] (and the path).
  """
  ts = jnp.asarray(ts, x0.dtype)
  if ts.ndim != 1 or ts.shape[0] < 2:
    raise ValueError(f"time grid must be [K + 1] with K >= 1, got {ts.shape}")

  def body(x, st):
    x_next = flow_map(params, x, st[0], st[1])
    return x_next, (x_next if return_path else None)

  pairs = jnp.stack([ts[:-1], ts[1:]], axis=1)
  x1, path = jax.lax.scan(body, x0, pairs)
  if return_path:
    return x1, jnp.concatenate([x0[None], path], axis=0)
  return x1


# ----------------------------------------------------------------------------
# (s, t) samplers and weights w_{s,t}.
# ----------------------------------------------------------------------------


def sample_times(key: jax.Array, n: int, *, max_gap=1.0,
                 order: str = "forward", diag_fraction: float = 0.0,
                 dtype=jnp.float32) -> Tuple[jax.Array, jax.Array]:
  """(s, t), each [n], uniform on the band {|t − s| ≤ h} ∩ [0, 1]².

  The FMM losses integrate w_{s,t} over [0, 1]². For w_{s,t} =
  1(|t − s| ≤ h) (the K-step weight of FMM's progressive/few-step training,
  h = 1/K) we draw (s, t) from the normalised w instead of multiplying a
  uniform draw by the indicator: same objective up to the constant
  ∫w = 2h − h² (half of it for 'forward'), no wasted samples.

  Exact inverse-CDF draw: for (s, t) uniform on the band the gap a = |t − s|
  has density ∝ (1 − a) on [0, h], so a = 1 − sqrt(1 − u (2h − h²)); given a,
  min(s, t) is uniform on [0, 1 − a].

  Args:
    key: PRNG key.
    n: number of pairs (static).
    max_gap: h ∈ (0, 1], may be traced (curricula without recompiles).
    order: 'forward' (s ≤ t: noise -> data, the sampling direction) or
      'both' (each order with probability 1/2: all of [0, 1]²).
    diag_fraction: a static fraction of the pairs put on the diagonal s = t
      (where the Lagrangian/Eulerian losses reduce to velocity matching,
      since ∂_t X_{s,t}|_{t=s} = v_{s,s}); the first round(n · fraction).
    dtype: float dtype.
  Returns:
    (s [n], t [n]).
  """
  if order not in TIME_ORDERS:
    raise ValueError(f"time order {order!r} is not one of {TIME_ORDERS}")
  if not 0.0 <= diag_fraction <= 1.0:
    raise ValueError(f"diag_fraction={diag_fraction} must be in [0, 1]")
  k_gap, k_lo, k_sign = jax.random.split(key, 3)
  del key
  h = jnp.clip(jnp.asarray(max_gap, dtype), 0.0, 1.0)
  u = jax.random.uniform(k_gap, (n,), dtype)
  gap = 1.0 - jnp.sqrt(jnp.maximum(1.0 - u * (2.0 * h - h * h), 0.0))
  gap = jnp.minimum(gap, h)
  n_diag = int(round(n * diag_fraction))
  if n_diag:
    gap = gap.at[:n_diag].set(0.0)
  lo = jax.random.uniform(k_lo, (n,), dtype) * (1.0 - gap)
  s, t = lo, lo + gap
  if order == "both":
    swap = jax.random.bernoulli(k_sign, 0.5, (n,))
    s, t = jnp.where(swap, t, s), jnp.where(swap, s, t)
  return s, t


def time_weight(s: jax.Array, t: jax.Array, kind: str = "uniform",
                eps: float = 1e-2) -> jax.Array:
  """w_{s,t} [B] multiplying the per-example loss (on top of the sampler).

  'uniform': 1 (the paper's experiments).
  'inv_gap': 1 / max(|t − s|, eps).
  'inv_gap_sq': 1 / max(|t − s|, eps)²; turns a position error
    |X̂_{s,t} − X_{s,t}|² (progressive distillation) into velocity units,
    since X_{s,t} − x = (t − s) v.
  """
  if kind == "uniform":
    return jnp.ones_like(s)
  gap = jnp.maximum(jnp.abs(t - s), eps)
  if kind == "inv_gap":
    return 1.0 / gap
  if kind == "inv_gap_sq":
    return 1.0 / jnp.square(gap)
  raise ValueError(f"weighting {kind!r} is not one of {WEIGHTINGS}")


# ----------------------------------------------------------------------------
# Closed form: Gaussian -> Gaussian (tests, sanity benchmarks).
# ----------------------------------------------------------------------------


def gaussian_flow_map(interp: interp_lib.Interpolant
                      ) -> Tuple[Callable[..., jax.Array],
                                 Callable[..., jax.Array]]:
  """Exact velocity and flow map for x0 ~ N(0, I), x1 ~ N(m, diag(σ²)),
  independent, I_t = α x0 + β x1 + γ z.

  I_t ~ N(μ_t, diag(v_t)) with μ_t = β_t m, v_t = α_t² + β_t² σ² + γ_t², and
  the marginal velocity b_t(x) = E[İ_t | I_t = x] is affine (a linear ODE in
  x − μ_t):

      b_t(x) = β'_t m + (v'_t / (2 v_t)) (x − μ_t),

  because Cov(İ_t, I_t) = α α' + β β' σ² + γ γ' = v'_t / 2. Its flow map is

      X_{s,t}(x) = μ_t + sqrt(v_t / v_s) (x − μ_s)

  (check: ∂_t X = β'_t m + (v'_t / 2v_t)(X − μ_t) = b_t(X)).

  Returns:
    velocity(params, x, t) and flow_map(params, x, s, t, key=None), with
    params = {'mean': m [D], 'std': σ [D]} (arrays broadcastable to x's
    trailing dims); t, s scalars or [B]. Differentiable in params, so a
    perturbed params dict is a perturbed map.
  """

  def stats(params, t, x):
    t = bcast(_batch_time(t, x), x)
    m, sd = params["mean"], params["std"]
    a, b, g = interp.alpha(t), interp.beta(t), interp.gamma(t)
    da, db, dg = interp.dalpha(t), interp.dbeta(t), interp.dgamma(t)
    mu = b * m
    var = a * a + b * b * sd * sd + g * g
    dvar = 2.0 * (a * da + b * db * sd * sd + g * dg)
    return mu, var, dvar, db * m

  def velocity(params, x, t):
    mu, var, dvar, dmu = stats(params, t, x)
    return dmu + dvar / (2.0 * var) * (x - mu)

  def flow_map(params, x, s, t, key=None):
    del key
    mu_s, var_s, _, _ = stats(params, s, x)
    mu_t, var_t, _, _ = stats(params, t, x)
    return mu_t + jnp.sqrt(var_t / var_s) * (x - mu_s)

  return velocity, flow_map
