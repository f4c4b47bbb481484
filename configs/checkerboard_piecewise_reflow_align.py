"""Piecewise reflow (K = 2 intervals, knots owned by one interval) + the
marginal-alignment regulariser at the interior knot on the 2-D checkerboard
(paper 003), distilling the flow-matching teacher of configs/toy_fm.py.
Sampling: one Euler step per interval (the map the regulariser aligns).

Command:  python -m gcflow_jax.main --config=configs/checkerboard_piecewise_reflow_align.py --workdir=runs/checkerboard_piecewise_reflow_align
Hardware: CPU (2 cores); a few minutes for 2000 steps once the pair cache
(65,536 teacher trajectories, 2 × 16 Heun steps + exact Δ^T) exists.
Expected: the paper reports no 2-D number (abstract only). Measured (3
seeds, 600 steps, 2 Euler steps, Sinkhorn vs 2,000 samples): 0.0337 ±
0.0013 with the regulariser vs 0.0348 ± 0.0005 without (`:noalign`);
benchmarks/results/reflow_alignment.json.
Variants: `:smoke`, `:k4` (K = 4), `:noalign` (piecewise reflow without the
regulariser); comma-separated, e.g. `:smoke,k4`.
"""

from configs import checkerboard_reflow, common


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke", "k4", "noalign"),
                                   "checkerboard_piecewise_reflow_align.py")
  smoke = "smoke" in variants
  c = checkerboard_reflow.get_config("smoke" if smoke else None)
  c.reflow.num_intervals = 4 if "k4" in variants else 2
  # Same teacher cost per pair as K = 1: 32 steps over [0, 1].
  c.reflow.teacher_steps = max(1, c.reflow.teacher_steps //
                               c.reflow.num_intervals)
  # Knot t_{k+1} belongs to interval k + 1 only; interval k is trained on
  # network times [t_k, t_{k+1} − 0.1 h) (docs/reflow_marginal_alignment.md).
  c.reflow.knot_gap = 0.1
  c.eval.sample_steps = c.reflow.num_intervals
  # Regulariser: exact 2×2 log-determinant of one Euler step per interior
  # knot; switched on at half the run, once the reflow loss has flattened;
  # λ = 0.1 (the sweep λ ∈ {0, 0.1, 1} in benchmarks/results/
  # reflow_alignment_sweep.json: 0.1 improved every seed, 1 raised the
  # reflow loss and made one seed worse).
  c.reflow.align_weight = 0.0 if "noalign" in variants else 0.1
  c.reflow.align_start_steps = 1000
  c.reflow.align_warmup_steps = 200
  c.reflow.align_batch = 128
  c.reflow.logdet = "exact"
  c.reflow.divergence = "exact"
  c.reflow.quad_points = 2
  if smoke:
    c.reflow.align_start_steps = 20
    c.reflow.align_warmup_steps = 10
    c.reflow.align_batch = 64
  return c
