"""Fréchet distance, KID and Inception Score against closed forms."""

import numpy as np
import pytest
import scipy.linalg

from gcflow_jax.evaluation.fid import frechet_distance
from gcflow_jax.evaluation.fid import gaussian_statistics
from gcflow_jax.evaluation.fid import inception_score_from_logits
from gcflow_jax.evaluation.fid import kid_from_features
from gcflow_jax.evaluation.fid import mmd2_polynomial_unbiased


def _spd(rng, d):
  a = rng.normal(size=(d, d))
  return a @ a.T / d + 0.1 * np.eye(d)


def _closed_form(mu1, s1, mu2, s2):
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
               - 2 * np.trace(covmean.real))


@pytest.mark.parametrize("d", [1, 3, 16])
def test_frechet_matches_scipy_sqrtm(d):
  rng = np.random.default_rng(d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = _spd(rng, d), _spd(rng, d)
  got = frechet_distance(mu1, s1, mu2, s2)
  np.testing.assert_allclose(got, _closed_form(mu1, s1, mu2, s2), rtol=1e-8,
                             atol=1e-9)


def test_frechet_one_dim_gaussians():
  # W2^2 between N(m1, v1) and N(m2, v2) is (m1-m2)^2 + (sqrt v1 - sqrt v2)^2.
  got = frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]])
  assert got == pytest.approx(9.0 + 1.0, rel=1e-12)


def test_frechet_zero_for_identical_sets_and_symmetric():
  rng = np.random.default_rng(0)
  f = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
  g = rng.normal(size=(400, 8)) + 0.3
  mf, sf = gaussian_statistics(f)
  mg, sg = gaussian_statistics(g)
  assert frechet_distance(mf, sf, mf, sf) == pytest.approx(0.0, abs=1e-9)
  assert frechet_distance(mf, sf, mg, sg) == pytest.approx(
      frechet_distance(mg, sg, mf, sf), rel=1e-9)
  assert frechet_distance(mf, sf, mg, sg) > 0.5


def test_gaussian_statistics_matches_numpy():
  f = np.random.default_rng(1).normal(size=(50, 4))
  mu, sigma = gaussian_statistics(f)
  np.testing.assert_allclose(mu, f.mean(0))
  np.testing.assert_allclose(sigma, np.cov(f, rowvar=False))


def test_frechet_rejects_bad_shapes():
  with pytest.raises(ValueError, match="mu2/sigma2"):
    frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
  with pytest.raises(ValueError, match="NaN"):
    frechet_distance(np.zeros(2), np.eye(2), np.full(2, np.nan), np.eye(2))


def test_kid_is_unbiased():
  # Two independent sets from one distribution, many times: the mean of the
  # unbiased estimate is 0 within 3 standard errors.
  rng = np.random.default_rng(0)
  vals = []
  for _ in range(300):
    x = rng.gamma(2.0, size=(40, 8))
    y = rng.gamma(2.0, size=(40, 8))
    vals.append(kid_from_features(x, y, num_subsets=1, subset_size=40)[0])
  vals = np.asarray(vals)
  assert abs(vals.mean()) < 3 * vals.std(ddof=1) / np.sqrt(len(vals))
  shifted = kid_from_features(rng.gamma(2.0, size=(200, 8)) + 0.5,
                              rng.gamma(2.0, size=(200, 8)), num_subsets=5,
                              subset_size=100)[0]
  assert shifted > 10 * vals.std()


def test_kid_polynomial_kernel_definition():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(6, 3)), rng.normal(size=(5, 3))
  k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
  kxx = np.mean([k(x[i], x[j]) for i in range(6) for j in range(6) if i != j])
  kyy = np.mean([k(y[i], y[j]) for i in range(5) for j in range(5) if i != j])
  kxy = np.mean([k(a, b) for a in x for b in y])
  np.testing.assert_allclose(mmd2_polynomial_unbiased(x, y),
                             kxx + kyy - 2 * kxy, rtol=1e-5)


def test_inception_score_uniform_is_one():
  mean, std = inception_score_from_logits(np.zeros((100, 1008)), splits=10)
  assert mean == pytest.approx(1.0, abs=1e-12)
  assert std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("splits", [1, 2, 5])
def test_inception_score_confident_balanced_is_num_classes(splits):
  k = 10
  labels = np.tile(np.arange(k), 20)  # every split holds every class equally
  logits = 1e3 * np.eye(k)[labels]
  mean, _ = inception_score_from_logits(logits, splits=splits)
  assert mean == pytest.approx(k, rel=1e-9)


def test_inception_score_rejects_too_many_splits():
  with pytest.raises(ValueError, match="splits"):
    inception_score_from_logits(np.zeros((5, 3)), splits=10)


def test_inception_score_chunks_like_the_reference():
  # N = 7 confident predictions in 3 splits: the reference chunks are
  # [0:2], [2:4], [4:7] (boundaries floor(i N / splits)). For one-hot
  # predictions exp(mean KL) = exp(entropy of the chunk's class histogram):
  # classes (0, 1) -> 2, (0, 0) -> 1, (0, 1, 2) -> 3. np.array_split's
  # chunks [0:3], [3:5], [5:7] would give (1.89, 1, 2) instead.
  classes = np.array([0, 1, 0, 0, 0, 1, 2])
  logits = 100.0 * np.eye(3)[classes]
  mean, std = inception_score_from_logits(logits, splits=3)
  np.testing.assert_allclose(mean, 2.0, rtol=1e-12)
  np.testing.assert_allclose(std, np.sqrt(2.0 / 3.0), rtol=1e-12)
