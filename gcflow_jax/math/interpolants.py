"""Interpolants I_t = α(t) x0 + β(t) x1 (+ γ(t) z) between noise and data.

Convention used throughout gcflow_jax's flow-based methods: t = 0 is the base
(noise) x0 ~ N(0, I) and t = 1 the data x1. Each interpolant provides α, β, γ
and their exact time derivatives, so the velocity target is

    İ_t = α'(t) x0 + β'(t) x1 + γ'(t) z,

and the marginal velocity b_t(x) = E[İ_t | I_t = x] transports ρ_0 to ρ_1
(Albergo, Boffi & Vanden-Eijnden 2023, "Stochastic interpolants", eq. 2.1 and
Thm. 2.6; Boffi, Albergo & Vanden-Eijnden 2024, "Flow map matching", §2).

The latent term γ(t) z, z ~ N(0, I) independent of (x0, x1), is optional
(γ ≡ 0 by default; every flow-matching teacher in this repo uses γ = 0):

* 'sqrt':      γ(t) = sqrt(a t (1 − t))   (the stochastic-interpolant
  paper's choice; γ' is singular at t ∈ {0, 1}, so it is evaluated at t
  clipped to [GAMMA_T_CLIP, 1 − GAMMA_T_CLIP]),
* 'quadratic': γ(t) = a t (1 − t)          (smooth at the endpoints),

with a = `gamma_scale`. Both vanish at t = 0 and t = 1, so I_0 = x0, I_1 = x1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp

__all__ = ["Interpolant", "linear", "trigonometric", "get", "INTERPOLANTS",
           "GAMMAS", "GAMMA_T_CLIP"]

INTERPOLANTS = ("linear", "trigonometric")
GAMMAS = ("none", "sqrt", "quadratic")
# γ'(t) of the 'sqrt' latent is ∝ 1/sqrt(t(1 − t)); clip t for its derivative.
GAMMA_T_CLIP = 1e-4


def _bcast(a: jax.Array, x: jax.Array) -> jax.Array:
  """Reshapes per-example [B] coefficients to broadcast against x [B, ...]."""
  a = jnp.asarray(a, x.dtype)
  if a.ndim == 0:
    return a
  return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


@dataclasses.dataclass(frozen=True)
class Interpolant:
  """I_t = α(t) x0 + β(t) x1 + γ(t) z with α(0)=1, β(0)=0, α(1)=0, β(1)=1.

  Attributes:
    name: 'linear' (α = 1 − t, β = t) or 'trigonometric' (α = cos(πt/2),
      β = sin(πt/2)).
    gamma_type: 'none' | 'sqrt' | 'quadratic' (see the module docstring).
    gamma_scale: a ≥ 0 in γ(t); 0 turns the latent term off.
  """

  name: str
  gamma_type: str = "none"
  gamma_scale: float = 0.0

  @property
  def has_gamma(self) -> bool:
    return self.gamma_type != "none" and self.gamma_scale > 0.0

  def alpha(self, t):
    """α(t): 1 at t = 0, 0 at t = 1."""
    if self.name == "linear":
      return 1.0 - t
    return jnp.cos(0.5 * math.pi * t)

  def beta(self, t):
    """β(t): 0 at t = 0, 1 at t = 1."""
    if self.name == "linear":
      return t
    return jnp.sin(0.5 * math.pi * t)

  def dalpha(self, t):
    """α'(t), exact."""
    if self.name == "linear":
      return -jnp.ones_like(t)
    return -0.5 * math.pi * jnp.sin(0.5 * math.pi * t)

  def dbeta(self, t):
    """β'(t), exact."""
    if self.name == "linear":
      return jnp.ones_like(t)
    return 0.5 * math.pi * jnp.cos(0.5 * math.pi * t)

  def gamma(self, t):
    """γ(t) ≥ 0, zero at both ends (0 everywhere when unused)."""
    t = jnp.asarray(t)
    if not self.has_gamma:
      return jnp.zeros_like(t)
    a = self.gamma_scale
    if self.gamma_type == "sqrt":
      return jnp.sqrt(jnp.maximum(a * t * (1.0 - t), 0.0))
    return a * t * (1.0 - t)

  def dgamma(self, t):
    """γ'(t), exact ('sqrt': at t clipped away from {0, 1})."""
    t = jnp.asarray(t)
    if not self.has_gamma:
      return jnp.zeros_like(t)
    a = self.gamma_scale
    if self.gamma_type == "sqrt":
      tc = jnp.clip(t, GAMMA_T_CLIP, 1.0 - GAMMA_T_CLIP)
      return a * (1.0 - 2.0 * tc) / (2.0 * jnp.sqrt(a * tc * (1.0 - tc)))
    return a * (1.0 - 2.0 * t)

  def x_t(self, x0, x1, t, z: Optional[jax.Array] = None):
    """I_t [B, ...] with t a scalar or [B]; z is needed iff γ is used."""
    out = _bcast(self.alpha(t), x0) * x0 + _bcast(self.beta(t), x1) * x1
    if self.has_gamma:
      if z is None:
        raise ValueError("this interpolant has a latent γ(t) z term: pass z")
      out = out + _bcast(self.gamma(t), z) * z
    return out

  def dx_t(self, x0, x1, t, z: Optional[jax.Array] = None):
    """∂_t I_t = α'(t) x0 + β'(t) x1 + γ'(t) z (the conditional velocity)."""
    out = _bcast(self.dalpha(t), x0) * x0 + _bcast(self.dbeta(t), x1) * x1
    if self.has_gamma:
      if z is None:
        raise ValueError("this interpolant has a latent γ(t) z term: pass z")
      out = out + _bcast(self.dgamma(t), z) * z
    return out


def linear() -> Interpolant:
  return Interpolant("linear")


def trigonometric() -> Interpolant:
  return Interpolant("trigonometric")


def get(name: str, gamma_type: str = "none",
        gamma_scale: float = 0.0) -> Interpolant:
  """The interpolant `name`, optionally with a latent γ(t) z term."""
  if name not in INTERPOLANTS:
    raise ValueError(f"interp.name={name!r} is not one of {INTERPOLANTS}")
  if gamma_type not in GAMMAS:
    raise ValueError(f"gamma type {gamma_type!r} is not one of {GAMMAS}")
  if gamma_scale < 0:
    raise ValueError(f"gamma scale must be >= 0, got {gamma_scale}")
  return Interpolant(name, gamma_type, float(gamma_scale))
