"""Reflow + marginal alignment on CIFAR-10 (32×32×3) with an EDM DDPM++
UNet (paper 003's image setting; the paper's exact backbones and schedules
are not public — abstract only).

Commands:
  1. teacher (flow matching, same UNet; also trained automatically by step 2
     if runs/teacher_cifar_fm has no checkpoint):
       python -m gcflow_jax.main --config=configs/cifar_reflow_align.py:teacher --workdir=runs/teacher_cifar_fm
  2. reflow + alignment (65,536 pairs generated once into
     runs/cifar_reflow_pairs, all held on device):
       python -m gcflow_jax.main --config=configs/cifar_reflow_align.py --workdir=runs/cifar_reflow_align
Hardware: 8 × A100/H100 (or a TPU v4-8); the teacher ~2 days, pair
generation ~1 hour, reflow ~1 day. Not runnable on CPU beyond `:smoke`.
Expected: the abstract gives no number; reflow-type 1-step CIFAR-10 FIDs in
the literature are ~4–10. FID needs Inception weights
(--config.eval.inception_weights=PATH), so eval.metrics is ('fid', 'kid').
Variants: `smoke` (offline digits resized to 32×32×3, tiny UNet, 10 steps,
a 256-pair cache), `teacher`, `teacher_smoke` (the flow-matching teachers).
"""

from configs import base


def _model(c, smoke):
  c.model.name = "unet"
  c.model.dropout = 0.0 if smoke else 0.13
  c.model.unet.model_channels = 16 if smoke else 128
  c.model.unet.channel_mult = (1, 2) if smoke else (2, 2, 2)
  c.model.unet.num_blocks = 1 if smoke else 4
  c.model.unet.attn_resolutions = () if smoke else (16,)


def _data(c, smoke):
  c.data.name = "cifar10"
  if smoke:
    c.data.offline_fallback = "digits"
    c.data.image_size = 32
    c.data.channels = 3


def _teacher(smoke):
  c = base.get_config()
  c.method = "flow_matching"
  _data(c, smoke)
  _model(c, smoke)
  c.optim.lr = 2e-4
  c.optim.warmup_steps = 5000 if not smoke else 5
  c.ema.decay = 0.9999 if not smoke else 0.99
  c.train.steps = 400_000 if not smoke else 30
  c.train.batch_size = 512 if not smoke else 16
  c.train.log_every = 1000 if not smoke else 10
  c.train.checkpoint_every = 10_000 if not smoke else 30
  c.eval.num_samples = 50_000 if not smoke else 64
  c.eval.batch_size = 500 if not smoke else 64
  c.eval.metrics = ("fid", "kid") if not smoke else ()
  c.sample.steps = 50 if not smoke else 4
  c.sample.method = "heun"
  return c


def get_config(arg=None):
  variants = [a for a in (arg or "").split(",") if a]
  allowed = ("smoke", "teacher", "teacher_smoke")
  for v in variants:
    if v not in allowed:
      raise ValueError(f"configs/cifar_reflow_align.py variant {v!r} is not "
                       f"one of {('',) + allowed}")
  if "teacher" in variants:
    return _teacher(smoke=False)
  if "teacher_smoke" in variants:
    return _teacher(smoke=True)
  smoke = "smoke" in variants
  c = base.get_config()
  c.method = "reflow"
  _data(c, smoke)
  _model(c, smoke)
  c.model.dropout = 0.0   # deterministic student ODE for the regulariser
  c.teacher.config = ("configs/cifar_reflow_align.py:teacher_smoke" if smoke
                      else "configs/cifar_reflow_align.py:teacher")
  c.teacher.workdir = ("runs/teacher_cifar_fm_smoke" if smoke
                       else "runs/teacher_cifar_fm")
  c.optim.lr = 5e-5 if not smoke else 1e-4
  c.optim.warmup_steps = 1000 if not smoke else 2
  c.ema.decay = 0.9999 if not smoke else 0.9
  c.train.steps = 200_000 if not smoke else 10
  c.train.batch_size = 512 if not smoke else 16
  c.train.log_every = 1000 if not smoke else 5
  c.train.checkpoint_every = 10_000 if not smoke else 10
  c.eval.num_samples = 50_000 if not smoke else 64
  c.eval.batch_size = 500 if not smoke else 64
  c.eval.metrics = ("fid", "kid") if not smoke else ()
  c.eval.sample_steps = 1
  c.reflow.num_intervals = 1
  c.reflow.teacher_steps = 32 if not smoke else 2
  c.reflow.teacher_method = "heun"
  c.reflow.pairs = "cache"
  c.reflow.cache_dir = ("runs/cifar_reflow_pairs" if not smoke
                        else "runs/cifar_reflow_pairs_smoke")
  # 65,536 pairs ≈ 2.4 GB float32, held in the (replicated, checkpointed)
  # extras: the trainer's batches carry data only (see pair_cache.py).
  c.reflow.cache_num_pairs = 65536 if not smoke else 256
  c.reflow.cache_shard_size = 8192 if not smoke else 128
  c.reflow.cache_buffer = 0
  c.reflow.align_weight = 0.1
  c.reflow.align_warmup_steps = 5000 if not smoke else 2
  c.reflow.align_eps = 0.05
  c.reflow.align_steps = 4 if not smoke else 1
  c.reflow.align_method = "rk4"
  c.reflow.align_batch = 64 if not smoke else 4
  c.reflow.divergence = "hutchinson"
  c.reflow.num_probes = 1
  c.reflow.probe = "rademacher"
  c.reflow.hutchinson_mode = "jvp"
  c.reflow.sample_method = "euler"
  return c
