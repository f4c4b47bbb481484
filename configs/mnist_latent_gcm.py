"""GCM latent matching on MNIST (28×28×1): a conv decoder g: R^D -> images
trained against a consistency model f_t (paper 000, whose MNIST experiment
uses a 256-dimensional latent). The variant dim(z) = 50 is our own
lower-dimensional check, not a paper experiment (the paper summary lists
it only as a suggested next check).

Command:  python -m gcflow_jax.main --config=configs/mnist_latent_gcm.py --workdir=runs/mnist_gcm
Hardware: one GPU, ~20 minutes (20,000 steps, f a small SongUNet); CPU:
`:smoke`, or override `--config.model.name=mlp` (what
benchmarks/gcm_latent.py runs on CPU). Data: TFDS 'mnist' when prepared,
else the official 10k test images in ../shared/data/mnist ('mnist_test').
Expected: the paper shows samples (no number); eval/fd_mnist (Fréchet
distance in the offline MNIST classifier's features) should fall well
below that of the untrained decoder, with ‖g(z) − f_0(g(z))‖² -> 0. This
config (SongUNet f, conv decoder, 21k steps) has NOT been run here. The
CPU stand-in of benchmarks/gcm_latent.py (MLP f and MLP decoder, 700 steps)
went from fd_mnist 32.4 to 24.9 (D = 256) and 32.1 to 25.4 (D = 50), real
images 0.097, with ‖g − f_0(g)‖² (summed over 784 pixels) 126 -> 2.8 and
123 -> 8.2: far from converged at that budget. At the config's 21,000
steps the same stand-in (dim(z) = 256, 3 seeds, PROTOCOL.md change 43,
results/claims_000_mnist_latent_coverage.json) covers every digit
(smallest label share 0.082 ± 0.004, test images 0.090) with fd_mnist
1.97 ± 0.61 (untrained ~32.6, real images 0.036) and ‖g − f_0(g)‖² 0.99:
blurred but recognisable digits, no digit dropped. The same stand-in at
dim(z) = 50 (`:z50`, change 44) did as well (0.083 ± 0.006, fd_mnist
1.69 ± 0.14).
Variants: `:z50` (D = 50), `:smoke`, `:z50_smoke` (MNIST-5k offline, MLP f,
140 steps, ~1-2 min on CPU).
"""

from configs import base, common


def get_config(arg=None):
  c = base.get_config()
  smoke = common.latent_gcm(c, "mnist_latent_gcm.py", arg, "mnist")
  c.data.offline_fallback = "mnist5k" if smoke else "mnist_test"
  # f_t(x) = x + (1 - t) F(x, t), F a small SongUNet: our choice. Paper
  # 000's text does not give f's architecture (a "small UNet" appears only
  # in its summary's suggested first experiments).
  common.unet(c, channels=32, mult=(1, 2, 2), blocks=1)
  c.gcm.generator_channels = (128, 64, 32)   # 7x7 -> 14x14 -> 28x28
  c.optim.lr = 2e-4
  c.ema.decay = 0.999
  c.train.steps = 21_000
  c.train.batch_size = 128
  c.train.log_every = 700
  c.train.checkpoint_every = 3500
  # g#ρ0 vs ρ1 (eval.metrics) during training, not only at the end.
  c.train.eval_every = 3500
  c.eval.num_samples = 5000
  c.eval.batch_size = 500
  c.eval.metrics = ("fd_mnist", "kid_mnist")
  if smoke:
    c.model.name = "mlp"
    c.model.mlp.hidden = (256, 256)
    c.gcm.generator_channels = (16, 8, 8)
    c.optim.lr = 1e-3
    common.latent_gcm_smoke(c)
  return c
