"""iCT-OT on ImageNet 32×32: minibatch-OT baseline of the GC paper (001).

Command:  python -m gcflow_jax.main --config=configs/imagenet32_ot.py --workdir=runs/imagenet32_ot \
              --config.eval.inception_weights=PATH/TO/inception.npz
Hardware: as configs/imagenet32_gc.py (one 40–80 GB GPU, days).
Expected (paper, Table 1): FID 14.13 ± 0.17, KID×100 1.18 ± 0.05,
IS 9.62 ± 0.06.
Thin override of configs/imagenet32_ic.py: minibatch OT on ‖x - z‖² by
ott-jax Sinkhorn + on-device greedy rounding (within 0.06% of the exact
pairing cost on held-out 512-batches of 32×32×3 images,
benchmarks/results/ot_cost.json); `:exact` for the host assignment.
Variants: `smoke`, `exact`.
"""

from configs import common, imagenet32_ic


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke", "exact"),
                                   "imagenet32_ot.py")
  c = imagenet32_ic.get_config("smoke" if "smoke" in variants else None)
  c.ict.coupling = "ot"
  common.device_ot(c, exact="exact" in variants)
  return c
