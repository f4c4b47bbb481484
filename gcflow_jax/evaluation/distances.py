"""Sample-based distances for low-dimensional (or flattened) data.

Every function takes two sample sets ``x [N, D]`` (model samples) and
``y [M, D]`` (reference / data samples) and returns a Python float. Images are
flattened by the caller (`gcflow_jax.evaluation.evaluate`).

Definitions (the exact conventions matter when comparing with papers):

* ``sinkhorn_divergence``: debiased entropic OT with squared Euclidean cost
  ``c(a, b) = ||a - b||^2`` and uniform weights (Feydy et al. 2019),
  ``S_eps(x, y) = OT_eps(x, y) - OT_eps(x, x) / 2 - OT_eps(y, y) / 2``, where
  ``OT_eps`` is ott-jax's ``reg_ot_cost`` (the entropic dual objective). It is
  ``>= 0``, ``= 0`` iff the sets coincide, tends to ``W2^2`` as ``eps -> 0``
  (units of squared distance, so *not* W2 itself) and to ``MMD`` with kernel
  ``-c`` as ``eps -> inf``. Default ``eps = 0.01 * mean ||y_i - y_j||^2`` over
  the reference (<= 1000 points): fixed by the reference, so every model scored
  against the same reference uses the same ``eps``.
* ``exact_w2``: ``W2 = sqrt(min_perm mean_i ||x_i - y_perm(i)||^2)`` for equal
  sizes (optimal assignment = optimal plan for uniform weights), solved with
  ``scipy.optimize.linear_sum_assignment``; the distance, not its square.
* ``mmd_rbf``: MMD^2 with the kernel ``sum_s exp(-||a - b||^2 / (2 s^2))``,
  unbiased U-statistic by default (may be slightly negative). Default
  bandwidths ``s = (0.5, 1, 2) * median ||y_i - y_j||`` over the reference
  (<= 1000 points).
* ``energy_distance``: ``2 E||X - Y|| - E||X - X'|| - E||Y - Y'||`` (the squared
  energy distance of Székely & Rizzo, without the ``nm / (n + m)`` factor),
  U-statistics by default. ``scipy.stats.energy_distance`` (1-D) returns the
  square root of the biased (V-statistic) version: ``unbiased=False`` and a
  ``sqrt`` reproduce it.
* ``kl_hist_2d``: ``KL(p_data || p_model) = sum_i p_i log((p_i + eps) / (q_i +
  eps))`` over the ``G x G`` cells of a fixed box plus one overflow cell for
  mass outside it; ``p``/``q`` are normalised counts of the reference / model
  samples, ``eps = 1e-10``; cells with ``p_i = 0`` contribute 0. Default box:
  the bounding box of the reference (the usual checkerboard setting passes
  ``box=(-4, 4)``).
* ``transport_cost``: ``mean_i ||x_i - y_i||^2`` of *paired* samples (e.g. noise
  and the sample it is mapped to; the cost of a coupling).
"""

from __future__ import annotations

import functools
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

__all__ = [
    "sinkhorn_divergence",
    "exact_w2",
    "mmd_rbf",
    "median_bandwidth",
    "default_sinkhorn_epsilon",
    "default_mmd_bandwidths",
    "energy_distance",
    "kl_hist_2d",
    "transport_cost",
    "W2_MAX_SAMPLES",
]

W2_MAX_SAMPLES = 5000
_DENSE_MAX_ENTRIES = 4096 * 4096


def _check_pair(x, y, name: str, *, min_n: int = 2,
                same_n: bool = False) -> tuple[np.ndarray, np.ndarray]:
  x, y = np.asarray(x), np.asarray(y)
  if x.ndim != 2 or y.ndim != 2:
    raise ValueError(f"{name}: x and y must be [N, D] vectors; got shapes "
                     f"{x.shape} and {y.shape} (flatten images first)")
  if x.shape[1] != y.shape[1]:
    raise ValueError(f"{name}: dimension mismatch, x {x.shape} vs y {y.shape}")
  if min(x.shape[0], y.shape[0]) < min_n:
    raise ValueError(f"{name}: needs at least {min_n} samples per set; got "
                     f"{x.shape[0]} and {y.shape[0]}")
  if same_n and x.shape[0] != y.shape[0]:
    raise ValueError(f"{name}: needs equal sample sizes; got {x.shape[0]} and "
                     f"{y.shape[0]} (subsample the larger set)")
  for n, a in (("x", x), ("y", y)):
    if not np.all(np.isfinite(a)):
      raise ValueError(f"{name}: {n} contains NaN or inf")
  return x, y


def _subset(y: np.ndarray, k: int = 1000) -> np.ndarray:
  # Deterministic, evenly spaced subset (no RNG: the bandwidth / eps must be
  # a function of the reference only).
  if y.shape[0] <= k:
    return y
  return y[np.linspace(0, y.shape[0] - 1, k).astype(np.int64)]


def _pairwise_sq(a: np.ndarray) -> np.ndarray:
  a = a.astype(np.float64)
  sq = np.sum(a * a, axis=1)
  return np.clip(sq[:, None] + sq[None, :] - 2 * a @ a.T, 0.0, None)


# --------------------------------------------------------------------------
# Sinkhorn divergence (ott-jax).
# --------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("dense", "max_iterations"))
def _sinkhorn_div(x, y, epsilon, threshold, dense: bool, max_iterations: int):
  # ott-jax is imported lazily: it adds ~4 s to `import gcflow_jax.evaluation`.
  # pylint: disable=g-import-not-at-top
  from ott.geometry import geometry
  from ott.geometry import pointcloud
  from ott.tools import sinkhorn_divergence as sd
  # pylint: enable=g-import-not-at-top
  kw = dict(solve_kwargs=dict(max_iterations=max_iterations,
                              threshold=threshold))
  if dense:
    # A dense cost matrix built once is 2-7x faster than PointCloud (STACK.md).
    def cost(a, b):
      d2 = (jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :]
            - 2 * jnp.dot(a, b.T, precision=jax.lax.Precision.HIGHEST))
      return jnp.maximum(d2, 0.0)
    div, out = sd.sinkhorn_divergence(
        geometry.Geometry, cost(x, y), cost(x, x), cost(y, y),
        epsilon=epsilon, **kw)
  else:
    div, out = sd.sinkhorn_divergence(
        pointcloud.PointCloud, x, y, epsilon=epsilon, batch_size=1024, **kw)
  return div, jnp.all(jnp.asarray(out.converged))


def default_sinkhorn_epsilon(y: np.ndarray,
                             relative_epsilon: float = 0.01) -> float:
  """``relative_epsilon * mean ||y_i - y_j||^2`` over (an even subset of) ``y``.

  The default of `sinkhorn_divergence`, a function of the reference alone
  (at most 1000 evenly spaced points, all pairs including ``i = j``).
  """
  ys = _subset(np.asarray(y))
  eps = relative_epsilon * float(np.mean(_pairwise_sq(ys))) if (
      ys.shape[0] > 1) else relative_epsilon
  return max(eps, 1e-12)


def sinkhorn_divergence(x: np.ndarray, y: np.ndarray, *,
                        epsilon: float | None = None,
                        relative_epsilon: float = 0.01,
                        max_iterations: int = 5000,
                        threshold: float = 1e-3) -> float:
  """Sinkhorn divergence ``S_eps(x, y)`` with squared Euclidean cost.

  Args:
    x: ``[N, D]`` samples.
    y: ``[M, D]`` reference samples.
    epsilon: absolute entropic regularisation; ``None`` uses
      ``relative_epsilon * mean ||y_i - y_j||^2`` (reference only).
    relative_epsilon: factor for the default epsilon.
    max_iterations: Sinkhorn iteration cap per OT problem.
    threshold: ott-jax marginal-error threshold for convergence.

  Returns:
    ``S_eps`` (units of squared distance). Warns if a solve did not converge.
  """
  x, y = _check_pair(x, y, "sinkhorn", min_n=1)
  if epsilon is None:
    epsilon = default_sinkhorn_epsilon(y, relative_epsilon)
  if epsilon <= 0:
    raise ValueError(f"sinkhorn epsilon must be > 0; got {epsilon}")
  # Translation does not change the cost; centring improves float32 accuracy.
  c = np.concatenate([x, y]).mean(axis=0)
  xs = jnp.asarray(x - c, jnp.float32)
  ys = jnp.asarray(y - c, jnp.float32)
  dense = max(x.shape[0], y.shape[0]) ** 2 <= _DENSE_MAX_ENTRIES
  div, converged = _sinkhorn_div(xs, ys, float(epsilon), float(threshold),
                                 dense, int(max_iterations))
  if not bool(converged):
    warnings.warn(f"sinkhorn: not converged in {max_iterations} iterations "
                  f"(epsilon={epsilon:.3g}); raise max_iterations or epsilon",
                  RuntimeWarning, stacklevel=2)
  return float(div)


# --------------------------------------------------------------------------
# Exact W2.
# --------------------------------------------------------------------------
def exact_w2(x: np.ndarray, y: np.ndarray, *,
             max_samples: int = W2_MAX_SAMPLES) -> float:
  """Exact 2-Wasserstein distance between two equal-size empirical measures.

  Args:
    x: ``[N, D]``.
    y: ``[N, D]``.
    max_samples: refuse larger ``N`` (the dense ``N x N`` assignment grows as
      ``N^3`` in time): use ``sinkhorn`` there.

  Returns:
    ``W2`` (not squared).
  """
  x, y = _check_pair(x, y, "w2", min_n=1, same_n=True)
  n = x.shape[0]
  if n > max_samples:
    raise ValueError(f"w2: exact assignment limited to N <= {max_samples} "
                     f"samples (O(N^3) time, O(N^2) memory); got N={n}. Pass "
                     "fewer samples (num_samples) or use 'sinkhorn'.")
  xd, yd = x.astype(np.float64), y.astype(np.float64)
  c = (np.sum(xd * xd, 1)[:, None] + np.sum(yd * yd, 1)[None, :]
       - 2 * xd @ yd.T)
  rows, cols = scipy.optimize.linear_sum_assignment(c)
  # Recompute the matched costs exactly (no expansion round-off).
  cost = np.sum((xd[rows] - yd[cols]) ** 2, axis=1).mean()
  return float(np.sqrt(max(cost, 0.0)))


# --------------------------------------------------------------------------
# Pairwise kernel sums (MMD, energy), blocked so N x M never materialises.
# --------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("kind", "block", "exclude_diag"))
def _block_sums(x, y, n_valid, bandwidths, kind: str, block: int,
                exclude_diag: bool):
  """Sum_{i<n_valid, j} k(x_i, y_j) in row blocks (x is padded to blocks)."""
  nb = x.shape[0] // block
  y2 = jnp.sum(y * y, axis=1)
  hi = jax.lax.Precision.HIGHEST

  def one(i):
    xb = jax.lax.dynamic_slice_in_dim(x, i * block, block)
    d2 = jnp.sum(xb * xb, 1)[:, None] + y2[None, :] - 2 * jnp.dot(
        xb, y.T, precision=hi)
    d2 = jnp.maximum(d2, 0.0)
    if kind == "rbf":
      k = jnp.sum(jnp.exp(-d2[..., None] / (2 * bandwidths ** 2)), axis=-1)
    else:  # "distance"
      k = jnp.sqrt(d2)
    rows = i * block + jnp.arange(block)
    mask = (rows < n_valid)[:, None]
    if exclude_diag:
      mask = mask & (rows[:, None] != jnp.arange(y.shape[0])[None, :])
    return jnp.sum(jnp.where(mask, k, 0.0))

  return jax.lax.map(one, jnp.arange(nb))


def _pair_sum(x: np.ndarray, y: np.ndarray, kind: str,
              bandwidths: Sequence[float] = (1.0,),
              exclude_diag: bool = False) -> float:
  m = y.shape[0]
  block = int(max(8, min(1024, 2 ** 22 // max(m * len(bandwidths), 1))))
  block = min(block, x.shape[0])
  n = x.shape[0]
  pad = (-n) % block
  xp = np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)]) if pad else x
  sums = _block_sums(jnp.asarray(xp, jnp.float32), jnp.asarray(y, jnp.float32),
                     n, jnp.asarray(bandwidths, jnp.float32), kind, block,
                     exclude_diag)
  return float(np.sum(np.asarray(sums, np.float64)))


def _two_sample(x, y, kind, bandwidths=(1.0,), unbiased=True) -> float:
  n, m = x.shape[0], y.shape[0]
  c = np.concatenate([x, y]).mean(axis=0)
  x, y = (x - c).astype(np.float32), (y - c).astype(np.float32)
  sxy = _pair_sum(x, y, kind, bandwidths) / (n * m)
  if unbiased:
    sxx = _pair_sum(x, x, kind, bandwidths, exclude_diag=True) / (n * (n - 1))
    syy = _pair_sum(y, y, kind, bandwidths, exclude_diag=True) / (m * (m - 1))
  else:
    kd = float(len(bandwidths)) if kind == "rbf" else 0.0  # k(a, a)
    sxx = (_pair_sum(x, x, kind, bandwidths, exclude_diag=True) + n * kd) / n**2
    syy = (_pair_sum(y, y, kind, bandwidths, exclude_diag=True) + m * kd) / m**2
  if kind == "rbf":
    return sxx + syy - 2 * sxy
  return 2 * sxy - sxx - syy


def median_bandwidth(y: np.ndarray, max_points: int = 1000) -> float:
  """Median pairwise Euclidean distance of (an even subset of) ``y``."""
  ys = _subset(np.asarray(y, np.float64), max_points)
  d2 = _pairwise_sq(ys)
  iu = np.triu_indices(ys.shape[0], k=1)
  med = float(np.sqrt(np.median(d2[iu]))) if iu[0].size else 1.0
  return med if med > 0 else 1.0


def default_mmd_bandwidths(y: np.ndarray) -> tuple[float, float, float]:
  """``(0.5, 1, 2) * median_bandwidth(y)``: the default widths of `mmd_rbf`."""
  med = median_bandwidth(y)
  return (0.5 * med, med, 2.0 * med)


def mmd_rbf(x: np.ndarray, y: np.ndarray, *,
            bandwidths: Sequence[float] | None = None,
            unbiased: bool = True) -> float:
  """MMD^2 with a sum of Gaussian (RBF) kernels.

  Args:
    x: ``[N, D]`` samples.
    y: ``[M, D]`` reference samples.
    bandwidths: kernel widths ``s`` in ``exp(-d^2 / (2 s^2))``; ``None`` uses
      ``(0.5, 1, 2) * median_bandwidth(y)``.
    unbiased: U-statistic (default) or the biased V-statistic (>= 0).

  Returns:
    MMD^2 estimate.
  """
  x, y = _check_pair(x, y, "mmd", min_n=2)
  if bandwidths is None:
    bandwidths = default_mmd_bandwidths(y)
  bandwidths = tuple(float(b) for b in np.atleast_1d(bandwidths))
  if not bandwidths or min(bandwidths) <= 0:
    raise ValueError(f"mmd bandwidths must be > 0; got {bandwidths}")
  return _two_sample(x, y, "rbf", bandwidths, unbiased)


def energy_distance(x: np.ndarray, y: np.ndarray, *,
                    unbiased: bool = True) -> float:
  """Squared energy distance ``2E|X-Y| - E|X-X'| - E|Y-Y'|``.

  Args:
    x: ``[N, D]`` samples.
    y: ``[M, D]`` reference samples.
    unbiased: U-statistics for the within-set terms (default) or
      V-statistics (then ``sqrt`` of it equals ``scipy.stats.energy_distance``
      in 1-D).

  Returns:
    The estimate.
  """
  x, y = _check_pair(x, y, "energy", min_n=2)
  return _two_sample(x, y, "distance", (1.0,), unbiased)


# --------------------------------------------------------------------------
# Histogram KL (2-D).
# --------------------------------------------------------------------------
def _box(box, data: np.ndarray) -> tuple[tuple[float, float], ...]:
  if box is None:
    lo, hi = data.min(axis=0), data.max(axis=0)
    span = np.maximum(hi - lo, 1e-12)
    return tuple((float(a - 1e-6 * s), float(b + 1e-6 * s))
                 for a, b, s in zip(lo, hi, span))
  box = np.asarray(box, np.float64)
  if box.shape == (2,):
    box = np.stack([box, box])
  if box.shape != (2, 2) or np.any(box[:, 1] <= box[:, 0]):
    raise ValueError("kl_hist box must be (lo, hi) or ((x_lo, x_hi), (y_lo, "
                     f"y_hi)) with lo < hi; got {box.tolist()}")
  return tuple((float(a), float(b)) for a, b in box)


def kl_hist_2d(model: np.ndarray, data: np.ndarray, *, bins: int = 50,
               box=None, eps: float = 1e-10) -> float:
  """Histogram estimate of ``KL(p_data || p_model)`` for 2-D samples.

  Args:
    model: ``[N, 2]`` model samples (``q``).
    data: ``[M, 2]`` reference samples (``p``).
    bins: grid size ``G`` (``G x G`` cells).
    box: ``(lo, hi)`` for both axes, ``((x_lo, x_hi), (y_lo, y_hi))``, or
      ``None`` for the bounding box of ``data``.
    eps: additive smoothing of both normalised histograms.

  Returns:
    ``sum_i p_i log((p_i + eps) / (q_i + eps))`` over the G^2 cells and one
    overflow cell (mass outside the box).
  """
  model, data = _check_pair(model, data, "kl_hist", min_n=1)
  if model.shape[1] != 2:
    raise ValueError(f"kl_hist is defined for 2-D samples; got D="
                     f"{model.shape[1]}")
  if bins < 1:
    raise ValueError(f"kl_hist bins must be >= 1; got {bins}")
  (x0, x1), (y0, y1) = _box(box, data)
  if min(model.shape[0], data.shape[0]) < 10 * bins * bins:
    warnings.warn(f"kl_hist: {min(model.shape[0], data.shape[0])} samples "
                  f"for {bins}x{bins} cells; the plug-in estimate is biased "
                  "upwards unless N >> G^2 (use more samples or fewer bins)",
                  RuntimeWarning, stacklevel=2)

  def hist(s):
    h, _, _ = np.histogram2d(s[:, 0], s[:, 1], bins=bins,
                             range=[[x0, x1], [y0, y1]])
    h = h.ravel()
    return np.append(h, s.shape[0] - h.sum()) / s.shape[0]

  p, q = hist(data.astype(np.float64)), hist(model.astype(np.float64))
  nz = p > 0
  return float(np.sum(p[nz] * np.log((p[nz] + eps) / (q[nz] + eps))))


def transport_cost(x: np.ndarray, y: np.ndarray) -> float:
  """Mean squared transport cost ``mean_i ||x_i - y_i||^2`` of paired samples.

  Args:
    x: ``[N, ...]`` sources (e.g. noise).
    y: ``[N, ...]`` their images under the coupling / map (same shape).

  Returns:
    The mean over pairs of the squared Euclidean distance (summed over all
    non-batch axes).
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape != y.shape or x.ndim < 1 or x.shape[0] < 1:
    raise ValueError(f"transport_cost: x and y must be paired arrays of the "
                     f"same shape [N, ...]; got {x.shape} and {y.shape}")
  d = (x - y).reshape(x.shape[0], -1)
  return float(np.mean(np.sum(d * d, axis=1)))
