"""Interpolants: boundary values, exact derivatives, latent γ(t) z term."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax.math import interpolants

CASES = [("linear", "none", 0.0), ("trigonometric", "none", 0.0),
         ("linear", "sqrt", 2.0), ("trigonometric", "quadratic", 1.5),
         ("linear", "quadratic", 0.7)]


@pytest.mark.parametrize("name,gamma,scale", CASES)
def test_boundary_values(x64, name, gamma, scale):
  it = interpolants.get(name, gamma, scale)
  for t, a, b in ((0.0, 1.0, 0.0), (1.0, 0.0, 1.0)):
    assert float(it.alpha(jnp.asarray(t))) == pytest.approx(a, abs=1e-15)
    assert float(it.beta(jnp.asarray(t))) == pytest.approx(b, abs=1e-15)
    assert float(it.gamma(jnp.asarray(t))) == pytest.approx(0.0, abs=1e-15)
  key = jax.random.key(0)
  x0, x1, z = jax.random.normal(key, (3, 5, 4), jnp.float64)
  np.testing.assert_allclose(it.x_t(x0, x1, 0.0, z), x0, atol=1e-14)
  np.testing.assert_allclose(it.x_t(x0, x1, 1.0, z), x1, atol=1e-14)


@pytest.mark.parametrize("name,gamma,scale", CASES)
def test_derivatives_equal_autodiff(x64, name, gamma, scale):
  it = interpolants.get(name, gamma, scale)
  ts = jnp.linspace(0.03, 0.97, 11)
  for f, df in ((it.alpha, it.dalpha), (it.beta, it.dbeta),
                (it.gamma, it.dgamma)):
    auto = jax.vmap(jax.grad(lambda t, f=f: f(t)))(ts)
    np.testing.assert_allclose(df(ts), auto, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,gamma,scale", CASES)
def test_dx_t_is_time_derivative_of_x_t(x64, name, gamma, scale):
  it = interpolants.get(name, gamma, scale)
  k0, k1, k2, k3 = jax.random.split(jax.random.key(1), 4)
  x0 = jax.random.normal(k0, (6, 3, 2))
  x1 = jax.random.normal(k1, (6, 3, 2))
  z = jax.random.normal(k2, (6, 3, 2))
  t = jax.random.uniform(k3, (6,), minval=0.05, maxval=0.95)
  _, tangent = jax.jvp(lambda tt: it.x_t(x0, x1, tt, z), (t,),
                       (jnp.ones_like(t),))
  np.testing.assert_allclose(it.dx_t(x0, x1, t, z), tangent, rtol=1e-10,
                             atol=1e-12)


def test_default_has_no_latent_and_api_is_unchanged():
  it = interpolants.get("linear")
  assert it == interpolants.Interpolant("linear") == interpolants.linear()
  assert interpolants.trigonometric() == interpolants.get("trigonometric")
  assert not it.has_gamma
  x0, x1 = jnp.ones((2, 3)), 2 * jnp.ones((2, 3))
  np.testing.assert_allclose(it.x_t(x0, x1, 0.25), 1.25 * np.ones((2, 3)))
  np.testing.assert_allclose(it.dx_t(x0, x1, jnp.array([0.1, 0.9])),
                             np.ones((2, 3)))


def test_latent_requires_z_and_bad_names_raise():
  it = interpolants.get("linear", "sqrt", 1.0)
  x = jnp.ones((2, 3))
  with pytest.raises(ValueError, match="pass z"):
    it.x_t(x, x, 0.5)
  with pytest.raises(ValueError, match="pass z"):
    it.dx_t(x, x, 0.5)
  with pytest.raises(ValueError):
    interpolants.get("cosine")
  with pytest.raises(ValueError):
    interpolants.get("linear", "cubic", 1.0)
  with pytest.raises(ValueError):
    interpolants.get("linear", "sqrt", -1.0)


def test_sqrt_gamma_derivative_is_clipped_near_endpoints(x64):
  it = interpolants.get("linear", "sqrt", 2.0)
  d = it.dgamma(jnp.array([0.0, 1.0]))
  assert np.all(np.isfinite(np.asarray(d)))
  assert float(d[0]) > 0 > float(d[1])


def test_variance_of_interpolant_matches_coefficients(x64):
  """Var(I_t) = α² + β² σ² + γ² for independent unit x0, z and std σ x1."""
  it = interpolants.get("trigonometric", "quadratic", 1.0)
  n, sigma, t = 200_000, 0.5, 0.3
  k0, k1, k2 = jax.random.split(jax.random.key(3), 3)
  x0 = jax.random.normal(k0, (n, 1))
  x1 = sigma * jax.random.normal(k1, (n, 1))
  z = jax.random.normal(k2, (n, 1))
  var = float(jnp.var(it.x_t(x0, x1, t, z)))
  expect = float(it.alpha(t) ** 2 + it.beta(t) ** 2 * sigma ** 2
                 + it.gamma(t) ** 2)
  # Var of a sample variance ≈ 2 v² / n: 5 standard errors.
  assert var == pytest.approx(expect, abs=5 * expect * np.sqrt(2 / n))
