"""iCT-OT on ImageNet 32×32: minibatch-OT baseline of the GC paper (001).

Command:  python -m gcflow_jax.main --config=configs/imagenet32_ot.py --workdir=runs/imagenet32_ot \
              --config.eval.inception_weights=PATH/TO/inception.npz
Hardware: as configs/imagenet32_gc.py (one 40–80 GB GPU, days).
Expected (paper, Table 1): FID 14.13 ± 0.17, KID×100 1.18 ± 0.05,
IS 9.62 ± 0.06.
Thin override of configs/imagenet32_ic.py: exact minibatch OT on ‖x - z‖².
Variants: `smoke`.
"""

from configs import common, imagenet32_ic


def get_config(arg=None):
  common.parse_variants(arg, ("smoke",), "imagenet32_ot.py")
  c = imagenet32_ic.get_config(arg)
  c.ict.coupling = "ot"
  c.ict.ot_solver = "exact"
  return c
