"""iCT-IC on LSUN Church 64×64: the GC paper's (001) baseline (Table 4).

Command:  python -m gcflow_jax.main --config=configs/lsun_church64_ic.py --workdir=runs/lsun_church64_ic \
              --config.eval.inception_weights=PATH/TO/inception.npz
Hardware: as configs/lsun_church64_gc.py (one 40–80 GB GPU, days).
Expected (paper, Table 1): FID 10.58 ± 0.11, KID×100 0.73 ± 0.03,
IS 1.99 ± 0.01.
Thin override of configs/lsun_church64_gc.py: coupling 'ic', dropout
(0, 0, 0.2, 0.2) per level (as the published `celebA_base.yaml`).
Variants: `smoke`.
"""

from configs import common, imagenet32_gc, lsun_church64_gc


def get_config(arg=None):
  common.parse_variants(arg, ("smoke",), "lsun_church64_ic.py")
  c = lsun_church64_gc.get_config(arg)
  c.ict.coupling = "ic"
  imagenet32_gc.set_ic_dropout(c, (0.0, 0.0, 0.2, 0.2), arg)
  return c
