"""Reflow + marginal alignment on CIFAR-10 (32×32×3) with an EDM DDPM++
UNet (paper 003's image setting; the paper's exact backbones and schedules
are not public — abstract only).

Commands:
  1. teacher (flow matching, same UNet; also trained automatically by step 2
     if runs/teacher_cifar_fm has no checkpoint):
       python -m gcflow_jax.main --config=configs/cifar_reflow_align.py:teacher --workdir=runs/teacher_cifar_fm
  2. piecewise reflow, K = 2 (65,536 pairs generated once into
     runs/cifar_reflow_pairs, all held on device):
       python -m gcflow_jax.main --config=configs/cifar_reflow_align.py --workdir=runs/cifar_reflow
     and with marginal alignment (opt-in, `:align`):
       python -m gcflow_jax.main --config=configs/cifar_reflow_align.py:align --workdir=runs/cifar_reflow_align
Hardware: 8 × A100/H100 (or a TPU v4-8); the teacher ~2 days, pair
generation ~1 hour, reflow ~1 day. Not runnable on CPU beyond `:smoke`.
Expected: the abstract gives no number; reflow-type 1-step CIFAR-10 FIDs in
the literature are ~4–10. FID needs Inception weights
(--config.eval.inception_weights=PATH), so eval.metrics is ('fid', 'kid').
Alignment is off by default: unmeasured on CIFAR-10, it made 2-step
samples worse on digits (fd_digits 0.60 ± 0.06 vs 0.36 ± 0.05, 5 seeds,
docs/reflow_marginal_alignment.md §9) and was within noise on the 2-D
problems, and no default may be worse than the same run without it.
Variants: `smoke` (offline digits resized to 32×32×3, tiny UNet, 10 steps,
a 256-pair cache), `align` (λ_align = 0.1 from half the run), `teacher`,
`teacher_smoke` (the flow-matching teachers).
"""

from configs import base, common

_NAME = "cifar_reflow_align.py"


def _teacher(smoke):
  return common.fm_teacher(
      lambda c: common.image32_data(c, smoke),
      lambda c: common.ddpmpp_unet(c, smoke), smoke,
      full=dict(warmup=5000, ema=0.9999, steps=400_000, batch=512,
                log_every=1000, checkpoint_every=10_000, eval_samples=50_000,
                eval_batch=500, metrics=("fid", "kid")),
      smoke_schedule=dict(warmup=5, ema=0.99, steps=30, log_every=10,
                          checkpoint_every=30))


def get_config(arg=None):
  variants = common.parse_variants(
      arg, ("smoke", "align", "teacher", "teacher_smoke"), _NAME)
  if "teacher" in variants:
    return _teacher(smoke=False)
  if "teacher_smoke" in variants:
    return _teacher(smoke=True)
  smoke = "smoke" in variants
  c = base.get_config()
  c.method = "reflow"
  common.image32_data(c, smoke)
  common.ddpmpp_unet(c, smoke)
  c.model.dropout = 0.0   # deterministic student ODE for the regulariser
  common.teacher_variant(c, smoke, "configs/" + _NAME,
                         "runs/teacher_cifar_fm")
  if smoke:
    common.schedule(c, **dict(common.SMOKE, lr=1e-4))
  else:
    common.schedule(c, lr=5e-5, warmup=1000, ema=0.9999, steps=200_000,
                    batch=512, log_every=1000, checkpoint_every=10_000,
                    eval_samples=50_000, eval_batch=500,
                    metrics=("fid", "kid"))
  c.reflow.num_intervals = 2
  c.reflow.knot_gap = 0.1
  c.eval.sample_steps = 2
  c.reflow.teacher_steps = 16 if not smoke else 1     # per interval
  c.reflow.teacher_method = "heun"
  c.reflow.pairs = "cache"
  c.reflow.cache_dir = ("runs/cifar_reflow_pairs" if not smoke
                        else "runs/cifar_reflow_pairs_smoke")
  # 65,536 trajectories (3 states each) ≈ 2.4 GB float32, held in the
  # (replicated, checkpointed) extras: the trainer's batches carry data only
  # (see gcflow_jax/data/pair_cache.py).
  c.reflow.cache_num_pairs = 65536 if not smoke else 256
  c.reflow.cache_shard_size = 8192 if not smoke else 128
  c.reflow.cache_buffer = 0
  # Alignment at the interior knot (`:align`), switched on at half the run.
  c.reflow.align_weight = 0.1 if "align" in variants else 0.0
  c.reflow.align_start_steps = 100_000 if not smoke else 4
  c.reflow.align_warmup_steps = 5000 if not smoke else 2
  c.reflow.align_batch = 64 if not smoke else 4
  c.reflow.logdet = "power_series"
  c.reflow.logdet_terms = 4
  c.reflow.num_probes = 1
  c.reflow.probe = "rademacher"
  c.reflow.estimate_value = False
  c.reflow.divergence = "hutchinson"
  c.reflow.sample_method = "euler"
  return c
