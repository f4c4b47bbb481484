"""iCT-GC (μ = 0.5) on sklearn digits (8×8×1, offline) with a small UNet.

Command:  python -m gcflow_jax.main --config=configs/digits_gc.py --workdir=runs/digits_gc
          (IC / OT baselines: the variants `:ic`, `:ot`, or
          --config.ict.coupling=ic|ot)
Hardware: CPU (2 cores), ~6–10 minutes for 2000 steps at batch 128; a GPU
makes it seconds.
Expected: the paper has no digits experiment (its CIFAR-10 ordering is
FID GC 5.95 < OT 6.75 < IC 7.42). Measured 1-step fd_digits for IC / OT /
GC over 3 seeds are in benchmarks/results/consistency_quality.json (250
steps) and claims_001_c_quality_digits.json (this config's 2,000 steps,
curves flat: OT 0.22 ± 0.02, GC 0.38 ± 0.09, IC 0.51 ± 0.10).
Setup: the GC paper's recipe (iCT schedule s0 = 10, s1 = 1280, σ ∈ [0.002,
80], pseudo-Huber, Lion β = (0.9, 0.99) with weight decay 0, EMA warm-up
min(0.9999, 1 - (1+k)^(-2/3)) every 5 steps, dropout 0, μ = 0.5 from the
EMA model) at toy scale: SongUNet 32 channels, mult (1, 2), 1 block.
Variants (comma-separated): `smoke` (60 steps, 16 channels, ~1 min),
`ic` | `ot` | `gc` (coupling).
"""

from configs import base, cifar_ic, common


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke", "ic", "ot", "gc"),
                                   "digits_gc.py")
  c = base.get_config()
  cifar_ic.consistency_defaults(c)
  c.data.name = "digits"
  common.digits_unet(c, "smoke" in variants)
  c.optim.lr = 2e-4
  c.train.steps = 2000
  c.train.batch_size = 128
  c.train.log_every = 100
  c.train.checkpoint_every = 1000
  c.ict.coupling = "gc"
  c.ict.gc_mu = 0.5
  c.ict.sample_sigmas = (0.821,)
  c.eval.num_samples = 1000
  c.eval.batch_size = 500
  c.eval.metrics = ("fd_digits", "kid_digits")
  for v in variants:
    if v in ("ic", "ot", "gc"):
      c.ict.coupling = v
  if "smoke" in variants:
    common.schedule(c, steps=60, batch=32, log_every=20, checkpoint_every=30,
                    eval_samples=200)
  return c
