"""Couplings: minibatch OT (exact / Sinkhorn), GC endpoints and mixing."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax.math import couplings as C


def test_cost_matrix_matches_brute_force(x64):
  x = jax.random.normal(jax.random.key(0), (5, 2, 3))
  y = jax.random.normal(jax.random.key(1), (4, 2, 3))
  want = np.array([[np.sum((np.asarray(a) - np.asarray(b)) ** 2) for b in y]
                   for a in x])
  np.testing.assert_allclose(C.squared_euclidean_cost(x, y), want,
                             rtol=1e-12)


@jax.jit
def _solve_all(x, z):
  """Exact assignment, Sinkhorn plan and both roundings (one compile)."""
  cost = C.squared_euclidean_cost(x, z)
  plan = C.sinkhorn_plan(cost, threshold=1e-5)
  return (C.ot_permutation(x, z, "exact"), plan, C.plan_to_permutation(plan),
          C.plan_to_permutation(plan, "greedy"))


def test_ot_recovers_planted_permutation():
  n, d = 48, 8
  x = jax.random.normal(jax.random.key(0), (n, d))
  perm = jax.random.permutation(jax.random.key(1), n)
  # z_j = x_{perm^-1(j)} + small noise, i.e. z[perm] ≈ x.
  z = x[jnp.argsort(perm)] + 1e-3 * jax.random.normal(jax.random.key(2),
                                                      (n, d))
  exact, _, lsa, greedy = _solve_all(x, z)
  for got in (exact, lsa, greedy):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(perm))
    np.testing.assert_allclose(z[got], x, atol=1e-2)


def _sequential_greedy(score):
  """Reference greedy rounding: take the largest remaining entry (first in
  row-major order on ties), remove its row and column, repeat."""
  s = np.array(score, np.float64)
  perm = np.zeros(len(s), np.int64)
  for _ in range(len(s)):
    i, j = np.unravel_index(np.argmax(s), s.shape)
    perm[i] = j
    s[i, :] = -np.inf
    s[:, j] = -np.inf
  return perm


@pytest.mark.parametrize("kind", ["uniform", "ties", "plan"])
def test_greedy_rounds_equal_sequential_greedy(kind):
  """The mutual-best rounds of `greedy_permutation` give exactly the
  sequential greedy permutation, ties included."""
  rng = np.random.RandomState(0)
  if kind == "uniform":
    score = rng.rand(64, 64)
  elif kind == "ties":
    score = rng.randint(0, 3, (40, 40)).astype(np.float64)
  else:
    x = jax.random.normal(jax.random.key(7), (64, 6))
    z = jax.random.normal(jax.random.key(8), (64, 6))
    score = np.asarray(C.sinkhorn_plan(C.squared_euclidean_cost(x, z)))
  got = np.asarray(jax.jit(C.greedy_permutation)(
      jnp.asarray(score, jnp.float32)))
  np.testing.assert_array_equal(got, _sequential_greedy(
      np.asarray(score, np.float32)))


def test_exact_is_optimal():
  # Brute force over all 6! permutations.
  x = jax.random.normal(jax.random.key(3), (6, 3))
  z = jax.random.normal(jax.random.key(4), (6, 3))
  cost = np.asarray(C.squared_euclidean_cost(x, z), np.float64)
  best = min(sum(cost[i, p[i]] for i in range(6))
             for p in itertools.permutations(range(6)))
  perm = np.asarray(C.exact_assignment(jnp.asarray(cost)))
  assert sorted(perm) == list(range(6))
  assert cost[np.arange(6), perm].sum() == pytest.approx(best, rel=1e-12)


def test_ot_beats_random_pairing_and_plan_marginals():
  """OT pairing is cheaper than the independent one; the Sinkhorn plan has
  uniform marginals and both roundings are valid near-optimal permutations."""
  n = 48
  x = jax.random.normal(jax.random.key(5), (n, 8))
  z = jax.random.normal(jax.random.key(6), (n, 8))
  exact, plan, lsa, greedy = _solve_all(x, z)
  np.testing.assert_allclose(plan.sum(0), 1 / n, atol=1e-5)
  np.testing.assert_allclose(plan.sum(1), 1 / n, atol=1e-5)
  ic = float(C.pairing_cost(x, z))
  ot = float(C.pairing_cost(x, z, exact))
  assert ot < 0.8 * ic
  for p in (lsa, greedy):
    assert sorted(np.asarray(p).tolist()) == list(range(n))
    assert ot * (1 - 1e-6) <= float(C.pairing_cost(x, z, p)) < 1.05 * ot


def test_unknown_solver_raises():
  x = jnp.zeros((4, 2))
  with pytest.raises(ValueError, match="ot solver"):
    C.ot_permutation(x, x, "hungarian")
  with pytest.raises(ValueError, match="rounding"):
    C.plan_to_permutation(jnp.ones((4, 4)), "argmax")


def test_gc_count():
  assert C.gc_count(0.5, 512) == 256
  assert C.gc_count(0.0, 512) == 0
  assert C.gc_count(1.0, 512) == 512
  assert C.gc_count(0.3, 10) == 3
  assert C.gc_count(0.29, 100) == 29   # 0.29 * 100 = 28.999999999999996
  assert C.gc_count(0.5, 7) == 3
  with pytest.raises(ValueError):
    C.gc_count(1.5, 8)


@pytest.mark.parametrize("b,m", [(8, 4), (12, 3), (10, 7), (8, 0), (8, 8)])
def test_gc_mask_count_and_balance(b, m):
  mask = C.gc_mask(b, m)
  assert mask.shape == (b,) and mask.sum() == m
  if (b, m) == (8, 4):
    np.testing.assert_array_equal(mask, [1, 0, 1, 0, 1, 0, 1, 0])
  # Balanced over D contiguous shards whenever D divides gcd(B, m).
  g = np.gcd(b, m)
  if m and g > 1:
    per = mask.reshape(g, -1).sum(1)
    assert np.all(per == m // g)


def test_mix_endpoints_runs_endpoint_on_gc_slice_only():
  b, m = 12, 4
  x = jax.random.normal(jax.random.key(0), (b, 3))
  z = jax.random.normal(jax.random.key(1), (b, 3))
  sigma = jnp.linspace(0.1, 2.0, b)
  seen = []

  def endpoint(x_s, s):
    seen.append(x_s.shape[0])
    return 0.5 * x_s + s[:, None]

  out = C.mix_endpoints(endpoint, x, z, sigma, m)
  assert seen == [m]
  mask = C.gc_mask(b, m)
  want_gc = 0.5 * (x + sigma[:, None] * z) + sigma[:, None]
  np.testing.assert_allclose(out[mask], want_gc[mask], rtol=1e-6)
  np.testing.assert_array_equal(out[~mask], x[~mask])
  assert C.mix_endpoints(endpoint, x, z, sigma, 0) is x


def test_gc_endpoint_has_no_gradient():
  x = jnp.ones((4, 2))
  z = jnp.ones((4, 2))
  s = jnp.ones((4,))

  def f(w):
    return jnp.sum(C.mix_endpoints(lambda xs, ss: w * xs, x, z, s, 2))

  assert float(jax.grad(f)(3.0)) == 0.0
