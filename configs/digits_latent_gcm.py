"""GCM latent matching on sklearn digits (8×8×1, offline): a conv decoder
g: R^D -> images trained against a consistency model f_t (paper 000).

Command:  python -m gcflow_jax.main --config=configs/digits_latent_gcm.py --workdir=runs/digits_gcm
Hardware: CPU (2 cores). Measured 0.63-0.70 s per step on the shared,
heavily loaded host (load average 15-34; benchmarks/gcm_latent.py), so the
4,200 steps take ~45 min there. f is an MLP on the flattened 64-pixel
images (`model.name='mlp'`; `'unet'` also works).
Expected: the paper reports MNIST samples qualitatively (no number). After
700 steps (the benchmark's reduced budget) we measured eval/fd_digits 0.96
(D = 256) and 0.92 (D = 50), from 19.3 / 19.7 at initialisation; real
images score 0.12. ‖g(z) − f_0(g(z))‖² (summed over 64 pixels) fell from
7.5 to 1.07 (D = 256) and 6.9 to 0.91 (D = 50): decreasing, not yet ~0
(benchmarks/results/gcm_latent.json). The full 4,200 steps were not run.
Variants: latent dimension D = 256 (the paper's MNIST setting; here larger
than N = 64) by default, `:z50` for D = 50 < N; `:smoke`, `:z50_smoke`
(140 steps = 2 cycles, small nets, ~1 min).
"""

from configs import base, common


def get_config(arg=None):
  c = base.get_config()
  smoke = common.latent_gcm(c, "digits_latent_gcm.py", arg, "digits")
  # f_t(x) = x + (1 - t) F(x, t), F an MLP on the flattened image.
  c.model.name = "mlp"
  c.model.mlp.hidden = (512, 512, 512)
  c.model.mlp.time_dim = 64
  c.gcm.generator_channels = (64, 32)      # 4x4 -> 8x8
  c.optim.lr = 1e-3
  c.ema.decay = 0.99
  c.train.steps = 4200
  c.train.batch_size = 128
  c.train.log_every = 350
  c.train.checkpoint_every = 1400
  # g#ρ0 vs ρ1 (eval.metrics) during training, not only at the end.
  c.train.eval_every = 1400
  c.eval.num_samples = 1000
  c.eval.batch_size = 500
  c.eval.metrics = ("fd_digits", "kid_digits")
  if smoke:
    c.model.mlp.hidden = (128, 128)
    c.gcm.generator_channels = (16, 8)
    common.latent_gcm_smoke(c)
  return c
