"""Flow matching on sklearn digits (8×8×1, offline), with a small UNet.

Command:  python -m gcflow_jax.main --config=configs/digits_fm.py --workdir=runs/digits_fm
Hardware: CPU (2 cores), ~10 minutes; a GPU makes it seconds.
Expected: eval/fd_digits (Fréchet distance in the offline digits
classifier's feature space) well below that of noise; see
benchmarks/results for measured values.
Variants: `:smoke` (60 steps, tiny UNet).
"""

from configs import base, common


def get_config(arg=None):
  smoke = "smoke" in common.parse_variants(arg, ("smoke",), "digits_fm.py")
  c = base.get_config()
  c.method = "flow_matching"
  c.data.name = "digits"
  common.digits_unet(c, smoke)
  c.optim.lr = 2e-4
  c.optim.warmup_steps = 100
  c.ema.decay = 0.999
  c.train.steps = 3000
  c.train.batch_size = 128
  c.train.log_every = 100
  c.train.checkpoint_every = 1000
  c.eval.num_samples = 1000
  c.eval.batch_size = 500
  c.eval.metrics = ("fd_digits", "kid_digits")
  c.sample.steps = 20
  c.sample.method = "heun"
  if smoke:
    common.schedule(c, steps=60, batch=32, log_every=20, checkpoint_every=30,
                    eval_samples=200)
    c.sample.steps = 4
  return c
