r"""Sample quality vs number of flow-map steps (K chosen after training).

python benchmarks/fmm_steps_quality.py [--losses=lmd,direct,progressive]
    [--steps=3000] [--num_samples=100000] [--seeds=0]
    [--teacher_methods=heun,euler] [--teacher_ks=1,2,4,8,16,32,64]

Trains (with the shared trainer, `train.train_and_evaluate`, into
runs/fmm_bench/checkerboard_<loss>_<steps>_s<seed>; reused when already
there) the checkerboard configs configs/checkerboard_fmm_{lmd,direct,
progressive}.py for `--steps` steps, then samples each EMA model with K = 1,
2, 4, 8, 16 uniform steps and scores KL(data || model) on 50×50 histograms
(`num_samples` samples each, the evaluation library's kl_hist). The teacher
ODE (Heun and Euler, 1..64 steps) and the data-vs-data estimator floor are
reported alongside, and the published numbers of the follow-up work (Boffi,
Albergo & Vanden-Eijnden 2025, "How to build a consistency model",
checkerboard table: Lagrangian self-distillation KL 0.086 at 1 step, 0.070
at 8 steps) for reference. Writes results/fmm_steps_quality.json.
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
from fmm_convergence import load, sampler  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import evaluation, train  # noqa: E402
from gcflow_jax.methods import flow_maps  # noqa: E402

KS = (1, 2, 4, 8, 16)
TEACHER_KS = (1, 2, 4, 8, 16, 32, 64)
PUBLISHED = {"source": "Boffi, Albergo & Vanden-Eijnden (2025), 'How to "
                       "build a consistency model', checkerboard KL table, "
                       "Lagrangian method (as quoted in our issue)",
             "kl@1": 0.086, "kl@8": 0.070}


def trained(loss: str, steps: int, seed: int):
  """(config, run, state) of a finished checkerboard run (trained if
  missing)."""
  spec = f"configs/checkerboard_fmm_{loss}.py"
  config = load(spec, {"train.steps": steps, "seed": seed,
                       "train.plot": False})
  workdir = os.path.join("runs", "fmm_bench",
                         f"checkerboard_{loss}_{steps}_s{seed}")
  train_sec = None
  if not (train.has_checkpoint(workdir)
          and train.restore_state(config, workdir).step == steps):
    print(f"training {spec} ({steps} steps) into {workdir}", flush=True)
    t0 = time.perf_counter()
    train.train_and_evaluate(config, workdir)
    train_sec = time.perf_counter() - t0
  state = train.restore_state(config, workdir)
  run = train.build(config)
  run_info = {"workdir": workdir, "train_wall_sec": train_sec,
              "loadavg_after_train": os.getloadavg()}
  return config, run, state, run_info


def main():
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--losses", default="lmd,direct,progressive")
  p.add_argument("--steps", type=int, default=3000)
  p.add_argument("--num_samples", type=int, default=100_000)
  p.add_argument("--seeds", default="0")
  p.add_argument("--teacher_methods", default="heun,euler",
                 help="teacher ODE solvers to score ('' skips the teacher)")
  p.add_argument("--teacher_ks", default=",".join(map(str, TEACHER_KS)))
  a = p.parse_args()
  teacher_ks = tuple(int(k) for k in a.teacher_ks.split(",") if k)
  n = a.num_samples
  rows, teacher_rows = [], []
  reference = floor = None
  key = jax.random.key(2024)
  for seed in (int(s) for s in a.seeds.split(",")):
    for loss in a.losses.split(","):
      config, run, state, info = trained(loss, a.steps, seed)
      if reference is None:
        reference = run.dataset.reference(n)
        floor = evaluation.kl_hist_2d(run.dataset.global_batch(10**6, n),
                                      reference)
      draw = sampler(run, n)
      row = {"model": f"fmm-{loss}", "seed": seed, "train_steps": a.steps,
             "batch": config.train.batch_size, **info}
      for k in KS:
        row[f"kl@{k}"] = evaluation.kl_hist_2d(
            draw(state.ema_params, k, key, state.extras), reference)
      rows.append(row)
      print_table(rows[-1:], ["model", "seed"] + [f"kl@{k}" for k in KS])
      if run.teacher is not None and not teacher_rows:
        for method in [m for m in a.teacher_methods.split(",") if m]:
          ode = jax.jit(flow_maps.make_teacher_ode_sampler(
              run.teacher.velocity, (2,), method), static_argnums=(2, 3))
          trow = {"model": f"teacher ODE ({method})"}
          for k in teacher_ks:
            x = np.concatenate([np.asarray(ode(
                run.teacher.params, jax.random.fold_in(key, i), n // 5, k))
                                for i in range(5)])
            trow[f"kl@{k}"] = evaluation.kl_hist_2d(x, reference)
            trow[f"nfe@{k}"] = k * (2 if method == "heun" else 1)
          teacher_rows.append(trow)
          print_table(teacher_rows[-1:], ["model"] + [
              f"kl@{k}" for k in teacher_ks])
  cols = ["model", "seed", "train_steps"] + [f"kl@{k}" for k in KS]
  print(f"\nKL(data || model), 50x50 histograms, {n} samples; estimator "
        f"floor (data vs data) {floor:.4f}")
  print_table(rows + [{"model": "published (follow-up, Lagrangian)",
                       "kl@1": PUBLISHED["kl@1"],
                       "kl@8": PUBLISHED["kl@8"]}], cols)
  if teacher_rows:
    print("\nteacher ODE (K steps; NFE = 2K for Heun):")
    print_table(teacher_rows, ["model"] + [f"kl@{k}" for k in teacher_ks])
  print("wrote", write_result("fmm_steps_quality", rows, {
      "teacher_ode": teacher_rows, "kl_floor_data_vs_data": floor,
      "published": PUBLISHED, "num_samples": n, "args": vars(a),
      "loadavg_at_end": os.getloadavg()}))


if __name__ == "__main__":
  main()
