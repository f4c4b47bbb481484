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

from configs import base, common

_NAME = "mnist_fmm_lmd.py"
_METRICS = ("fd_mnist", "kid_mnist")


def _data(c, smoke):
  c.data.name = "mnist"
  # Explicit: the offline fallback otherwise converts to 3 channels while
  # data_shape() of the config says 1 (the teacher check then fails).
  c.data.channels = 1
  if smoke:
    c.data.offline_fallback = "mnist5k"


def _model(c, smoke):
  if smoke:
    common.unet(c, channels=16, mult=(1, 2), blocks=1)
  else:
    common.unet(c, channels=64, mult=(1, 2, 2), blocks=2, attn=(14,),
                dropout=0.1)


def _teacher(smoke):
  return common.fm_teacher(
      lambda c: _data(c, smoke), lambda c: _model(c, smoke), smoke,
      full=dict(warmup=1000, ema=0.9999, steps=100_000, batch=128,
                log_every=1000, checkpoint_every=10_000, eval_samples=10_000,
                eval_batch=500, metrics=_METRICS))


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke", "teacher", "teacher_smoke"),
                                   _NAME)
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
  common.teacher_variant(c, smoke, "configs/" + _NAME,
                         "runs/teacher_mnist_fm")
  c.optim.grad_clip = 1.0
  if smoke:
    common.schedule(c, **dict(common.SMOKE, lr=2e-4))
  else:
    common.schedule(c, lr=1e-4, warmup=1000, ema=0.9999, steps=100_000,
                    batch=128, log_every=1000, checkpoint_every=10_000,
                    eval_samples=10_000, eval_batch=500, metrics=_METRICS)
  c.fmm.loss = "lmd"
  c.fmm.time_order = "forward"
  c.fmm.time_scale = 1.0
  c.fmm.sample_steps = 1
  return c
