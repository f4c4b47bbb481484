"""Flow map matching, Eulerian map distillation (EMD), 2-D checkerboard.

The LMD config with the Eulerian loss |∂_s X_{s,t}(x) + ∇X_{s,t}(x) b_s(x)|²
(every term at x = I_s; one JVP in (s, x)). Same teacher, network, budget.

Command:  python -m gcflow_jax.main --config=configs/checkerboard_fmm_emd.py --workdir=runs/checkerboard_fmm_emd
Hardware: CPU (2 cores); a few minutes (+ the shared teacher).
Expected: the FMM paper reports LMD converging about an order of magnitude
faster than EMD (on images); our LMD-vs-EMD curves on this board are in
benchmarks/results/fmm_convergence.json (measured: EMD needs 1.0–2.4× the
LMD steps to reach the same one-step KL; best 0.453 vs LMD 0.397 at 3000
steps). With 512-wide students and 40,000 steps from the configs/toy_fm.py:xl
teacher (benchmarks/claims/PROTOCOL.md change 34, 3 seeds) EMD never
reaches 2× the teacher's one-step KL (final 0.176 ± 0.004) while LMD does
on every seed by step 20,000 ± 2,000 (final 0.092 ± 0.002); EMD's 8-step
samples are the better (0.097 vs LMD's 0.156).
Variants: `:smoke`.
"""

from configs import checkerboard_fmm_lmd, common


def get_config(arg=None):
  common.parse_variants(arg, ("smoke",), "checkerboard_fmm_emd.py")
  c = checkerboard_fmm_lmd.get_config(arg)
  c.fmm.loss = "emd"
  return c
