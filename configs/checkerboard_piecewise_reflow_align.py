"""Piecewise reflow (K = 2 intervals) + marginal alignment at every interval
end on the 2-D checkerboard (paper 003). Sampling uses K × m Euler steps.

Command:  python -m gcflow_jax.main --config=configs/checkerboard_piecewise_reflow_align.py --workdir=runs/checkerboard_piecewise_reflow_align
Hardware: CPU (2 cores); ~15 minutes for 2000 steps (pair cache included).
Expected: the paper reports no 2-D number (abstract only); measured 2/4-step
quality (3 seeds) is in benchmarks/results/reflow_quality.json and the
telescoping-bound check in benchmarks/results/reflow_telescoping.json.
Variants: `:smoke`, `:k4` (K = 4), `:noalign` (piecewise reflow without the
regulariser); comma-separated, e.g. `:smoke,k4`.
"""

from configs import checkerboard_reflow_align, common


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke", "k4", "noalign"),
                                   "checkerboard_piecewise_reflow_align.py")
  c = checkerboard_reflow_align.get_config(
      "smoke" if "smoke" in variants else None)
  c.reflow.num_intervals = 4 if "k4" in variants else 2
  # Same teacher cost per pair as K = 1: 32 steps over [0, 1].
  c.reflow.teacher_steps = max(1, c.reflow.teacher_steps //
                               c.reflow.num_intervals)
  # Same student-ODE resolution for the regulariser: 4 RK4 steps over [0,1].
  c.reflow.align_steps = max(1, 4 // c.reflow.num_intervals)
  c.eval.sample_steps = c.reflow.num_intervals
  if "noalign" in variants:
    c.reflow.align_weight = 0.0
  return c
