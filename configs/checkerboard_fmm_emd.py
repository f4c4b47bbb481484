"""Flow map matching, Eulerian map distillation (EMD), 2-D checkerboard.

The LMD config with the Eulerian loss |∂_s X_{s,t}(x) + ∇X_{s,t}(x) b_s(x)|²
(every term at x = I_s; one JVP in (s, x)). Same teacher, network, budget.

Command:  python -m gcflow_jax.main --config=configs/checkerboard_fmm_emd.py --workdir=runs/checkerboard_fmm_emd
Hardware: CPU (2 cores); a few minutes (+ the shared teacher).
Expected: the FMM paper reports LMD converging about an order of magnitude
faster than EMD (on images); our LMD-vs-EMD curves on this board are in
benchmarks/results/fmm_convergence.json (measured: EMD needs 1.0–2.4× the
LMD steps to reach the same one-step KL; best 0.453 vs LMD 0.397 at 3000
steps).
Variants: `:smoke`.
"""

from configs import checkerboard_fmm_lmd, common


def get_config(arg=None):
  common.parse_variants(arg, ("smoke",), "checkerboard_fmm_emd.py")
  c = checkerboard_fmm_lmd.get_config(arg)
  c.fmm.loss = "emd"
  return c
