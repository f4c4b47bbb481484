"""Flow matching on the 2-D checkerboard (the teacher of the toy methods).

Command:  python -m gcflow_jax.main --config=configs/toy_fm.py --workdir=runs/toy
Hardware: CPU (laptop / 2 cores); measured 4.5 min wall-clock on a
  heavily shared 2-core CPU (2026-11-23), about 70 steps/s at batch 512.
Measured (seed 0, 50-step Heun, 4000 samples): eval/sinkhorn 0.017,
  eval/mmd 2.1e-4, eval/kl_hist 2.87. kl_hist on the 50×50 grid is biased
  upwards at 4000 samples (it needs N ≳ 10·50²; see docs/evaluation.md):
  compare it only at equal N.
Variants: `:smoke` (200 steps, small MLP, ~30 s), `:moons`, `:8gaussians`,
`:large` (the paper-002 claims teacher of benchmarks/claims/fmm_claims.py:
a 512×3 MLP, 560k parameters, batch 1024, 6000 steps; ~7 CPU-minutes, 31
min wall-clock at load average 10-20 on 2 cores, 2026-11-30). Measured
(100,000 samples, 50×50 kl_hist): Heun 16 steps 0.238, 8 steps 0.244,
vs 0.355 for the default teacher; exact samples' floor 0.014, so 17× the
floor (results/claims_002_teacher.json, 2026-11-30). `:xl` (the claims
teacher since PROTOCOL.md change 23): `:large` for 40,000 steps, 0.059 s
per step on one idle core (40 min of training + 9 evaluations, 50 min,
2026-12-01). Measured (same estimator, Heun 16): 0.058, 4.2× the floor;
Heun 8: 0.089. Its curve (every 5,000 steps) 0.234, 0.126, 0.100, 0.082,
0.072, 0.063, 0.061, 0.058: the cosine schedule's tail flattens it
(results/claims_002_teacher.json).
"""

from configs import base


def get_config(arg=None):
  c = base.get_config()
  c.method = "flow_matching"
  c.data.name = "checkerboard"
  c.model.name = "mlp"
  c.model.mlp.hidden = (256, 256, 256)
  c.optim.name = "adam"
  c.optim.lr = 1e-3
  c.optim.schedule = "cosine"
  c.optim.warmup_steps = 100
  c.ema.decay = 0.999
  c.train.steps = 5000
  c.train.batch_size = 512
  c.train.log_every = 250
  c.train.checkpoint_every = 1000
  c.eval.num_samples = 4000
  c.eval.metrics = ("sinkhorn", "mmd", "kl_hist")
  c.sample.steps = 50
  c.sample.method = "heun"
  if arg in (None, ""):
    pass
  elif arg == "smoke":
    c.model.mlp.hidden = (64, 64)
    c.train.steps = 200
    c.train.batch_size = 256
    c.train.log_every = 50
    c.train.checkpoint_every = 100
    c.eval.num_samples = 1000
    c.sample.steps = 20
  elif arg in ("large", "xl"):
    # Sized to ~7 CPU-minutes on the 2-core CPU (0.065 CPU-s per step);
    # `:xl` trains it 40,000 steps (cosine to 0 over them), the paper-002
    # claims teacher of PROTOCOL.md change 23.
    c.model.mlp.hidden = (512, 512, 512)
    c.train.batch_size = 1024
    c.train.steps = 6000 if arg == "large" else 40_000
    c.optim.warmup_steps = 200
    c.train.log_every = 500
  elif arg in ("moons", "8gaussians"):
    c.data.name = arg
  else:
    raise ValueError(f"configs/toy_fm.py variant {arg!r} is not one of "
                     "('', 'smoke', 'moons', '8gaussians', 'large', 'xl')")
  return c
