"""Flow map matching (LMD) on CIFAR-10 (32×32×3) with an EDM DDPM++ UNet.

The paper's setting (FMM §5: CIFAR-10, linear interpolant, LMD distillation
of a pre-trained flow-matching velocity, a U-Net taking two times). Our
network is EDM's DDPM++ SongUNet (128 channels, multipliers (2, 2, 2),
4 blocks, attention at 16×16: ~56M parameters, the U-Net scale of the paper;
its exact hyperparameters are not restated here) with two time embeddings
(s, t); teacher and student share it.
  1. teacher: python -m gcflow_jax.main --config=configs/cifar_fmm_lmd.py:teacher --workdir=runs/teacher_cifar_fm_fmm
  2. LMD:     python -m gcflow_jax.main --config=configs/cifar_fmm_lmd.py --workdir=runs/cifar_fmm_lmd
(step 2 trains the teacher first if its directory has no checkpoint).
Hardware: 8 × A100/H100 or a TPU v4-8; teacher ~2 days, distillation ~1–2
days. CPU: `:smoke` only.
Expected: the paper reports LMD FIDs at 1–8 steps close to its flow-matching
teacher and 10–20× faster sampling than the teacher ODE (see its CIFAR-10
table; FID needs --config.eval.inception_weights=PATH).
Variants: `smoke` (offline digits resized to 32×32×3, tiny UNet, 10 steps),
`teacher`, `teacher_smoke`.
"""

from configs import base


def _data(c, smoke, data_name="cifar10"):
  c.data.name = data_name
  if smoke:
    c.data.offline_fallback = "digits"
    c.data.image_size = 32
    c.data.channels = 3


def _model(c, smoke):
  c.model.name = "unet"
  c.model.dropout = 0.0 if smoke else 0.13
  c.model.unet.model_channels = 16 if smoke else 128
  c.model.unet.channel_mult = (1, 2) if smoke else (2, 2, 2)
  c.model.unet.num_blocks = 1 if smoke else 4
  c.model.unet.attn_resolutions = () if smoke else (16,)
  c.model.unet.time_embedding = "st"


def teacher_config(smoke, data_name="cifar10"):
  """The flow-matching teacher on the same data and UNet (one time)."""
  c = base.get_config()
  c.method = "flow_matching"
  _data(c, smoke, data_name)
  _model(c, smoke)
  c.interp.name = "linear"
  c.optim.lr = 2e-4
  c.optim.warmup_steps = 5000 if not smoke else 2
  c.ema.decay = 0.9999 if not smoke else 0.9
  c.train.steps = 400_000 if not smoke else 10
  c.train.batch_size = 512 if not smoke else 16
  c.train.log_every = 1000 if not smoke else 5
  c.train.checkpoint_every = 10_000 if not smoke else 10
  c.eval.num_samples = 50_000 if not smoke else 64
  c.eval.batch_size = 500 if not smoke else 64
  c.eval.metrics = ("fid", "kid") if not smoke else ()
  c.sample.steps = 50 if not smoke else 4
  c.sample.method = "heun"
  return c


def student_config(smoke, data_name, config_path, teacher_dir):
  """LMD distillation of `teacher_config` into a two-time flow map."""
  c = base.get_config()
  c.method = "fmm"
  _data(c, smoke, data_name)
  _model(c, smoke)
  c.model.dropout = 0.0   # the distilled map is deterministic
  c.teacher.config = f"{config_path}:{'teacher_smoke' if smoke else 'teacher'}"
  c.teacher.workdir = teacher_dir + ("_smoke" if smoke else "")
  c.optim.lr = 1e-4 if not smoke else 2e-4
  c.optim.warmup_steps = 5000 if not smoke else 2
  c.optim.grad_clip = 1.0
  c.ema.decay = 0.9999 if not smoke else 0.9
  c.train.steps = 200_000 if not smoke else 10
  c.train.batch_size = 256 if not smoke else 16
  c.train.log_every = 1000 if not smoke else 5
  c.train.checkpoint_every = 10_000 if not smoke else 10
  c.eval.num_samples = 50_000 if not smoke else 64
  c.eval.batch_size = 500 if not smoke else 64
  c.eval.metrics = ("fid", "kid") if not smoke else ()
  c.fmm.loss = "lmd"
  c.fmm.time_order = "forward"
  # Raw times in [0, 1] like the teacher (low-frequency embeddings keep the
  # JVP in t well conditioned).
  c.fmm.time_scale = 1.0
  c.fmm.sample_steps = 1
  return c


def get_config(arg=None):
  variants = [a for a in (arg or "").split(",") if a]
  allowed = ("smoke", "teacher", "teacher_smoke")
  for v in variants:
    if v not in allowed:
      raise ValueError(f"configs/cifar_fmm_lmd.py variant {v!r} is not one "
                       f"of {('',) + allowed}")
  if "teacher" in variants or "teacher_smoke" in variants:
    return teacher_config("teacher_smoke" in variants)
  return student_config("smoke" in variants, "cifar10",
                        "configs/cifar_fmm_lmd.py", "runs/teacher_cifar_fm_fmm")
