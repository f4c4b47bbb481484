r"""GCM step cost: computing only the active phase vs both losses every step.

python benchmarks/gcm_phase_cost.py [--couplings=ot,random] [--reps=3]
    [--cycles=1]

configs/gaussian_to_moons_gcm.py (MLP f and g, batch 256, T_f/T_g = 50/20,
minibatch OT by ott-jax Sinkhorn + rounding, or random pairing), through the
trainer's compiled step (`train.make_train_step`), with `gcm.phase_only`
True (lax.cond: pairing and L_f only on f steps, L_g only on g steps) and
False (both terms on every step, the gate zeroing the frozen network's
update). After one compiling cycle, each repetition times `cycles` full
cycles (70 steps) per setting, the settings interleaved, blocking on every
step so each step's time is attributed to its phase. Reports the median
over repetitions of the mean seconds per f step, per g step and per step
over a cycle, and the saving. The two settings follow the same trajectory
(tests/methods/test_distribution_matching.py). CPU timings on a shared
host: the load average is recorded.
Writes results/gcm_phase_cost.json.
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
from gcm_moons import CONFIG, load  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import train  # noqa: E402


class _Setting:
  """A compiled step and state for one (coupling, phase_only)."""

  def __init__(self, coupling, phase_only):
    self.config = load(CONFIG, {"gcm.coupling": coupling,
                                "gcm.phase_only": phase_only})
    self.run = train.build(self.config)
    self.state = self.run.initial_state()
    self.step_fn = self.run.jit_train_step(donate_argnums=(0,))
    self.cycle = self.config.gcm.t_f + self.config.gcm.t_g
    self.k = 0

  def steps(self, n):
    """Runs n steps; returns (seconds of f steps, of g steps)."""
    sec = {"f": [], "g": []}
    bs = self.config.train.batch_size
    for _ in range(n):
      batch = {"x": jnp.asarray(self.run.dataset.global_batch(self.k, bs))}
      phase = "f" if self.k % self.cycle < self.config.gcm.t_f else "g"
      t0 = time.perf_counter()
      self.state, m = self.step_fn(self.state, batch, self.run.k_train)
      jax.block_until_ready(m)
      sec[phase].append(time.perf_counter() - t0)
      self.k += 1
    return sec


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--couplings", default="ot,random")
  ap.add_argument("--reps", type=int, default=3)
  ap.add_argument("--cycles", type=int, default=1)
  args = ap.parse_args()
  load_start = os.getloadavg()
  rows = []
  for coupling in args.couplings.split(","):
    settings = {only: _Setting(coupling, only) for only in (True, False)}
    for s in settings.values():
      s.steps(s.cycle)  # compile (first step) and one warm cycle
    per = {only: {"f": [], "g": [], "step": []} for only in settings}
    for _ in range(args.reps):
      for only, s in settings.items():
        sec = s.steps(args.cycles * s.cycle)
        per[only]["f"].append(statistics.mean(sec["f"]))
        per[only]["g"].append(statistics.mean(sec["g"]))
        per[only]["step"].append(statistics.mean(sec["f"] + sec["g"]))
    for only in (False, True):
      rows.append({"coupling": coupling, "phase_only": only,
                   "reps": args.reps,
                   "sec_per_f_step": statistics.median(per[only]["f"]),
                   "sec_per_g_step": statistics.median(per[only]["g"]),
                   "sec_per_step": statistics.median(per[only]["step"]),
                   "per_rep_sec_per_step": per[only]["step"]})
    full, phase = rows[-2]["sec_per_step"], rows[-1]["sec_per_step"]
    rows[-1]["saving_vs_both"] = 1.0 - phase / full
    print(f"{coupling}: {full:.4f} -> {phase:.4f} s/step "
          f"({100 * (1 - phase / full):.1f}% saved)", flush=True)
  print_table(rows, ["coupling", "phase_only", "reps", "sec_per_f_step",
                     "sec_per_g_step", "sec_per_step", "saving_vs_both"])
  path = write_result("gcm_phase_cost", rows, {
      "settings": vars(args),
      "load_average_1_5_15": {"start": load_start, "end": os.getloadavg()}})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
