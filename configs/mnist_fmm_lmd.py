"""Flow map matching (LMD) on MNIST (28×28×1) with an EDM SongUNet.

Two runs: the flow-matching teacher (`:teacher`, same UNet with one time)
and the LMD distillation into a two-time flow map. Step 2 trains the
teacher first if runs/teacher_mnist_fm has no checkpoint.
  1. python -m gcflow_jax.main --config=configs/mnist_fmm_lmd.py:teacher --workdir=runs/teacher_mnist_fm
  2. python -m gcflow_jax.main --config=configs/mnist_fmm_lmd.py --workdir=runs/mnist_fmm_lmd
Hardware: one GPU (A100/H100): teacher ~1 h, distillation ~1 h. CPU:
`:smoke` only.
Expected: the paper has no MNIST experiment; eval/fd_mnist of the one-step
map should approach the teacher's (50 Heun steps).
Variants: `smoke` (offline MNIST-5k, tiny UNet, 10 steps), `teacher`,
`teacher_smoke`.
"""

from configs import base


def _data(c, smoke):
  c.data.name = "mnist"
  # Explicit: the offline fallback otherwise converts to 3 channels while
  # data_shape() of the config says 1 (the teacher check then fails).
  c.data.channels = 1
  if smoke:
    c.data.offline_fallback = "mnist5k"


def _model(c, smoke):
  c.model.name = "unet"
  c.model.dropout = 0.0 if smoke else 0.1
  c.model.unet.model_channels = 16 if smoke else 64
  c.model.unet.channel_mult = (1, 2) if smoke else (1, 2, 2)
  c.model.unet.num_blocks = 1 if smoke else 2
  c.model.unet.attn_resolutions = () if smoke else (14,)


def _teacher(smoke):
  c = base.get_config()
  c.method = "flow_matching"
  _data(c, smoke)
  _model(c, smoke)
  c.optim.lr = 2e-4
  c.optim.warmup_steps = 1000 if not smoke else 2
  c.ema.decay = 0.9999 if not smoke else 0.9
  c.train.steps = 100_000 if not smoke else 10
  c.train.batch_size = 128 if not smoke else 16
  c.train.log_every = 1000 if not smoke else 5
  c.train.checkpoint_every = 10_000 if not smoke else 10
  c.eval.num_samples = 10_000 if not smoke else 64
  c.eval.batch_size = 500 if not smoke else 64
  c.eval.metrics = ("fd_mnist", "kid_mnist") if not smoke else ()
  c.sample.steps = 50 if not smoke else 4
  c.sample.method = "heun"
  return c


def get_config(arg=None):
  variants = [a for a in (arg or "").split(",") if a]
  allowed = ("smoke", "teacher", "teacher_smoke")
  for v in variants:
    if v not in allowed:
      raise ValueError(f"configs/mnist_fmm_lmd.py variant {v!r} is not one "
                       f"of {('',) + allowed}")
  if "teacher" in variants:
    return _teacher(smoke=False)
  if "teacher_smoke" in variants:
    return _teacher(smoke=True)
  smoke = "smoke" in variants
  c = base.get_config()
  c.method = "fmm"
  _data(c, smoke)
  _model(c, smoke)
  c.model.dropout = 0.0   # the distilled map is deterministic
  c.teacher.config = ("configs/mnist_fmm_lmd.py:teacher_smoke" if smoke
                      else "configs/mnist_fmm_lmd.py:teacher")
  c.teacher.workdir = ("runs/teacher_mnist_fm_smoke" if smoke
                       else "runs/teacher_mnist_fm")
  c.optim.lr = 1e-4 if not smoke else 2e-4
  c.optim.warmup_steps = 1000 if not smoke else 2
  c.optim.grad_clip = 1.0
  c.ema.decay = 0.9999 if not smoke else 0.9
  c.train.steps = 100_000 if not smoke else 10
  c.train.batch_size = 128 if not smoke else 16
  c.train.log_every = 1000 if not smoke else 5
  c.train.checkpoint_every = 10_000 if not smoke else 10
  c.eval.num_samples = 10_000 if not smoke else 64
  c.eval.batch_size = 500 if not smoke else 64
  c.eval.metrics = ("fd_mnist", "kid_mnist") if not smoke else ()
  c.fmm.loss = "lmd"
  c.fmm.time_order = "forward"
  c.fmm.time_scale = 1.0
  c.fmm.sample_steps = 1
  return c
