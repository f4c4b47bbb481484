"""Feature-space metrics: Fréchet distance, KID, Inception Score (NumPy).

These functions take *features* (or logits) and are independent of the
network that produced them; `gcflow_jax.evaluation.evaluate` runs the
networks. All statistics are computed in float64.

Note: ``gcflow_jax.evaluation.fid`` (the package attribute) is the high-level
function ``fid(samples, reference_stats)``; import the maths from this module
with ``from gcflow_jax.evaluation.fid import frechet_distance``.

Definitions
-----------
* Fréchet distance (FID on Inception pool_3 features, Heusel et al. 2017):
  ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})`` with ``S`` the unbiased
  (``ddof=1``) covariance. ``Tr (S1 S2)^{1/2}`` is computed as the sum of square
  roots of the eigenvalues of the symmetric PSD matrix ``S1^{1/2} S2 S1^{1/2}``
  (same spectrum as ``S1 S2``), which is what ``scipy.linalg.sqrtm`` computes
  in the reference code but without its complex round-off / singular-matrix
  fallbacks.
* KID (Bińkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over ``num_subsets`` random subsets of
  ``subset_size`` points drawn without replacement from each set (defaults 100
  and 1000, as in the reference code and torch-fidelity). Unbiased, so it
  can be slightly negative.
* Inception Score (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))`` over
  softmax of the 1008 logits, computed on ``splits`` (10) consecutive chunks;
  mean and (population) std over chunks, as in the OpenAI code.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "gaussian_statistics",
    "frechet_distance",
    "mmd2_polynomial_unbiased",
    "kid_from_features",
    "inception_score_from_logits",
]


def _as_2d(f: np.ndarray, name: str) -> np.ndarray:
  f = np.asarray(f)
  if f.ndim != 2:
    raise ValueError(f"{name} must be [N, D] features; got shape {f.shape}")
  if not np.all(np.isfinite(f)):
    raise ValueError(f"{name} contains NaN or inf")
  return f


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and unbiased covariance of features.

  Args:
    features: ``[N, D]``, ``N >= D + 1`` for a full-rank covariance.

  Returns:
    ``mu [D]``, ``sigma [D, D]`` (float64; ``ddof=1`` as ``np.cov``).
  """
  f = _as_2d(features, "features").astype(np.float64)
  n, d = f.shape
  if n < 2:
    raise ValueError(f"need at least 2 feature vectors; got {n}")
  mu = f.mean(axis=0)
  fc = f - mu
  sigma = fc.T @ fc / (n - 1)
  return mu, sigma


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh((a + a.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
  """Fréchet (2-Wasserstein) distance between two Gaussians, squared.

  Args:
    mu1: ``[D]`` mean of the first set.
    sigma1: ``[D, D]`` covariance of the first set.
    mu2: ``[D]``.
    sigma2: ``[D, D]``.

  Returns:
    ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})`` as a float (tiny
    negative round-off is clipped to 0).
  """
  mu1, mu2 = (np.asarray(m, np.float64).reshape(-1) for m in (mu1, mu2))
  s1, s2 = (np.asarray(s, np.float64) for s in (sigma1, sigma2))
  d = mu1.shape[0]
  for name, m, s in (("1", mu1, s1), ("2", mu2, s2)):
    if m.shape != (d,) or s.shape != (d, d):
      raise ValueError(f"mu{name}/sigma{name} must be [D] and [D, D] with "
                       f"D={d}; got {m.shape} and {s.shape}")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))):
      raise ValueError(f"mu{name}/sigma{name} contain NaN or inf")
  r1 = _sqrt_psd(s1)
  m = r1 @ s2 @ r1
  eig = np.linalg.eigvalsh((m + m.T) / 2)
  tr_covmean = np.sum(np.sqrt(np.clip(eig, 0.0, None)))
  diff = mu1 - mu2
  fd = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean
  return float(max(fd, 0.0))


def _mmd2_poly(x: np.ndarray, y: np.ndarray, degree: int, coef0: float,
               gamma: float) -> float:
  m, n = x.shape[0], y.shape[0]
  kxx = (gamma * (x @ x.T) + coef0) ** degree
  kyy = (gamma * (y @ y.T) + coef0) ** degree
  kxy = (gamma * (x @ y.T) + coef0) ** degree
  sxx = (kxx.sum(dtype=np.float64) - np.trace(kxx, dtype=np.float64))
  syy = (kyy.sum(dtype=np.float64) - np.trace(kyy, dtype=np.float64))
  return float(sxx / (m * (m - 1)) + syy / (n * (n - 1))
               - 2.0 * kxy.sum(dtype=np.float64) / (m * n))


def mmd2_polynomial_unbiased(x: np.ndarray, y: np.ndarray, *,
                             degree: int = 3, coef0: float = 1.0,
                             gamma: float | None = None) -> float:
  """Unbiased MMD^2 with ``k(a, b) = (gamma a.b + coef0)^degree``.

  Args:
    x: ``[M, D]``, ``M >= 2``.
    y: ``[N, D]``, ``N >= 2``.
    degree: polynomial degree (3 for KID).
    coef0: additive constant (1 for KID).
    gamma: scale, default ``1 / D`` (KID).

  Returns:
    The U-statistic estimate (may be negative).
  """
  x, y = _as_2d(x, "x"), _as_2d(y, "y")
  if x.shape[1] != y.shape[1]:
    raise ValueError(f"feature dims differ: {x.shape} vs {y.shape}")
  if min(x.shape[0], y.shape[0]) < 2:
    raise ValueError("unbiased MMD needs at least 2 points per set")
  gamma = 1.0 / x.shape[1] if gamma is None else gamma
  # float32 products are enough for pool_3-scale features; sums are float64.
  return _mmd2_poly(x.astype(np.float32), y.astype(np.float32), degree, coef0,
                    gamma)


def kid_from_features(x: np.ndarray, y: np.ndarray, *, num_subsets: int = 100,
                      subset_size: int = 1000, seed: int = 0
                      ) -> tuple[float, float]:
  """Kernel Inception Distance between two feature sets.

  Args:
    x: ``[M, D]`` features of the samples.
    y: ``[N, D]`` features of the reference.
    num_subsets: number of random subset pairs.
    subset_size: points per subset; reduced to ``min(M, N)`` if larger.
    seed: NumPy seed for the subset draws (deterministic by default).

  Returns:
    ``(mean, std)`` of the unbiased polynomial MMD^2 over subsets.
  """
  x, y = _as_2d(x, "x"), _as_2d(y, "y")
  if x.shape[1] != y.shape[1]:
    raise ValueError(f"feature dims differ: {x.shape} vs {y.shape}")
  size = min(subset_size, x.shape[0], y.shape[0])
  if size < 2:
    raise ValueError(f"KID needs at least 2 samples per set; got "
                     f"{x.shape[0]} and {y.shape[0]}")
  if num_subsets < 1:
    raise ValueError(f"num_subsets must be >= 1; got {num_subsets}")
  rng = np.random.default_rng(seed)
  x32, y32 = x.astype(np.float32), y.astype(np.float32)
  gamma = 1.0 / x.shape[1]
  vals = np.empty(num_subsets)
  for i in range(num_subsets):
    xi = x32[rng.choice(x.shape[0], size, replace=False)]
    yi = y32[rng.choice(y.shape[0], size, replace=False)]
    vals[i] = _mmd2_poly(xi, yi, 3, 1.0, gamma)
  return float(vals.mean()), float(vals.std())


def inception_score_from_logits(logits: np.ndarray, splits: int = 10
                                ) -> tuple[float, float]:
  """Inception Score from classifier logits.

  Args:
    logits: ``[N, K]`` (K = 1008 for the FID Inception; use its
      ``logits_unbiased`` like the OpenAI code).
    splits: number of consecutive chunks (10 in the standard protocol);
      chunk ``i`` is ``[i * N // splits, (i + 1) * N // splits)``.

  Returns:
    ``(mean, std)`` over chunks of ``exp(mean_x KL(p(y|x) || p(y)))``.
  """
  logits = _as_2d(logits, "logits").astype(np.float64)
  n = logits.shape[0]
  if splits < 1 or n < splits:
    raise ValueError(f"need 1 <= splits <= N; got splits={splits}, N={n}")
  logp = logits - logits.max(axis=1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
  p = np.exp(logp)
  scores = []
  for i in range(splits):
    # The reference chunking (OpenAI code, torch-fidelity): boundaries at
    # floor(i N / splits); np.array_split puts the remainder first instead.
    part = slice(i * n // splits, (i + 1) * n // splits)
    py = p[part].mean(axis=0)
    log_py = np.log(np.clip(py, 1e-300, None))
    kl = np.sum(p[part] * (logp[part] - log_py), axis=1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))
