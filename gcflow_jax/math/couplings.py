"""Data–noise couplings: independent, minibatch OT, generator-induced, mixing.

Pure JAX (+ ott-jax for Sinkhorn, scipy on the host for exact assignment).
Conventions: `x` [B, ...] is data, `z` [B, ...] standard Gaussian noise, and a
coupling returns *how to pair them* (a permutation of the noise, or new data
endpoints), never a model.

* Independent coupling (IC): (x_i, z_i) as drawn.
* Minibatch OT (Pooladian et al., 2023; Dou et al., 2024): pair x_i with
  z_{π(i)}, π minimising Σ_i ‖x_i - z_{π(i)}‖² over permutations of the batch.
  Because ‖x_i‖² and ‖z_j‖² sum to constants over any permutation, the same π
  minimises Σ_i ‖x_i - σ z_{π(i)}‖² for every σ > 0: pairing data with the
  unit noise *before* noising is the OT pairing at every noise level.
  - 'exact': `scipy.optimize.linear_sum_assignment` through
    `jax.pure_callback`. It runs on the **host** (the cost matrix is copied
    off the accelerator and the permutation back: 1 MiB at B = 512); it
    cannot be differentiated (nothing needs to be).
  - 'sinkhorn': ott-jax Sinkhorn on a dense `Geometry(cost_matrix=C)` (built
    once; `PointCloud` would recompute costs each iteration), then the
    entropic plan P is rounded to a hard permutation, either on the host by
    `linear_sum_assignment(-P)` ('lsa', near-optimal), or on the device by
    greedy rounding ('greedy': repeatedly take the largest remaining entry of
    P, then remove its row and column; an exact permutation, fully in XLA).
    Row-argmax of P is *not* a permutation and is not offered.
  Where the pairing runs. 'sinkhorn' + 'greedy' is pure XLA: it runs on the
  accelerator inside the compiled step, with no host round trip. 'exact'
  and the 'lsa' rounding call the host through `jax.pure_callback` every
  step: the step waits for the [B, B] matrix to reach the host, scipy's
  assignment (tens of ms at B = 512 on CPU) and the permutation's return,
  and XLA cannot overlap that with the network (benchmarks/ot_cost.py
  measures the time and the share of the step).
  Several devices and hosts. The loss sees the *global* batch (the trainer
  jits the step over a mesh with the batch sharded on 'data'), so the cost
  matrix is the global [B, B] one and the pairing is minibatch OT over the
  global batch, whatever the number of devices or hosts: the same π as on
  one device (checked for the jitted pairing alone on 8 host-platform
  devices at small B; on several CPU devices a callback that reads a [B, B]
  operand hangs in XLA:CPU's collective rendezvous from B ≈ 362 (jax
  0.10.2; reproduced outside the trainer), so `config_utils.validate`
  refuses 'exact' and 'lsa' there), not a per-device or
  per-host OT of each shard (as a data-parallel PyTorch loop would compute,
  with batches of B / #devices). The device path shards the Sinkhorn
  matmuls and gathers for the rounding. A `pure_callback` has maximal
  sharding: XLA gathers its operand onto device 0 and runs the callback
  once, on the host process that owns device 0; in a multi-process run every
  other host waits for it each step and receives π over the interconnect
  (not measured here: single-process only).
* Generator-induced coupling (GC, Issenhuth et al. 2024, Eq. 13): the data
  endpoint is replaced by x̂ = sg(f(x + σ_i z, σ_i)) and paired with the same
  z. Mixing (Sec. 5.3) replaces a fixed number ⌊μB⌋ of the batch (see
  `gc_count`) so the endpoint network only runs on those samples.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
# Imported here, never inside the host callback: an import inside a
# `pure_callback` waits for Python's import lock while it occupies an XLA
# CPU thread; a thread holding that lock (e.g. the trainer's prefetch thread
# tracing a jitted batch sampler) then waits for the same XLA thread, and
# the run hangs (seen with the trainer pinned to one core).
from scipy.optimize import linear_sum_assignment

__all__ = [
    "COUPLINGS",
    "OT_SOLVERS",
    "OT_ROUNDINGS",
    "GC_SOURCES",
    "squared_euclidean_cost",
    "pairing_cost",
    "exact_assignment",
    "sinkhorn_plan",
    "plan_to_permutation",
    "greedy_permutation",
    "ot_permutation",
    "gc_count",
    "generator_induced_endpoints",
    "gc_mask",
    "mix_endpoints",
]

COUPLINGS = ("ic", "ot", "gc")
OT_SOLVERS = ("exact", "sinkhorn")
OT_ROUNDINGS = ("lsa", "greedy")
GC_SOURCES = ("ema", "online", "frozen")


def _flat(x: jax.Array) -> jax.Array:
  return x.reshape(x.shape[0], -1)


def squared_euclidean_cost(x: jax.Array, y: jax.Array) -> jax.Array:
  """C_ij = ‖x_i - y_j‖² for x [B, ...], y [B', ...] -> [B, B'].

  Uses ‖x‖² + ‖y‖² - 2 x·yᵀ (one matmul) and clamps round-off below 0.
  """
  xf, yf = _flat(x), _flat(y)
  xx = jnp.sum(xf * xf, axis=-1)
  yy = jnp.sum(yf * yf, axis=-1)
  xy = jnp.matmul(xf, yf.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.maximum(xx[:, None] + yy[None, :] - 2.0 * xy, 0.0)


def pairing_cost(x: jax.Array, z: jax.Array,
                 perm: Optional[jax.Array] = None) -> jax.Array:
  """Mean ‖x_i - z_{π(i)}‖² of a pairing (identity when perm is None)."""
  if perm is not None:
    z = z[perm]
  return jnp.mean(jnp.sum(_flat(x - z) ** 2, axis=-1))


# --------------------------------------------------------------------------
# Exact assignment (host).
# --------------------------------------------------------------------------


def _lsa_host(cost: np.ndarray) -> np.ndarray:
  cost = np.asarray(cost, dtype=np.float64)
  rows, cols = linear_sum_assignment(cost)
  perm = np.empty(cost.shape[0], dtype=np.int32)
  perm[rows] = cols
  return perm


def exact_assignment(cost: jax.Array) -> jax.Array:
  """Permutation π minimising Σ_i C_{i π(i)} (Hungarian / LAPJV, on host).

  Runs scipy's `linear_sum_assignment` through `jax.pure_callback`, so it can
  be called inside `jax.jit` on any backend; the [B, B] cost is transferred
  to the host and the [B] permutation back.

  Args:
    cost: [B, B] cost matrix.
  Returns:
    [B] int32 permutation: row i is matched to column π(i).
  """
  if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
    raise ValueError(f"exact_assignment needs a square [B, B] cost, got "
                     f"{cost.shape}")
  out = jax.ShapeDtypeStruct((cost.shape[0],), jnp.int32)
  return jax.pure_callback(_lsa_host, out, cost, vmap_method="sequential")


# --------------------------------------------------------------------------
# Sinkhorn (device) and rounding.
# --------------------------------------------------------------------------


def sinkhorn_plan(cost: jax.Array, epsilon: float = 0.05,
                  relative_epsilon: Optional[str] = "std",
                  threshold: float = 1e-3, max_iterations: int = 2000
                  ) -> jax.Array:
  """Entropic OT plan between two uniform measures of size B (ott-jax).

  Args:
    cost: [B, B] cost matrix (a dense `Geometry` is built once from it).
    epsilon: entropic regularisation; relative to the cost's std (ott's
      default convention) when `relative_epsilon='std'`, or 'mean', or
      absolute when None.
    threshold: Sinkhorn's marginal-error stopping threshold.
    max_iterations: iteration cap (static).
  Returns:
    [B, B] plan P with row and column sums ≈ 1/B.
  """
  from ott.geometry import geometry  # pylint: disable=g-import-not-at-top
  from ott.problems.linear import linear_problem  # pylint: disable=g-import-not-at-top
  from ott.solvers.linear import sinkhorn  # pylint: disable=g-import-not-at-top
  geom = geometry.Geometry(cost_matrix=cost, epsilon=epsilon,
                           relative_epsilon=relative_epsilon)
  prob = linear_problem.LinearProblem(geom)
  solver = sinkhorn.Sinkhorn(threshold=threshold,
                             max_iterations=max_iterations)
  return solver(prob).matrix


def greedy_permutation(score: jax.Array) -> jax.Array:
  """Greedy hard assignment maximising a score, fully on device.

  The greedy rule: repeatedly take the largest remaining entry (i, j), set
  π(i) = j and remove row i and column j; always a valid permutation.
  Computed in rounds of *mutual best* pairs: among the remaining rows and
  columns, match every row i whose best column j has i as its best row.
  Such an (i, j) is the largest remaining entry of both its row and its
  column, so the sequential greedy also matches it (nothing can remove row
  i or column j before (i, j) is the largest remaining entry); the rounds
  therefore give exactly the greedy permutation (ties broken towards lower
  indices, as a flat argmax would). Every round matches at least one pair
  (the first row holding the remaining maximum and its first column
  holding it), and for a near-permutation plan (Sinkhorn at small ε)
  almost all rows in the first rounds: a few O(B²) vectorised rounds
  instead of B sequential ones.

  Args:
    score: [B, B] (e.g. a transport plan).
  Returns:
    [B] int32 permutation.
  """
  b = score.shape[0]
  neg = jnp.array(-jnp.inf, score.dtype)
  idx = jnp.arange(b, dtype=jnp.int32)

  def cond(carry):
    _, row_done, _ = carry
    return jnp.logical_not(jnp.all(row_done))

  def body(carry):
    perm, row_done, col_done = carry
    live = jnp.where(row_done[:, None] | col_done[None, :], neg, score)
    best_col = jnp.argmax(live, axis=1).astype(jnp.int32)   # [B]
    best_row = jnp.argmax(live, axis=0).astype(jnp.int32)   # [B]
    match = jnp.logical_not(row_done) & (best_row[best_col] == idx)
    perm = jnp.where(match, best_col, perm)
    col_hit = jnp.zeros((b,), bool).at[best_col].max(match)
    return perm, row_done | match, col_done | col_hit

  perm, _, _ = jax.lax.while_loop(
      cond, body, (jnp.zeros((b,), jnp.int32), jnp.zeros((b,), bool),
                   jnp.zeros((b,), bool)))
  return perm


def plan_to_permutation(plan: jax.Array, rounding: str = "lsa") -> jax.Array:
  """Rounds a (soft) transport plan to a hard permutation.

  Args:
    plan: [B, B] non-negative plan.
    rounding: 'lsa' (host `linear_sum_assignment(-P)`: the permutation with
      the most plan mass) or 'greedy' (device, `greedy_permutation`).
  Returns:
    [B] int32 permutation.
  """
  if rounding == "lsa":
    return exact_assignment(-plan)
  if rounding == "greedy":
    return greedy_permutation(plan)
  raise ValueError(f"rounding={rounding!r} is not one of {OT_ROUNDINGS}")


def ot_permutation(x: jax.Array, z: jax.Array, solver: str = "exact", *,
                   epsilon: float = 0.05, rounding: str = "lsa",
                   threshold: float = 1e-3, max_iterations: int = 2000
                   ) -> jax.Array:
  """Minibatch-OT pairing of data x [B, ...] with noise z [B, ...].

  Args:
    x, z: data and noise batches of the same shape.
    solver: 'exact' (host assignment on the squared Euclidean cost) or
      'sinkhorn' (ott-jax plan, then `rounding`).
    epsilon, threshold, max_iterations: Sinkhorn settings (relative-to-std ε).
    rounding: 'lsa' or 'greedy' (Sinkhorn only).
  Returns:
    [B] int32 π such that (x_i, z_{π(i)}) are paired: use `z[π]`.
  """
  if x.shape != z.shape:
    raise ValueError(f"x {x.shape} and z {z.shape} must have the same shape")
  # The pairing is a discrete choice: no gradient flows through it.
  cost = jax.lax.stop_gradient(squared_euclidean_cost(x, z))
  if solver == "exact":
    return exact_assignment(cost)
  if solver == "sinkhorn":
    plan = sinkhorn_plan(cost, epsilon=epsilon, threshold=threshold,
                         max_iterations=max_iterations)
    return plan_to_permutation(plan, rounding)
  raise ValueError(f"ot solver={solver!r} is not one of {OT_SOLVERS}")


# --------------------------------------------------------------------------
# Generator-induced coupling and mixing.
# --------------------------------------------------------------------------


def gc_count(mu: float, batch_size: int) -> int:
  """Number of GC samples per batch, ⌊μB⌋ (static).

  Why a fixed count matches the paper's per-sample mixing. Published GC
  draws, for each example independently, GC with probability μ (else IC), so
  the number of GC samples is Binomial(B, μ). Here exactly m = ⌊μB⌋ of the B
  examples are GC. The examples of a batch are exchangeable (shuffled data,
  i.i.d. noise and timesteps), so taking the first m is the same as taking a
  uniformly random subset of size m; each example is therefore GC with
  probability m/B (= μ whenever μB is an integer, e.g. μ = 0.5 and even B),
  independently of its data, noise and timestep. The mean loss, hence the
  expected gradient, is (m/B) E[ℓ_GC] + (1 - m/B) E[ℓ_IC], the same as with
  Bernoulli mixing; only the batch-to-batch fluctuation of the GC fraction
  (a stratification) is removed, which lowers the gradient variance. The
  endpoint network then runs on a static [m, ...] slice, so nothing
  recompiles and the extra forward cost is μ·F rather than F.
  """
  if not 0.0 <= mu <= 1.0:
    raise ValueError(f"gc mixing probability must be in [0, 1], got {mu}")
  return int(math.floor(mu * batch_size + 1e-9))


def generator_induced_endpoints(endpoint_fn: Callable[[jax.Array, jax.Array],
                                                      jax.Array],
                                x: jax.Array, z: jax.Array,
                                sigma: jax.Array) -> jax.Array:
  """x̂ = sg(f(x + σ z, σ)) (Issenhuth et al. 2024, Eq. 13).

  Args:
    endpoint_fn: `(x_sigma [B, ...], sigma [B]) -> [B, ...]` endpoint
      predictor (EMA / online consistency model, or a frozen one).
    x: [B, ...] data (the IC endpoint).
    z: [B, ...] noise; the *same* z is reused for the GC pair.
    sigma: [B] noise levels σ_i.
  Returns:
    [B, ...] predicted endpoints, with gradients stopped.
  """
  s = sigma.reshape(sigma.shape + (1,) * (x.ndim - 1)).astype(x.dtype)
  x_hat = endpoint_fn(x + s * z, sigma)
  # GC is a coupling, not part of the objective: the endpoint is a constant
  # for the consistency loss (Eq. 13's sg).
  return jax.lax.stop_gradient(x_hat)


def _groups(batch_size: int, num_gc: int):
  """(g, m/g, (B-m)/g) with g = gcd(B, m): the GC layout of a batch."""
  g = math.gcd(batch_size, num_gc)
  return g, num_gc // g, (batch_size - num_gc) // g


def gc_mask(batch_size: int, num_gc: int) -> np.ndarray:
  """[B] bool: which examples `mix_endpoints` makes GC (static).

  The batch is cut into g = gcd(B, m) contiguous groups of B/g examples and
  the first m/g of every group are GC (μ = 0.5: every even index). Spreading
  the GC examples evenly keeps the endpoint work balanced when the batch is
  sharded in contiguous blocks over devices (each device gets m/D of them
  whenever D divides g), instead of piling it on the first devices.
  """
  g, k, _ = _groups(batch_size, num_gc)
  mask = np.zeros((g, batch_size // max(g, 1)), bool)
  mask[:, :k] = True
  return mask.reshape(batch_size) if num_gc else np.zeros(batch_size, bool)


def _take_gc(a: jax.Array, num_gc: int):
  b = a.shape[0]
  g, k, r = _groups(b, num_gc)
  grouped = a.reshape((g, k + r) + a.shape[1:])
  return (grouped[:, :k].reshape((num_gc,) + a.shape[1:]),
          grouped[:, k:].reshape((b - num_gc,) + a.shape[1:]))


def _merge_gc(gc: jax.Array, rest: jax.Array) -> jax.Array:
  m, b = gc.shape[0], gc.shape[0] + rest.shape[0]
  g, k, r = _groups(b, m)
  out = jnp.concatenate([gc.reshape((g, k) + gc.shape[1:]),
                         rest.reshape((g, r) + rest.shape[1:])], axis=1)
  return out.reshape((b,) + gc.shape[1:])


def mix_endpoints(endpoint_fn: Callable[[jax.Array, jax.Array], jax.Array],
                  x: jax.Array, z: jax.Array, sigma: jax.Array,
                  num_gc: int) -> jax.Array:
  """Replaces `num_gc` data endpoints (those of `gc_mask`) by GC endpoints.

  The endpoint network only sees a static [num_gc, ...] slice (see
  `gc_count` for why a fixed count matches per-sample mixing in
  distribution, and `gc_mask` for which examples are chosen).

  Args:
    endpoint_fn: as in `generator_induced_endpoints`.
    x: [B, ...] data; z: [B, ...] noise; sigma: [B] levels σ_i.
    num_gc: static number m in [0, B].
  Returns:
    [B, ...] endpoints: x̂ on the `gc_mask` examples, x elsewhere.
  """
  b = x.shape[0]
  if not 0 <= num_gc <= b:
    raise ValueError(f"num_gc={num_gc} must be in [0, {b}]")
  if num_gc == 0:
    return x
  if num_gc == b:
    return generator_induced_endpoints(endpoint_fn, x, z, sigma).astype(
        x.dtype)
  x_gc, x_ic = _take_gc(x, num_gc)
  z_gc, _ = _take_gc(z, num_gc)
  s_gc, _ = _take_gc(sigma, num_gc)
  x_hat = generator_induced_endpoints(endpoint_fn, x_gc, z_gc, s_gc)
  return _merge_gc(x_hat.astype(x.dtype), x_ic)
