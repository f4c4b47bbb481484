r"""Train-step throughput and compile time of configs on this machine.

python benchmarks/throughput.py [--configs=configs/toy_fm.py,configs/digits_fm.py]
    [--steps=50] [--batch_size=0 (config's)]

For each config: builds the run exactly as the trainer does (same jit,
shardings, donation), times the first call (compile + one step) and the
steady state over `--steps` steps (blocking on the result), and reports
steps/s and examples/s. Prints a table, writes results/throughput.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils, sharding, train  # noqa: E402


def measure(spec: str, steps: int, batch_size: int = 0) -> dict:
  config = config_utils.load_config(spec)
  if batch_size:
    config.unlock()
    config.train.batch_size = batch_size
    config.lock()
  run = train.build(config)
  rep = sharding.replicated(run.mesh)
  bsh = sharding.batch_sharding(run.mesh)
  state = run.initial_state()
  step_fn = run.jit_train_step(in_shardings=(rep, {"x": bsh}, rep),
                               out_shardings=(rep, rep), donate_argnums=(0,))
  bs = config.train.batch_size
  batches = [sharding.make_global_batch(
      run.mesh, run.dataset.global_batch(s, bs)) for s in range(4)]
  t0 = time.perf_counter()
  state, m = step_fn(state, {"x": batches[0]}, run.k_train)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  for s in range(3):  # warm-up
    state, m = step_fn(state, {"x": batches[s % 4]}, run.k_train)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for s in range(steps):
    state, m = step_fn(state, {"x": batches[s % 4]}, run.k_train)
  jax.block_until_ready(m)
  dt = time.perf_counter() - t0
  return {"config": spec, "method": config.method, "data": config.data.name,
          "batch": bs, "compile_plus_first_step_s": compile_s,
          "steps_per_s": steps / dt, "examples_per_s": steps * bs / dt,
          "ms_per_step": 1000 * dt / steps}


def main():
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--configs", default="configs/toy_fm.py,configs/digits_fm.py")
  p.add_argument("--steps", type=int, default=50)
  p.add_argument("--batch_size", type=int, default=0)
  p.add_argument("--name", default="throughput")
  a = p.parse_args()
  rows = [measure(s, a.steps, a.batch_size) for s in a.configs.split(",")]
  print_table(rows, ["config", "batch", "compile_plus_first_step_s",
                     "steps_per_s", "examples_per_s", "ms_per_step"])
  print("wrote", write_result(a.name, rows))


if __name__ == "__main__":
  main()
