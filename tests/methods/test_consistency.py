"""iCT / CD losses, couplings inside the loss, sampler and config adapters.

Closed-form checks use x* ~ N(0, s²) in 1-D, whose exact consistency
function with the boundary at σ_min is f(x, σ) = √(s² + σ_min²)/√(s² + σ²) x
(GC paper Eq. 21) and whose VE PF-ODE is dx/dσ = σ x/(s² + σ²).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from gcflow_jax.math import couplings, edm
from gcflow_jax.methods import consistency as C

S, SMIN = 0.5, 0.002


def _oracle(params, xin, c_noise, key=None):
  """A 'network' whose consistency function is (1 + a·g(σ)) times the exact
  one, g(σ) = (σ - σ_min)/(1 + σ) (so the boundary condition still holds).
  It inverts c_in and c_noise to recover x and σ."""
  del key
  sigma = jnp.exp(4.0 * c_noise)[:, None]
  c_skip, c_out, c_in, _ = edm.consistency_scalings(sigma, SMIN, 0.5)
  x = xin / c_in
  k = jnp.sqrt(S ** 2 + SMIN ** 2) / jnp.sqrt(S ** 2 + sigma ** 2)
  k = k * (1.0 + params["a"] * (sigma - SMIN) / (1.0 + sigma))
  return (k * x - c_skip * x) / c_out


def _v_sigma(params, x, sigma):
  del params
  return sigma[:, None] * x / (S ** 2 + sigma[:, None] ** 2)


def _mean_loss(kind, n_int, x, huber_c=10.0, solver="heun"):
  kw = dict(total_steps=1, s0=n_int, s1=n_int, huber_c=huber_c,
            sigma_min=SMIN)
  if kind == "ct":
    loss_fn = C.make_ict_loss(_oracle, (1,), **kw)
  else:
    loss_fn = C.make_cd_loss(_oracle, _v_sigma, (1,), solver=solver, **kw)

  def mean(a):
    per_ex, _ = loss_fn({"a": a}, {"x": x}, jax.random.key(1), step=0,
                        extras={"teacher": {}})
    return jnp.mean(per_ex)

  return jax.jit(jax.value_and_grad(mean))


@pytest.fixture(scope="module")
def gauss_data():
  with jax.enable_x64(True):
    yield S * jax.random.normal(jax.random.key(0), (100_000, 1),
                                jnp.float64)


def test_cd_loss_and_grad_vanish_at_exact_consistency_fn(x64, gauss_data):
  vg = _mean_loss("cd", 640, gauss_data, huber_c=None)
  l0, g0 = vg(0.0)
  l1, g1 = vg(0.05)
  l2, _ = vg(0.1)
  assert float(l0) < 1e-9
  assert float(l1) > 1e3 * float(l0) and float(l2) > 2 * float(l1)
  assert abs(float(g0)) < 1e-3 * abs(float(g1))
  # Euler is first order: its loss at the exact f is larger than Heun's.
  le, _ = _mean_loss("cd", 640, gauss_data, huber_c=None, solver="euler")(0.)
  assert float(le) > 10 * float(l0)


def test_ct_discrepancy_theorem1(x64, gauss_data):
  """Theorem 1 with a quadratic distance (pseudo-Huber, large c):
  (i) N·L_CT at the exact f tends to a positive constant (the regulariser
  R > 0) while L_CD = 0; (ii) the CT gradient at the exact f vanishes as
  N grows (α = 2), unlike the gradient at a perturbed f."""
  vals, grads, pert = [], [], []
  for n_int in (160, 640):
    vg = _mean_loss("ct", n_int, gauss_data)
    l0, g0 = vg(0.0)
    _, g1 = vg(0.05)
    vals.append(n_int * float(l0))
    grads.append(abs(float(g0)))
    pert.append(float(g1) - float(g0))
  assert vals[0] > 0 and vals[1] == pytest.approx(vals[0], rel=0.05)
  l_cd, _ = _mean_loss("cd", 640, gauss_data)(0.0)
  assert float(l_cd) < 1e-6 * vals[1] / 640
  assert grads[1] < 0.5 * grads[0]
  assert pert[1] == pytest.approx(pert[0], rel=0.2)
  assert grads[1] < 0.35 * pert[1]


class _Spy:
  """Records (batch size, params, dropout key) of every network call while
  the loss is traced (`jax.eval_shape`: no compile)."""

  def __init__(self):
    self.calls = []

  def __call__(self, params, x, c_noise, key=None):
    self.calls.append((x.shape[0], params, key))
    return params * x


def test_same_dropout_key_for_teacher_and_student():
  spy = _Spy()
  loss_fn = C.make_ict_loss(spy, (2,), total_steps=10)
  x = jnp.ones((8, 2))
  jax.eval_shape(lambda p, k: loss_fn(p, {"x": x}, k, step=0), 0.1,
                 jax.random.key(0))
  (b1, _, k1), (b2, _, k2) = spy.calls
  assert b1 == b2 == 8
  # One traced key object feeds both calls: identical dropout masks.
  assert k1 is not None and k1 is k2


@pytest.mark.parametrize("source", ["ema", "online", "frozen"])
def test_gc_endpoint_runs_on_mu_b_samples_with_its_params(source):
  spy = _Spy()
  loss_fn = C.make_ict_loss(spy, (2,), total_steps=10, coupling="gc",
                            gc_mu=0.25, gc_source=source)
  x = jnp.ones((16, 2))

  def run(online, ema, frozen, key):
    return loss_fn(online, {"x": x}, key, step=0, ema_params=ema,
                   extras={"endpoint": frozen})

  # The three parameter sets have distinct shapes, so the endpoint call
  # shows which one it received.
  shapes = {"online": (), "ema": (1,), "frozen": (1, 1)}
  per_ex, aux = jax.eval_shape(run, jnp.ones(()), jnp.ones((1,)),
                               jnp.ones((1, 1)), jax.random.key(1))
  assert per_ex.shape == (16,) and aux["coupling/gc_fraction"].shape == ()
  (b0, p0, k0), (b1, p1, _), (b2, p2, _) = spy.calls
  assert b0 == 4 and b1 == b2 == 16
  assert p0.shape == shapes[source] and p1.shape == p2.shape == ()
  # Only the online endpoint runs in training mode (as published).
  assert (k0 is not None) == (source == "online")


def test_gc_loss_has_no_gradient_through_endpoint():
  net = lambda p, x, c, key=None: p["w"] * x + c[:, None]  # noqa: E731
  loss_fn = C.make_ict_loss(net, (3,), total_steps=10, coupling="gc",
                            gc_mu=0.5)
  x = jax.random.normal(jax.random.key(0), (8, 3))

  def loss(params, ema):
    per_ex, _ = loss_fn(params, {"x": x}, jax.random.key(1), step=0,
                        ema_params=ema)
    return jnp.mean(per_ex)

  p, e = {"w": jnp.asarray(0.3)}, {"w": jnp.asarray(0.7)}
  g_p, g_ema = jax.jit(jax.grad(loss, argnums=(0, 1)))(p, e)
  assert float(g_ema["w"]) == 0.0
  assert float(g_p["w"]) != 0.0


class _Recorder:
  """A network that records every call's (params tag, x, σ), recovering x
  and σ from the EDM inputs (x_in = c_in x, c_noise = ln σ / 4). Output
  F = tag·x_in, so the endpoint (tag 1) differs from c_skip·x."""

  def __init__(self):
    self.calls = []

  def __call__(self, params, xin, c_noise, key=None):
    del key
    sigma = jnp.exp(4.0 * c_noise)
    _, _, c_in, _ = edm.consistency_scalings(sigma, SMIN, 0.5)
    self.calls.append((float(params["tag"]), np.asarray(xin / c_in[:, None]),
                       np.asarray(sigma)))
    return params["tag"] * xin


@pytest.mark.parametrize("mu", [1.0, 0.5])
def test_gc_endpoint_call_site(x64, mu):
  """Pins the GC call site (Eq. 13-15): the endpoint is f_EMA evaluated at
  σ_i (not σ_{i+1}) on x + σ_i z, with the *same* z that then noises the
  training pair (x̂ + σ_i z, x̂ + σ_{i+1} z), on the `gc_mask` examples
  only. Evaluating at σ_{i+1}, building the input from -z or drawing a
  different z each fail one of the asserts."""
  rec = _Recorder()
  b = 8
  loss_fn = C.make_ict_loss(rec, (3,), total_steps=1, s0=40, s1=40,
                            sigma_min=SMIN, coupling="gc", gc_mu=mu)
  x = jax.random.normal(jax.random.key(0), (b, 3), jnp.float64)
  loss_fn({"tag": jnp.asarray(0.0)}, {"x": x}, jax.random.key(3), step=0,
          ema_params={"tag": jnp.asarray(1.0)})
  (t_end, x_end, s_end), (t_i, x_i, s_i), (t_n, x_n, s_n) = rec.calls
  assert (t_end, t_i, t_n) == (1.0, 0.0, 0.0)
  # The training pair: recover its noise z and endpoint x̂.
  z = (x_n - x_i) / (s_n - s_i)[:, None]
  x_hat = x_i - s_i[:, None] * z
  mask = couplings.gc_mask(b, couplings.gc_count(mu, b))
  assert x_end.shape[0] == mask.sum()
  np.testing.assert_allclose(s_end, s_i[mask], rtol=1e-12)
  assert np.all(s_n > s_i)
  np.testing.assert_allclose(x_end, np.asarray(x)[mask]
                             + s_i[mask, None] * z[mask], atol=1e-9)
  c_skip, c_out, c_in, _ = edm.consistency_scalings(s_end, SMIN, 0.5)
  want = (c_skip + c_out * c_in)[:, None] * x_end  # f_EMA(x + σ_i z, σ_i)
  np.testing.assert_allclose(x_hat[mask], want, atol=1e-9)
  np.testing.assert_allclose(x_hat[~mask], np.asarray(x)[~mask], atol=1e-9)


def _ot_oracle(params, xin, c_noise, key=None):
  """Exact consistency function of the *OT-coupled* 1-D Gaussian process.

  For x* ~ N(0, S²) the population OT coupling with z ~ N(0, 1) is the
  monotone map x* = S z, so x_σ = (S + σ) z and f(x, σ) = (S + σ_min)/(S + σ)
  x (scaled by 1 + a·g(σ) as in `_oracle`)."""
  del key
  sigma = jnp.exp(4.0 * c_noise)[:, None]
  c_skip, c_out, c_in, _ = edm.consistency_scalings(sigma, SMIN, 0.5)
  x = xin / c_in
  k = (S + SMIN) / (S + sigma)
  k = k * (1.0 + params["a"] * (sigma - SMIN) / (1.0 + sigma))
  return (k * x - c_skip * x) / c_out


def test_ot_loss_vanishes_at_ot_consistency_fn(x64):
  """Minibatch OT must pair the *same* permuted noise with both the student
  point x_{i+1} and the teacher point x_i, and permute the right array by
  the right permutation: then the CT loss of the OT-coupled process's exact
  consistency function is ~0 (up to the minibatch approximation of the
  monotone map), far below the IC coupling's at the same function and below
  OT's at the IC-exact one. Pairing x_i and x_{i+1} with different noise,
  or permuting by π⁻¹, makes it O(IC). (Sinkhorn rounding quality is
  tested in tests/math/test_couplings.py.)"""
  x = S * jax.random.normal(jax.random.key(0), (256, 1), jnp.float64)
  kw = dict(total_steps=1, s0=80, s1=80, huber_c=10.0, sigma_min=SMIN)
  ot_ot = C.make_ict_loss(_ot_oracle, (1,), coupling="ot", **kw)
  ic_ot = C.make_ict_loss(_ot_oracle, (1,), coupling="ic", **kw)
  ot_ic = C.make_ict_loss(_oracle, (1,), coupling="ot", **kw)
  p = {"a": jnp.asarray(0.0)}

  @jax.jit
  def losses(key):
    return jnp.stack([jnp.mean(fn(p, {"x": x}, key, step=0)[0])
                      for fn in (ot_ot, ic_ot, ot_ic)])

  ot_at_ot, ic_at_ot, ot_at_ic = np.mean(
      [np.asarray(losses(jax.random.key(i))) for i in range(3)], axis=0)
  assert ot_at_ot < 0.02 * ic_at_ot
  assert ot_at_ot < 0.1 * ot_at_ic


def test_cd_with_edm_denoiser_teacher(x64, gauss_data):
  """CD from an EDM denoiser teacher (instead of a flow-matching one): with
  the exact Gaussian denoiser plugged in through the EDM preconditioning,
  the loss vanishes at the exact consistency function."""

  def den_net(params, xin, c_noise, key=None):
    # The raw network F whose preconditioned output is E[x* | x_σ].
    del params, key
    sigma = jnp.exp(4.0 * c_noise)[:, None]
    c_skip, c_out, c_in, _ = edm.denoiser_scalings(sigma, 0.5)
    x = xin / c_in
    return (S ** 2 / (S ** 2 + sigma ** 2) * x - c_skip * x) / c_out

  v = edm.sigma_velocity_from_denoiser(
      lambda p, x, s: edm.edm_denoiser_fn(den_net, p, x, s))
  loss_fn = C.make_cd_loss(_oracle, v, (1,), total_steps=1, s0=640,
                           s1=640, sigma_min=SMIN, solver="heun")

  @jax.jit
  def mean(a):
    per_ex, _ = loss_fn({"a": a}, {"x": gauss_data}, jax.random.key(1),
                        step=0, extras={"teacher": {}})
    return jnp.mean(per_ex)

  assert float(mean(0.0)) < 1e-6
  assert float(mean(0.05)) > 1e3 * float(mean(0.0))


def test_ot_coupling_lowers_pair_cost():
  net = lambda p, x, c, key=None: p * x  # noqa: E731
  loss_fn = C.make_ict_loss(net, (4,), total_steps=10, coupling="ot")
  x = jax.random.normal(jax.random.key(0), (64, 4))
  _, aux = jax.jit(lambda x: loss_fn(0.1, {"x": x}, jax.random.key(1),
                                     step=0))(x)
  assert float(aux["coupling/cost"]) < 0.8 * float(aux["coupling/ic_cost"])


def test_loss_compiles_once_over_curriculum():
  traces = []
  net = lambda p, x, c, key=None: p * x  # noqa: E731
  loss_fn = C.make_ict_loss(net, (2,), total_steps=160, s0=10, s1=1280)

  @jax.jit
  def step(params, x, key, k):
    traces.append(1)
    per_ex, aux = loss_fn(params, {"x": x}, key, step=k)
    return jnp.mean(per_ex), aux["ict/num_points"]

  ns = set()
  x = jnp.ones((8, 2))
  for k in range(0, 160, 10):
    _, n = step(0.5, x, jax.random.key(k), jnp.int32(k))
    ns.add(int(n))
  assert ns == {11, 21, 41, 81, 161, 321, 641, 1281}
  assert len(traces) == 1


def test_sampler_with_exact_consistency_fn(x64):
  sample = C.make_sampler(_oracle, (1,), sigma_min=SMIN,
                          sample_sigmas=(0.821,))
  p = {"a": jnp.asarray(0.0)}
  for steps in (1, 2, 3):
    x = jax.jit(sample, static_argnums=(2, 3))(p, jax.random.key(steps),
                                                20_000, steps)
    assert x.shape == (20_000, 1)
    assert float(jnp.std(x)) == pytest.approx(np.sqrt(S ** 2 + SMIN ** 2),
                                              rel=0.03)
  assert C.intermediate_sigmas(2, (0.821,)) == (0.821,)
  three = C.intermediate_sigmas(3, (0.821,))
  assert len(three) == 2 and three[0] > three[1] > SMIN
  assert C.intermediate_sigmas(1, (0.821,)) == ()


def test_ot_renoise_samples_ot_model_correctly(x64):
  """Multistep sampling of an OT-trained model. Through the exact OT
  consistency function of N(0, S²) (`_ot_oracle`): 1 step gives std
  S·σ_max/(S + σ_max) ≈ S; re-noising with independent noise (the IC
  marginal, never seen in OT training) shrinks the 2-step std to
  ≈ S·√(S² + σ²)/(S + σ) ≈ 0.73 S at σ = 0.821; pairing the fresh noise with
  the sample by minibatch OT restores ≈ S at 2 and 3 steps."""
  p = {"a": jnp.asarray(0.0)}
  kw = dict(sigma_min=SMIN, sample_sigmas=(0.821,))
  ot = jax.jit(C.make_sampler(_ot_oracle, (1,), renoise="ot", ot_batch=1000,
                              **kw), static_argnums=(2, 3))
  ic = jax.jit(C.make_sampler(_ot_oracle, (1,), renoise="ic", **kw),
               static_argnums=(2, 3))
  n = 10_000
  std = lambda fn, steps: float(jnp.std(fn(p, jax.random.key(steps), n,  # noqa: E731
                                           steps)))
  one = S * 80.0 / (S + 80.0)
  assert std(ot, 1) == pytest.approx(one, rel=0.03)
  assert std(ot, 2) == pytest.approx(S, rel=0.03)
  assert std(ot, 3) == pytest.approx(S, rel=0.03)
  m = np.sqrt(one ** 2 + 0.821 ** 2 - SMIN ** 2)
  assert std(ic, 2) == pytest.approx(S * m / (S + 0.821), rel=0.03)
  assert std(ic, 2) < 0.8 * S


def test_sample_renoise_follows_coupling():
  for coupling, method, want in (("ot", "ict", "ot"), ("ic", "ict", "ic"),
                                 ("gc", "ict", "ic"), ("ot", "cd", "ic")):
    c = _cfg(coupling=coupling)
    c.method = method
    assert C.sample_renoise(c) == want
  c = _cfg(coupling="ic", sample_renoise="ot")
  assert C.sample_renoise(c) == "ot"
  with pytest.raises(ValueError, match="renoise"):
    C.make_sampler(_oracle, (1,), renoise="gc")


def _cfg(**ict):
  c = base.get_config()
  c.method = "ict"
  c.model.mlp.hidden = (16,)
  for k, v in ict.items():
    c.ict[k] = v
  return c


@pytest.mark.parametrize("field,value,match", [
    ("coupling", "mix", "ict.coupling"),
    ("gc_mu", 1.5, "ict.gc_mu"),
    ("gc_source", "teacher", "ict.gc_source"),
    ("ot_solver", "hungarian", "ict.ot_solver"),
    ("s1", 5, "ict.s0 <= ict.s1"),
    ("sigma_min", 100.0, "sigma_min"),
    ("sample_sigmas", (0.1, 0.8), "descending"),
    ("distance", "lpips", "ict.distance"),
    ("sample_renoise", "gc", "ict.sample_renoise"),
    ("sample_ot_batch", -1, "ict.sample_ot_batch"),
])
def test_validate_config_errors(field, value, match):
  with pytest.raises(ValueError, match=match):
    C.validate_config(_cfg(**{field: value}))


def test_validate_frozen_needs_workdir_and_needs_teacher():
  with pytest.raises(ValueError, match="gc_endpoint_workdir"):
    C.validate_config(_cfg(coupling="gc", gc_source="frozen"))
  c = _cfg()
  assert not C.needs_teacher(c)
  c.method = "cd"
  assert C.needs_teacher(c)


@pytest.mark.parametrize("coupling", ["ic", "ot", "gc"])
def test_from_config_mlp_step_smoke(coupling):
  """Smoke: builds, compiles, and gives a finite loss and gradients."""
  c = _cfg(coupling=coupling)
  m = C.from_config(c, (2,))
  params, extras = m.init(jax.random.key(0), None)
  assert extras == {}
  x = jax.random.normal(jax.random.key(1), (32, 2))

  @jax.jit
  def step(params):
    def obj(p):
      l, aux = m.loss_fn(p, {"x": x}, jax.random.key(2), step=jnp.int32(0),
                         ema_params=params, extras=extras)
      return jnp.mean(l), aux
    return jax.value_and_grad(obj, has_aux=True)(params)

  (loss, aux), grads = step(params)
  assert np.isfinite(float(loss)) and float(loss) > 0
  assert all(np.isfinite(np.asarray(g)).all()
             for g in jax.tree_util.tree_leaves(grads))
  assert m.default_sample_steps == 1
  s = m.sample_fn(params, jax.random.key(3), 5, 2)
  assert s.shape == (5, 2)


def test_from_config_cd_with_fm_teacher(x64):
  """CD wired to a flow-matching Teacher (linear interpolant) whose exact
  velocity is known: x_i^Φ is the teacher's PF-ODE step from x_{i+1}."""
  from gcflow_jax import teachers  # pylint: disable=g-import-not-at-top

  def b(params, x, t):
    del params
    t = t[:, None]
    var = (1 - t) ** 2 + t ** 2 * S ** 2
    return (t * S ** 2 - (1 - t)) / var * x

  teacher = teachers.Teacher(apply_fn=b, params={"unused": jnp.zeros(())},
                             interp="linear", config=None, workdir="/t")
  c = _cfg()
  c.method = "cd"
  c.data.name = "gaussian"
  m = C.from_config(c, (2,), teacher)
  params, extras = m.init(jax.random.key(0), None)
  assert set(extras) == {"teacher"}
  x = S * jax.random.normal(jax.random.key(1), (64, 2))
  per_ex, aux = jax.jit(lambda p, e: m.loss_fn(
      p, {"x": x}, jax.random.key(2), step=0, extras=e))(params, extras)
  assert per_ex.shape == (64,) and np.isfinite(np.asarray(per_ex)).all()
  # CT's one-sample x* + σ_i z differs from the ODE step (the gap Theorem 1
  # is about).
  assert float(aux["cd/ct_gap"]) > 0
  with pytest.raises(ValueError, match="teacher"):
    C.from_config(c, (2,), None)


_PAPER_CONFIGS = [f"configs/{d}_{c}.py" for d in
                  ("cifar", "imagenet32", "celeba64", "lsun_church64")
                  for c in ("ic", "ot", "gc")]


@pytest.mark.parametrize("path", _PAPER_CONFIGS + ["configs/toy_ict.py",
                                                   "configs/digits_gc.py"])
def test_config_docstring_has_command_hardware_and_number(path):
  import ast  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  with open(path) as f:
    doc = ast.get_docstring(ast.parse(f.read()))
  assert "Command:" in doc and "gcflow_jax.main" in doc and path in doc
  assert "Hardware:" in doc
  assert "Expected" in doc
  if path in _PAPER_CONFIGS:  # the paper's Table 1 FID
    assert re.search(r"FID \d+\.\d+ ± \d", doc), path


def test_cifar_configs_match_table3_and_dropout_variants():
  from gcflow_jax import config_utils  # pylint: disable=g-import-not-at-top
  cfg = {v: config_utils.load_config(v) for v in (
      "configs/cifar_ic.py", "configs/cifar_ot.py", "configs/cifar_gc.py",
      "configs/cifar_ic.py:equal_dropout",
      "configs/cifar_gc.py:equal_dropout")}
  for c in cfg.values():
    assert (c.train.batch_size, c.train.steps) == (512, 100_000)
    assert (c.optim.name, c.optim.lr, c.optim.weight_decay) == ("lion", 1e-4,
                                                               0.0)
    assert (c.ict.s0, c.ict.s1, c.ict.rho) == (10, 1280, 7.0)
    assert (c.ict.sigma_min, c.ict.sigma_max) == (0.002, 80.0)
    u = c.model.unet
    assert (u.model_channels, tuple(u.channel_mult), u.num_blocks,
            tuple(u.attn_resolutions)) == (128, (1, 2, 2), 3, ())
    assert tuple(c.ict.sample_sigmas) == (0.821,)
    assert (c.ema.schedule, c.ema.every, c.ema.start) == ("warmup", 5, 0)
  # ImageNet-32 starts its EMA at step 10,000 (published `ema_start`).
  for m in ("ic", "ot", "gc"):
    c = config_utils.load_config(f"configs/imagenet32_{m}.py")
    assert (c.ema.schedule, c.ema.every, c.ema.start) == ("warmup", 5,
                                                         10_000)
  ic, ot, gc = (cfg[f"configs/cifar_{m}.py"] for m in ("ic", "ot", "gc"))
  assert (ic.ict.coupling, ot.ict.coupling, gc.ict.coupling) == (
      "ic", "ot", "gc")
  # Published dropout (IC 0.3, GC 0.0) and the equal-dropout variants.
  assert (ic.model.dropout, ot.model.dropout, gc.model.dropout) == (
      0.3, 0.3, 0.0)
  assert cfg["configs/cifar_ic.py:equal_dropout"].model.dropout == 0.0
  assert cfg["configs/cifar_gc.py:equal_dropout"].model.dropout == 0.3
  assert (gc.ict.gc_mu, gc.ict.gc_source) == (0.5, "ema")
  # 32×32×3 OT pairs on the device (as good as exact there, ot_cost.json);
  # `:exact` keeps the host assignment; the 2-D toy stays exact.
  for spec in ("configs/cifar_ot.py", "configs/imagenet32_ot.py"):
    c = config_utils.load_config(spec)
    assert (c.ict.ot_solver, c.ict.ot_rounding) == ("sinkhorn", "greedy")
    c = config_utils.load_config(spec + ":exact")
    assert (c.ict.coupling, c.ict.ot_solver) == ("ot", "exact")
  assert config_utils.load_config("configs/toy_ict.py:ot").ict.ot_solver == (
      "exact")


@pytest.mark.slow
def test_frozen_gc_endpoint_restored_from_checkpoint(tmp_path):
  """Sec. 5.2: `gc_source='frozen'` restores a finished iCT-IC run (its EMA
  parameters) into `extras['endpoint']` and the GC loss runs on it."""
  from gcflow_jax import config_utils, train  # pylint: disable=g-import-not-at-top
  ic = config_utils.load_config("configs/toy_ict.py:smoke")
  with ic.unlocked():
    ic.train.steps = 2
    ic.train.plot = False
    ic.eval.metrics = ()
    ic.eval.num_samples = 16
  wd = str(tmp_path / "ic")
  train.train_and_evaluate(ic, wd)
  saved = train.restore_state(ic, wd)
  gc = config_utils.load_config("configs/toy_ict.py:smoke,gc")
  with gc.unlocked():
    gc.ict.gc_mu = 1.0
    gc.ict.gc_source = "frozen"
    gc.ict.gc_endpoint_workdir = wd
    gc.ict.gc_endpoint_config = "configs/toy_ict.py:smoke"
  m = C.from_config(gc, (2,))
  params, extras = m.init(jax.random.key(0), None)
  assert m.info["gc_endpoint"] == wd
  for a, b in zip(jax.tree_util.tree_leaves(extras["endpoint"]),
                  jax.tree_util.tree_leaves(saved.ema_params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  x = jax.random.normal(jax.random.key(1), (16, 2))
  per_ex, aux = jax.jit(lambda p, e: m.loss_fn(
      p, {"x": x}, jax.random.key(2), step=0, extras=e))(params, extras)
  assert np.isfinite(np.asarray(per_ex)).all()
  assert float(aux["coupling/gc_fraction"]) == 1.0
  # The GC endpoints are the frozen model's, not the data.
  assert float(aux["coupling/cost"]) != pytest.approx(
      float(aux["coupling/ic_cost"]))
