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

from configs import base, common


def _model(c, smoke):
  common.ddpmpp_unet(c, smoke, time_embedding="st")


def teacher_config(smoke, data_name="cifar10"):
  """The flow-matching teacher on the same data and UNet (one time)."""
  c = common.fm_teacher(
      lambda c: common.image32_data(c, smoke, data_name),
      lambda c: _model(c, smoke), smoke,
      full=dict(warmup=5000, ema=0.9999, steps=400_000, batch=512,
                log_every=1000, checkpoint_every=10_000, eval_samples=50_000,
                eval_batch=500, metrics=("fid", "kid")))
  c.interp.name = "linear"
  return c


def student_config(smoke, data_name, config_path, teacher_dir):
  """LMD distillation of `teacher_config` into a two-time flow map."""
  c = base.get_config()
  c.method = "fmm"
  common.image32_data(c, smoke, data_name)
  _model(c, smoke)
  c.model.dropout = 0.0   # the distilled map is deterministic
  common.teacher_variant(c, smoke, config_path, teacher_dir)
  c.optim.grad_clip = 1.0
  if smoke:
    common.schedule(c, **dict(common.SMOKE, lr=2e-4))
  else:
    common.schedule(c, lr=1e-4, warmup=5000, ema=0.9999, steps=200_000,
                    batch=256, log_every=1000, checkpoint_every=10_000,
                    eval_samples=50_000, eval_batch=500,
                    metrics=("fid", "kid"))
  c.fmm.loss = "lmd"
  c.fmm.time_order = "forward"
  # Raw times in [0, 1] like the teacher (low-frequency embeddings keep the
  # JVP in t well conditioned).
  c.fmm.time_scale = 1.0
  c.fmm.sample_steps = 1
  return c


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke", "teacher", "teacher_smoke"),
                                   "cifar_fmm_lmd.py")
  if "teacher" in variants or "teacher_smoke" in variants:
    return teacher_config("teacher_smoke" in variants)
  return student_config("smoke" in variants, "cifar10",
                        "configs/cifar_fmm_lmd.py", "runs/teacher_cifar_fm_fmm")
