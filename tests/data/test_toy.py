"""Toy samplers against their exact moments."""

import jax
import numpy as np
import pytest

from gcflow_jax.data import toy


def _matches_moments(x, mean, cov):
  """Sample mean and covariance within ~5 standard errors of the exact ones."""
  n = x.shape[0]
  se_mean = np.sqrt(np.diag(cov) / n) + 1e-12
  scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
  return bool(np.all(np.abs(x.mean(0) - mean) < 5 * se_mean + 1e-6) and
              np.all(np.abs(np.cov(x.T) - cov) < 5 * np.sqrt(2.0 / n) * scale
                     * 3 + 1e-6))


@pytest.mark.parametrize("name", toy.TOYS)
def test_moments_match_closed_form(name):
  dim = 3 if name in ("gaussian", "two_diracs") else 2
  x = np.asarray(toy.sample(name, jax.random.key(3), 200_000, dim=dim),
                 np.float64)
  mean, cov = toy.moments(name, dim=dim)
  assert _matches_moments(x, mean, cov), name


def test_checkerboard_moments_by_hand_and_the_check_has_power():
  # Cells (i, j), i + j even, of the 4x4 grid on [-2, 2]^2: centres c in
  # {-1.5, -.5, .5, 1.5}; E c_x^2 = 1.25, E c_x c_y = 2 / 8 = 0.25, plus the
  # in-cell variance 1/12 per axis.
  mean, cov = toy.moments("checkerboard")
  np.testing.assert_allclose(mean, [0.0, 0.0], atol=1e-15)
  np.testing.assert_allclose(cov, [[4 / 3, 0.25], [0.25, 4 / 3]], rtol=1e-12)
  x = np.asarray(toy.sample("checkerboard", jax.random.key(0), 200_000),
                 np.float64)
  assert _matches_moments(x, mean, cov)
  # Samplers that are slightly wrong fail the same check: the other-parity
  # board (E xy = -0.25), a 0.05 shift, a 3% scale error.
  assert not _matches_moments(x * np.array([-1.0, 1.0]), mean, cov)
  assert not _matches_moments(x + 0.05, mean, cov)
  assert not _matches_moments(x * 1.03, mean, cov)


def test_unknown_toy():
  with pytest.raises(ValueError, match="is not one of"):
    toy.sample("spiral", jax.random.key(0), 4)


def test_checkerboard_support():
  x = np.asarray(toy.sample("checkerboard", jax.random.key(1), 10_000))
  i = np.floor(x[:, 0] + 2).astype(int)
  j = np.floor(x[:, 1] + 2).astype(int)
  assert np.all((i + j) % 2 == 0) and x.min() >= -2 and x.max() <= 2
