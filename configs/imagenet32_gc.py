"""iCT-GC (μ = 0.5) on ImageNet 32×32 (unconditional), GC paper (001) Table 5.

Command:  python -m gcflow_jax.main --config=configs/imagenet32_gc.py --workdir=runs/imagenet32_gc \
              --config.eval.inception_weights=PATH/TO/inception.npz
          (data: TFDS imagenet_resized/32x32 prepared under
          --config.data.tfds_data_dir; nothing is downloaded)
Hardware: one A100 40GB in the paper (several days for 150k steps at batch
512); a single 80 GB GPU or a TPU v4-8 here. Not runnable on CPU beyond
`:smoke`.
Expected (paper, Table 1, 1-step): FID 13.99 ± 0.28, KID×100 1.13 ± 0.03,
IS 9.77 ± 0.07 (iCT-IC 14.89, iCT-OT 14.13: configs/imagenet32_ic.py,
configs/imagenet32_ot.py).
Setup (Table 5 and the published `imagenet_GC_mix50.yaml`): batch 512,
150k steps, Lion lr 8e-5, SongUNet 128 channels, mult (1, 1, 2), blocks
(3, 5, 7) per level, attention at 16×16, dropout 0 (GC) / (0, 0.2, 0.2)
(IC), s0 = 10, s1 = 1280, σ ∈ [0.002, 80], EMA warm-up every 5 steps
starting at step 10,000 (the published `ema_start`; ema.start).
Variants: `smoke` (offline digits at 32×32×3, tiny UNet, CPU seconds).
"""

from configs import base, cifar_ic, common


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke",), "imagenet32_gc.py")
  c = base.get_config()
  cifar_ic.consistency_defaults(c)
  c.data.name = "imagenet32"
  c.model.unet.model_channels = 128
  c.model.unet.channel_mult = (1, 1, 2)
  # Per-level block counts (Table 5); the base field is an int.
  with c.ignore_type():
    c.model.unet.num_blocks = (3, 5, 7)
  c.model.unet.attn_resolutions = (16,)
  c.model.dropout = 0.0
  c.optim.lr = 8e-5
  c.train.steps = 150_000
  c.train.batch_size = 512
  c.ict.coupling = "gc"
  c.ict.gc_mu = 0.5
  c.ict.gc_source = "ema"
  c.ict.sample_sigmas = (0.821,)
  c.ema.start = 10_000
  if "smoke" in variants:
    cifar_ic.smoke(c)
  return c


def set_ic_dropout(c, per_level, arg):
  """The IC/OT baselines' per-level dropout (the base field is a float);
  none in the `smoke` variant."""
  if "smoke" in (arg or ""):
    return
  with c.ignore_type():
    c.model.dropout = tuple(per_level)
