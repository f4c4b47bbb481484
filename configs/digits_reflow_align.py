"""Reflow + marginal alignment on sklearn digits (8×8×1, offline), distilling
the flow-matching UNet of configs/digits_fm.py (paper 003). D = 64, so the
student's divergence uses Hutchinson's estimator (1 Rademacher probe, JVP).

Command:  python -m gcflow_jax.main --config=configs/digits_reflow_align.py --workdir=runs/digits_reflow_align
          (trains the teacher into runs/teacher_digits_fm first if missing,
          ~10 CPU minutes)
Hardware: a GPU (not measured). On a 2-core CPU (measured 2026-11-23) the
8,192-pair cache takes ~5 minutes, the compile ~2, and an aligned step
~14 s (Hutchinson through 4 RK4 steps under the gradient), so 1000 steps
take ~4 hours; `:vanilla` trained 100 steps in 46 s incl. compile.
Expected: the paper reports no digits number (abstract only); measured
1/2/4-step fd_digits vs. vanilla and piecewise reflow (3 seeds) is in
benchmarks/results/reflow_quality.json.
Variants (comma-separated): `smoke` (20 steps, the smoke teacher), `vanilla`
(λ_align = 0), `piecewise` (K = 2), `exact` (exact 64-JVP divergence).
"""

from configs import base, common


def get_config(arg=None):
  variants = common.parse_variants(
      arg, ("smoke", "vanilla", "piecewise", "exact"), "digits_reflow_align.py")
  smoke = "smoke" in variants
  c = base.get_config()
  c.method = "reflow"
  # Same UNet as configs/digits_fm.py (the student starts from the teacher).
  common.digits_teacher(c, smoke)
  common.digits_unet(c, smoke)
  c.optim.lr = 1e-4
  c.optim.warmup_steps = 50
  c.ema.decay = 0.999
  c.train.steps = 1000
  c.train.batch_size = 64
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  c.eval.num_samples = 1000
  c.eval.batch_size = 500
  c.eval.metrics = ("fd_digits", "kid_digits")
  c.eval.sample_steps = 1
  c.reflow.num_intervals = 1
  c.reflow.teacher_steps = 8
  c.reflow.teacher_method = "heun"
  c.reflow.align_weight = 0.1
  c.reflow.align_warmup_steps = 100
  c.reflow.align_eps = 0.05
  c.reflow.align_steps = 4
  c.reflow.align_method = "rk4"
  c.reflow.align_batch = 16
  c.reflow.divergence = "hutchinson"
  c.reflow.num_probes = 1
  c.reflow.probe = "rademacher"
  c.reflow.hutchinson_mode = "jvp"
  c.reflow.sample_method = "euler"
  # Pairs made once (teacher 8 Heun steps + its Hutchinson log-density) and
  # shared by the `vanilla` variant.
  c.reflow.pairs = "cache"
  c.reflow.cache_dir = "runs/digits_reflow_pairs_K{K}_seed{seed}"
  c.reflow.cache_num_pairs = 8192
  c.reflow.cache_shard_size = 4096
  if smoke:
    common.schedule(c, steps=20, batch=32, log_every=10, checkpoint_every=20,
                    eval_samples=200, warmup=5)
    c.reflow.teacher_steps = 4
    c.reflow.align_warmup_steps = 5
    c.reflow.align_steps = 1
    c.reflow.align_batch = 8
    c.reflow.pairs = "online"
  if "vanilla" in variants:
    c.reflow.align_weight = 0.0
  if "piecewise" in variants:
    c.reflow.num_intervals = 2
    c.reflow.teacher_steps = max(1, c.reflow.teacher_steps // 2)
    c.reflow.align_steps = 2
    c.eval.sample_steps = 2
  if "exact" in variants:
    c.reflow.divergence = "exact"
  return c
