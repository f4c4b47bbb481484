"""Coupling diagnostics against the closed forms of the GC paper (float64)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax.evaluation import diagnostics as D

S = 0.5


def test_gaussian_transport_cost_closed_form_and_lemma1(x64):
  sig = np.array([0.0, 0.1, 1.0, 10.0, 80.0])
  c = D.gaussian_transport_cost(sig, S)
  assert c[0] == pytest.approx(S ** 2 + 1)
  assert np.all(np.diff(c) < 0)          # Lemma 1: decreasing in σ
  assert c[-1] > (S - 1) ** 2            # → (σ* - 1)², the W2 optimum
  # Monte Carlo with the ideal endpoint (σ_min = 0) matches Eq. 21.
  n = 200_000
  x = S * jax.random.normal(jax.random.key(0), (n, 1))
  z = jax.random.normal(jax.random.key(1), (n, 1))
  f = functools.partial(D.gaussian_consistency_fn, sigma_star=S)
  out = D.transport_costs(x, z, sig[1:], f, ot_solver=None)
  se = 4 * np.sqrt(2.0 / n) * (1 + S)
  assert out["ic"] == pytest.approx(S ** 2 + 1, abs=se)
  np.testing.assert_allclose(out["gc"], c[1:], atol=se)
  assert np.all(out["gc"] < out["ic"])


def test_two_diracs_gc_beats_batch_ot_and_ic(x64):
  """Fig. 3 (left): x* ∈ {δ0, δ1} in 1-D; GC with the ideal (ODE) endpoint
  has a lower cost than IC at every σ, and than batch OT at large σ."""
  atoms = jnp.asarray([[0.0], [1.0]])
  den = D.atoms_denoiser(atoms)
  f = D.ode_consistency_fn(den, sigma_min=0.002, num_steps=48)
  key = jax.random.key(2)
  n = 256
  x = atoms[jax.random.bernoulli(key, 0.5, (n,)).astype(jnp.int32)]
  z = jax.random.normal(jax.random.key(3), (n, 1))
  sig = [0.1, 1.0, 10.0, 80.0]
  out = D.transport_costs(x, z, sig, f, ot_solver="exact")
  assert out["ot"] < out["ic"]
  assert np.all(out["gc"] < out["ic"])
  assert out["gc"][-1] < out["ot"]


def test_atoms_denoiser_limits(x64):
  atoms = jnp.asarray([[0.0, 0.0], [2.0, 0.0]])
  den = D.atoms_denoiser(atoms, weights=jnp.asarray([0.25, 0.75]))
  x = jnp.asarray([[0.3, 0.1], [1.6, -0.2]])
  np.testing.assert_allclose(den(x, 1e-3), [[0.0, 0.0], [2.0, 0.0]],
                             atol=1e-12)
  np.testing.assert_allclose(den(x, 1e4), [[1.5, 0.0], [1.5, 0.0]],
                             atol=1e-6)
  # Posterior weights at σ = 1 by hand.
  w1 = 0.75 * np.exp(-np.sum((np.asarray(x) - [2, 0]) ** 2, 1) / 2)
  w0 = 0.25 * np.exp(-np.sum(np.asarray(x) ** 2, 1) / 2)
  np.testing.assert_allclose(den(x, 1.0)[:, 0], 2 * w1 / (w0 + w1),
                             rtol=1e-12)


def test_ode_consistency_fn_matches_gaussian_closed_form(x64):
  den = functools.partial(D.gaussian_denoiser, sigma_star=S)
  x = jnp.asarray([[1.0], [-3.0], [40.0], [0.5]])
  sigma = jnp.asarray([0.002, 0.5, 30.0, 2.0])
  want = D.gaussian_consistency_fn(x, sigma, S, sigma_min=0.002)
  errs = []
  for steps in (32, 128):
    f = D.ode_consistency_fn(den, sigma_min=0.002, num_steps=steps)
    got = f(x, sigma)
    np.testing.assert_array_equal(got[0], x[0])  # f(x, σ_min) = x
    errs.append(float(jnp.max(jnp.abs(got / want - 1))))
  assert errs[1] < 1e-3
  assert errs[0] / errs[1] == pytest.approx(16, rel=0.2)  # Heun: 2nd order


def test_velocity_discrepancy_closed_forms_and_theorem2(x64):
  """R̃ with exact denoisers matches the closed forms; GC < IC (Thm 2)."""
  n = 200_000
  x = S * jax.random.normal(jax.random.key(4), (n, 1))
  z = jax.random.normal(jax.random.key(5), (n, 1))
  f = functools.partial(D.gaussian_consistency_fn, sigma_star=S)
  for sigma in (0.3, 2.0, 20.0):
    ic = D.velocity_discrepancy(
        functools.partial(D.gaussian_denoiser, sigma_star=S), x, z, sigma)
    want_ic = D.gaussian_velocity_discrepancy(sigma, S, "ic")
    assert float(ic) == pytest.approx(want_ic, rel=0.02, abs=1e-4)
    # GC pairs (x̂, z); their exact denoiser is the linear regression of
    # x̂ on x̃ = x̂ + σ z: E[x̂|x̃] = Cov(x̂, x̃)/Var(x̃) x̃.
    s = S / np.sqrt(S ** 2 + sigma ** 2)
    cov = s * s * S ** 2 + s * (1 + s) * sigma ** 2
    var = s * s * S ** 2 + (1 + s) ** 2 * sigma ** 2
    x_hat, z_gc = D.coupled_pairs("gc", x, z, sigma, f)
    gc = D.velocity_discrepancy(lambda xx, ss: cov / var * xx, x_hat, z_gc,
                                sigma)
    want_gc = D.gaussian_velocity_discrepancy(sigma, S, "gc")
    assert float(gc) == pytest.approx(want_gc, rel=0.02, abs=1e-5)
    assert want_gc < want_ic
  # Theorem 2: the ratio GC/IC → 0 as σ → ∞.
  big = np.array([10.0, 100.0])
  ratio = (D.gaussian_velocity_discrepancy(big, S, "gc")
           / D.gaussian_velocity_discrepancy(big, S, "ic"))
  assert ratio[1] < 0.02 * ratio[0] + 1e-6


def test_quality_per_timestep_shows_gc_shift(x64):
  """An exact IC consistency model is perfect on IC trajectories and shifted
  on GC ones (the marginals differ, Sec. 4.1 / Fig. 4b)."""
  n = 50_000
  x = S * jax.random.normal(jax.random.key(6), (n, 1))
  z = jax.random.normal(jax.random.key(7), (n, 1))
  f = functools.partial(D.gaussian_consistency_fn, sigma_star=S)
  metric = lambda out: abs(float(np.std(out)) - S)  # noqa: E731
  sig = [0.5, 2.0]
  ic = D.quality_per_timestep(f, x, z, sig, metric, trajectory="ic")
  gc = D.quality_per_timestep(f, x, z, sig, metric, trajectory="gc",
                              endpoint_fn=f)
  assert np.all(ic < 0.01)
  assert np.all(gc > 5 * ic) and np.all(gc > 0.02)
  with pytest.raises(ValueError):
    D.quality_per_timestep(f, x, z, sig, metric, trajectory="gc")


def test_fit_denoiser_recovers_ic_discrepancy():
  """A small denoiser trained on IC pairs estimates R̃_IC (Fig. 2's
  procedure) within a few percent of the closed form."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, c_noise):
      h = jnp.concatenate([x, c_noise[:, None], jnp.sin(3 * c_noise)[:, None],
                           jnp.cos(3 * c_noise)[:, None]], -1)
      h = nn.silu(nn.Dense(64)(h))
      h = nn.silu(nn.Dense(64)(h))
      return nn.Dense(1)(h)

  net = Net()
  params = net.init(jax.random.key(0), jnp.zeros((1, 1)), jnp.zeros((1,)))
  apply = lambda p, x, c, key=None: net.apply(p, x, c)  # noqa: E731
  den_apply = D.make_denoiser_apply(apply, sigma_data=S)
  data = lambda i: np.asarray(S * jax.random.normal(  # noqa: E731
      jax.random.fold_in(jax.random.key(1), i), (256, 1)))
  params = D.fit_denoiser(den_apply, params, data,
                          lambda x, z, s: D.coupled_pairs("ic", x, z),
                          steps=400, lr=3e-3, key=jax.random.key(2))
  x = S * jax.random.normal(jax.random.key(3), (20_000, 1))
  z = jax.random.normal(jax.random.key(4), (20_000, 1))
  for sigma in (0.3, 1.0):
    est = D.velocity_discrepancy(lambda xx, ss: den_apply(params, xx, ss),
                                 x, z, sigma)
    want = D.gaussian_velocity_discrepancy(sigma, S, "ic")
    assert float(est) == pytest.approx(want, rel=0.1)
