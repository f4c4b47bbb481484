r"""GCM on Gaussian -> moons: the T_f/T_g ablation and joint vs alternating
updates (paper 000; benchmarks 2 and 3 of its issue).

python benchmarks/gcm_schedule.py [--steps=2100] [--eval_every=350]
    [--seeds=0,1] [--settings=10/10,50/20,100/10,joint,joint_g_online]

configs/gaussian_to_moons_gcm.py (minibatch OT, Δt = 0.05) with the same
number of optimizer steps per setting:

* 'T_f/T_g': alternating, T_f updates of f then T_g of g (f⁻ = sg f, g⁻
  synced when a g phase ends) - 10/10, 50/20 (the paper's), 100/10;
* 'joint': both networks updated at every step (`gcm.schedule='joint'`,
  the same loss and optimizer copies without the gate), g⁻ synced every 70
  steps (so g regresses onto targets at most 70 steps old, as in 50/20);
* 'joint_g_online': joint with g⁻ = g (EMA decay 0): the generator target
  f⁻_0(g(z)) moves with g.

Reports distance against steps (Sinkhorn divergence, MMD², evaluation
library; 1000 samples), the final distance and its fluctuation over the
last 3 evaluations (stability), and ‖g(z) − f_0(g(z))‖². Note that the
settings spend different numbers of updates on g: 10/10 -> 50%, 50/20 ->
29%, 100/10 -> 9%, joint -> 100% (each step updates both).
Writes results/gcm_schedule.json.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402  pylint: disable=g-import-not-at-top
from gcm_moons import CONFIG, summarize, train_curves  # noqa: E402  pylint: disable=g-import-not-at-top



def overrides(setting: str):
  if setting == "joint":
    return {"gcm.schedule": "joint", "gcm.t_f": 50, "gcm.t_g": 20}
  if setting == "joint_g_online":
    return {"gcm.schedule": "joint", "gcm.g_target_update": "ema",
            "gcm.g_target_decay": 0.0}
  t_f, t_g = (int(v) for v in setting.split("/"))
  return {"gcm.schedule": "alternating", "gcm.t_f": t_f, "gcm.t_g": t_g}


def main():
  load_start = os.getloadavg()  # shared host: report the contention
  ap = argparse.ArgumentParser()
  ap.add_argument("--steps", type=int, default=2100)
  ap.add_argument("--eval_every", type=int, default=350)
  ap.add_argument("--seeds", default="0,1")
  ap.add_argument("--settings",
                  default="10/10,50/20,100/10,joint,joint_g_online")
  ap.add_argument("--num_samples", type=int, default=1000)
  args = ap.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  curves, rows = train_curves("setting", args.settings.split(","),
                              overrides, seeds, args)
  table = []
  for setting, runs in curves.items():
    for i, r in enumerate(runs[0]):
      vals = lambda k: np.array([run[i][k] for run in runs])
      table.append({"setting": setting, "step": r["step"],
                    "sinkhorn": float(vals("sinkhorn").mean()),
                    "mmd": float(vals("mmd").mean()),
                    "f0_err": (float(vals("f0_identity_err").mean())
                               if r["f0_identity_err"] is not None else None)})
  print()
  print_table(table, ["setting", "step", "sinkhorn", "mmd", "f0_err"])
  summary = summarize(curves, "sinkhorn", 3)
  print()
  print_table(summary, list(summary[0]))
  path = write_result("gcm_schedule", rows, {"table": table,
                                             "summary": summary,
                                             "config": CONFIG,
                                             "load_average": {
                                                 "start": load_start,
                                                 "end": os.getloadavg()}})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
