"""Reflow, piecewise reflow and the marginal-alignment regulariser against
closed forms (float64).

Gaussian source and linear (affine) velocity fields keep every marginal
Gaussian, so KL values and gradients are analytic. Expectations are taken
exactly over 2d sigma points x = m ± √d L e_i (they reproduce the mean and
covariance, hence the expectation of any quadratic in x — and κ, the
surrogate and their θ-gradients are quadratics in x for affine fields).
"""

import math
import os

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import ml_collections
import numpy as np
import optax
import pytest
from jax.scipy.stats import multivariate_normal as mvn

from gcflow_jax.data import pair_cache
from gcflow_jax.math import interpolants as interp_lib
from gcflow_jax.math import ode
from gcflow_jax.methods import reflow

D = 2
MU = np.array([1.5, -0.5])
SIGMA1 = np.array([[0.6, 0.25], [0.25, 0.3]])   # data covariance


# ------------------------------------------------------------- helpers --


def _sigma_points(m, s):
  chol = jnp.linalg.cholesky(jnp.asarray(s))
  d = len(m)
  pts = [jnp.asarray(m) + sgn * math.sqrt(d) * chol[:, i]
         for i in range(d) for sgn in (1.0, -1.0)]
  return jnp.stack(pts)


def _kl_gauss(m1, s1, m2, s2):
  d = m1.shape[0]
  s2i = jnp.linalg.inv(s2)
  dm = m2 - m1
  return 0.5 * (jnp.trace(s2i @ s1) + dm @ s2i @ dm - d +
                jnp.linalg.slogdet(s2)[1] - jnp.linalg.slogdet(s1)[1])


def _bt(t, b):
  t = jnp.asarray(t, jnp.result_type(float))
  return jnp.broadcast_to(t, (b,)) if t.ndim == 0 else t


class GaussTeacher:
  """Exact flow-matching teacher for data N(MU, SIGMA1), x0 ~ N(0, I):
  p_t = N(β μ, C_t), C_t = α² I + β² Σ1, b_t(x) = β' μ + (α α' I + β β' Σ1)
  C_t⁻¹ (x − β μ); flow map x_s -> β_t μ + C_t^½ C_s^-½ (x_s − β_s μ)."""

  def __init__(self, interp):
    self.interp = interp
    self.mu = jnp.asarray(MU)
    self.s1 = jnp.asarray(SIGMA1)
    self.eye = jnp.eye(D)

  def coeffs(self, t):
    it = self.interp
    return it.alpha(t), it.beta(t), it.dalpha(t), it.dbeta(t)

  def cov(self, t):
    a, b, _, _ = self.coeffs(jnp.asarray(t, jnp.float64))
    return a**2 * self.eye + b**2 * self.s1

  def mean(self, t):
    return self.interp.beta(jnp.asarray(t, jnp.float64)) * self.mu

  def velocity(self, params, x, t):
    del params
    t = _bt(t, x.shape[0])
    a, b, da, db = self.coeffs(t)
    c = (a**2)[:, None, None] * self.eye + (b**2)[:, None, None] * self.s1
    m = (a * da)[:, None, None] * self.eye + (b * db)[:, None, None] * self.s1
    y = x - b[:, None] * self.mu
    return db[:, None] * self.mu + jnp.einsum(
        "bij,bj->bi", m, jnp.linalg.solve(c, y[..., None])[..., 0])

  def score(self, x, t):
    t = _bt(t, x.shape[0])
    a, b, _, _ = self.coeffs(t)
    c = (a**2)[:, None, None] * self.eye + (b**2)[:, None, None] * self.s1
    y = x - b[:, None] * self.mu
    return -jnp.linalg.solve(c, y[..., None])[..., 0]

  def _sqrt(self, t, power):
    lam, u = jnp.linalg.eigh(self.s1)
    a, b, _, _ = self.coeffs(jnp.asarray(t, jnp.float64))
    return (u * (a**2 + b**2 * lam)**power) @ u.T

  def flow(self, x, s, t):
    """Exact teacher map and its log-density change Δ^T = −log|det ∂y/∂x|,
    x [B, D]."""
    mat = self._sqrt(t, 0.5) @ self._sqrt(s, -0.5)
    y = self.mean(t) + (x - self.mean(s)) @ mat.T
    return y, -jnp.linalg.slogdet(mat)[1]


# -------------------------------------------------- score from velocity --


@pytest.mark.parametrize("name", interp_lib.INTERPOLANTS)
def test_score_from_velocity_matches_gaussian_score(x64, name):
  teacher = GaussTeacher(interp_lib.get(name))
  x = jax.random.normal(jax.random.key(0), (7, D), jnp.float64) * 2
  for t in (0.0, 0.1, 0.5, 0.9, 0.99):
    b = teacher.velocity(None, x, t)
    s = reflow.score_from_velocity(teacher.interp, b, x, t)
    np.testing.assert_allclose(s, teacher.score(x, t), atol=1e-9, rtol=1e-9)
  # Per-example times and E[x0|x] (Tweedie) in closed form.
  t = jnp.linspace(0.05, 0.95, 7)
  b = teacher.velocity(None, x, t)
  np.testing.assert_allclose(reflow.score_from_velocity(teacher.interp, b, x,
                                                        t),
                             teacher.score(x, t), atol=1e-9)
  e0 = reflow.denoiser_from_velocity(teacher.interp, b, x, t)
  alpha = teacher.interp.alpha(t)[:, None]
  np.testing.assert_allclose(e0, -alpha * teacher.score(x, t), atol=1e-9)


# ------------------------------------------------------- intervals/grid --


def test_knots_ends_and_sample_grid():
  np.testing.assert_allclose(reflow.make_knots(4), [0, .25, .5, .75, 1])
  np.testing.assert_allclose(reflow.make_align_ends(reflow.make_knots(2),
                                                    0.05), [0.5, 0.95])
  kn = reflow.make_knots(2)
  np.testing.assert_allclose(reflow.sample_grid(kn, 4), [0, .25, .5, .75, 1])
  np.testing.assert_allclose(reflow.sample_grid(kn, 3), [0, .25, .5, 1])
  np.testing.assert_allclose(reflow.sample_grid(kn, 2), [0, .5, 1])
  np.testing.assert_allclose(reflow.sample_grid(reflow.make_knots(4), 2),
                             [0, .5, 1])           # fewer steps than K
  with pytest.raises(ValueError):
    reflow.make_knots(0)


# ----------------------------------------------------- teacher segments --


def test_teacher_segments_match_closed_form_flow(x64):
  teacher = GaussTeacher(interp_lib.linear())
  x0 = jax.random.normal(jax.random.key(1), (5, D), jnp.float64)
  knots = reflow.make_knots(3)
  ends = reflow.make_align_ends(knots, 0.1)
  segs = jax.jit(lambda x: reflow.teacher_segments(
      lambda y, t: teacher.velocity(None, y, t), x, knots, ends, 20, "rk4",
      track_logp=True))(x0)
  assert segs["states"].shape == (4, 5, D)
  assert segs["align_states"].shape == (3, 5, D)
  assert segs["delta_logp"].shape == (3, 5)
  for k in range(3):
    y, logdet = teacher.flow(x0, 0.0, knots[k])
    np.testing.assert_allclose(segs["states"][k], y, atol=1e-7)
    ya, ld = teacher.flow(segs["states"][k], knots[k], ends[k])
    np.testing.assert_allclose(segs["align_states"][k], ya, atol=1e-7)
    np.testing.assert_allclose(segs["delta_logp"][k], ld, atol=1e-7)
  # The ε gap is one extra step of the same integrator.
  y1, _ = teacher.flow(x0, 0.0, 1.0)
  np.testing.assert_allclose(segs["states"][3], y1, atol=1e-4)


# ------------------------------------------- alignment: linear, closed form --


class LinearCase:
  """Teacher marginals p_s = N(m_s, S_s) -> p_τ = N(m_τ, S_τ), a linear
  teacher map, and a time-independent affine student u = A x + c whose flow
  over h is y = e^{Ah} x + A⁻¹(e^{Ah} − I) c."""

  def __init__(self):
    self.h = 0.6
    self.m_s = jnp.asarray([0.3, -0.2])
    self.s_s = jnp.asarray([[1.0, 0.3], [0.3, 0.8]])
    self.m_t = jnp.asarray([1.0, 0.5])
    self.s_t = jnp.asarray([[0.5, -0.1], [-0.1, 0.9]])
    # Teacher map P x + p0 with P S_s Pᵀ = S_τ (P = S_τ^½ S_s^-½).
    self.p = jnp.real(jsl.sqrtm(self.s_t)) @ jnp.linalg.inv(
        jnp.real(jsl.sqrtm(self.s_s)))
    self.p0 = self.m_t - self.p @ self.m_s

  def teacher(self, x):
    # Δ^T = log p_τ(ỹ) − log p_s(x) = −log|det P|.
    return x @ self.p.T + self.p0, jnp.full(x.shape[:1],
                                            -jnp.linalg.slogdet(self.p)[1])

  def score(self, x, t):
    del t
    return -jnp.linalg.solve(self.s_t, (x - self.m_t).T).T

  def student_map(self, params):
    a, c = params["A"], params["c"]
    m = jsl.expm(a * self.h)
    return m, jnp.linalg.solve(a, (m - jnp.eye(D)) @ c)

  def analytic_kl(self, params):
    m, g = self.student_map(params)
    return _kl_gauss(m @ self.m_s + g, m @ self.s_s @ m.T, self.m_t, self.s_t)

  def log_q(self, params, y):
    m, g = self.student_map(params)
    return mvn.logpdf(y, m @ self.m_s + g, m @ self.s_s @ m.T)


def _student(params, x, t):
  del t
  return x @ params["A"].T + params["c"]


PARAMS = {"A": jnp.asarray([[-0.4, 0.6], [-0.3, 0.2]]),
          "c": jnp.asarray([0.5, 0.4])}


def _align_fn(case, divergence="exact", estimate_value=True, steps=30,
              quad_points=2):
  return reflow.make_alignment_fn(_student, case.score, steps=steps,
                                  method="rk4", divergence=divergence,
                                  quad_points=quad_points,
                                  estimate_value=estimate_value)


def _run_align(case, align, params, x, probes=None):
  yt, dt = case.teacher(x)
  b = x.shape[0]
  return align(params, x, jnp.zeros(b), jnp.full(b, case.h), yt, dt, probes)


def test_alignment_value_is_per_sample_log_ratio_and_kl(x64):
  case = LinearCase()
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), PARAMS)
  align = jax.jit(lambda p, x: _run_align(case, _align_fn(case), p, x))
  # One batch: 4 sigma points, then 4000 Monte Carlo samples of p_s.
  xs = jax.random.multivariate_normal(jax.random.key(3), case.m_s, case.s_s,
                                      (4000,))
  x = jnp.concatenate([_sigma_points(case.m_s, case.s_s), xs])
  obj, aux = align(params, x)
  # κ(x) = log q(y) − log p_τ(y) exactly per sample (for Gaussian p_τ the
  # quadrature is exact); y is the student ODE endpoint.
  y = aux["y"][:64]
  ref = case.log_q(params, y) - mvn.logpdf(y, case.m_t, case.s_t)
  np.testing.assert_allclose(aux["kl"][:64], ref, atol=1e-7)
  np.testing.assert_allclose(obj, aux["kl"], atol=1e-12)
  # Exact expectation over sigma points = the analytic KL.
  kl = float(case.analytic_kl(params))
  assert kl > 0.1
  np.testing.assert_allclose(float(jnp.mean(obj[:4])), kl, atol=1e-7)
  # Monte Carlo: within 3 standard errors.
  vals = np.asarray(obj[4:])
  assert abs(vals.mean() - kl) < 3 * vals.std() / math.sqrt(len(vals))


def test_alignment_gradient_is_the_analytic_kl_gradient(x64):
  case = LinearCase()
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), PARAMS)
  sp = _sigma_points(case.m_s, case.s_s)

  def mean_obj(p, estimate_value=True):
    return jnp.mean(_run_align(case, _align_fn(
        case, estimate_value=estimate_value), p, sp)[0])

  both = jax.jit(lambda p: (jax.grad(mean_obj)(p), jax.value_and_grad(
      lambda q: mean_obj(q, False))(p)))
  g, (v0, g0) = both(params)
  kl_fn = jax.jit(case.analytic_kl)
  g_ref = jax.jit(jax.grad(case.analytic_kl))(params)
  for k in ("A", "c"):
    np.testing.assert_allclose(g[k], g_ref[k], atol=1e-6, rtol=1e-6)
  # Value-free mode: same gradient, value 0.
  for k in ("A", "c"):
    np.testing.assert_allclose(g0[k], g[k], atol=1e-12)
  assert abs(float(v0)) < 1e-12
  # A small step along −∇ lowers the analytic KL (points to the teacher).
  kl0 = kl_fn(params)
  stepped = jax.tree.map(lambda a, b: a - 0.05 * b, params, g)
  assert kl_fn(stepped) < kl0 - 0.01 * sum(
      float(jnp.sum(v**2)) for v in g.values())


def test_alignment_is_zero_at_the_teacher(x64):
  # Teacher = a linear field B x + β too; the student equals it.
  case = LinearCase()
  tparams = {"A": jnp.asarray([[-0.2, 0.5], [-0.7, 0.1]]),
             "c": jnp.asarray([0.2, -0.3])}
  m, g = case.student_map(tparams)
  case.m_t = m @ case.m_s + g
  case.s_t = m @ case.s_s @ m.T
  case.p, case.p0 = m, g
  sp = _sigma_points(case.m_s, case.s_s)
  mean_obj = lambda p: jnp.mean(_run_align(case, _align_fn(case), p, sp)[0])
  kl_vals = jax.jit(lambda p: _run_align(case, _align_fn(case), p, sp)[1][
      "kl"])
  np.testing.assert_allclose(kl_vals(tparams), 0.0, atol=1e-8)
  for v in jax.jit(jax.grad(mean_obj))(tparams).values():
    np.testing.assert_allclose(v, 0.0, atol=1e-7)
  # ... and positive when perturbed, growing with the perturbation.
  mean_jit = jax.jit(mean_obj)
  kls = [float(mean_jit({"A": tparams["A"] + eps * jnp.eye(D),
                         "c": tparams["c"]})) for eps in (0.05, 0.1, 0.2)]
  assert 0 < kls[0] < kls[1] < kls[2]


@pytest.mark.parametrize("mode,probe", [("jvp", "rademacher"),
                                        ("vjp", "gaussian")])
def test_alignment_hutchinson_is_unbiased(x64, mode, probe):
  case = LinearCase()
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), PARAMS)
  align = reflow.make_alignment_fn(_student, case.score, steps=4,
                                   method="rk4", divergence="hutchinson",
                                   hutchinson_mode=mode)
  n = 3000
  x = jnp.tile(_sigma_points(case.m_s, case.s_s), (n // 4, 1))
  probes = ode.sample_probes(jax.random.key(4), x.shape, 2, probe,
                             jnp.float64)
  # Per-example objective and per-example gradient (vmap over one-row calls).
  def one(p, xi, ei):
    return _run_align(case, align, p, xi[None], ei[:, None])[0][0]

  vals, grads = jax.jit(jax.vmap(jax.value_and_grad(one), (None, 0, 1)))(
      params, x, probes)
  kl = float(case.analytic_kl(params))
  se = float(jnp.std(vals)) / math.sqrt(n)
  assert se > 1e-3 and abs(float(jnp.mean(vals)) - kl) < 3 * se
  g_ref = jax.grad(case.analytic_kl)(params)
  for k in ("A", "c"):
    mean = np.asarray(jnp.mean(grads[k], axis=0))
    se = np.asarray(jnp.std(grads[k], axis=0)) / math.sqrt(n)
    assert np.all(np.abs(mean - np.asarray(g_ref[k])) < 3.5 * se + 1e-6), (
        k, mean, g_ref[k], se)


# ------------------------------- pair loss with the exact Gaussian teacher --


def _moment_reference_kl(teacher, delta, s, tau, n=200):
  """KL(Ψ#p_s ‖ p_τ) for the student b_t + δA x + δc, by the mean/covariance
  ODE dm = F m + g, dS = F S + S Fᵀ (RK4, n steps) — independent of the
  log-density machinery."""
  eye = jnp.eye(D)

  def field(t):
    # Teacher b = F_b x + (β' μ − F_b β μ); student adds δA x + δc.
    a, b, da, db = teacher.coeffs(t)
    c = a**2 * eye + b**2 * teacher.s1
    f_b = ((a * da) * eye + (b * db) * teacher.s1) @ jnp.linalg.inv(c)
    return (f_b + delta["dA"],
            db * teacher.mu - f_b @ (b * teacher.mu) + delta["dc"])

  def rhs(z, t):
    m, cov = z
    f, g = field(t)
    return (f @ m + g, f @ cov + cov @ f.T)

  z = (teacher.mean(s), teacher.cov(s))
  ts = s + (tau - s) * jnp.linspace(0.0, 1.0, n + 1)

  def body(z, tt):
    return ode._rk_step(rhs, z, tt[0], tt[1], "rk4"), None  # pylint: disable=protected-access

  z, _ = jax.lax.scan(body, z, jnp.stack([ts[:-1], ts[1:]], axis=1))
  return _kl_gauss(z[0], z[1], teacher.mean(tau), teacher.cov(tau))


def _perturbed_student(teacher):
  def apply(params, x, t, key=None):
    del key
    return (teacher.velocity(None, x, t) + x @ params["dA"].T +
            params["dc"])
  return apply


@pytest.mark.parametrize("name", [
    "linear", pytest.param("trigonometric", marks=pytest.mark.slow)])
def test_pair_loss_alignment_with_gaussian_teacher(x64, name):
  teacher = GaussTeacher(interp_lib.get(name))
  knots = reflow.make_knots(2)
  ends = reflow.make_align_ends(knots, 0.1)
  score = lambda x, t: reflow.score_from_velocity(
      teacher.interp, teacher.velocity(None, x, t), x, t)
  loss = reflow.make_pair_loss(_perturbed_student(teacher), score, knots,
                               ends, align_weight=1.0, align_steps=16,
                               align_method="rk4")
  zero = {"dA": jnp.zeros((D, D)), "dc": jnp.zeros(D)}
  delta = {"dA": jnp.asarray([[0.2, -0.1], [0.05, -0.15]]),
           "dc": jnp.asarray([0.1, -0.2])}

  @jax.jit
  def run(k):
    # Interval k (traced): sigma points of the teacher marginal p_{t_k}.
    s = jnp.asarray(knots)[k]
    e = jnp.asarray(knots)[k + 1]
    tau = jnp.asarray(ends)[k]
    x_s = _sigma_points(teacher.mean(s), teacher.cov(s))
    x_e, _ = teacher.flow(x_s, s, e)
    y_t, ld = teacher.flow(x_s, s, tau)
    args = (x_s, x_e, y_t, jnp.full((4,), ld), jnp.full((4,), k),
            jnp.linspace(0.1, 0.9, 4))
    mean_align = lambda p: jnp.mean(loss(p, *args)[1]["align"])
    ref = lambda p: _moment_reference_kl(teacher, p, s, tau)
    return (loss(zero, *args)[1]["kl"], jax.grad(mean_align)(zero),
            jax.value_and_grad(mean_align)(delta),
            jax.value_and_grad(ref)(delta))

  for k in (0, 1):
    kl0, g0, (val, g), (val_ref, g_ref) = run(k)
    # Student = teacher: κ ≡ 0, zero gradient.
    np.testing.assert_allclose(kl0, 0.0, atol=1e-7)
    for v in g0.values():
      np.testing.assert_allclose(v, 0.0, atol=1e-6)
    # Perturbed: value and gradient match the moment-ODE reference KL.
    assert float(val_ref) > 1e-3
    np.testing.assert_allclose(float(val), float(val_ref), rtol=1e-5,
                               atol=1e-8)
    for key in ("dA", "dc"):
      np.testing.assert_allclose(g[key], g_ref[key], rtol=1e-4, atol=1e-7)
    # −∇ points to the teacher (δ = 0).
    assert sum(float(jnp.sum(g[key] * delta[key])) for key in g) > 0


def test_trajectory_matching_underdetermines_the_marginal(x64):
  # Straight teacher b = μ, p_t = N(μ t, I). Student A: u = μ + a; student
  # B: u = μ + c J (x − μ t) (rotation about the moving mean). Same reflow
  # loss (c²), but B's marginal is exactly the teacher's (KL 0) while A's is
  # shifted (KL ‖a‖²/2 = c²): only the regulariser tells them apart.
  c = 0.5
  mu = jnp.asarray([1.0, -2.0])
  a = jnp.asarray([c, c])                              # ‖a‖² = 2c²
  rot = jnp.asarray([[0.0, -1.0], [1.0, 0.0]])
  students = {
      "A": lambda p, x, t, key=None: mu + a + 0 * x,
      "B": lambda p, x, t, key=None: mu + c * (
          x - _bt(t, x.shape[0])[:, None] * mu) @ rot.T}
  score = lambda y, t: -(y - mu)                       # p_1 = N(μ, I)
  x = _sigma_points(jnp.zeros(D), jnp.eye(D))
  args = (x, x + mu, x + mu, jnp.zeros(4), jnp.zeros(4, jnp.int32),
          jnp.linspace(0.0, 0.9, 4))
  out = {}
  for name, u in students.items():
    loss = reflow.make_pair_loss(u, score, np.array([0.0, 1.0]),
                                 np.array([1.0]), align_weight=1.0,
                                 align_steps=16, align_method="rk4")
    out[name] = jax.jit(lambda *z, f=loss: f({}, *z)[1])(*args)
  np.testing.assert_allclose(jnp.mean(out["A"]["reflow"]), c**2,
                             atol=1e-12)
  np.testing.assert_allclose(jnp.mean(out["B"]["reflow"]),
                             jnp.mean(out["A"]["reflow"]), atol=1e-12)
  np.testing.assert_allclose(jnp.mean(out["A"]["kl"]), c**2, atol=1e-9)
  np.testing.assert_allclose(out["B"]["kl"], 0.0, atol=1e-9)
  # A regularised sub-batch of n = 2: only those examples carry the term,
  # reweighted by B / n (λ K (B/n) A / D).
  loss = reflow.make_pair_loss(students["A"], score, np.array([0.0, 1.0]),
                               np.array([1.0]), align_weight=0.5,
                               align_steps=16, align_method="rk4",
                               align_batch=2)
  per_ex, parts = loss({}, *args)
  assert parts["align"].shape == (2,)
  np.testing.assert_allclose(per_ex[2:], parts["reflow"][2:], atol=1e-14)
  np.testing.assert_allclose(per_ex[:2] - parts["reflow"][:2],
                             0.5 * 1 * (4 / 2) * parts["align"] / D,
                             atol=1e-14)


# ----------------------------------------------------- piecewise reflow --


M_STRAIGHT = np.array([[1.5, 0.3], [0.0, 0.7]])
C_STRAIGHT = np.array([0.8, -0.4])


def _straight_velocity(params, x, t, key=None):
  """Velocity whose trajectories are straight: x_t = x0 + t ((M − I) x0 + c)
  (Gaussian -> shifted, sheared Gaussian), plus a trainable perturbation."""
  del key
  t = _bt(t, x.shape[0])
  m1 = jnp.asarray(M_STRAIGHT) - jnp.eye(D)
  c = jnp.asarray(C_STRAIGHT)
  mat = jnp.eye(D)[None] + t[:, None, None] * m1[None]
  x0 = jnp.linalg.solve(mat, (x - t[:, None] * c)[..., None])[..., 0]
  return x0 @ m1.T + c + x @ params["dA"].T + params["dc"]


@pytest.mark.parametrize("k_intervals", [1, 2, 4])
def test_piecewise_reflow_leaves_a_straight_teacher_unchanged(x64,
                                                              k_intervals):
  zero = {"dA": jnp.zeros((D, D)), "dc": jnp.zeros(D)}
  loss_fn = reflow.make_reflow_loss(
      _straight_velocity, lambda p, x, t: _straight_velocity(zero, x, t),
      interp_lib.linear(), k_intervals, teacher_steps=8,
      teacher_method="rk4")
  batch = {"x": jnp.zeros((64, D))}
  extras = {"teacher": {}}

  def objective(p, key):
    per_ex, aux = loss_fn(p, batch, key, step=0, extras=extras)
    return jnp.mean(per_ex), aux

  grad_fn = jax.jit(jax.value_and_grad(objective, has_aux=True))
  (val, aux), g = grad_fn(zero, jax.random.key(0))
  assert float(val) < 1e-14 and float(aux["loss/reflow"]) < 1e-14
  for v in g.values():
    np.testing.assert_allclose(v, 0.0, atol=1e-7)
  # Training from the teacher leaves it where it is ...
  # SGD: Adam's normalisation would blow round-off gradients up to ±lr.
  tx = optax.sgd(0.1)
  p, st = zero, tx.init(zero)
  for i in range(5):
    (_, _), g = grad_fn(p, jax.random.key(i))
    up, st = tx.update(g, st, p)
    p = optax.apply_updates(p, up)
  for v in p.values():
    np.testing.assert_allclose(v, 0.0, atol=1e-6)
  # ... a perturbed student has a positive loss ...
  bad = {"dA": 0.1 * jnp.eye(D), "dc": jnp.zeros(D)}
  assert float(grad_fn(bad, jax.random.key(0))[0][0]) > 1e-4
  # ... and K Euler steps (one per interval) sample the teacher exactly.
  sampler = reflow.make_student_sampler(_straight_velocity, (D,),
                                        reflow.make_knots(k_intervals))
  x1 = sampler(zero, jax.random.key(7), 5, k_intervals)
  x0 = jax.random.normal(jax.random.key(7), (5, D))
  np.testing.assert_allclose(x1, x0 @ M_STRAIGHT.T + C_STRAIGHT, atol=1e-10)


def test_piecewise_reflow_straightens_a_curved_teacher(x64):
  # Trajectory-matching loss of the teacher itself = its curvature within
  # the intervals; it decreases as K grows (≈ O(1/K²)).
  teacher = GaussTeacher(interp_lib.linear())
  student = lambda p, x, t, key=None: teacher.velocity(None, x, t)
  losses = []
  for k_int in (1, 2, 4):
    fn = reflow.make_reflow_loss(student, teacher.velocity,
                                 interp_lib.linear(), k_int,
                                 teacher_steps=32 // k_int,
                                 teacher_method="rk4")
    per_ex, _ = jax.jit(lambda key, f=fn: f(
        {}, {"x": jnp.zeros((4096, D))}, key, extras={"teacher": None}))(
            jax.random.key(1))
    losses.append(float(jnp.mean(per_ex)))
  assert losses[0] > losses[1] > losses[2] > 0
  assert losses[2] < 0.25 * losses[0]


# ---------------------------------------------- full loss_fn (structural) --


def _mlp_pair(seed=0):
  from gcflow_jax.models import make_network
  cfg = ml_collections.ConfigDict({"name": "mlp", "dropout": 0.0,
                                   "mlp": {"hidden": (16, 16), "time_dim": 8,
                                           "time_scale": 1000.0}})
  _, apply_fn, init_fn = make_network(cfg, (D,), 1)
  tparams = init_fn(jax.random.key(seed))
  # Non-zero last layer so the teacher moves.
  tparams = jax.tree.map(lambda a: a + 0.1, tparams)
  return apply_fn, tparams


@pytest.mark.parametrize("divergence,pairs", [("exact", "online"),
                                              ("hutchinson", "cache")])
def test_loss_fn_shapes_metrics_and_no_retrace(divergence, pairs):
  apply_fn, tparams = _mlp_pair()
  velocity = lambda p, x, t: apply_fn(p, x, _bt(t, x.shape[0]).astype(
      x.dtype))
  loss_fn = reflow.make_reflow_loss(
      apply_fn, velocity, interp_lib.linear(), 2, teacher_steps=3,
      align_weight=0.5, align_eps=0.05, align_steps=2, align_method="heun",
      divergence=divergence, num_probes=2, align_warmup_steps=10,
      pair_source=pairs)   # Heun: half RK4's compile time, same structure
  extras = {"teacher": tparams}
  if pairs == "cache":
    segs = reflow.teacher_segments(
        lambda x, t: velocity(tparams, x, t),
        jax.random.normal(jax.random.key(3), (32, D)), reflow.make_knots(2),
        reflow.make_align_ends(reflow.make_knots(2), 0.05), 3, "heun",
        track_logp=True)
    extras["pairs"] = {k: jnp.moveaxis(v, 1, 0) for k, v in segs.items()}
  traces = []

  @jax.jit
  def step(params, key, step_):
    traces.append(1)
    def obj(p):
      per_ex, aux = loss_fn(p, {"x": jnp.zeros((8, D))}, key, step=step_,
                            extras=extras)
      assert per_ex.shape == (8,)
      return jnp.mean(per_ex), aux
    return jax.value_and_grad(obj, has_aux=True)(params)

  params = jax.tree.map(jnp.array, tparams)
  for i in range(3):
    (val, aux), g = step(params, jax.random.key(i), jnp.int32(i))
    assert np.isfinite(float(val))
    assert all(np.isfinite(float(v)) for v in aux.values())
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))
  assert len(traces) == 1
  for k in ("loss/reflow", "loss/align", "align/kl_sum", "align/kl_0",
            "align/kl_1", "align/weight"):
    assert k in aux
  np.testing.assert_allclose(float(aux["align/weight"]), 0.5 * 2 / 10)


# ------------------------------------------------------------ pair cache --


def _fake_segments(key, n):
  x = jax.random.normal(key, (n, D))
  return {"states": jnp.stack([x, 2 * x, 3 * x]),
          "align_states": jnp.stack([x + 1, x + 2]),
          "delta_logp": jnp.stack([x[:, 0], x[:, 1]])}


def test_pair_cache_roundtrip_resume_and_mismatch(tmp_path):
  d = str(tmp_path / "cache")
  meta = {"num_intervals": 2, "data_shape": [D]}
  key = jax.random.key(0)
  c = pair_cache.generate(d, _fake_segments, meta, 23, 10, key, chunk=4,
                          verbose=False)
  assert c.num_pairs == 23 and len(os.listdir(d)) == 4   # 3 shards + meta
  allp = c.load()
  assert allp["states"].shape == (23, 3, D)
  assert allp["align_states"].shape == (23, 2, D)
  assert allp["delta_logp"].shape == (23, 2)
  np.testing.assert_allclose(allp["states"][:, 2], 3 * allp["states"][:, 0],
                             rtol=1e-6)
  np.testing.assert_allclose(allp["delta_logp"], allp["states"][:, 0],
                             rtol=1e-6)
  # Reading arbitrary rows across shards.
  rows = c.read([22, 0, 11])
  np.testing.assert_allclose(rows["states"], allp["states"][[22, 0, 11]])
  # Resume: a lost shard and an incomplete meta are regenerated identically.
  os.remove(os.path.join(d, "shard_00001.npy"))
  m = pair_cache._read_meta(d)   # pylint: disable=protected-access
  m["complete"] = False
  pair_cache._atomic_write_json(os.path.join(d, "meta.json"), m)  # pylint: disable=protected-access
  c2 = pair_cache.generate(d, _fake_segments, meta, 23, 10, key, chunk=4,
                           verbose=False)
  np.testing.assert_array_equal(c2.load()["states"], allp["states"])
  assert not [f for f in os.listdir(d) if ".tmp" in f]
  # Different settings: refused.
  with pytest.raises(ValueError, match="different settings"):
    pair_cache.generate(d, _fake_segments, dict(meta, extra=1), 23, 10, key)
  # e.g. the teacher was trained further since: the message names the field.
  with pytest.raises(ValueError, match=r"teacher_step: cache None, "
                     r"requested 3000"):
    pair_cache.generate(d, _fake_segments, dict(meta, teacher_step=3000), 23,
                        10, key)
  # A complete cache holding more (Δ^T) serves a request without it, not
  # the other way round.
  d2 = str(tmp_path / "cache2")
  full = dict(meta, logp={"track": True})
  pair_cache.generate(d2, _fake_segments, full, 8, 8, key, verbose=False)
  pair_cache.generate(d2, _fake_segments, dict(meta, logp={"track": False}),
                      8, 8, key, verbose=False, optional_keys=("logp",))
  d3 = str(tmp_path / "cache3")
  pair_cache.generate(d3, _fake_segments, dict(meta, logp={"track": False}),
                      8, 8, key, verbose=False, optional_keys=("logp",))
  with pytest.raises(ValueError, match="different settings"):
    pair_cache.generate(d3, _fake_segments, full, 8, 8, key, verbose=False)
  # Batches: shuffled, every row once per epoch.
  it = c2.batches(5, seed=1)
  seen = np.concatenate([next(it)["states"][:, 0, 0] for _ in range(4)])
  assert len(np.unique(seen)) == 20


def test_teacher_cache_holds_teacher_pairs(tmp_path, x64):
  teacher = GaussTeacher(interp_lib.linear())
  from gcflow_jax.teachers import Teacher
  t = Teacher(apply_fn=None, params={}, interp="linear",
              config=None,
              workdir=str(tmp_path), step=7)
  t = dataclass_replace_velocity(t, teacher.velocity)
  c = pair_cache.ensure_teacher_cache(
      str(tmp_path / "c"), t, (D,), num_intervals=2, align_eps=0.1, steps=16,
      method="rk4", track_logp=True, divergence="exact", num_probes=1,
      probe="rademacher", hutchinson_mode="jvp", num_pairs=12, shard_size=5,
      seed=0)
  assert c.meta["teacher_step"] == 7   # a retrained teacher is a new cache
  p = c.load()
  x0 = p["states"][:, 0].astype(np.float64)
  y1, _ = teacher.flow(x0, 0.0, 1.0)
  np.testing.assert_allclose(p["states"][:, 2], y1, atol=1e-3)
  ya, ld = teacher.flow(p["states"][:, 1].astype(np.float64), 0.5, 0.9)
  np.testing.assert_allclose(p["align_states"][:, 1], ya, atol=1e-4)
  np.testing.assert_allclose(p["delta_logp"][:, 1], ld, atol=1e-4)


def dataclass_replace_velocity(teacher, fn):
  """A Teacher whose velocity is `fn` (the dataclass calls apply_fn)."""
  import dataclasses
  return dataclasses.replace(teacher, apply_fn=lambda p, x, t: fn(p, x, t))


# --------------------------------------------------------------- adapters --


def _config():
  from gcflow_jax import config_utils
  c = config_utils.load_config("configs/checkerboard_reflow_align.py:smoke")
  c.unlock()
  return c


@pytest.mark.parametrize("field,value,match", [
    ("num_intervals", 0, "reflow.num_intervals=0 must be >= 1"),
    ("divergence", "trace", "reflow.divergence='trace' is not one of"),
    ("probe", "uniform", "reflow.probe='uniform' is not one of"),
    ("align_eps", 0.0, "reflow.align_eps must be > 0"),
    ("pairs", "disk", "reflow.pairs='disk' is not one of"),
    ("hutchinson_mode", "fwd", "reflow.hutchinson_mode='fwd' is not one of"),
])
def test_validate_config_names_field(field, value, match):
  c = _config()
  c.reflow[field] = value
  with pytest.raises(ValueError, match=match):
    reflow.validate_config(c)


@pytest.mark.parametrize("pairs", ["online", "cache"])
def test_from_config_with_a_teacher(tmp_path, pairs):
  from gcflow_jax.teachers import Teacher
  from gcflow_jax.models import make_network
  c = _config()
  # Wiring test: a small net and cheap solves keep the compiles short.
  c.model.mlp.hidden = (16, 16)
  c.reflow.teacher_steps = 2
  c.reflow.align_steps = 1
  c.reflow.align_method = "heun"
  c.reflow.pairs = pairs
  c.reflow.cache_dir = str(tmp_path / "pairs_K{K}_seed{seed}")
  c.reflow.cache_num_pairs = 48
  c.reflow.cache_shard_size = 32
  _, apply_fn, init_fn = make_network(c.model, (D,), 1)
  tparams = jax.tree.map(lambda a: a + 0.05, init_fn(jax.random.key(1)))
  teacher = Teacher(apply_fn=apply_fn, params=tparams, interp="linear",
                    config=None, workdir="/tmp/t")
  method = reflow.from_config(c, (D,), teacher)
  assert reflow.needs_teacher(c)
  params, extras = method.init(jax.random.key(0), {"x": jnp.zeros((2, D))})
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(tparams)):
    np.testing.assert_array_equal(a, b)
  if pairs == "cache":
    assert os.path.exists(tmp_path / "pairs_K1_seed0" / "meta.json")
    assert extras["pairs"]["states"].shape == (48, 2, D)
    assert extras["pairs"]["delta_logp"].shape == (48, 1)
  per_ex, aux = jax.jit(lambda p, k: method.loss_fn(
      p, {"x": jnp.zeros((8, D))}, k, step=jnp.int32(0), ema_params=p,
      extras=extras))(params, jax.random.key(1))
  assert per_ex.shape == (8,) and np.isfinite(float(aux["loss/reflow"]))
  x = method.sample_fn(params, jax.random.key(2), 6, 2)
  assert x.shape == (6, D)
  assert method.default_sample_steps == c.reflow.num_intervals
