"""Reflow + marginal-alignment regulariser (K = 1) on the 2-D checkerboard
(paper 003): trajectory matching plus λ_align · KL(student marginal ‖
teacher marginal at 1 − ε), from the student's log-density change (exact
divergence in 2-D) and the frozen teacher's score.

Command:  python -m gcflow_jax.main --config=configs/checkerboard_reflow_align.py --workdir=runs/checkerboard_reflow_align
Hardware: CPU (2 cores); ~15 minutes for 2000 steps (creates the pair cache
shared with checkerboard_reflow.py first).
Expected: the paper reports no 2-D number (abstract only); measured
1/2/4-step quality vs. vanilla reflow (3 seeds) is in
benchmarks/results/reflow_quality.json.
Variants: `:smoke` (60 steps with the smoke teacher), `:hutchinson`
(Hutchinson divergence, 1 Rademacher probe, instead of the exact trace).
"""

from configs import checkerboard_reflow, common


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke", "hutchinson"),
                                   "checkerboard_reflow_align.py")
  c = checkerboard_reflow.get_config("smoke" if "smoke" in variants else None)
  c.reflow.align_weight = 0.1
  c.reflow.align_warmup_steps = 200
  c.reflow.align_eps = 0.05
  # Student ODE for the log-density: 4 RK4 steps over [0, 0.95]; 1 Heun step
  # is biased by ~0.4 nats and the optimiser exploits it (docs/reflow_
  # marginal_alignment.md §8). Regularised sub-batch: 128 of 512.
  c.reflow.align_steps = 4
  c.reflow.align_method = "rk4"
  c.reflow.align_batch = 128
  c.reflow.divergence = "exact"
  c.reflow.quad_points = 2
  if "smoke" in variants:
    c.reflow.align_warmup_steps = 10
    c.reflow.align_batch = 64
  if "hutchinson" in variants:
    c.reflow.divergence = "hutchinson"
    c.reflow.num_probes = 1
    c.reflow.probe = "rademacher"
  return c
