"""iCT-GC (μ = 0.5) on CIFAR-10: the GC paper's (001) main method.

Command:  python -m gcflow_jax.main --config=configs/cifar_gc.py --workdir=runs/cifar_gc \
              --config.eval.inception_weights=PATH/TO/inception.npz
Hardware: as configs/cifar_ic.py (one 40–80 GB GPU; the paper reports
~20% wall-clock overhead over iCT-IC, here the EMA endpoint forward runs on
the ⌊μB⌋ = 256 GC examples only). Not runnable on CPU beyond `:smoke`.
Expected (paper, Table 1): FID 5.95 ± 0.05, KID×100 0.26 ± 0.02,
IS 9.10 ± 0.05 (Table 2: iso-time 6.38, with dropout 7.77, without EMA
endpoints 6.73).
Setup: configs/cifar_ic.py with coupling 'gc', μ = 0.5, EMA endpoint
predictor and dropout 0.0 (published `cifar10_GC_mix50.yaml`).
Variants (comma-separated):
  smoke          CPU smoke run (offline digits at 32×32×3, tiny UNet).
  equal_dropout  dropout 0.3 as iCT-IC (Table 2's "+ dropout" row).
  online         endpoint from the online model (Table 2's "- EMA").
  gc_only        μ = 1 (Sec. 5.1; add --config.ict.s0=1280 for the fixed
                 discretisation that avoids the late divergence).
  frozen         Sec. 5.2: endpoints from a frozen iCT-IC model restored
                 from runs/cifar_ic (configs/cifar_ic.py), GC only.
"""

from configs import cifar_ic, common

_ALLOWED = ("smoke", "equal_dropout", "online", "gc_only", "frozen")


def get_config(arg=None):
  variants = common.parse_variants(arg, _ALLOWED, "cifar_gc.py")
  c = cifar_ic.get_config("smoke" if "smoke" in variants else None)
  c.ict.coupling = "gc"
  c.ict.gc_mu = 0.5
  c.ict.gc_source = "ema"
  c.model.dropout = 0.0
  if "equal_dropout" in variants and "smoke" not in variants:
    c.model.dropout = 0.3
  if "online" in variants:
    c.ict.gc_source = "online"
  if "gc_only" in variants:
    c.ict.gc_mu = 1.0
  if "frozen" in variants:
    c.ict.gc_mu = 1.0
    c.ict.gc_source = "frozen"
    c.ict.gc_endpoint_workdir = "runs/cifar_ic"
    c.ict.gc_endpoint_config = ("configs/cifar_ic.py:smoke"
                                if "smoke" in variants else
                                "configs/cifar_ic.py")
    c.ict.gc_endpoint_use_ema = True
  return c
