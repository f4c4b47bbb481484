"""iCT-GC (μ = 0.5) on CelebA 64×64, GC paper (001) Table 4.

Command:  python -m gcflow_jax.main --config=configs/celeba64_gc.py --workdir=runs/celeba64_gc \
              --config.eval.inception_weights=PATH/TO/inception.npz
          (data: TFDS celeb_a prepared under --config.data.tfds_data_dir;
          resized on the smaller side to 64 and centre-cropped)
Hardware: one A100 40GB in the paper (150k steps at batch 128, days); a
single 40–80 GB GPU here. Not runnable on CPU beyond `:smoke`.
Expected (paper, Table 1, 1-step): FID 11.74 ± 0.08, KID×100 0.91 ± 0.04,
IS 2.45 ± 0.01 (iCT-IC 15.82, iCT-OT 13.63).
Setup (Table 4 and the published `celebA_GC_mix50.yaml`): batch 128, 150k
steps, Lion lr 8e-5, SongUNet 128 channels, mult (1, 2, 2, 2), blocks
(3, 3, 4, 5) per level, no attention, dropout 0 (GC) / (0, 0, 0.2, 0.2)
(IC), s0 = 10, s1 = 1280, σ ∈ [0.002, 80], EMA warm-up every 5 steps.
Variants: `smoke` (offline digits at 64×64×3, tiny UNet, CPU seconds).
"""

from configs import base, cifar_ic, common


def table4(c, dataset):
  """Table 4's settings (shared by CelebA and LSUN Church)."""
  cifar_ic.consistency_defaults(c)
  c.data.name = dataset
  c.model.unet.model_channels = 128
  c.model.unet.channel_mult = (1, 2, 2, 2)
  with c.ignore_type():
    c.model.unet.num_blocks = (3, 3, 4, 5)
  c.model.unet.attn_resolutions = ()
  c.model.dropout = 0.0
  c.optim.lr = 8e-5
  c.train.steps = 150_000
  c.train.batch_size = 128
  c.ict.coupling = "gc"
  c.ict.gc_mu = 0.5
  c.ict.gc_source = "ema"
  # No published multistep σ for 64×64: 2-step sampling uses the midpoint
  # of a 3-level Karras schedule unless set.
  c.ict.sample_sigmas = ()


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke",), "celeba64_gc.py")
  c = base.get_config()
  table4(c, "celeba64")
  if "smoke" in variants:
    cifar_ic.smoke(c)
  return c
