"""Piecewise reflow (K = 2) on sklearn digits (8×8×1, offline), distilling
the flow-matching UNet of configs/digits_fm.py, with paper 003's marginal
alignment as the opt-in variant `:align` (D = 64: the student's
log|det(I + h ∂u/∂x)| is a Hutchinson power series, 4 terms, 1 Rademacher
probe, on a sub-batch of 8).

Alignment is off by default because on digits it makes samples worse
(below); no default may be worse than the same run without it.

Commands: python -m gcflow_jax.main --config=configs/digits_reflow_align.py --workdir=runs/digits_reflow
          python -m gcflow_jax.main --config=configs/digits_reflow_align.py:align --workdir=runs/digits_reflow_align
          (each trains the teacher into runs/teacher_digits_fm first if
          missing, ~10 CPU minutes)
Hardware: CPU (2 cores) or a GPU; 1,200 steps took 470-850 s with
alignment on one thread, 260-410 s without (load 2-6, 2026-11-30,
benchmarks/reflow_alignment.py --datasets=digits --steps=digits:1200).
Expected: the paper reports no digits number (abstract only). Measured
(fd_digits at 2 Euler steps of the EMA parameters, seeds 0-4,
docs/reflow_marginal_alignment.md): at 3,000 steps (flat curves,
PROTOCOL.md change 19, alignment from step 1,500) 0.36 ± 0.05 (default)
vs 0.60 ± 0.06 `:align`; at 1,200 steps 0.57 ± 0.04, 0.82 ± 0.05 and
0.34 ± 0.05 `:vanilla` (K = 1).
Variants (comma-separated): `smoke` (20 steps, the smoke teacher;
`smoke,align` runs the regulariser from step 5),
`vanilla` (K = 1, no alignment), `align` (λ_align = 0.1 from step 500,
ramp 100), `exact` (`align` with the exact 64 × 64 log-determinant),
`noalign` (the default; kept for the commands on record).
"""

from configs import base, common


def get_config(arg=None):
  variants = common.parse_variants(
      arg, ("smoke", "vanilla", "noalign", "align", "exact"),
      "digits_reflow_align.py")
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
  on, off = {"align", "exact"} & set(variants), {"vanilla",
                                                  "noalign"} & set(variants)
  if on and off:
    raise ValueError(f"configs/digits_reflow_align.py variants {sorted(on)} "
                     f"and {sorted(off)} contradict each other (alignment "
                     "on / off)")
  if not on:
    c.reflow.align_weight = 0.0
  if "exact" in variants:
    c.reflow.logdet = "exact"
  return c
