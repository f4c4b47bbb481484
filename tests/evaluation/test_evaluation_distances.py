"""Sample-based distances: zero on identical sets, growth, closed forms."""

import numpy as np
import pytest
import scipy.special
import scipy.stats

from gcflow_jax.evaluation import distances


@pytest.fixture
def gauss():
  rng = np.random.default_rng(0)
  return rng.normal(size=(400, 2)), rng.normal(size=(400, 2))


def test_mmd_zero_for_identical_and_grows_with_shift(gauss):
  x, y = gauss
  assert abs(distances.mmd_rbf(x, x)) < 1e-2
  assert abs(distances.mmd_rbf(x, y)) < 1e-2
  vals = [distances.mmd_rbf(x + s, y) for s in (0.5, 1.0, 2.0)]
  assert vals[0] > 0.02 and vals[0] < vals[1] < vals[2]


def test_mmd_matches_direct_formula():
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(30, 3)), rng.normal(size=(20, 3)) + 0.2
  bw = (0.7, 1.5)

  def k(a, b):
    d2 = np.sum((a[:, None] - b[None]) ** 2, -1)
    return sum(np.exp(-d2 / (2 * s * s)) for s in bw)

  kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
  want = ((kxx.sum() - np.trace(kxx)) / (30 * 29)
          + (kyy.sum() - np.trace(kyy)) / (20 * 19) - 2 * kxy.mean())
  np.testing.assert_allclose(distances.mmd_rbf(x, y, bandwidths=bw), want,
                             rtol=1e-4, atol=1e-6)
  biased = kxx.mean() + kyy.mean() - 2 * kxy.mean()
  np.testing.assert_allclose(
      distances.mmd_rbf(x, y, bandwidths=bw, unbiased=False), biased,
      rtol=1e-4, atol=1e-6)


def _entropic_ot_numpy(x, y, eps, iters=300):
  """OT_eps with uniform weights by float64 log-domain Sinkhorn (reference).

  min_P <P, C> + eps KL(P || a b^T) = <f, a> + <g, b> at the fixed point
  (reached to float64 round-off well within 300 iterations here).
  """
  c = np.sum((x[:, None] - y[None]) ** 2, -1)
  la, lb = -np.log(len(x)), -np.log(len(y))
  f, g = np.zeros(len(x)), np.zeros(len(y))
  for _ in range(iters):
    f = -eps * scipy.special.logsumexp((g[None] - c) / eps + lb, axis=1)
    g = -eps * scipy.special.logsumexp((f[:, None] - c) / eps + la, axis=0)
  return f.mean() + g.mean()


def test_sinkhorn_matches_a_float64_reference():
  rng = np.random.default_rng(7)
  x, y = rng.normal(size=(9, 2)), rng.normal(size=(6, 2)) * 1.5 + 0.3
  for eps in (0.3, 1.0):
    want = (_entropic_ot_numpy(x, y, eps) - _entropic_ot_numpy(x, x, eps) / 2
            - _entropic_ot_numpy(y, y, eps) / 2)
    got = distances.sinkhorn_divergence(x, y, epsilon=eps, threshold=1e-5)
    assert want > 1.0
    assert got == pytest.approx(want, rel=1e-5), eps
  # Default epsilon: 0.01 x the mean squared distance over all pairs of y.
  d2 = np.sum((y[:, None] - y[None]) ** 2, -1)
  assert distances.default_sinkhorn_epsilon(y) == pytest.approx(
      0.01 * d2.mean(), rel=1e-12)


def test_sinkhorn_translation_is_exact(gauss):
  x, y = gauss[0][:200], gauss[1][:200]
  # Squared cost: a translation by delta adds exactly |delta|^2 to every
  # entropic OT problem between x and x + delta, and nothing to the x-x terms.
  for d in (0.5, 1.0, 2.0):
    delta = np.array([d, -d / 2])
    got = distances.sinkhorn_divergence(x + delta, x, epsilon=0.1)
    assert got == pytest.approx(np.sum(delta ** 2), rel=1e-2, abs=1e-3)
  vals = [distances.sinkhorn_divergence(x + s, y) for s in (0.0, 0.5, 1.0)]
  assert vals[0] < vals[1] < vals[2]


def test_exact_w2_one_dim_equals_sorted_matching():
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(300, 1)), rng.exponential(size=(300, 1))
  want = np.sqrt(np.mean((np.sort(a[:, 0]) - np.sort(b[:, 0])) ** 2))
  assert distances.exact_w2(a, b) == pytest.approx(want, rel=1e-10)


def test_exact_w2_permutation_and_limits(gauss):
  x, _ = gauss
  perm = np.random.default_rng(3).permutation(len(x))
  assert distances.exact_w2(x, x[perm]) == pytest.approx(0.0, abs=1e-12)
  with pytest.raises(ValueError, match="equal sample sizes"):
    distances.exact_w2(x, x[:10])
  with pytest.raises(ValueError, match="N <= 100"):
    distances.exact_w2(x, x, max_samples=100)


def test_energy_distance_matches_scipy_in_1d():
  rng = np.random.default_rng(4)
  a, b = rng.normal(size=(200, 1)), rng.normal(size=(150, 1)) + 0.4
  v = distances.energy_distance(a, b, unbiased=False)
  assert np.sqrt(v) == pytest.approx(
      scipy.stats.energy_distance(a[:, 0], b[:, 0]), rel=1e-5)


def test_energy_zero_for_identical_and_grows(gauss):
  x, y = gauss
  assert abs(distances.energy_distance(x, y)) < 2e-2
  vals = [distances.energy_distance(x + s, y) for s in (0.5, 1.0, 2.0)]
  assert 0.05 < vals[0] < vals[1] < vals[2]


def test_kl_hist_against_known_density():
  # p_data uniform on [0,1]^2, p_model with density q(x, y) = 2x: the
  # discretised KL over a G x G grid is sum_i (1/G^2) log((1/G^2) / q_i) with
  # q_i = (x_{j+1}^2 - x_j^2) / G.
  rng = np.random.default_rng(5)
  n, g = 400_000, 10
  data = rng.uniform(size=(n, 2))
  model = np.stack([np.sqrt(rng.uniform(size=n)), rng.uniform(size=n)], 1)
  edges = np.linspace(0, 1, g + 1)
  qx = np.diff(edges ** 2)  # P(column j) under q
  want = np.sum((1 / g) * np.log((1 / g) / qx))
  got = distances.kl_hist_2d(model, data, bins=g, box=(0.0, 1.0))
  assert got == pytest.approx(want, abs=5e-3)
  # Continuous limit KL(U || 2x) = 1 - log 2 is approached from below.
  assert got < 1 - np.log(2)


def test_kl_hist_exact_counts():
  # 2 x 2 cells on [-1, 1]^2, data 1/4 in each cell exactly; model 3/4 in
  # the lower-left cell, 1/4 in the upper-right, none in the other two:
  # KL = 1/4 log((1/4 + e) / (3/4 + e)) + 1/4 log(1)
  #      + 2 * 1/4 log((1/4 + e) / e), e = 1e-10.
  centres = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
  data = np.repeat(centres, 100, axis=0)
  model = np.repeat(centres[[0, 0, 0, 3]], 100, axis=0)
  e = 1e-10
  want = 0.25 * np.log((0.25 + e) / (0.75 + e)) + 0.5 * np.log((0.25 + e) / e)
  got = distances.kl_hist_2d(model, data, bins=2, box=(-1.0, 1.0))
  assert got == pytest.approx(want, rel=1e-12)


def test_kl_hist_overflow_cell_counts_mass_outside_box():
  rng = np.random.default_rng(6)
  data = rng.uniform(-1, 1, size=(20_000, 2))
  # Half of the model mass outside the box: KL = log 2 from the in-box cells.
  out = np.concatenate([data[:10_000], data[:10_000] + 10.0])
  assert distances.kl_hist_2d(out, data, bins=5) == pytest.approx(
      np.log(2.0), abs=3e-2)


def test_kl_hist_needs_2d():
  x = np.zeros((10, 3))
  with pytest.raises(ValueError, match="2-D"):
    distances.kl_hist_2d(x, x)


def test_transport_cost():
  x = np.zeros((4, 3))
  y = np.ones((4, 3))
  assert distances.transport_cost(x, y) == pytest.approx(3.0)
  with pytest.raises(ValueError, match="paired"):
    distances.transport_cost(x, y[:3])


def test_bad_inputs_raise():
  x = np.zeros((10, 2))
  with pytest.raises(ValueError, match="dimension mismatch"):
    distances.mmd_rbf(x, np.zeros((10, 3)))
  with pytest.raises(ValueError, match="NaN"):
    distances.energy_distance(x, np.full((10, 2), np.nan))
  with pytest.raises(ValueError, match="bandwidths"):
    distances.mmd_rbf(x, x + 1, bandwidths=[0.0])
