"""Toy distributions as jit-friendly samplers with analytic moments.

`sample(name, key, n, param=0., dim=2) -> [n, D]` is pure JAX (jit it with
`name`, `n`, `dim` static). `moments(name, param, dim) -> (mean [D], cov
[D, D])` gives the exact first two moments, derived in each docstring, so
tests can check the samplers against closed forms.
"""

from __future__ import annotations

import math
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["TOYS", "sample", "moments", "default_param", "gaussian_params"]

TOYS = ("checkerboard", "moons", "8gaussians", "two_diracs", "gaussian",
        "gaussian_mixture", "swiss_roll")

# param meaning per toy (0 in the config selects this default).
_DEFAULT_PARAM = {
    "checkerboard": 1.0,      # square side length (board is 4×4 squares)
    "moons": 0.05,            # isotropic noise std
    "8gaussians": 0.1,        # component std (centres on the radius-2 circle)
    "two_diracs": 1.0,        # Diracs at ±param·e_1
    "gaussian": 1.0,          # overall std scale of Σ
    "gaussian_mixture": 0.5,  # component std (centres (±2, ±2))
    "swiss_roll": 0.05,       # isotropic noise std (before the 1/5 scale)
}


def default_param(name: str, param: float = 0.0) -> float:
  if name not in TOYS:
    raise ValueError(f"data.name={name!r} is not one of {TOYS}")
  return float(param) if param else _DEFAULT_PARAM[name]


def gaussian_params(dim: int, param: float = 0.0
                    ) -> Tuple[np.ndarray, np.ndarray]:
  """(μ, Σ) of the 'gaussian' toy: μ_i = (-1)^i, Σ = s²((1-ρ) I + ρ 11ᵀ)
  with ρ = 0.5, s = param (default 1): correlated, so an affine generator
  must learn a non-diagonal A with A Aᵀ = Σ."""
  s = default_param("gaussian", param)
  mu = np.array([(-1.0) ** i for i in range(dim)])
  rho = 0.5
  cov = s * s * ((1 - rho) * np.eye(dim) + rho * np.ones((dim, dim)))
  return mu, cov


def sample(name: str, key: jax.Array, n: int, param: float = 0.0,
           dim: int = 2) -> jax.Array:
  """Draws n samples [n, D] (D = 2 except `gaussian`/`two_diracs`: dim)."""
  p = default_param(name, param)
  k1, k2, k3 = jax.random.split(key, 3)
  if name == "checkerboard":
    # Uniform on the 8 'black' squares (i + j even) of a 4×4 board of side p
    # centred at 0: pick a column i and a row j of the same parity.
    i = jax.random.randint(k1, (n,), 0, 4)
    j = 2 * jax.random.randint(k2, (n,), 0, 2) + (i % 2)
    u = jax.random.uniform(k3, (n, 2))
    cell = jnp.stack([i, j], axis=1).astype(jnp.float32)
    return (cell + u - 2.0) * p
  if name == "moons":
    theta = jax.random.uniform(k1, (n,)) * math.pi
    upper = jax.random.bernoulli(k2, 0.5, (n,))
    outer = jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=1)
    inner = jnp.stack([1.0 - jnp.cos(theta), 0.5 - jnp.sin(theta)], axis=1)
    x = jnp.where(upper[:, None], outer, inner)
    return x + p * jax.random.normal(k3, (n, 2))
  if name == "8gaussians":
    ang = jax.random.randint(k1, (n,), 0, 8).astype(jnp.float32) * (
        math.pi / 4)
    centres = 2.0 * jnp.stack([jnp.cos(ang), jnp.sin(ang)], axis=1)
    return centres + p * jax.random.normal(k2, (n, 2))
  if name == "two_diracs":
    sign = 2.0 * jax.random.bernoulli(k1, 0.5, (n,)).astype(jnp.float32) - 1
    return sign[:, None] * p * jax.nn.one_hot(0, dim)[None, :]
  if name == "gaussian":
    mu, cov = gaussian_params(dim, param)
    chol = jnp.asarray(np.linalg.cholesky(cov), jnp.float32)
    eps = jax.random.normal(k1, (n, dim))
    return jnp.asarray(mu, jnp.float32) + eps @ chol.T
  if name == "gaussian_mixture":
    c = jax.random.randint(k1, (n,), 0, 4)
    centres = 2.0 * jnp.stack([2 * (c % 2) - 1, 2 * (c // 2) - 1],
                              axis=1).astype(jnp.float32)
    return centres + p * jax.random.normal(k2, (n, 2))
  if name == "swiss_roll":
    t = 1.5 * math.pi * (1.0 + 2.0 * jax.random.uniform(k1, (n,)))
    x = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=1)
    return (x + p * jax.random.normal(k2, (n, 2))) / 5.0
  raise ValueError(f"data.name={name!r} is not one of {TOYS}")


def _swiss_roll_moments(p: float):
  """t ~ U[a, b], a = 1.5π, b = 4.5π; exact integrals of t cos t etc."""
  a, b = 1.5 * math.pi, 4.5 * math.pi
  w = b - a
  # Antiderivatives: ∫ t cos t = cos t + t sin t; ∫ t sin t = sin t − t cos t
  # ∫ t² cos² t = t³/6 + (t²/4 − 1/8) sin 2t + t cos 2t / 4
  # ∫ t² sin² t = t³/6 − (t²/4 − 1/8) sin 2t − t cos 2t / 4
  # ∫ t² sin t cos t = ½ ∫ t² sin 2t = ½(−t² cos 2t/2 + t sin 2t/2 + cos 2t/4)
  def f(fn):
    return (fn(b) - fn(a)) / w
  ex = f(lambda t: math.cos(t) + t * math.sin(t))
  ey = f(lambda t: math.sin(t) - t * math.cos(t))
  exx = f(lambda t: t ** 3 / 6 + (t * t / 4 - 1 / 8) * math.sin(2 * t)
          + t * math.cos(2 * t) / 4)
  eyy = f(lambda t: t ** 3 / 6 - (t * t / 4 - 1 / 8) * math.sin(2 * t)
          - t * math.cos(2 * t) / 4)
  exy = f(lambda t: 0.5 * (-t * t * math.cos(2 * t) / 2
                           + t * math.sin(2 * t) / 2 + math.cos(2 * t) / 4))
  mean = np.array([ex, ey])
  second = np.array([[exx, exy], [exy, eyy]])
  cov = second - np.outer(mean, mean) + p * p * np.eye(2)
  return mean / 5.0, cov / 25.0


def moments(name: str, param: float = 0.0, dim: int = 2
            ) -> Tuple[np.ndarray, np.ndarray]:
  """Exact (mean, covariance) of `sample(name, ..., param, dim)`."""
  p = default_param(name, param)
  if name == "checkerboard":
    # Cell centres c ∈ {-1.5, -.5, .5, 1.5}·p on same-parity (i, j) pairs;
    # E[c_i c_j] over the 8 cells = 0.5 p²·... computed exactly below, plus
    # the uniform in-cell variance p²/12 per axis.
    cells = [(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0]
    cen = np.array([[(i - 1.5) * p, (j - 1.5) * p] for i, j in cells])
    cov = cen.T @ cen / len(cells) + np.eye(2) * p * p / 12.0
    return cen.mean(0), cov
  if name == "moons":
    # Outer: (cos θ, sin θ); inner: (1 − cos θ, ½ − sin θ), θ ~ U[0, π].
    # E cos θ = 0, E sin θ = 2/π, E cos² = E sin² = ½, E sin cos = 0.
    es = 2.0 / math.pi
    mean = np.array([0.5, 0.25])
    exx = 0.5 * (0.5 + (1 - 0 + 0.5))            # E x² (outer, inner)
    eyy = 0.5 * (0.5 + (0.25 - es + 0.5))
    # E xy: outer E[cos sin] = 0; inner E[(1−c)(½−s)] = ½ − es − 0 + 0.
    exy = 0.5 * (0.0 + (0.5 - es))
    cov = np.array([[exx, exy], [exy, eyy]]) - np.outer(mean, mean)
    return mean, cov + p * p * np.eye(2)
  if name == "8gaussians":
    # Centres uniform on 8 points of radius 2: E[cc^T] = (4/2) I = 2 I.
    return np.zeros(2), (2.0 + p * p) * np.eye(2)
  if name == "two_diracs":
    cov = np.zeros((dim, dim))
    cov[0, 0] = p * p
    return np.zeros(dim), cov
  if name == "gaussian":
    return gaussian_params(dim, param)
  if name == "gaussian_mixture":
    return np.zeros(2), (4.0 + p * p) * np.eye(2)
  if name == "swiss_roll":
    return _swiss_roll_moments(p)
  raise ValueError(f"data.name={name!r} is not one of {TOYS}")
