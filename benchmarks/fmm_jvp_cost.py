r"""Step cost of the flow-map losses relative to a plain forward/backward.

python benchmarks/fmm_jvp_cost.py [--setups=checkerboard,digits] [--steps=30]

For each setup (the network and batch of configs/checkerboard_fmm_lmd.py and
configs/digits_fmm_lmd.py) times one compiled train step of the shared
trainer (`train.make_train_step`: loss, gradient, Adam, EMA) for

  plain        |X_{s,t}(x_s) − x1|²: one forward + backward of the flow map
               (the reference cost, no JVP, no teacher)
  fm_teacher   the teacher's own flow-matching step (one-time network)
  lmd          LMD: jvp in t of X, teacher at X_{s,t}, backprop through both
  lmd_sg       LMD with stop_gradient on the teacher's input
  emd          EMD: teacher at x_s, one jvp in (s, x)
  direct       direct FMM: inner map + jvp of the outer map
  progressive  a halving stage: 2 frozen map evaluations + student fwd/bwd

Teacher weights do not change the cost, so the teacher is a freshly
initialised network of the teacher config's architecture (no training
needed). Variants are compiled first, then timed round-robin (median over
rounds) so that load changes on a shared machine hit all alike. Prints a
table and writes results/fmm_jvp_cost.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils, data, teachers, train  # noqa: E402
from gcflow_jax.math import flow_map as fm  # noqa: E402
from gcflow_jax.methods import flow_maps  # noqa: E402
from gcflow_jax.methods import flow_matching  # noqa: E402
from gcflow_jax.methods.base import Method  # noqa: E402
from gcflow_jax.models import count_params, make_network  # noqa: E402
from gcflow_jax.train_state import TrainState  # noqa: E402

SETUPS = {"checkerboard": "configs/checkerboard_fmm_lmd.py",
          "digits": "configs/digits_fmm_lmd.py"}
VARIANTS = ("plain", "fm_teacher", "lmd", "lmd_sg", "emd", "direct",
            "progressive")


def _config(spec, **fmm):
  c = config_utils.load_config(spec)
  c.unlock()
  for k, v in fmm.items():
    setattr(c.fmm, k, v)
  c.lock()
  return c


def _fake_teacher(config, shape):
  tc = config_utils.load_config(config.teacher.config)
  _, apply_fn, init_fn = make_network(tc.model, shape, 1)
  return teachers.Teacher(apply_fn=apply_fn, params=init_fn(
      jax.random.key(7)), interp=tc.interp.name, config=tc, workdir="(fake)")


def _plain_method(config, shape):
  """Same flow-map network, plain regression: the no-JVP reference."""
  _, apply_fn, init_fn = make_network(config.model, shape, 2)
  fmap = fm.make_flow_map(apply_fn, config.fmm.time_embedding,
                          config.fmm.time_scale)

  def loss_fn(params, batch, key, **unused):
    del unused
    x1 = batch["x"]
    k_t, k_x0 = jax.random.split(key)
    s, t = fm.sample_times(k_t, x1.shape[0], dtype=x1.dtype)
    x0 = jax.random.normal(k_x0, x1.shape, x1.dtype)
    x_s = (1 - fm.bcast(s, x1)) * x0 + fm.bcast(s, x1) * x1
    r = fmap(params, x_s, s, t, key=None) - x1
    return fm.per_example_sq(r), {}

  return Method(name="plain", init=lambda k, b: (init_fn(k), {}),
                loss_fn=loss_fn, sample_fn=None)


def _method(variant, spec, shape):
  if variant == "plain":
    c = _config(spec)
    return c, _plain_method(c, shape)
  if variant == "fm_teacher":
    c = config_utils.load_config(_config(spec).teacher.config)
    return c, flow_matching.from_config(c, shape)
  fmm = {"lmd": dict(loss="lmd"), "lmd_sg": dict(loss="lmd",
                                                 stop_grad_target=True),
         "emd": dict(loss="emd"), "direct": dict(loss="direct",
                                                 time_order="both"),
         "progressive": dict(loss="progressive", progressive_k0=2,
                             progressive_stage_steps=1)}[variant]
  c = _config(spec, **fmm)
  teacher = (_fake_teacher(c, shape) if flow_maps.needs_teacher(c)
             else None)
  return c, flow_maps.from_config(c, shape, teacher)


def build_step(config, method, batch_size):
  """Compiles the trainer's step; returns (compile_s, run(n) -> sec/step,
  num_params)."""
  tx = train.make_optimizer(config.optim, 10_000)
  step_fn = train.jit_step(train.make_train_step(method, tx, config.ema),
                    donate_argnums=(0,))
  dataset = data.make_dataset(config.data, 0)
  batches = [{"x": jnp.asarray(dataset.global_batch(s, batch_size))}
             for s in range(4)]
  key = jax.random.key(0)
  params, extras = method.init(jax.random.key(1), batches[0])
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     ema_params=jax.tree_util.tree_map(jnp.copy, params),
                     opt_state=tx.init(params), extras=extras)
  if method.name == "fmm" and config.fmm.loss == "progressive":
    # Start in a halving stage (step >= stage_steps).
    state = state.replace(step=jnp.ones((), jnp.int32) * 5)
  holder = [state]
  t0 = time.perf_counter()
  holder[0], m = step_fn(holder[0], batches[0], key)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0

  def run(n):
    t0 = time.perf_counter()
    for s in range(n):
      holder[0], m = step_fn(holder[0], batches[s % 4], key)
    jax.block_until_ready(m)
    return (time.perf_counter() - t0) / n

  run(3)   # warm-up
  return compile_s, run, count_params(params)


def main():
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--setups", default="checkerboard,digits")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--rounds", type=int, default=7)
  p.add_argument("--variants", default=",".join(VARIANTS))
  a = p.parse_args()
  rows = []
  for setup in a.setups.split(","):
    spec = SETUPS[setup]
    base_cfg = _config(spec)
    shape = data.data_shape(base_cfg.data)
    bs = base_cfg.train.batch_size
    built = {}
    for variant in a.variants.split(","):
      c, method = _method(variant, spec, shape)
      built[variant] = build_step(c, method, bs)
      print(f"{setup} {variant}: compiled in {built[variant][0]:.1f}s",
            flush=True)
    # Round-robin timing (median over rounds): load changes on a shared
    # machine hit every variant alike.
    times = {v: [] for v in built}
    for _ in range(a.rounds):
      for v, (_, run, _) in built.items():
        times[v].append(run(a.steps))
    ref = float(np.median(times["plain"])) if "plain" in times else None
    for v, (compile_s, _, n_params) in built.items():
      sec = float(np.median(times[v]))
      rows.append({"setup": setup, "variant": v, "batch": bs,
                   "params": n_params, "ms_per_step": 1000 * sec,
                   "x_plain": sec / ref if ref else None,
                   "spread": (max(times[v]) - min(times[v])) / sec,
                   "compile_s": compile_s})
  print()
  print_table(rows, ["setup", "variant", "batch", "params", "ms_per_step",
                     "x_plain", "spread", "compile_s"])
  print("wrote", write_result("fmm_jvp_cost", rows, {
      "note": "median over rounds of `steps` steps, variants interleaved; "
              "x_plain = ms_per_step / plain's; spread = (max - min) / "
              "median over rounds", "args": vars(a)}))


if __name__ == "__main__":
  main()
