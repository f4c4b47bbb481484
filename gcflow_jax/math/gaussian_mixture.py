"""Closed-form flow-matching teacher for a Gaussian-mixture data law.

Data x1 ~ Σ_j π_j N(μ_j, σ_j² I), noise x0 ~ N(0, I), linear interpolant
x_t = (1 − t) x0 + t x1. Every marginal is a Gaussian mixture,

    p_t = Σ_j π_j N(t μ_j, c_j(t) I),   c_j(t) = (1 − t)² + t² σ_j²,

and the marginal velocity, score and log-density are exact:

    b_t(x)  = Σ_j w_j(x) [μ_j + (t σ_j² − (1 − t)) (x − t μ_j) / c_j],
    ∇log p_t(x) = −Σ_j w_j(x) (x − t μ_j) / c_j,

with posterior weights w_j ∝ π_j N(x; t μ_j, c_j I) (per component,
Cov(x_t, x1 − x0) = (t σ_j² − (1 − t)) I). Its ODE trajectories are curved
wherever the posterior weights change, which makes it the reference teacher
for reflow tests (velocity error at knots, marginal alignment).

Pure JAX; x is [B, D], t a scalar or [B].
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["GaussianMixtureFlow"]


@dataclasses.dataclass(frozen=True)
class GaussianMixtureFlow:
  """means [J, D], stds [J], weights [J] (normalised here)."""

  means: np.ndarray
  stds: np.ndarray
  weights: np.ndarray

  def _terms(self, x, t):
    dt = x.dtype
    t = jnp.asarray(t, dt)
    t = jnp.broadcast_to(t, x.shape[:1]) if t.ndim == 0 else t
    mu = jnp.asarray(self.means, dt)                      # [J, D]
    s2 = jnp.asarray(self.stds, dt) ** 2                  # [J]
    logw = jnp.log(jnp.asarray(self.weights, dt) /
                   float(np.sum(self.weights)))
    c = (1 - t)[:, None] ** 2 + t[:, None] ** 2 * s2      # [B, J]
    diff = x[:, None, :] - t[:, None, None] * mu          # [B, J, D]
    d = x.shape[1]
    logn = (-0.5 * jnp.sum(diff**2, -1) / c
            - 0.5 * d * jnp.log(2 * math.pi * c))         # [B, J]
    return t, mu, s2, c, diff, logw + logn

  def logpdf(self, x: jax.Array, t) -> jax.Array:
    """log p_t(x), [B]."""
    return jax.nn.logsumexp(self._terms(x, t)[-1], axis=1)

  def score(self, x: jax.Array, t) -> jax.Array:
    """∇ log p_t(x), [B, D]."""
    _, _, _, c, diff, logj = self._terms(x, t)
    w = jax.nn.softmax(logj, axis=1)
    return -jnp.einsum("bj,bjd->bd", w / c, diff)

  def velocity(self, x: jax.Array, t) -> jax.Array:
    """Marginal velocity b_t(x) = E[x1 − x0 | x_t = x], [B, D]."""
    t, mu, s2, c, diff, logj = self._terms(x, t)
    w = jax.nn.softmax(logj, axis=1)
    gain = (t[:, None] * s2 - (1 - t[:, None])) / c       # [B, J]
    comp = mu[None] + gain[..., None] * diff              # [B, J, D]
    return jnp.einsum("bj,bjd->bd", w, comp)

  def sample(self, key: jax.Array, n: int, dtype=jnp.float32) -> jax.Array:
    """n samples of the data law p_1."""
    k_c, k_z = jax.random.split(key)
    p = jnp.asarray(self.weights, dtype) / float(np.sum(self.weights))
    j = jax.random.choice(k_c, len(self.weights), (n,), p=p)
    z = jax.random.normal(k_z, (n, np.shape(self.means)[1]), dtype)
    return (jnp.asarray(self.means, dtype)[j] +
            jnp.asarray(self.stds, dtype)[j][:, None] * z)
