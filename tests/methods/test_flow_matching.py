"""Flow matching against closed forms (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax.math import interpolants
from gcflow_jax.methods import flow_matching as fm


def _exact_velocity(params, x, t, key=None):
  """b_t(x) for x0 ~ N(0, I), x1 ~ N(m, s² I), independent, linear
  interpolant: x_t ~ N(t m, σ_t² I), σ_t² = (1-t)² + t² s², and the
  marginal-preserving velocity is b = m + (σ_t'/σ_t)(x − t m) with
  σ_t σ_t' = t s² − (1 − t)."""
  del key  # deterministic
  m, s = params["m"], params["s"]
  t = t[:, None]
  var = (1 - t) ** 2 + t ** 2 * s ** 2
  return m + (t * s ** 2 - (1 - t)) / var * (x - t * m)


def _loss(params, x1, key, s_true=None):
  del s_true
  loss_fn = fm.make_fm_loss(_exact_velocity, interpolants.linear())
  return loss_fn(params, {"x": x1}, key)


def test_dirac_target_loss_and_grad_vanish(x64):
  # x1 = m (s = 0): İ_t is a deterministic function of I_t, min loss = 0.
  m = jnp.array([1.5, -0.5])
  params = {"m": m, "s": jnp.array(0.0)}
  x1 = jnp.broadcast_to(m, (4096, 2))
  key = jax.random.key(0)
  per_ex, _ = jax.jit(_loss)(params, x1, key)
  assert float(jnp.max(per_ex)) < 1e-20
  g = jax.grad(lambda p: jnp.mean(_loss(p, x1, key)[0]))(params)
  assert float(jnp.abs(g["m"]).max()) < 1e-10
  bad = {"m": m + 0.1, "s": jnp.array(0.0)}
  assert float(jnp.mean(_loss(bad, x1, key)[0])) > 1e-3


def test_gaussian_loss_equals_analytic_minimum(x64):
  """At the exact b, E‖b − İ‖² = Σ_d Var(İ | I_t) averaged over t, with
  Var(İ|I_t) = (1 + s²) − (t s² − (1 − t))² / σ_t² per dimension."""
  m, s, d, n = jnp.array([1.0, -2.0]), 0.5, 2, 400_000
  key = jax.random.key(1)
  x1 = m + s * jax.random.normal(jax.random.key(2), (n, d))
  params = {"m": m, "s": jnp.array(s)}
  per_ex, _ = jax.jit(_loss)(params, x1, key)
  t = jnp.linspace(0, 1, 20001)
  var = (1 - t) ** 2 + t ** 2 * s ** 2
  cond = (1 + s ** 2) - (t * s ** 2 - (1 - t)) ** 2 / var
  expected = float(jnp.trapezoid(cond, t))  # per-dimension mean
  se = float(jnp.std(per_ex)) / np.sqrt(n)
  assert abs(float(jnp.mean(per_ex)) - expected) < 4 * se
  # The gradient at the optimum is ~0 (MC noise), much smaller than at a
  # perturbed point, and the perturbed loss is larger.
  f = lambda p: jnp.mean(_loss(p, x1, key)[0])
  g0 = jax.grad(f)(params)
  pert = {"m": m + 0.3, "s": jnp.array(s * 1.5)}
  g1 = jax.grad(f)(pert)
  n0 = float(jnp.sqrt(sum(jnp.sum(v ** 2) for v in g0.values())))
  n1 = float(jnp.sqrt(sum(jnp.sum(v ** 2) for v in g1.values())))
  assert n0 < 0.02 * n1
  assert float(f(pert)) > float(f(params)) + 1e-3


def test_ode_sampler_pushes_gaussian_to_target(x64):
  m, s = jnp.array([1.0, -2.0]), 0.5
  params = {"m": m, "s": jnp.array(s)}
  sample = fm.make_ode_sampler(_exact_velocity, (2,), "rk4")
  x = jax.jit(sample, static_argnums=(2, 3))(params, jax.random.key(0),
                                              20000, 20)
  np.testing.assert_allclose(np.mean(x, 0), m, atol=0.02)
  np.testing.assert_allclose(np.std(x, 0), [s, s], atol=0.01)


def test_time_sampler_range():
  t = fm.sample_times(jax.random.key(0), 10000, "logit_normal", 0.01)
  assert float(t.min()) >= 0.01 and float(t.max()) <= 0.99
  with pytest.raises(ValueError, match="fm.time_sampler"):
    fm.sample_times(jax.random.key(0), 4, "beta")
