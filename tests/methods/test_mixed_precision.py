"""bfloat16 UNet compute through every image method's factory.

For each method (iCT IC/GC/OT, CD, flow maps LMD/EMD, reflow with the
log-density alignment regulariser, GCM with a UNet consistency model, flow
matching) the same loss is evaluated with `model.unet.dtype` 'float32' and
'bfloat16' on the same parameters, batch and key. Under bf16 the per-example
loss, every aux scalar and every gradient must be float32 (parameters stay
float32; the network casts its output back), the loss within 3% of the
float32 loss and the gradient's cosine similarity to the float32 gradient
above 0.995. Measured on these tiny nets (jax 0.10.2, CPU): loss within
0.001-0.8% (reflow's Hutchinson estimate the largest), cosine 0.9990-0.99999.
A teacher, where one is needed, is a random float32 UNet (its values do not
matter here).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base, common
from gcflow_jax import methods, teachers, train
from gcflow_jax.models import make_network

SHAPE = (8, 8, 1)
BATCH = 8


def _perturb(params, seed, scale=0.05):
  """Params plus N(0, scale²) noise: the zero-initialised output conv would
  otherwise make every loss independent of the network's precision."""
  leaves, tree = jax.tree_util.tree_flatten(params)
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_unflatten(tree, [
      p + jnp.asarray(scale * rng.standard_normal(p.shape), p.dtype)
      for p in leaves])


def _config(method, dtype, **fields):
  c = base.get_config()
  c.method = method
  c.data.name = "digits"
  common.unet(c, channels=8, mult=(1,), blocks=1)
  c.model.unet.dtype = dtype
  c.train.steps = 100
  c.train.batch_size = BATCH
  c.teacher.workdir = "unused"
  for path, value in fields.items():
    section, name = path.split(".")
    c[section][name] = value
  return c


def _teacher(config):
  _, apply_fn, init_fn = make_network(config.model, SHAPE, 1)
  params = _perturb(init_fn(jax.random.key(7)), seed=7)
  return teachers.Teacher(apply_fn=apply_fn, params=params, interp="linear",
                          config=None, workdir="random-teacher")


CASES = {
    "ict_ic": ("ict", {"ict.coupling": "ic"}),
    "ict_gc": ("ict", {"ict.coupling": "gc", "ict.gc_mu": 0.5}),
    "ict_ot": ("ict", {"ict.coupling": "ot", "ict.ot_solver": "exact"}),
    "cd": ("cd", {}),
    "fmm_lmd": ("fmm", {"fmm.loss": "lmd"}),
    "fmm_emd": ("fmm", {"fmm.loss": "emd"}),
    # One teacher Euler step per interval keeps the graph small; the
    # regulariser's log-determinant (power series of the bf16 network's
    # Jacobian at the interior knot) is what is checked.
    "reflow_align": ("reflow", {"reflow.num_intervals": 2,
                                "reflow.teacher_steps": 1,
                                "reflow.teacher_method": "euler",
                                "reflow.align_weight": 1.0,
                                "reflow.logdet": "power_series",
                                "reflow.logdet_terms": 2,
                                "reflow.quad_points": 1,
                                "reflow.divergence": "hutchinson"}),
    "gcm": ("gcm", {"gcm.generator": "conv", "gcm.latent_dim": 4,
                    "gcm.generator_channels": (8, 8),
                    "gcm.generator_output": "tanh"}),
    "flow_matching": ("flow_matching", {}),
}


def _loss_and_grads(case, dtype):
  method_name, fields = CASES[case]
  config = _config(method_name, dtype, **fields)
  teacher_cfg = _config(method_name, "float32", **fields)
  teacher = _teacher(teacher_cfg) if methods.needs_teacher(config) else None
  method = methods.get(config, SHAPE, teacher)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (BATCH,) + SHAPE),
                  jnp.float32)
  params, extras = method.init(jax.random.key(0), {"x": x})
  params = _perturb(params, seed=1)
  ema = _perturb(params, seed=2, scale=0.01)

  def objective(p):
    per_example, aux = method.loss_fn(
        p, {"x": x}, jax.random.key(3), step=jnp.int32(50), ema_params=ema,
        extras=extras)
    return jnp.mean(per_example), (per_example, aux)

  # -O0: these tests compare numbers, not speed; it halves compile time.
  fn = jax.jit(jax.value_and_grad(objective, has_aux=True)).lower(
      params).compile({"xla_backend_optimization_level": 0})
  (loss, (per_example, aux)), grads = fn(params)
  return loss, per_example, aux, grads


def _cosine(a, b):
  fa = jnp.concatenate([g.ravel() for g in jax.tree_util.tree_leaves(a)])
  fb = jnp.concatenate([g.ravel() for g in jax.tree_util.tree_leaves(b)])
  return float(fa @ fb / (jnp.linalg.norm(fa) * jnp.linalg.norm(fb)))


# The default suite runs one case per loss family with a distinct precision
# concern (GC endpoint, flow-map JVP, tracked log-density, plain
# regression); the rest (each 10-40 s of CPU) are marked slow.
DEFAULT_CASES = ("ict_gc", "fmm_emd", "reflow_align", "flow_matching")


@pytest.mark.parametrize("case", [
    c if c in DEFAULT_CASES else pytest.param(c, marks=pytest.mark.slow)
    for c in sorted(CASES)])
def test_bf16_smoke_loss_and_grads_fp32(case):
  loss32, _, _, g32 = _loss_and_grads(case, "float32")
  loss16, per16, aux16, g16 = _loss_and_grads(case, "bfloat16")
  assert per16.dtype == jnp.float32 and per16.shape == (BATCH,)
  for k, v in aux16.items():
    assert jnp.asarray(v).dtype == jnp.float32, k
  assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(g16))
  assert np.isfinite(float(loss16)) and float(loss32) > 0
  assert abs(float(loss16) / float(loss32) - 1) < 0.03, (loss16, loss32)
  cos = _cosine(g16, g32)
  assert cos > 0.995, cos


@pytest.mark.slow
def test_bf16_train_step_keeps_fp32_state_smoke():
  """One full train step (optimizer, EMA, GC endpoint) under bf16: the
  state stays float32 and the step matches the float32 step's loss."""
  out = {}
  for dtype in ("float32", "bfloat16"):
    config = _config("ict", dtype, **{"ict.coupling": "gc"})
    run = train.build(config)
    state = run.init_state()
    state = state.replace(params=_perturb(state.params, seed=1))
    step = jax.jit(train.make_train_step(run.method, run.tx, config.ema))
    new_state, metrics = step(state, {"x": jnp.asarray(
        run.dataset.global_batch(0, BATCH))}, run.k_train)
    for leaf in jax.tree_util.tree_leaves(
        (new_state.params, new_state.ema_params, new_state.opt_state)):
      if jnp.issubdtype(leaf.dtype, jnp.floating):
        assert leaf.dtype == jnp.float32
    assert int(new_state.step) == 1
    out[dtype] = float(metrics["loss"])
  assert abs(out["bfloat16"] / out["float32"] - 1) < 0.03, out
