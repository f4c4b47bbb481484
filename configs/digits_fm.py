"""Flow matching on sklearn digits (8×8×1, offline), with a small UNet.

Command:  python -m gcflow_jax.main --config=configs/digits_fm.py --workdir=runs/digits_fm
Hardware: CPU (2 cores), ~10 minutes; a GPU makes it seconds.
Expected: eval/fd_digits (Fréchet distance in the offline digits
classifier's feature space) well below that of noise; see
benchmarks/results for measured values.
Variants: `:smoke` (60 steps, tiny UNet); `:mlp` (a CPU stand-in for the
UNet, the paper-002 digits teacher of benchmarks/claims/PROTOCOL.md change
48: an MLP (512, 512, 512) on the flattened image, Adam 1e-3 with a cosine
decay to 0 over 20,000 steps, as configs/toy_fm.py:xl on the checkerboard;
594 s of training on one core shared with another run, 2026-12-02;
measured by `benchmarks/claims/fmm_claims.py teacher --setup=digits_mlp`:
fd_digits 0.343 at Heun 20, 5.3× the real-data floor 0.065, curve flat,
results/claims_002_digits_mlp_teacher.json); `:mlp,smoke`.
"""

from configs import base, common


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke", "mlp"), "digits_fm.py")
  smoke = "smoke" in variants
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
  if "mlp" in variants:
    mlp(c, smoke)
    c.optim.schedule = "cosine"
    common.schedule(c, steps=20_000, batch=c.train.batch_size, log_every=500,
                    checkpoint_every=5000, lr=1e-3, warmup=200)
  if smoke:
    common.schedule(c, steps=60, batch=32, log_every=20, checkpoint_every=30,
                    eval_samples=200)
    c.sample.steps = 4
  return c


def mlp(c, smoke):
  """The `:mlp` network of this teacher and of its students
  (configs/digits_fmm_lmd.py:mlp): an MLP on the flattened 8×8 image."""
  c.model.name = "mlp"
  c.model.mlp.hidden = (64, 64) if smoke else (512, 512, 512)
