r"""Cost per training step of the marginal-alignment regulariser (paper 003)
relative to a plain piecewise-reflow step (K = 2).

python benchmarks/reflow_regulariser_cost.py [--datasets=checkerboard,digits]
    [--steps=checkerboard:20,digits:5] [--name=reflow_regulariser_cost]
    [--teacher_bias=1]

For each dataset the student is the network of its piecewise config
(checkerboard: 3×256 MLP, batch 512; digits: the 8×8 UNet of
configs/digits_reflow_align.py, batch 64), K = 2, pairs from an in-memory
buffer (`pair_source='cache'`). Rows: the plain reflow step; the config's
regulariser (sub-batch `align_batch`: 128 checkerboard with the exact 2×2
log-determinant, 8 digits with the 4-term power series); and the whole
batch regularised (exact and power series). A step is `value_and_grad` of
the mean loss plus an Adam update, jitted; ms/step is the median over
`--steps` timed steps after the compile, `x_reflow` the ratio to the plain
step measured in the same process. Weights: the teacher's if
runs/teacher_* has a checkpoint (`--teacher_bias`), else random (cost does
not depend on them).

Digits also reports (with the teacher's weights only) the power series'
truncation bias: mean and std over
examples of (power-series estimate − exact log|det(I + h ∂u/∂x)|) at the
interior knot's Euler step, for 1, 2, 4 and 8 terms (64 probes averaged per
example, so the probe noise is small), on teacher states from the cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils, teachers  # noqa: E402
from gcflow_jax.math import interpolants as interp_lib  # noqa: E402
from gcflow_jax.math import ode  # noqa: E402
from gcflow_jax.methods import reflow  # noqa: E402
from gcflow_jax.models import make_network  # noqa: E402

SETUPS = {
    "checkerboard": ("configs/checkerboard_piecewise_reflow_align.py", (2,)),
    "digits": ("configs/digits_reflow_align.py:align", (8, 8, 1)),
}


def _params(config, shape, use_teacher):
  _, apply_fn, init_fn = make_network(config.model, shape, 1)
  source = "random (+0.01)"
  params = jax.tree.map(lambda a: a + 0.01, init_fn(jax.random.key(0)))
  if use_teacher and os.path.isdir(config.teacher.workdir):
    config.unlock()
    config.teacher.train_if_missing = False
    try:
      t = teachers.load(config, shape)
      params, source = t.params, f"teacher step {t.step}"
    except Exception as e:  # pylint: disable=broad-except
      print(f"(teacher not loaded: {e})")
  return apply_fn, params, source


def measure(dataset, label, overrides, steps, apply_fn, tparams):
  spec, shape = SETUPS[dataset]
  config = config_utils.load_config(spec)
  r = config.reflow
  batch = config.train.batch_size
  velocity = lambda p, x, t: apply_fn(p, x, jnp.broadcast_to(
      jnp.asarray(t, x.dtype), x.shape[:1]))
  kw = dict(knot_gap=r.knot_gap, align_weight=r.align_weight,
            align_batch=r.align_batch, logdet=r.logdet,
            logdet_terms=r.logdet_terms, num_probes=r.num_probes,
            estimate_value=False, pair_source="cache")
  kw.update(overrides)
  loss_fn = reflow.make_reflow_loss(apply_fn, velocity, interp_lib.linear(),
                                    2, teacher_steps=2, **kw)
  segs = jax.jit(lambda x: reflow.teacher_segments(
      lambda y, t: velocity(tparams, y, t), x, reflow.make_knots(2), 2,
      "heun"))(jax.random.normal(jax.random.key(1), (256,) + shape))
  extras = {"teacher": tparams,
            "pairs": {k: jnp.moveaxis(v, 1, 0) for k, v in segs.items()}}
  tx = optax.adam(1e-4)

  @jax.jit
  def step(params, opt_state, key):
    def obj(p):
      per_ex, aux = loss_fn(p, {"x": jnp.zeros((batch,) + shape)}, key,
                            step=jnp.int32(10**6), extras=extras)
      return jnp.mean(per_ex), aux
    (loss, _), grads = jax.value_and_grad(obj, has_aux=True)(params)
    up, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, up), opt_state, loss

  params = jax.tree.map(jnp.array, tparams)
  opt_state = tx.init(params)
  t0 = time.perf_counter()
  params, opt_state, loss = step(params, opt_state, jax.random.key(0))
  jax.block_until_ready(loss)
  compile_s = time.perf_counter() - t0
  times = []
  for i in range(steps):
    t0 = time.perf_counter()
    params, opt_state, loss = step(params, opt_state, jax.random.key(i + 1))
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - t0)
  times = np.asarray(times)
  aw = kw["align_weight"]
  return {"dataset": dataset, "variant": label, "batch": batch,
          "align_batch": (kw["align_batch"] or batch) if aw else 0,
          "logdet": kw["logdet"] if aw else "-",
          "logdet_terms": kw["logdet_terms"]
          if aw and kw["logdet"] == "power_series" else 0,
          "compile_s": compile_s,
          "ms_per_step": 1000 * float(np.median(times)),
          "ms_min": 1000 * float(times.min()), "timed_steps": steps,
          "loadavg_1m": os.getloadavg()[0]}


def truncation_bias(apply_fn, params, shape, terms_list=(1, 2, 4, 8),
                    n=32, probes=64):
  """Power series − exact log-det at the interior knot's Euler step."""
  velocity = lambda x, t: apply_fn(params, x, jnp.broadcast_to(
      jnp.asarray(t, x.dtype), x.shape[:1]))
  segs = jax.jit(lambda x: reflow.teacher_segments(
      velocity, x, reflow.make_knots(2), 4, "heun"))(
          jax.random.normal(jax.random.key(2), (n,) + shape))
  x = segs["states"][0]
  field = lambda y: velocity(y, 0.0)
  _, exact = jax.jit(lambda y: reflow.logdet_exact(field, y, 0.5))(x)
  pr = ode.sample_probes(jax.random.key(3), x.shape, probes)
  out = []
  for terms in terms_list:
    _, est = jax.jit(lambda y, p, m=terms: reflow.logdet_power_series(
        field, y, 0.5, p, m))(x, pr)
    err = np.asarray(est - exact)
    out.append({"terms": terms, "bias_mean": float(err.mean()),
                "bias_std_over_examples": float(err.std()),
                "exact_logdet_mean": float(np.mean(exact))})
    print(f"power series {terms} terms: est − exact = {err.mean():.3f} ± "
          f"{err.std():.3f} (exact mean {float(np.mean(exact)):.2f})",
          flush=True)
  return out


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--datasets", default="checkerboard,digits")
  ap.add_argument("--steps", default="checkerboard:20,digits:5")
  ap.add_argument("--teacher_bias", type=int, default=1)
  ap.add_argument("--name", default="reflow_regulariser_cost")
  args = ap.parse_args()
  steps_of = {k: int(v) for k, v in (s.split(":")
                                     for s in args.steps.split(","))}
  rows, bias = [], {}
  for dataset in args.datasets.split(","):
    spec, shape = SETUPS[dataset]
    config = config_utils.load_config(spec)
    apply_fn, params, source = _params(config, shape, args.teacher_bias)
    d = int(np.prod(shape))
    variants = [
        ("reflow (no regulariser)", {"align_weight": 0.0}),
        ("+ align, config sub-batch", {}),
        ("+ align, whole batch, power series 4 terms",
         {"align_batch": 0, "logdet": "power_series", "logdet_terms": 4}),
    ]
    if d <= 2:
      variants.append(("+ align, whole batch, exact log-det",
                       {"align_batch": 0, "logdet": "exact"}))
    base = None
    for label, ov in variants:
      r = measure(dataset, label, ov, steps_of[dataset], apply_fn, params)
      base = base or r["ms_per_step"]
      r["x_reflow"] = r["ms_per_step"] / base
      r["plain_ms_same_run"] = base
      r["weights"] = source
      rows.append(r)
      print(f"{dataset} | {label}: {r['ms_per_step']:.1f} ms/step "
            f"(x{r['x_reflow']:.2f}), compile {r['compile_s']:.1f}s",
            flush=True)
      write_result(args.name, rows, {"partial": True})
    if dataset == "digits" and source.startswith("teacher"):
      bias[dataset] = {"weights": source,
                       "rows": truncation_bias(apply_fn, params, shape)}
  print()
  print_table(rows, ["dataset", "variant", "batch", "align_batch", "logdet",
                     "compile_s", "ms_per_step", "x_reflow", "loadavg_1m"])
  path = write_result(args.name, rows, {
      "truncation_bias": bias,
      "note": "student-side cost (pairs from an in-memory buffer), K = 2, "
              "regulariser at the interior knot; the machine is shared, "
              "see loadavg_1m (ratios are measured within one process)"})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
