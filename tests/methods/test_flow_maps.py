"""Flow map matching against closed forms (float64).

Two exactly solvable ODEs:
* Gaussian -> Gaussian: x0 ~ N(0, I), x1 ~ N(m, diag σ²), linear or
  trigonometric interpolant; b_t is affine and X_{s,t}(x) = μ_t +
  sqrt(v_t / v_s)(x − μ_s) (`fm.gaussian_flow_map`). Jacobians are diagonal.
* A non-autonomous linear ODE with a non-symmetric generator,
  ẋ = A(t) x, A(t) = κ t I + (ω0 + ω1 t) J, J = [[0, −1], [1, 0]]; the
  A(t) commute, so X_{s,t} = exp(κ (t² − s²)/2) R(ω0 (t − s) + ω1 (t² −
  s²)/2), a rotation-dilation (∇X ≠ ∇Xᵀ: catches J b vs Jᵀ b).
Both are parameterised by a small dict, so "a model that represents the
exact map" is the same closed form at the true parameters and a perturbed
map is the closed form at perturbed parameters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import base as base_config
from gcflow_jax import config_utils, teachers
from gcflow_jax.math import flow_map as fm
from gcflow_jax.math import interpolants
from gcflow_jax.math import ode
from gcflow_jax.methods import flow_maps
from tree_utils import jitter  # tests/tree_utils.py
from gcflow_jax.models import make_network

# ---------------------------------------------------------------- fixtures --

GAUSS = {"mean": jnp.array([1.0, -2.0]), "std": jnp.array([0.5, 1.5])}
ROT = {"kappa": jnp.array(0.7), "omega0": jnp.array(2.0),
       "omega1": jnp.array(-1.3)}


def _f64(tree):
  return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _rot_velocity(p, x, t):
  t = fm.bcast(jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1]), x)
  jx = jnp.stack([-x[:, 1], x[:, 0]], axis=-1)
  return p["kappa"] * t * x + (p["omega0"] + p["omega1"] * t) * jx


def _rot_flow_map(p, x, s, t, key=None):
  del key
  s = fm.bcast(jnp.broadcast_to(jnp.asarray(s, x.dtype), x.shape[:1]), x)
  t = fm.bcast(jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1]), x)
  scale = jnp.exp(0.5 * p["kappa"] * (t * t - s * s))
  th = p["omega0"] * (t - s) + 0.5 * p["omega1"] * (t * t - s * s)
  c, sn = jnp.cos(th), jnp.sin(th)
  return scale * jnp.concatenate(
      [c * x[:, :1] - sn * x[:, 1:], sn * x[:, :1] + c * x[:, 1:]], axis=-1)


def _system(name):
  """(velocity(p, x, t), flow_map(p, x, s, t), true params, interpolant)."""
  if name == "rotation":
    return _rot_velocity, _rot_flow_map, _f64(ROT), interpolants.linear()
  interp = interpolants.get(name)
  vel, fmap = fm.gaussian_flow_map(interp)
  return vel, fmap, _f64(GAUSS), interp


def _points(key, n=64, lo=0.0, hi=1.0):
  k1, k2, k3 = jax.random.split(key, 3)
  x = 2.0 * jax.random.normal(k1, (n, 2), jnp.float64)
  s = jax.random.uniform(k2, (n,), jnp.float64, lo, hi)
  t = jax.random.uniform(k3, (n,), jnp.float64, lo, hi)
  return x, s, t


def _perturb(p, eps):
  return jax.tree_util.tree_map(lambda a: a + eps * (1.0 + 0.5 * a), p)


def _gauss_batch(key, n, params=GAUSS):
  params = _f64(params)
  z = jax.random.normal(key, (n, 2), jnp.float64)
  return {"x": params["mean"] + params["std"] * z}


SYSTEMS = ("linear", "trigonometric", "rotation")

# ------------------------------------------------- exact-map residuals = 0 --


@pytest.mark.parametrize("system", SYSTEMS)
def test_lagrangian_and_eulerian_residuals_vanish_at_exact_map(x64, system):
  vel, fmap, p, _ = _system(system)
  x, s, t = _points(jax.random.key(0))
  v = lambda xx, tt: vel(p, xx, tt)  # noqa: E731
  r_l, x_st = jax.jit(lambda: fm.lagrangian_residual(fmap, v, p, x, s, t))()
  r_e, _ = jax.jit(lambda: fm.eulerian_residual(fmap, v, p, x, s, t))()
  np.testing.assert_allclose(x_st, fmap(p, x, s, t), atol=1e-12)
  assert float(jnp.max(jnp.abs(r_l))) < 1e-10
  assert float(jnp.max(jnp.abs(r_e))) < 1e-10


def test_eulerian_residual_at_inconsistent_points_does_not_vanish(x64):
  """The derivation needs b_s at x (the map's argument) and J·b (a JVP).
  Evaluating the teacher at X_{s,t}(x), at time t, or using Jᵀ b leaves a
  residual of order one at the exact flow map: the test above can fail."""
  vel, fmap, p, _ = _system("rotation")
  x, s, t = _points(jax.random.key(1))
  f = lambda ss, xx: fmap(p, xx, ss, t)  # noqa: E731

  def jvp_res(direction):
    return jax.jvp(f, (s, x), (jnp.ones_like(s), direction))[1]

  wrong_point = jvp_res(vel(p, fmap(p, x, s, t), s))
  wrong_time = jvp_res(vel(p, x, t))
  ds = jax.jvp(lambda ss: f(ss, x), (s,), (jnp.ones_like(s),))[1]
  _, vjp = jax.vjp(lambda xx: f(s, xx), x)
  transposed = ds + vjp(vel(p, x, s))[0]   # ∂_s X + (∇X)ᵀ b
  for r in (wrong_point, wrong_time, transposed):
    assert float(jnp.mean(jnp.square(r))) > 1e-2


@pytest.mark.parametrize("system", SYSTEMS)
def test_identity_composition_and_inverse_of_exact_map(x64, system):
  _, fmap, p, _ = _system(system)
  x, s, t = _points(jax.random.key(2))
  u = jax.random.uniform(jax.random.key(3), s.shape, jnp.float64)
  np.testing.assert_allclose(fmap(p, x, s, s), x, atol=1e-13)
  np.testing.assert_allclose(fmap(p, fmap(p, x, s, u), u, t),
                             fmap(p, x, s, t), atol=1e-10)
  np.testing.assert_allclose(fmap(p, fmap(p, x, s, t), t, s), x, atol=1e-10)
  for n in (2, 3):
    np.testing.assert_allclose(fm.composed_map(fmap, p, x, s, t, n),
                               fmap(p, x, s, t), atol=1e-10)


def test_ode_map_matches_exact_flow_map(x64):
  vel, fmap, p, _ = _system("rotation")
  x, s, t = _points(jax.random.key(4))
  got = fm.ode_map(lambda xx, tt: vel(p, xx, tt), x, s, t, 40, "rk4")
  np.testing.assert_allclose(got, fmap(p, x, s, t), atol=1e-8)


# ------------------------------------ losses: zero, zero grad, grow with ε --

EPS = (0.0, 1e-3, 1e-2, 1e-1)


def _check_zero_grad_and_growth(loss_of_params, p_true, loss_tol=1e-18):
  # One compile: value and gradient together, at each perturbation size.
  value_and_grad = jax.jit(jax.value_and_grad(loss_of_params))
  out = [value_and_grad(_perturb(p_true, e)) for e in EPS]
  values = [float(v) for v, _ in out]
  assert values[0] < loss_tol, values
  grads = out[0][1]
  gmax = max(float(jnp.max(jnp.abs(g)))
             for g in jax.tree_util.tree_leaves(grads))
  assert gmax < 1e-9, grads
  assert all(b > a for a, b in zip(values, values[1:])), values
  assert values[1] > 0.0


@pytest.mark.parametrize("kind", ["lmd", "emd"])
@pytest.mark.parametrize("system", ["linear", "rotation"])
def test_distillation_losses_zero_with_vanishing_grad(x64, kind, system):
  vel, fmap, p, interp = _system(system)
  make = flow_maps.make_lmd_loss if kind == "lmd" else flow_maps.make_emd_loss
  loss_fn = make(fmap, vel, interp, order="both")
  batch = _gauss_batch(jax.random.key(5), 256)
  key = jax.random.key(6)

  def total(params):
    per_ex, aux = loss_fn(params, batch, key, step=0, ema_params=None,
                          extras={"teacher": p})
    assert per_ex.shape == (256,)
    assert f"loss/{kind}" in aux
    return jnp.mean(per_ex)

  _check_zero_grad_and_growth(total, p)


def test_lmd_stop_grad_target_has_same_zero(x64):
  vel, fmap, p, interp = _system("trigonometric")
  loss_fn = flow_maps.make_lmd_loss(fmap, vel, interp, stop_grad_target=True,
                                    weighting="inv_gap")
  batch = _gauss_batch(jax.random.key(7), 128)
  total = lambda q: jnp.mean(loss_fn(  # noqa: E731
      q, batch, jax.random.key(8), extras={"teacher": p})[0])
  _check_zero_grad_and_growth(total, p)


# --------------------- gradients away from the optimum: the stop-gradient --


def _central_difference_grad(f, q, h=1e-6):
  """∂f/∂q coordinate by coordinate, (f(q + h e) − f(q − h e)) / 2h."""
  f = jax.jit(f)
  leaves, tree = jax.tree_util.tree_flatten(q)
  out = []
  for i, a in enumerate(leaves):
    g = np.zeros(a.shape)
    for idx in np.ndindex(a.shape):
      e = np.zeros(a.shape)
      e[idx] = h
      plus, minus = list(leaves), list(leaves)
      plus[i], minus[i] = a + e, a - e
      g[idx] = (float(f(jax.tree_util.tree_unflatten(tree, plus)))
                - float(f(jax.tree_util.tree_unflatten(tree, minus)))) / (2 * h)
    out.append(g)
  return jax.tree_util.tree_unflatten(tree, out)


def _flat(tree):
  return np.concatenate([np.ravel(np.asarray(a))
                         for a in jax.tree_util.tree_leaves(tree)])


@pytest.mark.parametrize("system", ["linear", "rotation"])
def test_lmd_gradient_away_from_optimum_matches_central_differences(
    x64, system):
  """Student = the closed-form map at perturbed parameters q (loss > 0),
  teacher b at the true ones. With stop_grad_target=False (the paper's
  objective) jax.grad of L(q) = mean |∂_t X_q − b_t(X_q)|² equals its
  central differences. With True it is the semi-gradient: the central
  differences of the surrogate whose teacher input is frozen at X_{q0}
  (q0 the current point), which differs from ∇L by 2–6% here (∇_x b ≠ 0;
  far beyond the 1e-6 agreement of the comparisons).
  A flipped stop-gradient fails one of the two comparisons."""
  vel, fmap, p, _ = _system(system)
  x, s, t = _points(jax.random.key(30), n=64, lo=0.05, hi=0.95)
  b = lambda xx, tt: vel(p, xx, tt)  # noqa: E731
  q0 = _perturb(p, 0.2)

  def loss(q, sg):
    r, _ = fm.lagrangian_residual(fmap, b, q, x, s, t, stop_grad_target=sg)
    return jnp.mean(jnp.square(r))

  y0 = fmap(q0, x, s, t)   # the teacher's input, frozen at q0

  def surrogate(q):
    r, _ = fm.lagrangian_residual(fmap, lambda _, tt: b(y0, tt), q, x, s, t)
    return jnp.mean(jnp.square(r))

  assert float(loss(q0, False)) > 1e-3              # away from the optimum
  g_full = _flat(jax.grad(loss)(q0, False))
  g_semi = _flat(jax.grad(loss)(q0, True))
  fd_full = _flat(_central_difference_grad(lambda q: loss(q, False), q0))
  fd_semi = _flat(_central_difference_grad(surrogate, q0))
  np.testing.assert_allclose(g_full, fd_full, rtol=1e-6, atol=1e-8)
  np.testing.assert_allclose(g_semi, fd_semi, rtol=1e-6, atol=1e-8)
  assert np.max(np.abs(g_full - g_semi)) > 1e-2 * np.max(np.abs(g_full))


@pytest.mark.parametrize("stop_grad", [None, True])
def test_lmd_config_gradient_is_the_loss_gradient_by_default(x64, stop_grad):
  """The Method built from the base config (MLP flow map, MLP teacher,
  random parameters: far from any optimum): its gradient along random
  directions equals central differences of the same loss (same batch and
  key), i.e. the default `fmm.stop_grad_target` is the paper's full
  gradient and is wired through `from_config`; the ablation
  (stop_grad_target=True, configs/checkerboard_fmm_lmd.py:stop_grad) gives a
  different direction. Catches a flipped default, a flipped flag in
  `lagrangian_residual`, or `from_config` not passing the flag."""
  c = _small_config("lmd")
  if stop_grad is not None:
    c.fmm.stop_grad_target = stop_grad
  teacher = _fake_teacher(c)
  # Both networks zero-initialise their output layer (b ≡ 0, X = id: the
  # loss and its gradient vanish); move every weight off its init.
  teacher = teachers.Teacher(
      apply_fn=teacher.apply_fn,
      params=jitter(_f64(teacher.params), jax.random.key(34), 0.3),
      interp="linear", config=None, workdir="/tmp/t")
  method = flow_maps.from_config(c, (2,), teacher)
  batch = {"x": jax.random.normal(jax.random.key(31), (64, 2), jnp.float64)}
  params, extras = method.init(jax.random.key(32), batch)
  params = jitter(_f64(params), jax.random.key(35), 0.3)
  extras = {"teacher": teacher.params}

  def total(q):
    return jnp.mean(method.loss_fn(q, batch, jax.random.key(33), step=0,
                                   ema_params=q, extras=extras)[0])

  total_c = jax.jit(total)
  assert float(total_c(params)) > 1e-3               # away from the optimum
  grad = jax.jit(jax.grad(total))(params)
  leaves, tree = jax.tree_util.tree_flatten(params)
  h = 1e-6
  rel = []
  for i in range(3):
    ks = jax.random.split(jax.random.key(40 + i), len(leaves))
    d = jax.tree_util.tree_unflatten(tree, [
        jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, ks)])
    step = lambda sign, d=d: jax.tree_util.tree_map(  # noqa: E731
        lambda a, v: a + sign * h * v, params, d)
    fd = (float(total_c(step(1.0))) - float(total_c(step(-1.0)))) / (2 * h)
    dd = float(sum(jnp.vdot(g, v) for g, v in zip(
        jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(d))))
    rel.append(abs(dd - fd) / abs(fd))
  if stop_grad is None:
    assert max(rel) < 1e-6, rel
  else:
    assert min(rel) > 1e-2, rel


def test_lmd_learns_gaussian_one_step_map_with_tiny_mlp():
  """Learning test: LMD from the exact Gaussian teacher (x1 ~ N(m, σ²),
  linear interpolant, b affine) into a tiny two-time MLP, 300 Adam steps.
  The learned one-step map X_{0,1} must approach the closed form
  x -> m + σ x: RMS error below 0.15 (2.3 at initialisation; 0.064 when
  written), and the pushed-forward noise has mean m and std σ to within
  0.1. A wrong target time, sign or x_s leaves it far off."""
  interp = interpolants.linear()
  vel, _ = fm.gaussian_flow_map(interp)
  p = {"mean": jnp.array([1.0, -2.0]), "std": jnp.array([0.5, 1.5])}
  cfg = base_config.get_config()
  cfg.model.mlp.hidden = (64, 64)
  cfg.model.mlp.time_dim = 16
  cfg.model.mlp.time_scale = 10.0
  _, apply_fn, init_fn = make_network(cfg.model, (2,), 2)
  fmap = fm.make_flow_map(apply_fn, "st")
  loss_fn = flow_maps.make_lmd_loss(fmap, vel, interp)
  tx = optax.adam(1e-2)
  params = init_fn(jax.random.key(0))
  opt_state = tx.init(params)

  @jax.jit
  def train(params, opt_state):
    def body(i, carry):
      q, o = carry
      kx, kl = jax.random.split(jax.random.fold_in(jax.random.key(1), i))
      batch = {"x": p["mean"] + p["std"] * jax.random.normal(kx, (256, 2))}
      g = jax.grad(lambda q: jnp.mean(
          loss_fn(q, batch, kl, extras={"teacher": p})[0]))(q)
      u, o = tx.update(g, o, q)
      return optax.apply_updates(q, u), o
    return jax.lax.fori_loop(0, 300, body, (params, opt_state))

  x0 = jax.random.normal(jax.random.key(2), (4096, 2))
  exact = p["mean"] + p["std"] * x0
  rms = lambda q: float(jnp.sqrt(jnp.mean(jnp.sum(  # noqa: E731
      jnp.square(fmap(q, x0, 0.0, 1.0) - exact), axis=-1))))
  before = rms(params)
  params, _ = train(params, opt_state)
  after = rms(params)
  assert before > 2.0 and after < 0.15, (before, after)
  out = np.asarray(fmap(params, x0, 0.0, 1.0))
  np.testing.assert_allclose(out.mean(0), exact.mean(0), atol=0.1)
  np.testing.assert_allclose(out.std(0), exact.std(0), atol=0.1)


@pytest.mark.parametrize("interp_name", ["trigonometric"])
def test_direct_loss_zero_for_deterministic_target(x64, interp_name):
  """x1 = m (a Dirac): İ_t is a function of I_t, so the direct loss (both
  terms) is 0 per example at the exact map, with zero gradient."""
  interp = interpolants.get(interp_name)
  _, fmap = fm.gaussian_flow_map(interp)
  p = _f64({"mean": GAUSS["mean"], "std": jnp.zeros(2)})
  loss_fn = flow_maps.make_direct_loss(fmap, interp, order="both",
                                       max_gap=0.9)
  batch = {"x": jnp.broadcast_to(p["mean"], (256, 2))}

  def total(q):
    per_ex, aux = loss_fn(q, batch, jax.random.key(9))
    assert set(aux) == {"loss/direct", "loss/invertibility", "fmm/gap"}
    return jnp.mean(per_ex)

  _check_zero_grad_and_growth(total, p)


def test_direct_loss_exact_expectation_and_gradient(x64):
  """Independent coupling: at the exact map the direct loss equals the
  flow-matching variance E|b_t(I_t) − İ_t|² = Var(İ) − Cov(İ, I)²/Var(I)
  (not 0) and its *expected* gradient vanishes. The per-example loss of an
  affine map is a quadratic polynomial in (x0, x1), so Gauss–Hermite
  quadrature (4 nodes per variable) computes both expectations exactly."""
  interp = interpolants.linear()
  _, fmap = fm.gaussian_flow_map(interp)
  m, sd = 1.5, 0.6
  p = {"mean": jnp.array([m]), "std": jnp.array([sd])}
  nodes, weights = np.polynomial.hermite.hermgauss(4)
  g0, g1 = np.meshgrid(nodes, nodes, indexing="ij")
  w = jnp.asarray((weights[:, None] * weights[None, :]).ravel() / np.pi)
  x0 = jnp.asarray(np.sqrt(2) * g0.ravel())[:, None]
  x1 = m + sd * jnp.asarray(np.sqrt(2) * g1.ravel())[:, None]
  for s_, t_ in ((0.2, 0.7), (0.9, 0.3), (0.05, 0.95)):
    s = jnp.full(w.shape, s_)
    t = jnp.full(w.shape, t_)
    i_t, di_t = interp.x_t(x0, x1, t), interp.dx_t(x0, x1, t)

    def expect(q, which):
      r_l, r_i = fm.direct_residuals(fmap, q, i_t, di_t, s, t)
      r = r_l if which == "lag" else r_i
      return jnp.sum(w * fm.per_example_sq(r))

    var_i = (1 - t_) ** 2 + t_ ** 2 * sd ** 2
    cov = t_ * sd ** 2 - (1 - t_)
    floor = 1 + sd ** 2 - cov ** 2 / var_i
    assert float(expect(p, "lag")) == pytest.approx(floor, rel=1e-10)
    assert float(expect(p, "inv")) < 1e-24
    for which in ("lag", "inv"):
      g = jax.grad(expect)(p, which)
      assert max(abs(float(v[0])) for v in g.values()) < 1e-10
    assert float(expect(_perturb(p, 0.05), "lag")) > floor + 1e-6


def test_jvp_time_derivatives_match_central_differences(x64):
  """On a random (non-exact) MLP flow map: ∂_t X by jax.jvp equals a
  central difference; the Eulerian tangent ∂_s X + ∇X·b equals the central
  difference of X along the curve (s + h, x + h b)."""
  cfg = base_config.get_config()
  cfg.model.mlp.hidden = (32, 32)
  # Moderate time frequencies so an O(h²) central difference is accurate.
  cfg.model.mlp.time_scale = 10.0
  _, apply_fn, init_fn = make_network(cfg.model, (2,), 2)
  params = jitter(_f64(init_fn(jax.random.key(10))), jax.random.key(11), 0.1)
  vel, _, pv, _ = _system("rotation")
  b = lambda xx, tt: vel(pv, xx, tt)  # noqa: E731
  x, s, t = _points(jax.random.key(12), n=16, lo=0.1, hi=0.9)
  h = 1e-5
  for emb in fm.TIME_EMBEDDINGS:
    fmap = fm.make_flow_map(apply_fn, emb)

    @jax.jit
    def derivatives(params, fmap=fmap):
      r, _ = fm.lagrangian_residual(fmap, b, params, x, s, t)
      dt = r + b(fmap(params, x, s, t), t)
      fd = (fmap(params, x, s, t + h) - fmap(params, x, s, t - h)) / (2 * h)
      r_e, _ = fm.eulerian_residual(fmap, b, params, x, s, t)
      bs = b(x, s)
      fd_e = (fmap(params, x + h * bs, s + h, t)
              - fmap(params, x - h * bs, s - h, t)) / (2 * h)
      return dt, fd, r_e, fd_e

    dt, fd, r_e, fd_e = derivatives(params)
    np.testing.assert_allclose(dt, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(r_e, fd_e, rtol=1e-6, atol=1e-8)
    assert float(jnp.mean(jnp.square(dt))) > 1e-3   # not trivially zero


@pytest.mark.parametrize("emb", fm.TIME_EMBEDDINGS)
def test_network_flow_map_is_identity_on_the_diagonal(emb):
  cfg = base_config.get_config()
  cfg.model.mlp.hidden = (16,)
  _, apply_fn, init_fn = make_network(cfg.model, (3,), 2)
  params = init_fn(jax.random.key(0))
  params = jax.tree_util.tree_map(lambda a: a + 0.5, params)  # non-zero out
  fmap = fm.make_flow_map(apply_fn, emb, time_scale=7.0)
  x = jax.random.normal(jax.random.key(1), (5, 3))
  s = jax.random.uniform(jax.random.key(2), (5,))
  np.testing.assert_array_equal(fmap(params, x, s, s), x)
  assert float(jnp.max(jnp.abs(fmap(params, x, s, s + 0.3) - x))) > 1e-3


@pytest.mark.parametrize("system", SYSTEMS)
def test_jvp_time_derivative_of_exact_map_matches_central_difference(
    x64, system):
  """Closed-form maps: the forward-mode ∂_t X (from `lagrangian_residual`)
  equals a central difference of X in t, and equals b_t(X) (the ODE)."""
  vel, fmap, p, _ = _system(system)
  x, s, t = _points(jax.random.key(22), n=32, lo=0.1, hi=0.9)
  v = lambda xx, tt: vel(p, xx, tt)  # noqa: E731
  h = 1e-5

  @jax.jit
  def derivatives():
    r, x_st = fm.lagrangian_residual(fmap, v, p, x, s, t)
    dt = r + v(x_st, t)
    fd = (fmap(p, x, s, t + h) - fmap(p, x, s, t - h)) / (2 * h)
    return dt, fd, v(x_st, t)

  dt, fd, b = derivatives()
  np.testing.assert_allclose(dt, fd, rtol=1e-7, atol=1e-8)
  np.testing.assert_allclose(dt, b, atol=1e-12)


def _as_network(fmap_exact, time_embedding):
  """The exact map written as the network v of X = x + (t − s) v, i.e.
  v = (X_exact − x)/(t − s), reading its times the way `make_flow_map`
  feeds them ('st': (s, t); 's_dt': (s, t − s))."""

  def apply_fn(p, x, a, b, key=None):
    del key
    s, t = (a, b) if time_embedding == "st" else (a, a + b)
    return (fmap_exact(p, x, s, t) - x) / fm.bcast(t - s, x)

  return apply_fn


@pytest.mark.parametrize("emb", fm.TIME_EMBEDDINGS)
@pytest.mark.parametrize("kind", ["lmd", "emd"])
def test_exact_map_through_the_parameterisation(x64, kind, emb):
  """A network that represents the exact map, wrapped by `make_flow_map`
  (X = x + (t − s) v, both time embeddings): zero loss, vanishing
  gradient, loss growing with a perturbation of the network."""
  vel, fexact, p, interp = _system("rotation")
  fmap = fm.make_flow_map(_as_network(fexact, emb), emb)
  x, s, t = _points(jax.random.key(23), n=32)
  np.testing.assert_allclose(fmap(p, x, s, t), fexact(p, x, s, t),
                             atol=1e-10)
  make = flow_maps.make_lmd_loss if kind == "lmd" else flow_maps.make_emd_loss
  loss_fn = make(fmap, vel, interp, order="both")
  batch = _gauss_batch(jax.random.key(24), 128)
  total = lambda q: jnp.mean(loss_fn(  # noqa: E731
      q, batch, jax.random.key(25), extras={"teacher": p})[0])
  # v = (X − x)/(t − s) loses digits for tiny gaps: a looser zero.
  _check_zero_grad_and_growth(total, p, loss_tol=1e-16)


def test_time_embeddings_feed_the_network_the_right_times(x64):
  seen = {}

  def apply_fn(params, x, a, b, key=None):
    del params, key
    seen["a"], seen["b"] = a, b
    return jnp.ones_like(x)

  x = jnp.zeros((3, 2))
  s = jnp.array([0.1, 0.5, 0.9])
  t = jnp.array([0.3, 0.2, 1.0])
  for emb, second in (("st", t), ("s_dt", t - s)):
    out = fm.make_flow_map(apply_fn, emb, time_scale=1000.0)(None, x, s, t)
    np.testing.assert_allclose(seen["a"], 1000.0 * s)
    np.testing.assert_allclose(seen["b"], 1000.0 * second)
    # X = x + (t − s) v with v ≡ 1; time_scale does not rescale X.
    np.testing.assert_allclose(out, np.broadcast_to((t - s)[:, None], x.shape))
  with pytest.raises(ValueError):
    fm.make_flow_map(apply_fn, "t_only")


# ------------------------------------------------------------- sampling --


@pytest.mark.parametrize("system", ["trigonometric", "rotation"])
def test_k_step_sampling_with_exact_map_matches_teacher_ode(x64, system):
  vel, fmap, p, _ = _system(system)
  x0 = jax.random.normal(jax.random.key(13), (32, 2), jnp.float64)
  v = lambda xx, tt: vel(p, xx, jnp.full(xx.shape[:1], tt))  # noqa: E731
  ref = ode.integrate(v, x0, ode.uniform_grid(0.0, 1.0, 400), "rk4")
  for k in (1, 2, 4, 8):
    got = fm.sample(fmap, p, x0, fm.uniform_grid(k))
    np.testing.assert_allclose(got, ref, atol=1e-8)
  grid = jnp.array([0.0, 0.1, 0.5, 0.55, 1.0])
  got, path = fm.sample(fmap, p, x0, grid, return_path=True)
  np.testing.assert_allclose(got, ref, atol=1e-8)
  assert path.shape == (5, 32, 2)
  np.testing.assert_allclose(path[2], fmap(p, x0, 0.0, 0.5), atol=1e-12)
  if system != "rotation":
    # The one-step map pushes N(0, I) exactly onto N(m, σ²): x -> m + σ x.
    np.testing.assert_allclose(fm.sample(fmap, p, x0, fm.uniform_grid(1)),
                               p["mean"] + p["std"] * x0, atol=1e-12)


def test_method_sample_fn_and_teacher_ode_share_noise(x64):
  vel, fmap, p, _ = _system("linear")
  sample = flow_maps.make_sample_fn(fmap, (2,), default_steps=2)
  custom = flow_maps.make_sample_fn(fmap, (2,), grid=(0.0, 0.3, 1.0))
  teacher = flow_maps.make_teacher_ode_sampler(vel, (2,), "rk4")
  key = jax.random.key(14)
  ref = teacher(p, key, 64, 200)
  for out in (sample(p, key, 64, None), sample(p, key, 64, 1),
              sample(p, key, 64, 16), custom(p, key, 64, None),
              custom(p, key, 64, 2), custom(p, key, 64, 3)):
    assert out.shape == (64, 2)
    np.testing.assert_allclose(out, ref, atol=1e-8)


# ---------------------------------------------------------- progressive --


def test_progressive_target_and_loss_on_exact_map(x64):
  """Two steps of the exact previous map equal one exact step: the
  progressive loss is 0 with zero gradient at the exact map in every stage
  (stage 0: LMD in the band), and positive, growing, for a perturbed
  student. One compile serves every stage (the step is traced)."""
  vel, fmap, p, interp = _system("trigonometric")
  batch = _gauss_batch(jax.random.key(15), 256)
  extras = {"teacher": p, "prev": p}
  for init in ("lmd", "ode"):
    loss_fn = flow_maps.make_progressive_loss(
        fmap, interp, k0=4, stage_steps=10, init=init, teacher_velocity=vel,
        ode_steps=8, ode_method="rk4")

    def total(q, step, loss_fn=loss_fn):
      per_ex, _ = loss_fn(q, batch, jax.random.key(16), step=step,
                          extras=extras)
      return jnp.mean(per_ex)

    value_and_grad = jax.jit(jax.value_and_grad(total))
    steps = (0, 10, 25, 1000) if init == "lmd" else (0,)
    for step in steps:
      values, grads = zip(*[value_and_grad(_perturb(p, e), jnp.int32(step))
                            for e in EPS])
      # 'ode' stage 0: 8 RK4 steps per segment, error ~1e-9 -> loss ~1e-18.
      tol = 1e-15 if init == "ode" else 1e-18
      assert float(values[0]) < tol, (init, step, values)
      gmax = max(float(jnp.max(jnp.abs(g)))
                 for g in jax.tree_util.tree_leaves(grads[0]))
      assert gmax < (1e-7 if init == "ode" else 1e-9), (init, step, grads[0])
      assert all(b > a for a, b in zip(values, values[1:])), values
  np.testing.assert_allclose(
      fm.composed_map(fmap, p, batch["x"], 0.2, 0.7, 2),
      fmap(p, batch["x"], 0.2, 0.7), atol=1e-12)


def test_progressive_schedule_band_and_stage_switch(x64):
  assert flow_maps.progressive_schedule(8) == (8, 4, 2, 1)
  assert flow_maps.progressive_schedule(1) == (1,)
  with pytest.raises(ValueError):
    flow_maps.progressive_schedule(6)
  stages = [int(flow_maps.progressive_stage(jnp.int32(n), 100, 4))
            for n in (0, 99, 100, 250, 399, 400, 10_000)]
  assert stages == [0, 0, 1, 2, 3, 3, 3]
  _, fmap, p, interp = _system("linear")
  loss_fn = flow_maps.make_progressive_loss(fmap, interp, k0=8,
                                            stage_steps=100, init="direct")
  batch = _gauss_batch(jax.random.key(17), 512)
  run = jax.jit(lambda step: loss_fn(_perturb(p, 0.1), batch,
                                     jax.random.key(18), step=step,
                                     extras={"prev": p})[1])
  for step, k in ((0, 8), (150, 4), (250, 2), (350, 1), (5000, 1)):
    aux = run(jnp.int32(step))
    assert float(aux["fmm/K"]) == k
    assert float(aux["fmm/gap"]) == pytest.approx(1.0 / k)
    assert float(aux["fmm/stage"]) == {8: 0, 4: 1, 2: 2, 1: 3}[k]
    assert (float(aux["loss/stage0"]) > 0) == (step == 0)
    assert (float(aux["loss/progressive"]) > 0) == (step > 0)
  assert run._cache_size() == 1   # pylint: disable=protected-access


def test_progressive_update_copies_only_at_stage_boundaries():
  update = jax.jit(flow_maps.make_progressive_update(5, 3, "ema"))
  extras = {"prev": {"w": jnp.zeros(2)}, "teacher": {"w": jnp.ones(2)}}
  copied = []
  for n in range(1, 22):
    params = {"w": jnp.full(2, -float(n))}
    ema = {"w": jnp.full(2, float(n))}
    extras = update(jnp.int32(n), params, ema, extras)
    copied.append(float(extras["prev"]["w"][0]))
    np.testing.assert_array_equal(extras["teacher"]["w"], 1.0)
  # boundaries at n = 5 and 10 (stages 1, 2); stage 2 is the last (3 stages)
  assert copied[3] == 0.0 and copied[4] == 5.0 and copied[9] == 10.0
  assert copied[-1] == 10.0
  assert update._cache_size() == 1   # pylint: disable=protected-access


# ------------------------------------------------ (s, t) samplers, weights --


@pytest.mark.parametrize("h", [1.0, 0.25, 0.125])
@pytest.mark.parametrize("order", fm.TIME_ORDERS)
def test_time_sampler_is_uniform_on_the_band(x64, h, order):
  n = 200_000
  s, t = fm.sample_times(jax.random.key(19), n, max_gap=h, order=order,
                         dtype=jnp.float64)
  gap = np.asarray(t - s)
  assert np.all(np.abs(gap) <= h + 1e-12)
  assert np.all((s >= 0) & (s <= 1) & (t >= 0) & (t <= 1))
  if order == "forward":
    assert np.all(gap >= 0)
  else:
    assert abs(np.mean(gap > 0) - 0.5) < 5 * 0.5 / np.sqrt(n)
  # a = |t − s| has density ∝ (1 − a) on [0, h].
  mean = (h * h / 2 - h ** 3 / 3) / (h - h * h / 2)
  sd = np.std(np.abs(gap))
  assert abs(np.mean(np.abs(gap)) - mean) < 5 * sd / np.sqrt(n)
  if h == 1.0:   # the full square: uniform marginals; the triangle s ≤ t:
    # s = min of two uniforms (mean 1/3), t = max (mean 2/3).
    means = (0.5, 0.5) if order == "both" else (1 / 3, 2 / 3)
    for u, m in zip((s, t), means):
      assert abs(float(jnp.mean(u)) - m) < 5 * np.sqrt(1 / 12 / n)


def test_time_sampler_diagonal_fraction_and_traced_gap():
  s, t = fm.sample_times(jax.random.key(20), 100, diag_fraction=0.25)
  assert int(jnp.sum(s == t)) >= 25 and bool(jnp.all(s[:25] == t[:25]))
  draw = jax.jit(lambda key, h: fm.sample_times(key, 64, max_gap=h))
  for h in (1.0, 0.5, 0.1):
    s, t = draw(jax.random.key(21), h)
    assert float(jnp.max(t - s)) <= h + 1e-6
  assert draw._cache_size() == 1   # pylint: disable=protected-access


def test_time_weights():
  s = jnp.array([0.0, 0.5, 0.2])
  t = jnp.array([0.5, 0.0, 0.2])
  np.testing.assert_allclose(fm.time_weight(s, t), 1.0)
  np.testing.assert_allclose(fm.time_weight(s, t, "inv_gap", 0.01),
                             [2.0, 2.0, 100.0], rtol=1e-6)
  np.testing.assert_allclose(fm.time_weight(s, t, "inv_gap_sq", 0.1),
                             [4.0, 4.0, 100.0], rtol=1e-6)
  with pytest.raises(ValueError):
    fm.time_weight(s, t, "cosine")


# ------------------------------------------------- Method from a config --


def _small_config(loss, **fmm):
  c = base_config.get_config()
  c.method = "fmm"
  c.model.mlp.hidden = (32, 32)
  c.model.mlp.time_scale = 10.0
  c.fmm.loss = loss
  for k, v in fmm.items():
    setattr(c.fmm, k, v)
  return c


def _fake_teacher(c):
  _, apply_fn, init_fn = make_network(c.model, (2,), 1)
  return teachers.Teacher(apply_fn=apply_fn, params=init_fn(
      jax.random.key(1)), interp="linear", config=None, workdir="/tmp/t")


@pytest.mark.parametrize("loss,extra", [
    ("lmd", {}), ("emd", {"time_embedding": "s_dt"}),
    ("direct", {"gamma": "quadratic", "gamma_scale": 0.5}),
    ("progressive", {"progressive_k0": 4, "progressive_stage_steps": 2,
                     "progressive_init": "ode"})])
def test_method_from_config_compiled_steps_smoke(loss, extra):
  """Smoke: six compiled steps (one trace) and sampling stay finite."""
  c = _small_config(loss, **extra)
  teacher = _fake_teacher(c) if flow_maps.needs_teacher(c) else None
  assert (teacher is None) == (loss == "direct")
  method = flow_maps.from_config(c, (2,), teacher)
  batch = {"x": jax.random.normal(jax.random.key(2), (16, 2))}
  params, extras = method.init(jax.random.key(3), batch)
  assert ("teacher" in extras) == (teacher is not None)
  assert ("prev" in extras) == (loss == "progressive")
  traces = []

  def step_fn(params, extras, step, key):
    traces.append(1)

    def total(q):
      per_ex, aux = method.loss_fn(q, batch, key, step=step,
                                   ema_params=params, extras=extras)
      return jnp.mean(per_ex), (per_ex, aux)

    (val, (per_ex, aux)), g = jax.value_and_grad(total, has_aux=True)(params)
    params = jax.tree_util.tree_map(lambda a, b: a - 1e-3 * b, params, g)
    if method.update_extras is not None:
      extras = method.update_extras(step + 1, params, params, extras)
    return params, extras, val, per_ex, aux

  step_c = jax.jit(step_fn)
  for n in range(6):
    params, extras, val, per_ex, aux = step_c(
        params, extras, jnp.int32(n), jax.random.fold_in(jax.random.key(4), n))
    assert per_ex.shape == (16,) and np.isfinite(float(val))
    assert all(np.isfinite(float(v)) for v in aux.values())
  assert len(traces) == 1
  for steps in (1, 3):
    out = jax.jit(method.sample_fn, static_argnums=(2, 3))(
        params, jax.random.key(5), 10, steps)
    assert out.shape == (10, 2) and bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.parametrize("embedding", ["st", "s_dt"])
def test_flow_map_of_is_the_map_the_method_samples_with(embedding):
  """`flow_map_of(config)` is the trained map: X_{0,1} and the chain
  X_{2/3,1} ∘ X_{1/3,2/3} ∘ X_{0,1/3} from the sampler's noise equal the
  method's 1- and 3-step samples (a map built with another time embedding
  or scale would differ)."""
  c = _small_config("lmd", time_embedding=embedding)
  method = flow_maps.from_config(c, (2,), _fake_teacher(c))
  params, _ = method.init(jax.random.key(3), None)
  # The last layer starts at zero (X = id): perturb every weight.
  leaves, tree = jax.tree_util.tree_flatten(params)
  params = jax.tree_util.tree_unflatten(tree, [
      p + 0.3 * jax.random.normal(jax.random.key(i), p.shape, p.dtype)
      for i, p in enumerate(leaves)])
  X = flow_maps.flow_map_of(c, (2,))
  key, n = jax.random.key(5), 10
  x0 = jax.random.normal(key, (n, 2))
  np.testing.assert_allclose(method.sample_fn(params, key, n, 1),
                             X(params, x0, 0.0, 1.0), rtol=1e-6, atol=1e-6)
  y = X(params, X(params, X(params, x0, 0.0, 1 / 3), 1 / 3, 2 / 3), 2 / 3,
        1.0)
  np.testing.assert_allclose(method.sample_fn(params, key, n, 3), y,
                             rtol=1e-5, atol=1e-5)
  # Not the identity: the sampled points moved.
  assert float(jnp.max(jnp.abs(y - x0))) > 1e-3


def test_validate_config_rejects_bad_values():
  for field, value in (("loss", "cm"), ("time_order", "backward"),
                       ("weighting", "exp"), ("progressive_k0", 6),
                       ("max_gap", 0.0), ("sample_grid", (0.0, 0.5)),
                       ("progressive_init", "emd")):
    c = _small_config("lmd")
    setattr(c.fmm, field, value)
    with pytest.raises(ValueError, match=field):
      flow_maps.validate_config(c)
  c = _small_config("lmd", gamma="sqrt", gamma_scale=1.0)
  with pytest.raises(ValueError, match="gamma"):
    flow_maps.validate_config(c)
  with pytest.raises(ValueError, match="teacher"):
    flow_maps.from_config(_small_config("emd"), (2,), None)


def test_checkerboard_stop_grad_variant_only_flips_the_stop_gradient():
  """The ablation config is the LMD config with the semi-gradient, nothing
  else changed (same budget, network, teacher); the default is the paper's
  full gradient. The EMD/direct/progressive configs do not take it."""
  full = config_utils.load_config("configs/checkerboard_fmm_lmd.py")
  ablation = config_utils.load_config(
      "configs/checkerboard_fmm_lmd.py:stop_grad")
  assert full.fmm.stop_grad_target is False
  assert ablation.fmm.stop_grad_target is True
  a, b = full.to_dict(), ablation.to_dict()
  a["fmm"].pop("stop_grad_target")
  b["fmm"].pop("stop_grad_target")
  assert a == b
  smoke = config_utils.load_config(
      "configs/checkerboard_fmm_lmd.py:smoke,stop_grad")
  assert smoke.fmm.stop_grad_target is True and smoke.train.steps == 60
  with pytest.raises(ValueError, match="checkerboard_fmm_emd.py variant"):
    config_utils.load_config("configs/checkerboard_fmm_emd.py:stop_grad")
