"""iCT-GC (μ = 0.5) on LSUN Church 64×64, GC paper (001) Table 4.

Command:  python -m gcflow_jax.main --config=configs/lsun_church64_gc.py --workdir=runs/lsun_church64_gc \
              --config.eval.inception_weights=PATH/TO/inception.npz
          (data: TFDS lsun/church_outdoor prepared under
          --config.data.tfds_data_dir)
Hardware: one A100 40GB in the paper (150k steps at batch 128, days); a
single 40–80 GB GPU here. Not runnable on CPU beyond `:smoke`.
Expected (paper, Table 1, 1-step): FID 9.88 ± 0.07, KID×100 0.66 ± 0.04,
IS 2.14 ± 0.01 (iCT-IC 10.58, iCT-OT 9.71: on this dataset OT edges GC).
Setup: Table 4, identical to configs/celeba64_gc.py but for the data.
Variants: `smoke` (offline digits at 64×64×3, tiny UNet, CPU seconds).
"""

from configs import base, celeba64_gc, cifar_ic, common


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke",), "lsun_church64_gc.py")
  c = base.get_config()
  celeba64_gc.table4(c, "lsun_church64")
  if "smoke" in variants:
    cifar_ic.smoke(c)
  return c
