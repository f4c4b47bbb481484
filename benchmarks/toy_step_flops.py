r"""Achieved FLOP/s of the toy flow-matching train step, one call per step vs
several steps per call.

XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
  taskset -c 1 python benchmarks/toy_step_flops.py [--steps=400] [--per_call=10]

configs/toy_fm.py (MLP 256x3, batch 512, Adam, EMA): the step is built as
the trainer builds it (`train.make_train_step`). FLOPs per step are XLA's
own count (`compiled.cost_analysis()["flops"]`). Timed in process CPU time
(`time.process_time`), blocking at the end of each timed block:

  one_per_call   the trainer's loop: one jitted call per step.
  scan           `--per_call` steps inside one jitted `lax.scan` over a
                 stacked batch (fewer host round trips); same arithmetic.

Peak: the CPU's single-core float32 FMA peak is not known to JAX; it is
given as `--peak_gflops` (default: 2 x 8-wide FMA units = 32 FLOP/cycle at
the clock in /proc/cpuinfo, an upper bound for AVX2 cores) and recorded.
Prints a table, writes results/toy_step_flops.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from common import print_table, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils, train  # noqa: E402


def _clock_ghz() -> float | None:
  try:
    with open("/proc/cpuinfo") as f:
      mhz = [float(l.split(":")[1]) for l in f if l.startswith("cpu MHz")]
    return max(mhz) / 1000 if mhz else None
  except OSError:
    return None


def _time(fn, state, arg, calls, rounds):
  state, m = fn(state, *arg)   # compile + warm-up
  jax.block_until_ready(m)
  out = []
  for _ in range(rounds):
    c0 = time.process_time()
    for _ in range(calls):
      state, m = fn(state, *arg)
    jax.block_until_ready(m)
    out.append(time.process_time() - c0)
  return state, out


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--steps", type=int, default=400)
  p.add_argument("--per_call", type=int, default=10)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--peak_gflops", type=float, default=0.0)
  args = p.parse_args()
  if args.steps % args.per_call:
    raise ValueError(f"--steps={args.steps} must be a multiple of "
                     f"--per_call={args.per_call}")
  config = config_utils.load_config("configs/toy_fm.py")
  run = train.build(config)
  raw = train.make_train_step(run.method, run.tx, config.ema)
  bs = config.train.batch_size
  state = run.initial_state()
  batch = jnp.asarray(run.dataset.global_batch(0, bs))
  stacked = jnp.stack([jnp.asarray(run.dataset.global_batch(s, bs))
                       for s in range(args.per_call)])

  one = jax.jit(lambda st, x: raw(st, {"x": x}, run.k_train),
                donate_argnums=(0,))

  def many(st, xs):
    def body(s, x):
      s, m = raw(s, {"x": x}, run.k_train)
      return s, m["loss"]
    st, losses = jax.lax.scan(body, st, xs)
    return st, losses
  many = jax.jit(many, donate_argnums=(0,))

  flops = one.lower(state, batch).compile().cost_analysis()["flops"]
  n_params = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
  ghz = _clock_ghz()
  peak = args.peak_gflops or (32 * ghz if ghz else None)
  state, t_one = _time(one, state, (batch,), args.steps, args.rounds)
  state, t_many = _time(many, state, (stacked,), args.steps // args.per_call,
                        args.rounds)
  rows = []
  for name, ts in (("one_per_call", t_one), ("scan", t_many)):
    s_per_step = statistics.median(ts) / args.steps
    gflops = flops / s_per_step / 1e9
    rows.append({"mode": name, "batch": bs, "params": int(n_params),
                 "steps_per_call": 1 if name == "one_per_call" else
                 args.per_call,
                 "cpu_ms_per_step_median": 1000 * s_per_step,
                 "cpu_ms_per_step_min": 1000 * min(ts) / args.steps,
                 "steps_per_cpu_s": 1 / s_per_step,
                 "mflop_per_step": flops / 1e6, "achieved_gflops": gflops,
                 "fraction_of_peak": gflops / peak if peak else None})
  print_table(rows, ["mode", "batch", "params", "steps_per_call",
                     "cpu_ms_per_step_median", "steps_per_cpu_s",
                     "mflop_per_step", "achieved_gflops",
                     "fraction_of_peak"])
  path = write_result("toy_step_flops", rows, {
      "peak_gflops": peak, "clock_ghz": ghz,
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "cpu_affinity": sorted(os.sched_getaffinity(0)),
      "notes": ("FLOPs from XLA's cost analysis of the one-step program; "
                "peak = 32 FLOP/cycle x the clock unless --peak_gflops "
                "was given (AVX2, 2 FMA units)")})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
