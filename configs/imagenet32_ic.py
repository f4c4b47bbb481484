"""iCT-IC on ImageNet 32×32: the GC paper's (001) baseline (Table 5).

Command:  python -m gcflow_jax.main --config=configs/imagenet32_ic.py --workdir=runs/imagenet32_ic \
              --config.eval.inception_weights=PATH/TO/inception.npz
Hardware: as configs/imagenet32_gc.py (one 40–80 GB GPU, days).
Expected (paper, Table 1): FID 14.89 ± 0.17, KID×100 1.23 ± 0.05,
IS 9.46 ± 0.06.
Thin override of configs/imagenet32_gc.py: coupling 'ic', dropout
(0, 0.2, 0.2) per level (published `imagenet_base.yaml`).
Variants: `smoke`.
"""

from configs import common, imagenet32_gc


def get_config(arg=None):
  common.parse_variants(arg, ("smoke",), "imagenet32_ic.py")
  c = imagenet32_gc.get_config(arg)
  c.ict.coupling = "ic"
  imagenet32_gc.set_ic_dropout(c, (0.0, 0.2, 0.2), arg)
  return c
