"""iCT-IC on CIFAR-10: the baseline of the GC paper (001), Table 3.

Command:  python -m gcflow_jax.main --config=configs/cifar_ic.py --workdir=runs/cifar_ic \
              --config.eval.inception_weights=PATH/TO/inception.npz
Hardware: one A100 40GB in the paper (~1 day for 100k steps at batch 512);
any single 40–80 GB GPU, or a TPU v4-8 (the batch is sharded over devices).
Not runnable on CPU beyond `:smoke`.
Expected (paper, Table 1, 1-step, 50k samples): FID 7.42 ± 0.04,
KID×100 0.44 ± 0.03, IS 8.76 ± 0.06.
Setup (Table 3 and the published `cifar10_base.yaml`): batch 512, 100k
steps, Lion lr 1e-4 (weight decay 0, β = (0.9, 0.99) as lion-pytorch),
s0 = 10, s1 = 1280, ρ = 7, σ ∈ [0.002, 80], σ_d = 0.5, SongUNet (DDPM++)
128 channels, mult (1, 2, 2), 3 blocks, no attention, positional embedding,
dropout 0.3; EMA warm-up schedule min(0.9999, 1 - (1+k)^(-2/3)) every 5
steps; pseudo-Huber c = 0.00054·√3072.
Variants (comma-separated): `smoke` (offline digits resized to 32×32×3,
tiny UNet, 20 steps, CPU seconds), `equal_dropout` (dropout 0.0, the GC
model's value, for a comparison at equal dropout).
"""

from configs import base
from configs.common import parse_variants

_ALLOWED = ("smoke", "equal_dropout")


def consistency_defaults(c):
  """Settings shared by every image config of the GC paper."""
  c.method = "ict"
  c.model.name = "unet"
  c.model.unet.embedding_type = "positional"
  c.model.unet.channel_mult_noise = 1
  c.model.unet.encoder_type = "standard"
  c.model.unet.decoder_type = "standard"
  c.model.unet.resample_filter = (1, 1)
  c.optim.name = "lion"
  c.optim.b1 = 0.9
  c.optim.b2 = 0.99
  c.optim.weight_decay = 0.0
  c.optim.warmup_steps = 0
  c.optim.schedule = "constant"
  c.ema.schedule = "warmup"
  c.ema.decay = 0.9999
  c.ema.power = 2.0 / 3.0
  c.ema.every = 5
  c.ict.sigma_min = 0.002
  c.ict.sigma_max = 80.0
  c.ict.sigma_data = 0.5
  c.ict.rho = 7.0
  c.ict.s0 = 10
  c.ict.s1 = 1280
  c.ict.p_mean = -1.1
  c.ict.p_std = 2.0
  c.ict.distance = "pseudo_huber"
  c.ict.huber_c = 0.0
  c.ict.clip_denoised = True
  c.eval.sample_steps = 1
  c.eval.num_samples = 50_000
  c.eval.batch_size = 500
  c.eval.metrics = ("fid", "kid", "is")
  c.train.log_every = 500
  c.train.checkpoint_every = 5000
  c.train.eval_every = 0


def smoke(c):
  """Shrinks an image config to a CPU smoke run on offline digits."""
  c.data.offline_fallback = "digits"
  c.model.unet.model_channels = 16
  c.model.unet.channel_mult = (1, 2)
  c.model.unet.attn_resolutions = ()
  # Per-level tuples in the full configs: reset the types.
  with c.ignore_type():
    c.model.unet.num_blocks = 1
    c.model.dropout = 0.0
  c.train.steps = 20
  c.train.batch_size = 16
  c.train.log_every = 10
  c.train.checkpoint_every = 20
  c.eval.num_samples = 32
  c.eval.batch_size = 32
  c.eval.metrics = ()


def get_config(arg=None):
  variants = parse_variants(arg, _ALLOWED, "cifar_ic.py")
  c = base.get_config()
  consistency_defaults(c)
  c.data.name = "cifar10"
  c.model.dropout = 0.3
  c.model.unet.model_channels = 128
  c.model.unet.channel_mult = (1, 2, 2)
  c.model.unet.num_blocks = 3
  c.model.unet.attn_resolutions = ()
  c.optim.lr = 1e-4
  c.train.steps = 100_000
  c.train.batch_size = 512
  c.ict.coupling = "ic"
  c.ict.sample_sigmas = (0.821,)   # iCT's CIFAR-10 2-step sampler
  if "equal_dropout" in variants:
    c.model.dropout = 0.0
  if "smoke" in variants:
    smoke(c)
  return c
