"""iCT-OT on CelebA 64×64: minibatch-OT baseline of the GC paper (001).

Command:  python -m gcflow_jax.main --config=configs/celeba64_ot.py --workdir=runs/celeba64_ot \
              --config.eval.inception_weights=PATH/TO/inception.npz
Hardware: as configs/celeba64_gc.py (one 40–80 GB GPU, days).
Expected (paper, Table 1): FID 13.63 ± 0.13, KID×100 1.09 ± 0.03,
IS 2.40 ± 0.01.
Thin override of configs/celeba64_ic.py: exact minibatch OT on ‖x - z‖².
Variants: `smoke`.
"""

from configs import celeba64_ic, common


def get_config(arg=None):
  common.parse_variants(arg, ("smoke",), "celeba64_ot.py")
  c = celeba64_ic.get_config(arg)
  c.ict.coupling = "ot"
  c.ict.ot_solver = "exact"
  return c
