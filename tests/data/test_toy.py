"""Toy samplers against their exact moments."""

import jax
import numpy as np
import pytest

from gcflow_jax.data import toy


@pytest.mark.parametrize("name", toy.TOYS)
def test_moments_match_closed_form(name):
  dim = 3 if name in ("gaussian", "two_diracs") else 2
  n = 200_000
  x = np.asarray(toy.sample(name, jax.random.key(3), n, dim=dim), np.float64)
  mean, cov = toy.moments(name, dim=dim)
  # Standard errors of the mean and (roughly) of the second moments.
  se_mean = np.sqrt(np.diag(cov) / n) + 1e-12
  assert np.all(np.abs(x.mean(0) - mean) < 5 * se_mean + 1e-6), name
  emp = np.cov(x.T)
  scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
  assert np.all(np.abs(emp - cov) < 5 * np.sqrt(2.0 / n) * scale * 3
                + 1e-6), name


def test_moments_detect_a_wrong_sampler():
  # A shifted checkerboard must fail the same check (the test can fail).
  x = np.asarray(toy.sample("checkerboard", jax.random.key(0), 100_000))
  mean, _ = toy.moments("checkerboard")
  assert np.abs((x + 0.05).mean(0) - mean).max() > 0.04


def test_unknown_toy():
  with pytest.raises(ValueError, match="is not one of"):
    toy.sample("spiral", jax.random.key(0), 4)


def test_checkerboard_support():
  x = np.asarray(toy.sample("checkerboard", jax.random.key(1), 10_000))
  i = np.floor(x[:, 0] + 2).astype(int)
  j = np.floor(x[:, 1] + 2).astype(int)
  assert np.all((i + j) % 2 == 0) and x.min() >= -2 and x.max() <= 2
