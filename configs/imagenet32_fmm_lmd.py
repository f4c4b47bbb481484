"""Flow map matching (LMD) on ImageNet 32×32 (the paper's second image
benchmark), same DDPM++ UNet and recipe as configs/cifar_fmm_lmd.py.
  1. teacher: python -m gcflow_jax.main --config=configs/imagenet32_fmm_lmd.py:teacher --workdir=runs/teacher_imagenet32_fm_fmm
  2. LMD:     python -m gcflow_jax.main --config=configs/imagenet32_fmm_lmd.py --workdir=runs/imagenet32_fmm_lmd
Hardware: 8 × A100/H100 or a TPU v4-8 (TFDS `imagenet_resized/32x32`
prepared in data.tfds_data_dir); days. CPU: `:smoke` only.
Expected: the paper's ImageNet-32 table (LMD few-step FIDs near its
flow-matching teacher, 10–20× faster sampling); FID needs
--config.eval.inception_weights=PATH.
Variants: `smoke` (offline digits resized to 32×32×3, tiny UNet, 10 steps),
`teacher`, `teacher_smoke`.
"""

from configs import cifar_fmm_lmd, common


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke", "teacher", "teacher_smoke"),
                                   "imagenet32_fmm_lmd.py")
  smoke = "smoke" in variants or "teacher_smoke" in variants
  if "teacher" in variants or "teacher_smoke" in variants:
    c = cifar_fmm_lmd.teacher_config(smoke, "imagenet32")
  else:
    c = cifar_fmm_lmd.student_config(
        smoke, "imagenet32", "configs/imagenet32_fmm_lmd.py",
        "runs/teacher_imagenet32_fm_fmm")
  if not smoke:
    c.model.dropout = 0.0     # ImageNet-32 is large: no dropout
  return c
