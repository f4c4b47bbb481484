"""Direct flow map matching from data (no teacher), 2-D checkerboard.

Loss |∂_t X_{s,t}(X_{t,s}(I_t)) − İ_t|² + λ |X_{s,t}(X_{t,s}(I_t)) − I_t|²
with λ = 1, (s, t) uniform on all of [0, 1]² (both orders: the inner map is
a backward map), linear interpolant.

Command:  python -m gcflow_jax.main --config=configs/checkerboard_fmm_direct.py --workdir=runs/checkerboard_fmm_direct
Hardware: CPU (2 cores); a few minutes, no teacher.
Expected: no 2-D number in the paper, which finds direct training of a
one-step map hard and uses several steps; our 1/2/4/8/16-step KLs are in
benchmarks/results/fmm_steps_quality.json (measured: 0.594 at 1 step,
0.561 at 8; 100k samples; 3000 steps at batch 512, 166k parameters). The
nearest published number is teacher-free too: the follow-up's Lagrangian
self-distillation, KL 0.086 / 0.070 at 1 / 8 steps with (per the review in
issue 14) a ~1M-parameter network and ~10^4 times our training samples.
Variants: `:smoke`.
"""

from configs import checkerboard_fmm_lmd, common


def get_config(arg=None):
  common.parse_variants(arg, ("smoke",), "checkerboard_fmm_direct.py")
  c = checkerboard_fmm_lmd.get_config(arg)
  c.fmm.loss = "direct"
  c.fmm.time_order = "both"
  c.fmm.invertibility_weight = 1.0
  c.teacher.workdir = ""          # no teacher
  return c
