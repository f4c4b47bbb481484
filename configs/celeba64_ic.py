"""iCT-IC on CelebA 64×64: the GC paper's (001) baseline (Table 4).

Command:  python -m gcflow_jax.main --config=configs/celeba64_ic.py --workdir=runs/celeba64_ic \
              --config.eval.inception_weights=PATH/TO/inception.npz
Hardware: as configs/celeba64_gc.py (one 40–80 GB GPU, days).
Expected (paper, Table 1): FID 15.82 ± 0.13, KID×100 1.31 ± 0.04,
IS 2.33 ± 0.00.
Thin override of configs/celeba64_gc.py: coupling 'ic', dropout
(0, 0, 0.2, 0.2) per level (published `celebA_base.yaml`).
Variants: `smoke`.
"""

from configs import celeba64_gc, common, imagenet32_gc


def get_config(arg=None):
  common.parse_variants(arg, ("smoke",), "celeba64_ic.py")
  c = celeba64_gc.get_config(arg)
  c.ict.coupling = "ic"
  imagenet32_gc.set_ic_dropout(c, (0.0, 0.0, 0.2, 0.2), arg)
  return c
