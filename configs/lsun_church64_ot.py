"""iCT-OT on LSUN Church 64×64: minibatch-OT baseline of the GC paper (001).

Command:  python -m gcflow_jax.main --config=configs/lsun_church64_ot.py --workdir=runs/lsun_church64_ot \
              --config.eval.inception_weights=PATH/TO/inception.npz
Hardware: as configs/lsun_church64_gc.py (one 40–80 GB GPU, days).
Expected (paper, Table 1): FID 9.71 ± 0.13, KID×100 0.64 ± 0.03,
IS 2.00 ± 0.01.
Thin override of configs/lsun_church64_ic.py: exact minibatch OT on ‖x - z‖².
Variants: `smoke`.
"""

from configs import common, lsun_church64_ic


def get_config(arg=None):
  common.parse_variants(arg, ("smoke",), "lsun_church64_ot.py")
  c = lsun_church64_ic.get_config(arg)
  c.ict.coupling = "ot"
  c.ict.ot_solver = "exact"
  return c
