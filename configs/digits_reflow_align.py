"""Piecewise reflow (K = 2) + marginal alignment on sklearn digits (8×8×1,
offline), distilling the flow-matching UNet of configs/digits_fm.py (paper
003). D = 64: the student's log|det(I + h ∂u/∂x)| is a Hutchinson power
series (4 terms, 1 Rademacher probe) on a sub-batch of 8.

Command:  python -m gcflow_jax.main --config=configs/digits_reflow_align.py --workdir=runs/digits_reflow_align
          (trains the teacher into runs/teacher_digits_fm first if missing,
          ~10 CPU minutes)
Hardware: CPU (2 cores) or a GPU; 1,200 steps took 590-770 s on one thread
(`:noalign` 310-410 s; load 2-7, 2026-11-30, benchmarks/
reflow_alignment.py --datasets=digits --steps=digits:1200).
Expected: the paper reports no digits number (abstract only). Measured
(1,200 steps, 3 seeds, fd_digits at 2 Euler steps, docs/
reflow_marginal_alignment.md): 1.28 ± 0.71 with alignment, 1.19 ± 1.12
`:noalign`, 0.37 ± 0.08 `:vanilla` (K = 1).
Variants (comma-separated): `smoke` (20 steps, the smoke teacher),
`vanilla` (K = 1, λ_align = 0), `noalign` (K = 2, λ_align = 0), `exact`
(exact 64 × 64 log-determinant).
"""

from configs import base, common


def get_config(arg=None):
  variants = common.parse_variants(
      arg, ("smoke", "vanilla", "noalign", "exact"), "digits_reflow_align.py")
  smoke = "smoke" in variants
  c = base.get_config()
  c.method = "reflow"
  # Same UNet as configs/digits_fm.py (the student starts from the teacher).
  common.digits_teacher(c, smoke)
  common.digits_unet(c, smoke)
  c.optim.lr = 1e-4
  c.optim.warmup_steps = 50
  c.ema.decay = 0.995                 # horizon 200 steps: 1/6 of 1,200
  c.train.steps = 1000
  c.train.batch_size = 64
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  c.eval.num_samples = 1000
  c.eval.batch_size = 500
  c.eval.metrics = ("fd_digits", "kid_digits")
  c.reflow.num_intervals = 2
  c.reflow.knot_gap = 0.1
  c.eval.sample_steps = 2
  c.reflow.teacher_steps = 4          # per interval: 8 Heun steps in all
  c.reflow.teacher_method = "heun"
  c.reflow.align_weight = 0.1
  c.reflow.align_start_steps = 500
  c.reflow.align_warmup_steps = 100
  c.reflow.align_batch = 8
  c.reflow.logdet = "power_series"
  c.reflow.logdet_terms = 4
  c.reflow.num_probes = 1
  c.reflow.probe = "rademacher"
  # The logged KL value needs the teacher's Δ^T (Hutchinson, in the cache);
  # the gradient does not.
  c.reflow.estimate_value = False
  c.reflow.divergence = "hutchinson"
  c.reflow.sample_method = "euler"
  c.reflow.pairs = "cache"
  c.reflow.cache_dir = "runs/digits_reflow_pairs_K{K}_seed{seed}"
  c.reflow.cache_num_pairs = 8192
  c.reflow.cache_shard_size = 4096
  if smoke:
    common.schedule(c, steps=20, batch=32, log_every=10, checkpoint_every=20,
                    eval_samples=200, warmup=5)
    c.reflow.teacher_steps = 2
    c.reflow.align_start_steps = 5
    c.reflow.align_warmup_steps = 5
    c.reflow.align_batch = 4
    c.reflow.pairs = "online"
  if "vanilla" in variants:
    c.reflow.num_intervals = 1
    c.reflow.teacher_steps *= 2
    c.reflow.knot_gap = 0.0
    c.eval.sample_steps = 1
  if "vanilla" in variants or "noalign" in variants:
    c.reflow.align_weight = 0.0
  if "exact" in variants:
    c.reflow.logdet = "exact"
  return c
