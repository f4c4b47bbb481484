"""ODE integrators and log-density tracking against closed forms (float64).

Linear ODE ẋ = A x: x_t = expm(tA) x_0 and log p_t(x_t) − log p_0(x_0) =
−t tr(A). Order of accuracy is measured from error ratios under step halving.
"""

import math

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest

from gcflow_jax.math import ode

A_NP = np.array([[-0.3, 1.1, 0.2],
                 [-0.9, -0.2, 0.4],
                 [0.1, -0.5, 0.25]])


def _linear(a):
  return lambda x, t: x @ a.T


@pytest.mark.parametrize("method", ode.INTEGRATORS)
def test_linear_ode_logp_exact_divergence(x64, method):
  a = jnp.asarray(A_NP)
  x0 = jax.random.normal(jax.random.key(1), (5, 3), jnp.float64)
  t = 0.7
  fn = jax.jit(lambda x: ode.integrate_with_logp(
      _linear(a), x, ode.uniform_grid(0.0, t, 50), method, "exact"))
  x1, delta = fn(x0)
  np.testing.assert_allclose(delta, -t * np.trace(A_NP), atol=1e-6, rtol=0)
  ref = x0 @ jsl.expm(t * a).T
  tol = {"euler": 3e-2, "heun": 1e-3, "rk4": 1e-8}[method]
  np.testing.assert_allclose(x1, ref, atol=tol)
  # Same Runge–Kutta step as `integrate` on the x part.
  x1_plain = ode.integrate(_linear(a), x0, ode.uniform_grid(0.0, t, 50),
                           method)
  np.testing.assert_allclose(x1, x1_plain, atol=1e-12)


@pytest.mark.parametrize("mode,probe,num_probes", [
    ("jvp", "rademacher", 1), ("vjp", "gaussian", 1), ("jvp", "gaussian", 4),
    ("vjp", "rademacher", 4)])
def test_linear_ode_logp_hutchinson_within_3_se(x64, mode, probe,
                                                num_probes):
  a = jnp.asarray(A_NP)
  b, t = 4000, 0.7
  k_x, k_p = jax.random.split(jax.random.key(2))
  x0 = jax.random.normal(k_x, (b, 3), jnp.float64)
  probes = ode.sample_probes(k_p, x0.shape, num_probes, probe, jnp.float64)
  _, delta = jax.jit(lambda x, e: ode.integrate_with_logp(
      _linear(a), x, ode.uniform_grid(0.0, t, 4), "heun", "hutchinson", e,
      mode))(x0, probes)
  exact = -t * np.trace(A_NP)
  se = float(np.std(delta) / math.sqrt(b))
  assert se > 1e-3          # the estimator is genuinely random here
  assert abs(float(np.mean(delta)) - exact) < 3 * se
  # Per-example variance of the mean of P probes ≈ Var_1 / P. For a matrix
  # A: Var[εᵀAε] = 2 Σ_{i≠j} S_ij² (Rademacher), 2 ‖S‖_F² (Gaussian), with S
  # the symmetric part of A.
  s = 0.5 * (A_NP + A_NP.T)
  var1 = 2 * (np.sum(s**2) - (np.sum(np.diag(s)**2) if probe == "rademacher"
                              else 0.0))
  np.testing.assert_allclose(np.var(delta), t**2 * var1 / num_probes,
                             rtol=0.15)


def test_hutchinson_rademacher_exact_for_diagonal_jacobian(x64):
  d = jnp.asarray([0.5, -1.5, 2.0])
  v = lambda x, t: x * d
  x = jnp.ones((3, 3), jnp.float64)
  probes = ode.sample_probes(jax.random.key(0), x.shape, 2, "rademacher",
                             jnp.float64)
  for mode in ode.HUTCHINSON_MODES:
    _, div = ode.divergence_hutchinson(v, x, 0.0, probes, mode)
    np.testing.assert_allclose(div, float(jnp.sum(d)), atol=1e-12)


def test_exact_divergence_matches_jacobian_trace(x64):
  k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
  w1 = jax.random.normal(k1, (4, 16), jnp.float64)
  w2 = jax.random.normal(k2, (16, 4), jnp.float64)
  v = lambda x, t: jnp.tanh(x @ w1 + t) @ w2
  x = jax.random.normal(k3, (6, 4), jnp.float64)
  vx, div = jax.jit(lambda y: ode.divergence_exact(v, y, 0.3))(x)
  jac = jax.jit(jax.vmap(jax.jacfwd(lambda xi: v(xi[None], 0.3)[0])))(x)
  np.testing.assert_allclose(div, jnp.trace(jac, axis1=1, axis2=2),
                             atol=1e-10)
  np.testing.assert_allclose(vx, v(x, 0.3), atol=1e-12)
  # Image-shaped states [B, H, W, C] work the same way.
  vi = lambda y, t: v(y.reshape(y.shape[0], 4), t).reshape(y.shape)
  _, div_i = jax.jit(lambda y: ode.divergence_exact(vi, y, 0.3))(
      x.reshape(6, 2, 2, 1))
  np.testing.assert_allclose(div_i, div, atol=1e-10)
  # Hutchinson (both modes) averages to it.
  # One probe per (copy, example): per-probe estimates give the standard
  # error of their mean.
  p = 2000
  x_rep = jnp.tile(x, (p, 1))
  for mode, kind in (("jvp", "rademacher"), ("vjp", "gaussian")):
    probes = ode.sample_probes(jax.random.key(4), x_rep.shape, 1, kind,
                               jnp.float64)
    _, dh = jax.jit(lambda y, e, m=mode: ode.divergence_hutchinson(
        v, y, 0.3, e, m))(x_rep, probes)
    dh = np.asarray(dh).reshape(p, 6)
    se = dh.std(axis=0) / math.sqrt(p)
    assert np.all(np.abs(dh.mean(axis=0) - np.asarray(div)) < 3.5 * se), (
        dh.mean(axis=0), div, se)


def test_exact_divergence_large_dim_and_its_gradient(x64):
  # D = 20 > 16 takes the sequential, rematerialised path.
  k1, k2, k3 = jax.random.split(jax.random.key(7), 3)
  w1 = jax.random.normal(k1, (20, 24), jnp.float64)
  w2 = jax.random.normal(k2, (24, 20), jnp.float64)
  v = lambda x, t, w: jnp.tanh(x @ w + t) @ w2
  x = jax.random.normal(k3, (3, 20), jnp.float64)

  def exact(w):
    return ode.divergence_exact(lambda y, t: v(y, t, w), x, 0.3)[1]

  def ref(w):
    jac = jax.vmap(jax.jacfwd(lambda xi: v(xi[None], 0.3, w)[0]))(x)
    return jnp.trace(jac, axis1=1, axis2=2)

  fn = jax.jit(lambda w: (exact(w), jax.grad(lambda u: exact(u).sum())(w)))
  ref_fn = jax.jit(lambda w: (ref(w), jax.grad(lambda u: ref(u).sum())(w)))
  div, grad = fn(w1)
  div_ref, grad_ref = ref_fn(w1)
  np.testing.assert_allclose(div, div_ref, atol=1e-10)
  np.testing.assert_allclose(grad, grad_ref, atol=1e-10)


def _slopes(errors):
  e = np.asarray(errors)
  return np.log2(e[:-1] / e[1:])


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2),
                                          ("rk4", 4)])
def test_integrator_order_on_linear_ode(x64, method, order):
  a = jnp.asarray(A_NP)
  x0 = jnp.asarray([[1.0, -0.5, 0.3]])
  ref = x0 @ jsl.expm(a).T
  errs = []
  for n in (8, 16, 32, 64):
    x1 = ode.integrate(_linear(a), x0, ode.uniform_grid(0.0, 1.0, n), method)
    errs.append(float(jnp.max(jnp.abs(x1 - ref))))
  slopes = _slopes(errs)
  assert abs(slopes[-1] - order) < 0.15, (errs, slopes)


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2),
                                          ("rk4", 4)])
def test_logp_order_with_time_dependent_divergence(x64, method, order):
  # ẋ = cos(t) x in 2-D: div = 2 cos t, Δ(T) = −2 sin T.
  v = lambda x, t: jnp.cos(t) * x
  x0 = jnp.ones((1, 2))
  errs = []
  for n in (8, 16, 32, 64):
    _, delta = ode.integrate_with_logp(v, x0, ode.uniform_grid(0.0, 1.5, n),
                                       method, "exact")
    errs.append(abs(float(delta[0]) + 2 * math.sin(1.5)))
  assert abs(_slopes(errs)[-1] - order) < 0.15, errs


def test_integrate_with_logp_path_and_reverse_time(x64):
  a = jnp.asarray(A_NP)
  x0 = jax.random.normal(jax.random.key(5), (3, 3), jnp.float64)
  ts = ode.uniform_grid(0.0, 0.5, 5)
  x1, d, xs, ds = ode.integrate_with_logp(_linear(a), x0, ts, "rk4", "exact",
                                          return_path=True)
  assert xs.shape == (6, 3, 3) and ds.shape == (6, 3)
  np.testing.assert_allclose(ds[:, 0], -np.asarray(ts) * np.trace(A_NP),
                             atol=1e-12)
  np.testing.assert_allclose(xs[-1], x1)
  # Backwards in time undoes it (the likelihood direction).
  x0b, db = ode.integrate_with_logp(_linear(a), x1, ts[::-1], "rk4", "exact")
  np.testing.assert_allclose(x0b, x0, atol=1e-6)
  np.testing.assert_allclose(db, -d, atol=1e-12)


def test_gradient_through_hutchinson_logp_is_unbiased(x64):
  # d/dA of Δ = −t εᵀAε is −t εεᵀ, whose mean over probes is −t I.
  x0 = jnp.ones((2000, 3))
  probes = ode.sample_probes(jax.random.key(6), x0.shape, 1, "rademacher",
                             jnp.float64)

  def mean_delta(a):
    _, d = ode.integrate_with_logp(_linear(a), x0, ode.uniform_grid(0, 1, 2),
                                   "euler", "hutchinson", probes)
    return jnp.mean(d)

  g = jax.jit(jax.grad(mean_delta))(jnp.asarray(A_NP))
  np.testing.assert_allclose(np.diag(g), -1.0, atol=1e-12)
  assert np.max(np.abs(g - np.diag(np.diag(g)))) < 0.1


def test_std_normal_logpdf(x64):
  x = jnp.asarray([[0.0, 0.0], [1.0, -2.0]])
  np.testing.assert_allclose(ode.std_normal_logpdf(x),
                             [-math.log(2 * math.pi),
                              -math.log(2 * math.pi) - 2.5], atol=1e-12)


def test_errors_name_the_choice():
  v = lambda x, t: x
  x = jnp.ones((2, 2))
  with pytest.raises(ValueError, match="rk45"):
    ode.integrate_with_logp(v, x, jnp.linspace(0, 1, 3), "rk45")
  with pytest.raises(ValueError, match="divergence"):
    ode.integrate_with_logp(v, x, jnp.linspace(0, 1, 3), "euler", "trace")
  with pytest.raises(ValueError, match="probes"):
    ode.velocity_and_divergence(v, x, 0.0, "hutchinson")
  with pytest.raises(ValueError, match="probes must have shape"):
    ode.divergence_hutchinson(v, x, 0.0, jnp.ones((1, 3, 2)))
  with pytest.raises(ValueError, match="probe"):
    ode.sample_probes(jax.random.key(0), (2,), 1, "uniform")
