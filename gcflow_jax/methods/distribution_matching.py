r"""Distribution matching with generalized consistency models (paper 000).

"Distribution Matching via Generalized Consistency Models" (arXiv 2508.12222):
a generator g(z; θ_g) in a constraint class G (affine, orthogonal, diagonal,
low-dimensional latent decoder, free MLP; `gcflow_jax.models.generators`)
pushes a source ρ0 = N(0, I_D) to R^N; a consistency model f_t(x; θ_f) learns
the flow between g#ρ0 and the target ρ1; the generator is trained to be a
fixed point of the flow's transport map f_0.

Convention (derived here; the summary leaves it open)
-----------------------------------------------------
Interpolant. x0 = g(z) sits at t = 0 (the "base" side of
`gcflow_jax.math.interpolants`), x1 ~ ρ1 at t = 1:

    J_t(x0, x1) = α(t) x0 + β(t) x1   (linear: (1 − t) x0 + t x1),
    ∂_t J_t     = α'(t) x0 + β'(t) x1  (linear: x1 − x0).

(x0, x1) ~ π, a coupling of g#ρ0 and ρ1: random pairing (the batch as
drawn, i.e. independent) or minibatch OT (`gcflow_jax.math.couplings`). The
marginal velocity v_t(x) = E_π[∂_t J_t | J_t = x] generates a flow ψ_{s→t}
with (ψ_{0→1})#(g#ρ0) = ρ1.

What f_t predicts. f_t := ψ_{t→1}: the *data-side endpoint* (t = 1) of the
trajectory through x at time t, so the boundary condition is f_1 = id. We
impose it exactly with

    f_t(x) = x + (1 − t) F_θ(x, t),                               (P)

F_θ the network (`models.make_network`; its last layer is zero-initialised,
so f starts as the identity). f_0 = ψ_{0→1} is the transport map of the
flow: it sends each generated point g(z) to where the flow takes it in ρ1.

Why f_0 = id when g#ρ0 = ρ1. Let the marginals agree and the pairing rule be
symmetric (the law of (x0, x1) equals that of (x1, x0)): true for random
pairing of i.i.d. draws and for minibatch OT (the squared-Euclidean cost is
symmetric). Then J_{1−t}(x0, x1) = J_t(x1, x0) for the linear interpolant,
so v_{1−t}(x) = −v_t(x). Starting at t = 1/2, x ↦ ψ_{1/2→1/2+τ}(x) and
x ↦ ψ_{1/2→1/2−τ}(x) solve the same ODE d/dτ y = v_{1/2+τ}(y), hence
ψ_{1/2→1} = ψ_{1/2→0} and

    ψ_{0→1} = ψ_{1/2→1} ∘ ψ_{0→1/2} = ψ_{1/2→0} ∘ ψ_{0→1/2} = id.

(Example: ρ0' = ρ1 = N(μ, Σ) with random pairing: the marginal at t is
N(μ, σ_t² Σ), σ_t² = (1 − t)² + t², the flow is x ↦ μ + σ_t/σ_s (x − μ) and
f_0 = id since σ_0 = σ_1 = 1; `gaussian_consistency_fn` below.) Conversely,
if f_0 = id on the support of g#ρ0 then g#ρ0 = (f_0)#(g#ρ0) = ρ1: the
generator loss vanishes iff the distributions match (the paper's
Propositions 1-2). With the identity coupling x1 = x0 the velocity is 0 and
f_t = id for every t: both losses are exactly 0.

Losses (Eq. 12 / Eq. 18 of the paper), with targets f⁻, g⁻ held in
`extras` and never differentiated:

    L_f(θ_f) = E ‖f_t(x_t; θ_f) − sg f⁻_{t+Δt}(x_t + ∂_t J_t Δt)‖²      (C)
    L_g(θ_g) = E ‖g(z; θ_g) − sg f⁻_0(x̂0)‖²                              (G)

with x_t = J_t(x̂0, x1), x̂0 = sg g⁻(z) (`x0_source='target'`) or sg g(z)
('online'). The target of (C) is taken at the *later* time t + Δt, nearer the
boundary t = 1 where f is exact (as in Song et al.'s consistency training);
x_t + ∂_t J_t Δt is the Euler step along the conditional path (= x_{t+Δt}
exactly for the linear interpolant). Its minimiser over f is the consistency
function ψ_{t→1} up to O(Δt) (for any smooth f, (C) is O(Δt²); at the exact
f its leading term is Δt² E‖∂_x f (∂_t J − v_t)‖², the conditional velocity
noise, which vanishes for deterministic couplings). The gradient of (G),
2(g(z) − f⁻_0(x̂0)), moves every generated point to the endpoint of its flow
line: a fixed-point iteration g ← f_0 ∘ g that stops where f_0 = id.
`generator_grad='through'` instead differentiates the literal
‖g(z) − f⁻_0(g(z))‖² through f⁻_0's input as well (gradient
2(I − ∂f⁻_0)ᵀ(g − f⁻_0(g)), which is weak where f_0 ≈ id).

Per-example losses are means over the N data dimensions (‖·‖²/N, so
learning rates do not depend on N); the logged 'gcm/f0_identity_err' is the
un-normalised mean ‖g(z) − f_0(g(z))‖² with the online f and g.

Optimisation. The trainer differentiates L_f + L_g (each term reaches only
its own network) and applies one optimizer; `make_optimizer_wrapper` splits
it with `optax.partition` into an f branch and a g branch. In the
'alternating' schedule each branch sits behind a `phase_gate`: at update k,
f is active iff k mod (T_f + T_g) < T_f, g otherwise (paper: 50/20). An
inactive branch returns zero updates and keeps its inner state (Adam
moments, schedule counts) untouched, so an alternating run is exactly T_f
Adam steps on f, then T_g on g. 'joint' uses the same code without gates.
Target copies are updated by `update_extras`, each by its own rule: EMA
(f⁻ ← d f⁻ + (1 − d) f; d = 0 is iCT's stop-gradient teacher) or hard syncs
(every `sync_every` steps; 0 = at phase boundaries: f⁻ ← f when an f phase
ends, g⁻ ← g when a g phase ends). Defaults: f⁻ = sg f (EMA, d = 0) and g⁻
synced at phase boundaries. The latter matters: during a g phase f is
frozen, so a target f⁻_0(g(z)) recomputed from the *moving* g would keep
pushing g past f_0 ∘ g_start (towards f_0 ∘ f_0 ∘ …); with g⁻ frozen over the
phase, g regresses onto the fixed points f⁻_0(g⁻(z)): one damped step of
g ← f_0 ∘ g per cycle. A hard-synced f⁻, by contrast, would move the
consistency target back by only Δt per cycle.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from gcflow_jax.math import couplings
from gcflow_jax.math import interpolants as interp_lib
from gcflow_jax.methods.alternation import is_f_phase
from gcflow_jax.methods.alternation import make_optimizer_wrapper
from gcflow_jax.methods.alternation import phase_gate
from gcflow_jax.methods.alternation import PhaseGateState
from gcflow_jax.methods.alternation import SCHEDULES
from gcflow_jax.methods.base import Method
from gcflow_jax.models import generators as gen_lib
from gcflow_jax.models import make_network

__all__ = [
    "SCHEDULES", "COUPLINGS", "TARGET_UPDATES", "TIME_DISTS",
    "GENERATOR_GRADS", "X0_SOURCES", "EVAL_PARAMS",
    "is_f_phase", "PhaseGateState", "phase_gate", "make_optimizer_wrapper",
    "make_consistency_fn", "sample_times", "pair", "consistency_loss",
    "generator_loss", "make_gcm_loss", "make_sample_fn",
    "make_update_extras", "gaussian_consistency_fn", "from_config",
    "validate_config", "needs_teacher",
]

COUPLINGS = ("random", "ot")
TARGET_UPDATES = ("ema", "sync")
TIME_DISTS = ("uniform", "discrete", "logit_normal")
GENERATOR_GRADS = ("stop", "through")
X0_SOURCES = ("target", "online")
EVAL_PARAMS = ("online", "ema")

# f(params_f, x [B, ...], t [B], key=None) -> [B, ...]
ConsistencyFn = Callable[..., jax.Array]


def _bcast(t: jax.Array, x: jax.Array) -> jax.Array:
  """[B] -> [B, 1, ..., 1] to broadcast against x [B, ...]."""
  return t.reshape(t.shape + (1,) * (x.ndim - t.ndim)).astype(x.dtype)


def _sq_mean(a: jax.Array) -> jax.Array:
  """Per-example mean of squares over all non-batch axes: [B, ...] -> [B]."""
  return jnp.mean(jnp.square(a).reshape(a.shape[0], -1), axis=1)


def _sq_sum(a: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(a).reshape(a.shape[0], -1), axis=1)


# ---------------------------------------------------------------------------
# The consistency model, times, pairing.
# ---------------------------------------------------------------------------


def make_consistency_fn(net_apply: Callable[..., jax.Array]) -> ConsistencyFn:
  """f_t(x) = x + (1 − t) F(x, t), eq. (P): f_1 = id exactly.

  Args:
    net_apply: `(params, x [B, ...], t [B], key=None) -> [B, ...]`, the raw
      network F.
  Returns:
    `f(params, x, t, key=None) -> [B, ...]` with t a scalar or [B].
  """

  def f(params, x, t, key=None):
    t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])
    out = net_apply(params, x, t, key=key)
    return x + _bcast(1.0 - t, x) * out.astype(x.dtype)

  return f


def sample_times(key: jax.Array, n: int, dist: str = "uniform",
                 dt: float = 0.01, logit_mean: float = 0.0,
                 logit_std: float = 1.0, dtype=jnp.float32) -> jax.Array:
  """Training times t ∈ [0, 1 − Δt] (so t + Δt ≤ 1), [n].

  'uniform': U[0, 1 − Δt]. 'discrete': t = kΔt, k ~ U{0, …, K − 1} with
  K = round(1/Δt) (t = 0 is drawn exactly, which the generator loss uses).
  'logit_normal': (1 − Δt)·sigmoid(m + s·ε).
  """
  if dist == "uniform":
    return jax.random.uniform(key, (n,), dtype) * (1.0 - dt)
  if dist == "discrete":
    k = jax.random.randint(key, (n,), 0, int(round(1.0 / dt)))
    return k.astype(dtype) * dt
  if dist == "logit_normal":
    e = jax.random.normal(key, (n,), dtype)
    return (1.0 - dt) * jax.nn.sigmoid(logit_mean + logit_std * e)
  raise ValueError(f"gcm.t_dist={dist!r} is not one of {TIME_DISTS}")


def pair(x0: jax.Array, x1: jax.Array, coupling: str = "random", *,
         ot_solver: str = "exact", ot_epsilon: float = 0.05,
         ot_rounding: str = "lsa") -> jax.Array:
  """Reorders x1 [B, ...] so that (x0_i, x1_i) are the coupled pairs.

  'random': x1 as drawn (independent of x0: a random pairing). 'ot':
  minibatch OT on the squared Euclidean cost through
  `gcflow_jax.math.couplings.ot_permutation` (exact assignment on the host,
  or ott-jax Sinkhorn then rounding). No gradient flows through the choice.
  """
  if coupling == "random":
    return x1
  if coupling == "ot":
    perm = couplings.ot_permutation(
        jax.lax.stop_gradient(x0), jax.lax.stop_gradient(x1), ot_solver,
        epsilon=ot_epsilon, rounding=ot_rounding)
    return x1[perm]
  raise ValueError(f"gcm.coupling={coupling!r} is not one of {COUPLINGS}")


# ---------------------------------------------------------------------------
# Losses.
# ---------------------------------------------------------------------------


def consistency_loss(f: ConsistencyFn, params_f, params_f_target,
                     x0: jax.Array, x1: jax.Array, t: jax.Array, dt: float,
                     interp: interp_lib.Interpolant,
                     key: Optional[jax.Array] = None) -> jax.Array:
  """Eq. (C): ‖f_t(x_t) − sg f⁻_{t+Δt}(x_t + ∂_t J_t Δt)‖² / N, [B].

  Args:
    f: consistency function (`make_consistency_fn`).
    params_f: online parameters (differentiated).
    params_f_target: target copy f⁻ (never differentiated).
    x0: [B, ...] generator samples (t = 0), already paired with x1.
    x1: [B, ...] data (t = 1).
    t: [B] times in [0, 1 − Δt].
    dt: Δt > 0.
    interp: the interpolant J.
    key: dropout key shared by both evaluations (the same mask, as in iCT),
      or None.
  Returns:
    [B] per-example loss.
  """
  x_t = interp.x_t(x0, x1, t)
  # Euler step along the conditional path (exact for the linear J).
  x_next = x_t + dt * interp.dx_t(x0, x1, t)
  # The target is a regression constant: no gradient into f⁻ (it lives in
  # extras anyway) nor into x0/x1.
  target = jax.lax.stop_gradient(
      f(params_f_target, x_next, t + dt, key=key))
  return _sq_mean(f(params_f, x_t, t, key=key) - target)


def generator_loss(f: ConsistencyFn, params_f_target, g_z: jax.Array,
                   x0_ref: jax.Array, through: bool = False) -> jax.Array:
  """Eq. (G): ‖g(z) − f⁻_0(·)‖² / N, [B].

  Args:
    f: consistency function.
    params_f_target: f⁻ (not differentiated).
    g_z: [B, ...] online generator output g(z; θ_g) (differentiated).
    x0_ref: [B, ...] the point fed to f⁻_0 when `through` is False
      (sg g⁻(z) or sg g(z)).
    through: differentiate ‖g(z) − f⁻_0(g(z))‖² through f⁻_0's input too.
  Returns:
    [B] per-example loss.
  """
  zero = jnp.zeros(g_z.shape[:1], g_z.dtype)
  params_f_target = jax.lax.stop_gradient(params_f_target)
  if through:
    return _sq_mean(g_z - f(params_f_target, g_z, zero))
  # Fixed-point target: the endpoint of g's sample along the flow, a constant.
  target = jax.lax.stop_gradient(f(params_f_target, x0_ref, zero))
  return _sq_mean(g_z - target)


def make_gcm_loss(f: ConsistencyFn, g_apply: Callable[..., jax.Array],
                  interp: interp_lib.Interpolant, latent_dim: int, *,
                  dt: float = 0.01, t_dist: str = "uniform",
                  logit_mean: float = 0.0, logit_std: float = 1.0,
                  coupling: str = "random", ot_solver: str = "exact",
                  ot_epsilon: float = 0.05, ot_rounding: str = "lsa",
                  schedule: str = "alternating", t_f: int = 50,
                  t_g: int = 20, generator_grad: str = "stop",
                  x0_source: str = "target", consistency_weight: float = 1.0,
                  generator_weight: float = 1.0, dropout: bool = False,
                  phase_only: bool = True):
  """Returns loss_fn(params, batch, key, *, step, ema_params, extras).

  params = {'f': θ_f, 'g': θ_g}; extras = {'f_target', 'g_target'}.
  Per-example loss w_f L_f + w_g L_g, [B]; L_f reaches only θ_f and L_g only
  θ_g (everything else under stop_gradient), so the optimizer gate alone
  decides which network moves. Random streams: k_z (z ~ N(0, I_D), [B, D]),
  k_pair (unused by the current couplings; reserved), k_t (times), k_drop
  (f's dropout, one mask shared by f and f⁻).

  Phase-only computation (`phase_only`, 'alternating' schedule). Under
  the gate an f step only moves θ_f and a g step only θ_g, and L_f has no
  θ_g gradient nor L_g a θ_f one; so an f step needs only L_f (pairing,
  f forward/backward, f⁻ at t + Δt) and a g step only L_g (g forward/
  backward, f⁻_0). `jax.lax.cond` on the traced phase runs just that branch
  (one compiled step, no recompiles): the pairing (OT: the Sinkhorn or host
  assignment) and L_f are skipped on g steps, g's backward and f⁻_0 on f
  steps. The per-example loss is then w_f L_f on f steps and w_g L_g on g
  steps: the same gradients for the network that moves, hence the same
  training trajectory as `phase_only=False` (which computes both terms on
  every step, as 'joint' always does).

  aux: 'loss/consistency', 'loss/generator' (batch means of L_f, L_g),
  'gcm/f0_identity_err' (mean ‖g(z) − f_0(g(z))‖², online f and g, every
  step), 'gcm/pair_cost' (mean ‖x1 − x0‖² of the pairs), 'gcm/phase_f' (1
  when f is updated at this step). With `phase_only`, 'loss/consistency'
  and 'gcm/pair_cost' are 0 on g steps and 'loss/generator' 0 on f steps
  (a window mean divided by the mean of 'gcm/phase_f', resp. of
  1 − 'gcm/phase_f', is the mean over the phase's steps).
  """
  for name, value, allowed in (("t_dist", t_dist, TIME_DISTS),
                               ("coupling", coupling, COUPLINGS),
                               ("schedule", schedule, SCHEDULES),
                               ("generator_grad", generator_grad,
                                GENERATOR_GRADS),
                               ("x0_source", x0_source, X0_SOURCES)):
    if value not in allowed:
      raise ValueError(f"gcm.{name}={value!r} is not one of {allowed}")
  if not 0.0 < dt < 1.0:
    raise ValueError(f"gcm.dt={dt} must be in (0, 1)")

  def loss_fn(params, batch, key, *, step=0, ema_params=None, extras=None):
    del ema_params
    x1 = batch["x"]
    b = x1.shape[0]
    k_z, k_pair, k_t, k_drop = jax.random.split(key, 4)
    del key, k_pair
    z = jax.random.normal(k_z, (b, latent_dim), x1.dtype)
    zero_t = jnp.zeros((b,), x1.dtype)
    zeros_b = jnp.zeros((b,), x1.dtype)

    def source(g_z):
      # The consistency loss trains f only: its source samples are constants.
      if x0_source == "target":
        return jax.lax.stop_gradient(g_apply(extras["g_target"], z))
      return jax.lax.stop_gradient(g_z)

    def f0_err(g_z):
      g_sg = jax.lax.stop_gradient(g_z)
      return jnp.mean(_sq_sum(g_sg - f(jax.lax.stop_gradient(params["f"]),
                                       g_sg, zero_t)))

    def f_terms(x0):
      """L_f [B] and the mean pair cost."""
      x1p = pair(x0, x1, coupling, ot_solver=ot_solver,
                 ot_epsilon=ot_epsilon, ot_rounding=ot_rounding)
      t = sample_times(k_t, b, t_dist, dt, logit_mean, logit_std, x1.dtype)
      l_f = consistency_loss(f, params["f"], extras["f_target"], x0, x1p, t,
                             dt, interp, k_drop if dropout else None)
      return l_f, jnp.mean(_sq_sum(x1p - x0))

    def g_term(g_z, x0):
      return generator_loss(f, extras["f_target"], g_z, x0,
                            through=(generator_grad == "through"))

    def check(g_z):
      if g_z.shape != x1.shape:
        raise ValueError(f"generator output {g_z.shape} != data {x1.shape}")

    def both():
      g_z = g_apply(params["g"], z)
      check(g_z)
      x0 = source(g_z)
      l_f, pair_cost = f_terms(x0)
      l_g = g_term(g_z, x0)
      return (consistency_weight * l_f + generator_weight * l_g, l_f, l_g,
              pair_cost, f0_err(g_z))

    def f_step():
      # g is frozen: its output only feeds the diagnostic (no backward).
      g_z = g_apply(jax.lax.stop_gradient(params["g"]), z)
      check(g_z)
      l_f, pair_cost = f_terms(source(g_z))
      return consistency_weight * l_f, l_f, zeros_b, pair_cost, f0_err(g_z)

    def g_step():
      g_z = g_apply(params["g"], z)
      check(g_z)
      l_g = g_term(g_z, source(g_z))
      return (generator_weight * l_g, zeros_b, l_g,
              jnp.zeros((), x1.dtype), f0_err(g_z))

    if schedule == "alternating":
      is_f = is_f_phase(step, t_f, t_g)
      phase_f = is_f.astype(jnp.float32)
      if phase_only:
        out = jax.lax.cond(is_f, f_step, g_step)
      else:
        out = both()
    else:
      phase_f = jnp.ones((), jnp.float32)
      out = both()
    per_example, l_f, l_g, pair_cost, f0 = out
    aux = {"loss/consistency": jnp.mean(l_f),
           "loss/generator": jnp.mean(l_g),
           "gcm/f0_identity_err": f0,
           "gcm/pair_cost": pair_cost,
           "gcm/phase_f": phase_f}
    return per_example, aux

  return loss_fn


def make_sample_fn(g_apply: Callable[..., jax.Array], latent_dim: int):
  """sample_fn(params, key, num, steps, extras=None) -> g(z), [num, ...].

  One generator evaluation on z ~ N(0, I_D); `steps` is ignored (the
  generator is one-step by construction) and `extras` unused.
  """

  def sample_fn(params, key, num, steps=None, extras=None):
    del steps, extras
    z = jax.random.normal(key, (num, latent_dim))
    return g_apply(params["g"], z)

  return sample_fn


def make_update_extras(f_update: str = "ema", g_update: str = "sync", *,
                       f_decay: float = 0.0, g_decay: float = 0.0,
                       sync_every: int = 0, t_f: int = 50, t_g: int = 20,
                       schedule: str = "alternating"):
  """update_extras(step, params, ema_params, extras) -> extras.

  `step` is the post-increment step (updates done). Each target copy is
  updated by its own rule:
    'ema':  f⁻ ← d f⁻ + (1 − d) f every step (d = 0: the online weights).
    'sync': hard copy f⁻ ← f when step % sync_every = 0; with sync_every =
      0, at phase boundaries: f⁻ when an f phase has just ended (step mod
      (T_f + T_g) = T_f), g⁻ when a g phase has (step mod (T_f + T_g) = 0);
      under the 'joint' schedule, sync_every = 0 means every T_f + T_g steps.
  The same rules for g⁻ with g.
  """
  for name, value in (("f_target_update", f_update),
                      ("g_target_update", g_update)):
    if value not in TARGET_UPDATES:
      raise ValueError(f"gcm.{name}={value!r} is not one of "
                       f"{TARGET_UPDATES}")
  period = t_f + t_g

  def ema(target, online, d):
    return jax.tree_util.tree_map(
        lambda a, p: (d * a + (1.0 - d) * p).astype(a.dtype), target, online)

  def sync(target, online, now):
    return jax.tree_util.tree_map(
        lambda a, p: jnp.where(now, p.astype(a.dtype), a), target, online)

  def sync_now(step, net):
    if sync_every > 0:
      return (step % sync_every) == 0
    if schedule == "joint":
      return (step % period) == 0
    return (step % period) == (t_f if net == "f" else 0)

  def update_extras(step, params, ema_params, extras):
    del ema_params
    new = dict(extras)
    for net, rule, decay in (("f", f_update, f_decay),
                             ("g", g_update, g_decay)):
      name = f"{net}_target"
      if rule == "ema":
        new[name] = ema(extras[name], params[net], decay)
      else:
        new[name] = sync(extras[name], params[net], sync_now(step, net))
    return new

  return update_extras


def gaussian_consistency_fn(mu: jax.Array, sigma0: float = 1.0):
  """Exact F of eq. (P) for N(μ, c²Σ) → N(μ, Σ) under random pairing.

  c = `sigma0`. For x0 ~ N(μ, c²Σ) and x1 ~ N(μ, Σ) independent, J_t has
  law N(μ, σ_t²Σ) with σ_t² = (1 − t)² c² + t², the marginal velocity is
  (σ̇_t/σ_t)(x − μ) and ψ_{t→1}(x) = μ + (x − μ)/σ_t: f_0(x) = μ + (x − μ)/c,
  the identity when c = 1 (matched). For tests and as a reference;
  returns the network `net(params, x, t, key=None)` (params unused).
  """

  def net(params, x, t, key=None):
    del params, key
    t = _bcast(t, x)
    s_t = jnp.sqrt((1.0 - t) ** 2 * sigma0 ** 2 + t ** 2)
    # F = (f_t(x) − x)/(1 − t); finite as t → 1 (σ_t − 1 = O(1 − t)).
    return (x - mu) * (1.0 / s_t - 1.0) / (1.0 - t)

  return net


# ---------------------------------------------------------------------------
# Config adapters.
# ---------------------------------------------------------------------------


def validate_config(config) -> None:
  c = config.gcm
  for name, allowed in (("schedule", SCHEDULES), ("coupling", COUPLINGS),
                        ("f_target_update", TARGET_UPDATES),
                        ("g_target_update", TARGET_UPDATES),
                        ("t_dist", TIME_DISTS),
                        ("generator_grad", GENERATOR_GRADS),
                        ("x0_source", X0_SOURCES),
                        ("eval_params", EVAL_PARAMS),
                        ("generator", gen_lib.GENERATORS),
                        ("affine_structure", gen_lib.AFFINE_STRUCTURES),
                        ("generator_output", gen_lib.OUTPUT_ACTIVATIONS),
                        ("ot_solver", couplings.OT_SOLVERS),
                        ("ot_rounding", couplings.OT_ROUNDINGS)):
    value = c[name]
    if value not in allowed:
      raise ValueError(f"gcm.{name}={value!r} is not one of {allowed}")
  if c.latent_dim < 1:
    raise ValueError(f"gcm.latent_dim={c.latent_dim} must be >= 1")
  if not 0.0 < c.dt < 1.0:
    raise ValueError(f"gcm.dt={c.dt} must be in (0, 1)")
  if c.t_dist == "discrete" and abs(round(1.0 / c.dt) * c.dt - 1.0) > 1e-6:
    raise ValueError(f"gcm.t_dist='discrete' needs 1/gcm.dt to be an "
                     f"integer, got dt={c.dt}")
  if c.t_f < 1 or c.t_g < 1:
    raise ValueError(f"gcm.t_f={c.t_f} and gcm.t_g={c.t_g} must be >= 1")
  for name in ("f_target_decay", "g_target_decay"):
    if not 0.0 <= c[name] < 1.0:
      raise ValueError(f"gcm.{name}={c[name]} must be in [0, 1)")
  if c.sync_every < 0:
    raise ValueError(f"gcm.sync_every={c.sync_every} must be >= 0")
  if c.logit_std <= 0:
    raise ValueError(f"gcm.logit_std={c.logit_std} must be > 0")
  if c.g_lr_mult <= 0:
    raise ValueError(f"gcm.g_lr_mult={c.g_lr_mult} must be > 0")
  if c.consistency_weight <= 0 or c.generator_weight <= 0:
    raise ValueError("gcm.consistency_weight and gcm.generator_weight must "
                     "be > 0")
  if config.data.name in ("gaussian",) and c.generator in (
      "affine", "linear") and c.affine_structure == "diagonal" and (
          c.latent_dim != config.data.dim):
    raise ValueError(f"gcm.affine_structure='diagonal' needs gcm.latent_dim "
                     f"== data.dim ({config.data.dim}), got {c.latent_dim}")


def needs_teacher(config) -> bool:
  del config
  return False


def from_config(config, data_shape, teacher=None) -> Method:
  """Builds the 'gcm' Method (params {'f', 'g'}, extras {'f_target',
  'g_target'})."""
  del teacher
  c = config.gcm
  data_shape = tuple(data_shape)
  _, net_apply, f_init = make_network(config.model, data_shape, 1)
  f = make_consistency_fn(net_apply)
  _, g_apply, g_init = gen_lib.make_generator(
      c.generator, data_shape, c.latent_dim, structure=c.affine_structure,
      learn_scale=c.orthogonal_scale, hidden=tuple(c.generator_hidden),
      channels=tuple(c.generator_channels), output=c.generator_output)
  interp = interp_lib.get(config.interp.name)
  dropout = config.model.dropout
  has_dropout = (any(float(d) > 0 for d in dropout)
                 if isinstance(dropout, (list, tuple)) else float(dropout) > 0)

  def init(key, example_batch):
    del example_batch
    k_f, k_g = jax.random.split(key)
    params = {"f": f_init(k_f), "g": g_init(k_g)}
    extras = {"f_target": jax.tree_util.tree_map(jnp.array, params["f"]),
              "g_target": jax.tree_util.tree_map(jnp.array, params["g"])}
    return params, extras

  loss_fn = make_gcm_loss(
      f, g_apply, interp, c.latent_dim, dt=c.dt, t_dist=c.t_dist,
      logit_mean=c.logit_mean, logit_std=c.logit_std, coupling=c.coupling,
      ot_solver=c.ot_solver, ot_epsilon=c.ot_epsilon,
      ot_rounding=c.ot_rounding, schedule=c.schedule, t_f=c.t_f, t_g=c.t_g,
      generator_grad=c.generator_grad, x0_source=c.x0_source,
      consistency_weight=c.consistency_weight,
      generator_weight=c.generator_weight, dropout=has_dropout,
      phase_only=bool(c.phase_only))

  if c.eval_params == "online":
    eval_params = lambda params, ema_params: params
  else:
    eval_params = lambda params, ema_params: ema_params

  return Method(
      name="gcm",
      init=init,
      loss_fn=loss_fn,
      sample_fn=make_sample_fn(g_apply, c.latent_dim),
      update_extras=make_update_extras(
          c.f_target_update, c.g_target_update, f_decay=c.f_target_decay,
          g_decay=c.g_target_decay, sync_every=c.sync_every, t_f=c.t_f,
          t_g=c.t_g, schedule=c.schedule),
      wrap_optimizer=make_optimizer_wrapper(c.t_f, c.t_g, c.schedule,
                                            c.g_lr_mult),
      eval_params=eval_params,
      default_sample_steps=1,
      info={"generator": c.generator, "latent_dim": c.latent_dim,
            "schedule": c.schedule, "coupling": c.coupling})
