"""iCT schedules, weights, distances and parameterisations (float64)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax.math import edm, interpolants


def test_karras_sigmas_closed_form(x64):
  n, lo, hi, rho = 11, 0.002, 80.0, 7.0
  s = np.asarray(edm.karras_sigmas(n, lo, hi, rho))
  want = [(lo ** (1 / rho) + i / (n - 1) * (hi ** (1 / rho) - lo ** (1 / rho)))
          ** rho for i in range(n)]
  np.testing.assert_allclose(s, want, rtol=1e-13)
  assert s[0] == pytest.approx(lo, rel=1e-13)
  assert s[-1] == pytest.approx(hi, rel=1e-13)
  assert np.all(np.diff(s) > 0)
  with pytest.raises(ValueError):
    edm.karras_sigmas(1)


def test_curriculum_values_cifar():
  """K = 100k, s0 = 10, s1 = 1280: K' = 12,500 and N doubles per stage."""
  assert edm.curriculum_period(100_000, 10, 1280) == 12_500
  steps = [0, 12_499, 12_500, 24_999, 25_000, 37_500, 50_000, 62_500,
           75_000, 87_499, 87_500, 99_999, 10 ** 7]
  want = [11, 11, 21, 21, 41, 81, 161, 321, 641, 641, 1281, 1281, 1281]
  got = [int(edm.curriculum_num_points(k, 100_000)) for k in steps]
  assert got == want
  traced = jax.jit(lambda k: edm.curriculum_num_points(k, 100_000))
  assert [int(traced(jnp.int32(k))) for k in steps] == want


def test_curriculum_non_power_of_two_and_fixed():
  # K' = ⌊K / (log2⌊150/10⌋ + 1)⌋ = ⌊1000 / 4.9069⌋ = 203 (published form).
  assert edm.curriculum_period(1000, 10, 150) == math.floor(
      1000 / (math.log2(15) + 1))
  vals = [int(edm.curriculum_num_points(k, 1000, 10, 150))
          for k in (0, 203, 406, 609, 812, 999)]
  assert vals == [11, 21, 41, 81, 151, 151]
  # s0 == s1: a fixed discretisation.
  assert {int(edm.curriculum_num_points(k, 1000, 64, 64))
          for k in (0, 500, 999)} == {65}
  # Tiny runs keep K' >= 1.
  assert edm.curriculum_period(3, 10, 1280) == 1


@pytest.mark.parametrize("n", [11, 21, 641, 1281])
def test_masked_table_matches_unpadded(x64, n):
  table = jax.jit(lambda n: edm.masked_karras_sigmas(n, 1281))(jnp.int32(n))
  np.testing.assert_allclose(table[:n], edm.karras_sigmas(n), rtol=1e-12)
  np.testing.assert_allclose(table[n:], 80.0, rtol=1e-12)


def _erf_pmf(sigmas, p_mean=-1.1, p_std=2.0):
  c = [math.erf((math.log(s) - p_mean) / (math.sqrt(2) * p_std))
       for s in sigmas]
  w = np.diff(c)
  return w / w.sum()


@pytest.mark.parametrize("n", [11, 81, 1281])
def test_pmf_normalised_and_exact(x64, n):
  sched = edm.ict_schedule(jnp.int32(0), total_steps=1, s0=n - 1, s1=1280)
  assert int(sched.num_points) == n
  pmf = np.asarray(sched.pmf)
  assert pmf.shape == (1280,)
  assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
  assert np.all(pmf[n - 1:] == 0)
  np.testing.assert_allclose(pmf[:n - 1],
                             _erf_pmf(edm.karras_sigmas(n)), rtol=1e-9,
                             atol=1e-15)
  # The pmf peaks near σ = exp(P_mean) ≈ 0.33.
  j = int(np.argmax(pmf))
  s = np.asarray(sched.sigmas)
  assert s[j] < math.exp(-1.1) * 3 and s[j + 1] > math.exp(-1.1) / 3


def test_sample_intervals_matches_pmf(x64):
  sched = edm.ict_schedule(jnp.int32(0), total_steps=1, s0=10, s1=1280)
  n = 200_000
  j = np.asarray(edm.sample_intervals(jax.random.key(0), sched.pmf, (n,)))
  assert j.min() >= 0 and j.max() <= 9
  freq = np.bincount(j, minlength=10) / n
  p = np.asarray(sched.pmf[:10])
  se = np.sqrt(p * (1 - p) / n)
  assert np.all(np.abs(freq - p) < 5 * se + 1e-12)


def test_ict_weight_is_inverse_spacing(x64):
  s = edm.karras_sigmas(11)
  lam = edm.ict_weight(s[:-1], s[1:])
  np.testing.assert_allclose(lam * (s[1:] - s[:-1]), 1.0, rtol=1e-13)
  # Small-σ intervals are weighted most.
  assert float(lam[0]) > float(lam[-1])


def test_boundary_condition_exact(x64):
  c_skip, c_out, c_in, c_noise = edm.consistency_scalings(
      jnp.asarray(0.002), 0.002, 0.5)
  assert float(c_skip) == 1.0 and float(c_out) == 0.0
  assert float(c_in) == pytest.approx(1 / math.sqrt(0.002 ** 2 + 0.25))
  assert float(c_noise) == pytest.approx(math.log(0.002) / 4)
  # Large σ: f ≈ σ_d F (the skip vanishes).
  c_skip, c_out, _, _ = edm.consistency_scalings(jnp.asarray(1e6), 0.002,
                                                 0.5)
  assert float(c_skip) < 1e-12 and float(c_out) == pytest.approx(0.5, 1e-6)

  def net(params, x, c_noise, key=None):  # arbitrary non-zero network
    return jnp.sin(params * x) + c_noise[:, None] + 3.0

  x = jax.random.normal(jax.random.key(0), (5, 3))
  f = edm.consistency_fn(net, 2.0, x, 0.002, sigma_min=0.002)
  np.testing.assert_array_equal(np.asarray(f), np.asarray(x))
  f_big = edm.consistency_fn(net, 2.0, x, 10.0, sigma_min=0.002)
  assert float(jnp.max(jnp.abs(f_big - x))) > 0.1


def test_pseudo_huber_limits(x64):
  c = 0.03
  a = jnp.zeros((3, 4))
  assert np.allclose(edm.pseudo_huber(a, a, c), 0.0)
  small = a.at[:, 0].set(1e-4)
  np.testing.assert_allclose(edm.pseudo_huber(small, a, c),
                             1e-8 / (2 * c), rtol=1e-5)
  big = a.at[:, 0].set(1e3)
  np.testing.assert_allclose(edm.pseudo_huber(big, a, c), 1e3 - c,
                             rtol=1e-9)
  assert edm.default_huber_c((32, 32, 3)) == pytest.approx(
      0.00054 * math.sqrt(3072))


def _gauss_fm_velocity(interp, m, s):
  """Exact b_t(x) = E[α' z + β' x* | x_t] for x* ~ N(m, s²), z ~ N(0, 1)."""

  def vel(params, x, t):
    del params
    t = t[:, None]
    a, b = interp.alpha(t), interp.beta(t)
    da, db = interp.dalpha(t), interp.dbeta(t)
    var = a ** 2 + b ** 2 * s ** 2
    cov = da * a + db * b * s ** 2
    return db * m + cov / var * (x - b * m)

  return vel


@pytest.mark.parametrize("name", ["linear", "trigonometric"])
def test_sigma_velocity_from_fm_gaussian(x64, name):
  """The change of variables gives the VE PF-ODE E[z|x_σ] = σ(x-m)/(s²+σ²)."""
  interp = interpolants.get(name)
  m, s = 0.7, 0.4
  v = edm.sigma_velocity_from_fm(interp, _gauss_fm_velocity(interp, m, s))
  sigma = jnp.asarray([0.002, 0.1, 0.821, 5.0, 80.0])
  x = m + jnp.sqrt(s ** 2 + sigma ** 2)[:, None] * jnp.asarray(
      [[-1.3, 0.2, 2.0]])
  got = v(None, x, sigma)
  want = sigma[:, None] * (x - m) / (s ** 2 + sigma[:, None] ** 2)
  np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
  # σ = α(t)/β(t) at t(σ).
  t = edm.interp_time_of_sigma(name, sigma)
  np.testing.assert_allclose(interp.alpha(t) / interp.beta(t), sigma,
                             rtol=1e-10)


def test_sigma_velocity_from_denoiser(x64):
  m, s = 0.3, 0.5
  den = lambda p, x, sg: m + s ** 2 / (s ** 2 + sg[:, None] ** 2) * (x - m)
  v = edm.sigma_velocity_from_denoiser(den)
  sigma = jnp.asarray([0.01, 1.0, 30.0])
  x = jnp.asarray([[1.0], [-2.0], [40.0]])
  np.testing.assert_allclose(v(None, x, sigma),
                             sigma[:, None] * (x - m) / (s ** 2
                                                         + sigma[:, None] ** 2),
                             rtol=1e-12)


def test_pf_ode_step_orders(x64):
  """Heun's local error is O(h³), Euler's O(h²), on x ∝ √(s² + σ²)."""
  s = 0.5
  v = lambda x, sg: sg[:, None] * x / (s ** 2 + sg[:, None] ** 2)
  x = jnp.ones((1, 1))
  errs = {}
  for solver in ("euler", "heun"):
    errs[solver] = []
    for h in (0.1, 0.05):
      s1, s0 = jnp.asarray([1.0]), jnp.asarray([1.0 - h])
      exact = math.sqrt(s ** 2 + (1 - h) ** 2) / math.sqrt(s ** 2 + 1)
      errs[solver].append(abs(float(edm.pf_ode_step(v, x, s1, s0,
                                                    solver)[0, 0]) - exact))
  assert errs["euler"][0] / errs["euler"][1] == pytest.approx(4, rel=0.15)
  assert errs["heun"][0] / errs["heun"][1] == pytest.approx(8, rel=0.15)
  with pytest.raises(ValueError):
    edm.pf_ode_step(v, x, s1, s0, "rk4")


def test_schedule_compiles_once():
  traces = []

  @jax.jit
  def draw(step, key):
    traces.append(1)
    sched = edm.ict_schedule(step, total_steps=800, s0=10, s1=1280)
    return edm.sample_intervals(key, sched.pmf, (16,)), sched.num_points

  seen = set()
  for k in range(0, 800, 50):  # crosses all 8 curriculum stages
    j, n = draw(jnp.int32(k), jax.random.key(k))
    seen.add(int(n))
    assert int(j.max()) <= int(n) - 2
  assert seen == {11, 21, 41, 81, 161, 321, 641, 1281}
  assert len(traces) == 1
