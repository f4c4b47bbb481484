r"""Sampling speed: the one-step (and few-step) flow map vs the teacher ODE
at matched quality.

python benchmarks/fmm_sampling_speed.py [--steps=3000] [--num_samples=100000]
    [--repeats=5] [--ode_ks=1,2,4,8,16,32,64] [--digits_steps=0]
    [--digits_workdir=DIR] [--digits_ode_ks=1,2,4,8,16,32]

Checkerboard: the LMD model of benchmarks/fmm_steps_quality.py
(runs/fmm_bench/checkerboard_lmd_<steps>_s0, trained if missing) and its
teacher. For the flow map with K = 1, 2, 4 steps and the teacher ODE (Heun,
1..64 steps) it measures the wall time to draw `num_samples` samples (one
compiled call, median of `repeats`, after a warm-up call) and the KL on
50×50 histograms. "Matched quality": the cheapest teacher ODE whose KL is
at most the flow map's; speedup = its time / the flow map's.

Digits (with --digits_steps > 0): the same for the UNet of
configs/digits_fmm_lmd.py trained for that many steps (into
runs/fmm_bench/digits_lmd_<steps>), quality = fd_digits on 1000 samples,
timing on 1000 samples. Writes results/fmm_sampling_speed.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402  pylint: disable=g-import-not-at-top
from fmm_convergence import load, quality_fn  # noqa: E402  pylint: disable=g-import-not-at-top
from fmm_steps_quality import trained  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import train  # noqa: E402
from gcflow_jax.methods import flow_maps  # noqa: E402


def _ints(csv):
  return tuple(int(k) for k in csv.split(",") if k)


def timed(fn, repeats):
  jax.block_until_ready(fn())     # compile + warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times)), np.asarray(out)


def measure(setup, run, state, shape, n, repeats, score, map_ks, ode_ks):
  key = jax.random.key(7)
  rows = []
  sample = jax.jit(run.method.sample_fn, static_argnums=(2, 3))
  for k in map_ks:
    sec, x = timed(lambda k=k: sample(state.ema_params, key, n, k,
                                      state.extras), repeats)
    rows.append({"setup": setup, "sampler": f"flow map K={k}", "nfe": k,
                 "sec": sec, "quality": score(x),
                 "load1": os.getloadavg()[0]})
    print_table(rows[-1:], ["setup", "sampler", "nfe", "sec", "quality"])
  ode = jax.jit(flow_maps.make_teacher_ode_sampler(
      run.teacher.velocity, shape, "heun"), static_argnums=(2, 3))
  for k in ode_ks:
    sec, x = timed(lambda k=k: ode(run.teacher.params, key, n, k), repeats)
    rows.append({"setup": setup, "sampler": f"teacher Heun {k}",
                 "nfe": 2 * k, "sec": sec, "quality": score(x),
                 "load1": os.getloadavg()[0]})
    print_table(rows[-1:], ["setup", "sampler", "nfe", "sec", "quality"])
  teacher = [r for r in rows if r["sampler"].startswith("teacher")]
  best_teacher = min(r["quality"] for r in teacher)
  for r in rows:
    if r["sampler"].startswith("flow map"):
      ok = [t for t in teacher if t["quality"] <= r["quality"]]
      if ok:
        match = min(ok, key=lambda t: t["sec"])
        r["matched_teacher"] = match["sampler"]
        r["speedup"] = match["sec"] / r["sec"]
      else:
        # The map beats every teacher setting measured.
        r["matched_teacher"] = f"none <= (best teacher {best_teacher:.4g})"
  return rows


def main():
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--steps", type=int, default=3000)
  p.add_argument("--num_samples", type=int, default=100_000)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--digits_steps", type=int, default=0)
  p.add_argument("--ode_ks", default="1,2,4,8,16,32,64",
                 help="teacher Heun step counts (checkerboard)")
  p.add_argument("--digits_ode_ks", default="1,2,4,8,16,32")
  p.add_argument("--digits_workdir", default="",
                 help="a finished digits LMD run to reuse, e.g. runs/fmm_bench/"
                 "conv_digits_lmd_600 from fmm_convergence.py --save")
  a = p.parse_args()
  _, run, state, _ = trained("lmd", a.steps, 0)
  reference = run.dataset.reference(a.num_samples)
  rows = measure("checkerboard", run, state, (2,), a.num_samples, a.repeats,
                 quality_fn("kl_hist", reference), (1, 2, 4),
                 _ints(a.ode_ks))
  if a.digits_steps:
    config = load("configs/digits_fmm_lmd.py",
                  {"train.steps": a.digits_steps, "train.plot": False})
    workdir = a.digits_workdir or os.path.join(
        "runs", "fmm_bench", f"digits_lmd_{a.digits_steps}")
    if not train.has_checkpoint(workdir):
      train.train_and_evaluate(config, workdir)
    dstate = train.restore_state(config, workdir)
    drun = train.build(config)
    ref = drun.dataset.reference(1000)
    rows += measure("digits", drun, dstate, drun.dataset.shape, 1000,
                    a.repeats, quality_fn("fd_digits", ref), (1, 2, 4),
                    _ints(a.digits_ode_ks))
  print()
  print_table(rows, ["setup", "sampler", "nfe", "sec", "quality",
                     "matched_teacher", "speedup", "load1"])
  print("wrote", write_result("fmm_sampling_speed", rows, {
      "quality": "checkerboard: KL(data||model) on 50x50 histograms of "
                 "num_samples samples (biased upwards for small N, alike for "
                 "map and teacher); digits: fd_digits on 1000 samples",
      "timing": "median wall seconds of `repeats` compiled calls after a "
                "warm-up; load1 = 1-minute load average after each row",
      "args": vars(a)}))


if __name__ == "__main__":
  main()
