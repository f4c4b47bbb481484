"""iCT-OT on CIFAR-10: minibatch-OT coupling baseline of the GC paper (001).

Command:  python -m gcflow_jax.main --config=configs/cifar_ot.py --workdir=runs/cifar_ot \
              --config.eval.inception_weights=PATH/TO/inception.npz
Hardware: as configs/cifar_ic.py (one 40–80 GB GPU, ~1 day). The pairing
is ott-jax Sinkhorn + on-device greedy rounding (no host round trip in the
step); on held-out 512-batches of 32×32×3 images (offline digits resized,
benchmarks/results/ot_cost.json) its pairing cost was within 0.06% of the
exact assignment (mean 0.044%). `:exact` pairs by the exact assignment on
the host (`jax.pure_callback` every step). Not runnable on CPU beyond
`:smoke`.
Expected (paper, Table 1): FID 6.75 ± 0.04, KID×100 0.36 ± 0.04,
IS 8.86 ± 0.09. The OT baseline is not in the published code; here data
and unit noise are paired per (global) batch on ‖x - z‖² before noising
(the same pairing for every σ, see math/couplings.py).
Thin override of configs/cifar_ic.py (same dropout 0.3, as iCT-IC).
Variants: `smoke`, `equal_dropout` (dropout 0.0), `exact`.
"""

from configs import cifar_ic, common


def get_config(arg=None):
  variants = common.parse_variants(
      arg, ("smoke", "equal_dropout", "exact"), "cifar_ot.py")
  c = cifar_ic.get_config(",".join(v for v in variants if v != "exact"))
  c.ict.coupling = "ot"
  common.device_ot(c, exact="exact" in variants)
  return c
