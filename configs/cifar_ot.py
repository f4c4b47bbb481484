"""iCT-OT on CIFAR-10: minibatch-OT coupling baseline of the GC paper (001).

Command:  python -m gcflow_jax.main --config=configs/cifar_ot.py --workdir=runs/cifar_ot \
              --config.eval.inception_weights=PATH/TO/inception.npz
Hardware: as configs/cifar_ic.py (one 40–80 GB GPU, ~1 day); the exact
512×512 assignment runs on the host (~0.1 s per step on one CPU core here;
use --config.ict.ot_solver=sinkhorn --config.ict.ot_rounding=greedy to stay
on the device). Not runnable on CPU beyond `:smoke`.
Expected (paper, Table 1): FID 6.75 ± 0.04, KID×100 0.36 ± 0.04,
IS 8.86 ± 0.09. The OT baseline is not in the published code; here data
and unit noise are paired per batch by an exact assignment on ‖x - z‖²
before noising (the same pairing for every σ, see math/couplings.py).
Thin override of configs/cifar_ic.py (same dropout 0.3, as iCT-IC).
Variants: `smoke`, `equal_dropout` (dropout 0.0), `sinkhorn`.
"""

from configs import cifar_ic, common


def get_config(arg=None):
  variants = common.parse_variants(
      arg, ("smoke", "equal_dropout", "sinkhorn"), "cifar_ot.py")
  c = cifar_ic.get_config(",".join(v for v in variants if v != "sinkhorn"))
  c.ict.coupling = "ot"
  c.ict.ot_solver = "sinkhorn" if "sinkhorn" in variants else "exact"
  return c
