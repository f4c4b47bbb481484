r"""Cost per training step of the marginal-alignment regulariser (paper 003):
no regulariser vs exact divergence vs Hutchinson with 1 and 4 probes.

python benchmarks/reflow_regulariser_cost.py [--datasets=checkerboard,digits]
    [--steps=checkerboard:10,digits:3] [--skip_exact=digits]
    [--name=reflow_regulariser_cost] [--rows=exact --update]

For each dataset the student is the network of its reflow config
(checkerboard: 3×256 MLP, batch 256, regulariser solve 4 RK4 steps; digits:
the 8×8 UNet of configs/digits_reflow_align.py, batch 16, 1 RK4 step — the
exact 64-D divergence makes anything larger impractical on CPU); the
teacher has the same architecture. To
isolate the student-side cost the pairs come from an in-memory buffer
(`pair_source='cache'`), the whole batch is regularised (`align_batch=0`),
and the step is `value_and_grad` of the mean loss plus an Adam update,
jitted. The network weights are random (cost does not depend on them).
Reports compile time, steady-state ms/step (median of `--steps` timed
steps) and the ratio to plain reflow; writes
results/reflow_regulariser_cost.json.
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
from common import print_table, read_result, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils  # noqa: E402
from gcflow_jax.math import interpolants as interp_lib  # noqa: E402
from gcflow_jax.methods import reflow  # noqa: E402
from gcflow_jax.models import make_network  # noqa: E402

# dataset -> (config, data shape, batch, student ODE solve for the
# regulariser). Digits uses one RK4 step and batch 16: with the exact
# divergence (64 sequential JVPs, each needing third-order terms under the
# gradient) a 4-step solve at batch 64 took > 10 minutes per step here.
SETUPS = {
    "checkerboard": ("configs/checkerboard_reflow_align.py", (2,), 256,
                     (4, "rk4")),
    "digits": ("configs/digits_reflow_align.py", (8, 8, 1), 16, (1, "rk4")),
}
VARIANTS = (
    ("reflow (no regulariser)", dict(align_weight=0.0)),
    ("+ align, exact divergence", dict(divergence="exact")),
    ("+ align, Hutchinson 1 probe (JVP)", dict(divergence="hutchinson",
                                              num_probes=1)),
    ("+ align, Hutchinson 4 probes (JVP)", dict(divergence="hutchinson",
                                               num_probes=4)),
    ("+ align, Hutchinson 1 probe (VJP)", dict(divergence="hutchinson",
                                              num_probes=1,
                                              hutchinson_mode="vjp")),
)


def measure(dataset, name, overrides, steps):
  spec, shape, batch, (align_steps, align_method) = SETUPS[dataset]
  config = config_utils.load_config(spec)
  _, apply_fn, init_fn = make_network(config.model, shape, 1)
  # Random weights with a non-zero output layer (the zero-initialised last
  # layer would make the field trivially 0).
  tparams = jax.tree.map(lambda a: a + 0.01, init_fn(jax.random.key(0)))
  velocity = lambda p, x, t: apply_fn(p, x, jnp.broadcast_to(
      jnp.asarray(t, x.dtype), x.shape[:1]))
  kw = dict(align_weight=0.1, align_eps=0.05, align_steps=align_steps,
            align_method=align_method, divergence="exact", num_probes=1,
            probe="rademacher", hutchinson_mode="jvp", align_batch=0)
  kw.update(overrides)
  loss_fn = reflow.make_reflow_loss(apply_fn, velocity, interp_lib.linear(),
                                    1, teacher_steps=4, teacher_method="heun",
                                    pair_source="cache", **kw)
  knots = reflow.make_knots(1)
  segs = jax.jit(lambda x: reflow.teacher_segments(
      lambda y, t: velocity(tparams, y, t), x, knots,
      reflow.make_align_ends(knots, 0.05), 4, "heun", track_logp=False))(
          jax.random.normal(jax.random.key(1), (512,) + shape))
  extras = {"teacher": tparams,
            "pairs": {k: jnp.moveaxis(v, 1, 0) for k, v in segs.items()}}
  tx = optax.adam(1e-4)

  @jax.jit
  def step(params, opt_state, key):
    def obj(p):
      per_ex, aux = loss_fn(p, {"x": jnp.zeros((batch,) + shape)}, key,
                            step=jnp.int32(100), extras=extras)
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
  for i in range(steps + 1):
    t0 = time.perf_counter()
    params, opt_state, loss = step(params, opt_state, jax.random.key(i + 1))
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - t0)
  times = np.asarray(times[1:])
  return {"dataset": dataset, "variant": name, "batch": batch,
          "align_solve": f"{align_steps}x{align_method}"
          if overrides.get("align_weight", 0.1) else "-",
          "compile_s": compile_s, "ms_per_step": 1000 * float(np.median(
              times)), "ms_min": 1000 * float(times.min()),
          "loadavg_1m": os.getloadavg()[0]}


def _merge_rows(old, new):
  """`old` rows with the re-measured ones of `new` (same dataset and
  variant) replacing them, in VARIANTS order. An existing plain row is kept:
  every row's x_reflow is against the plain step of its own run (recorded
  as plain_ms_same_run), so old ratios stay valid."""
  merged = {(r["dataset"], r["variant"]): r for r in old}
  for r in new:
    key = (r["dataset"], r["variant"])
    if r["variant"] == VARIANTS[0][0] and key in merged:
      continue
    merged[key] = r
  order = {n: i for i, (n, _) in enumerate(VARIANTS)}
  return sorted(merged.values(), key=lambda r: (r["dataset"],
                                                order.get(r["variant"], 99)))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--datasets", default="checkerboard,digits")
  ap.add_argument("--steps", default="checkerboard:10,digits:3")
  ap.add_argument("--skip_exact", default="digits",
                  help="datasets whose exact-divergence row is skipped")
  ap.add_argument("--name", default="reflow_regulariser_cost",
                  help="result name (one file per dataset keeps the rows "
                       "of runs made at different times apart)")
  ap.add_argument("--rows", default="",
                  help="comma-separated substrings: measure only the "
                       "variants whose name contains one (the plain reflow "
                       "row is always measured, for the ratio)")
  ap.add_argument("--update", action="store_true",
                  help="keep the rows of an existing --name result that "
                       "this run does not re-measure (e.g. add a slow row "
                       "measured later)")
  args = ap.parse_args()
  steps_of = dict((k, int(v)) for k, v in
                  (s.split(":") for s in args.steps.split(",")))
  wanted = [w for w in args.rows.split(",") if w]
  old = read_result(args.name) if args.update else {}
  old_rows = old.get("rows", [])
  # Commands that produced the rows kept from the existing result.
  earlier = (old.get("earlier_commands", []) +
             [old["command"]]) if old.get("command") else []
  rows = []
  for dataset in args.datasets.split(","):
    base = None
    for name, ov in VARIANTS:
      if (wanted and ov.get("align_weight", 0.1) != 0.0 and
          not any(w in name for w in wanted)):
        continue
      if dataset in args.skip_exact.split(",") and ov.get(
          "divergence") == "exact":
        rows.append({"dataset": dataset, "variant": name,
                     "batch": SETUPS[dataset][2],
                     "note": "skipped: with 64 sequential JVPs (+ their "
                             "third-order terms under the gradient) one step"
                             " did not finish within 25 minutes on this "
                             "2-core machine"})
        print(f"{dataset} | {name}: skipped", flush=True)
        continue
      r = measure(dataset, name, ov, steps_of[dataset])
      base = base or r["ms_per_step"]
      r["x_reflow"] = r["ms_per_step"] / base
      r["plain_ms_same_run"] = base
      rows.append(r)
      print(f"{dataset} | {name}: {r['ms_per_step']:.1f} ms/step "
            f"(x{r['x_reflow']:.1f}), compile {r['compile_s']:.1f}s",
            flush=True)
      # Partial result after every row (an interrupted run keeps its rows).
      write_result(args.name, _merge_rows(old_rows, rows),
                   {"partial": True, "earlier_commands": earlier})
  rows = _merge_rows(old_rows, rows)
  print()
  print_table(rows, ["dataset", "variant", "batch", "align_solve",
                     "compile_s", "ms_per_step", "ms_min", "x_reflow",
                     "loadavg_1m", "note"])
  path = write_result(args.name, rows, {
      "earlier_commands": earlier,
      "note": "student-side cost only (pairs from an in-memory buffer); "
              "whole batch regularised; the machine is shared, see "
              "loadavg_1m"})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
