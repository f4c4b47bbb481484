"""Progressive flow map matching, 2-D checkerboard: K = 8 -> 4 -> 2 -> 1.

Stage 0 distils the teacher with LMD restricted to |t − s| ≤ 1/8; each later
stage distils two steps of the frozen previous-stage map (its EMA) into one
step on |t − s| ≤ 1/K (K halved), down to a one-step map. Four stages of
train.steps / 4 steps; one compile for the whole schedule.

Command:  python -m gcflow_jax.main --config=configs/checkerboard_fmm_progressive.py --workdir=runs/checkerboard_fmm_progressive
Hardware: CPU (2 cores); a few minutes (+ the shared teacher).
Expected: no 2-D number in the FMM paper; the follow-up's checkerboard
table has progressive *self*-distillation (PSD, teacher-free) rows, not
comparable with this teacher-distilled schedule. Ours in
benchmarks/results/fmm_steps_quality.json (measured: 0.577 at 1 step,
0.520 at 8; 100k samples), i.e. 0.222 / 0.165 above the teacher's own
KL (Heun, 16 steps: 0.355).
Variants: `:smoke` (60 steps: 15 per stage).
"""

from configs import checkerboard_fmm_lmd, common


def get_config(arg=None):
  common.parse_variants(arg, ("smoke",), "checkerboard_fmm_progressive.py")
  c = checkerboard_fmm_lmd.get_config(arg)
  c.fmm.loss = "progressive"
  c.fmm.progressive_k0 = 8
  c.fmm.progressive_stage_steps = 0    # train.steps / 4 each
  c.fmm.progressive_init = "lmd"
  # Each stage's teacher is the EMA at the boundary: a short EMA horizon
  # (~200 steps) so that it is the stage-(j−1) model, not a blend of stages;
  # a constant learning rate so that every stage gets the same one.
  c.fmm.progressive_copy = "ema"
  c.ema.decay = 0.995
  c.optim.schedule = "constant"
  return c
