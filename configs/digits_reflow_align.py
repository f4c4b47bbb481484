"""Reflow + marginal alignment on sklearn digits (8×8×1, offline), distilling
the flow-matching UNet of configs/digits_fm.py (paper 003). D = 64, so the
student's divergence uses Hutchinson's estimator (1 Rademacher probe, JVP).

Command:  python -m gcflow_jax.main --config=configs/digits_reflow_align.py --workdir=runs/digits_reflow_align
          (trains the teacher into runs/teacher_digits_fm first if missing,
          ~10 CPU minutes)
Hardware: CPU (2 cores); ~15 minutes for 1000 steps incl. the 8,192-pair
cache; a GPU makes it a minute.
Expected: the paper reports no digits number (abstract only); measured
1/2/4-step fd_digits vs. vanilla and piecewise reflow (3 seeds) is in
benchmarks/results/reflow_quality.json.
Variants (comma-separated): `smoke` (20 steps, the smoke teacher), `vanilla`
(λ_align = 0), `piecewise` (K = 2), `exact` (exact 64-JVP divergence).
"""

from configs import base


def get_config(arg=None):
  variants = [a for a in (arg or "").split(",") if a]
  for v in variants:
    if v not in ("smoke", "vanilla", "piecewise", "exact"):
      raise ValueError(f"configs/digits_reflow_align.py variant {v!r} is not"
                       " one of ('', 'smoke', 'vanilla', 'piecewise', "
                       "'exact')")
  c = base.get_config()
  c.method = "reflow"
  c.data.name = "digits"
  # Same UNet as configs/digits_fm.py (the student starts from the teacher).
  c.model.name = "unet"
  c.model.dropout = 0.0
  c.model.unet.model_channels = 32
  c.model.unet.channel_mult = (1, 2)
  c.model.unet.num_blocks = 1
  c.model.unet.attn_resolutions = ()
  c.teacher.config = "configs/digits_fm.py"
  c.teacher.workdir = "runs/teacher_digits_fm"
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
  if "smoke" in variants:
    c.model.unet.model_channels = 16
    c.teacher.config = "configs/digits_fm.py:smoke"
    c.teacher.workdir = "runs/teacher_digits_fm_smoke"
    c.train.steps = 20
    c.train.batch_size = 32
    c.train.log_every = 10
    c.train.checkpoint_every = 20
    c.eval.num_samples = 200
    c.reflow.teacher_steps = 4
    c.reflow.align_warmup_steps = 5
    c.reflow.align_steps = 1
    c.reflow.align_batch = 8
    c.reflow.pairs = "online"
    c.optim.warmup_steps = 5
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
