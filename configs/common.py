"""Building blocks the experiment configs share (not a config itself).

Each config file stays a flat, readable list of the settings of one
experiment; what several experiments set identically lives here once:
variant parsing, the networks (the digits UNet, the DDPM++ UNet of the
32×32 image configs, the checkerboard MLP), the data of the 32×32 image
configs with their offline smoke fallback, the run schedule fields, and the
flow-matching teachers the distillation configs train and load.
"""

from configs import base


def parse_variants(arg, allowed, name):
  """'a,b' -> ['a', 'b'], each checked against `allowed` (error names the
  file and the allowed values)."""
  variants = [a.strip() for a in (arg or "").split(",") if a.strip()]
  for v in variants:
    if v not in allowed:
      raise ValueError(f"configs/{name} variant {v!r} is not one of "
                       f"{('',) + tuple(allowed)} (combine with commas)")
  return variants


def device_ot(c, exact=False):
  """iCT minibatch OT on the accelerator: ott-jax Sinkhorn + greedy
  rounding, measured as good as the exact assignment on 32×32×3 batches of
  512 (benchmarks/results/ot_cost.json; not on the 2-D toys, where greedy
  rounding of the blurrier plan costs 10-28% more); `exact`: the host
  assignment (`jax.pure_callback` every step)."""
  c.ict.ot_solver = "exact" if exact else "sinkhorn"
  c.ict.ot_rounding = "lsa" if exact else "greedy"


def schedule(c, *, steps, batch, log_every, checkpoint_every,
             eval_samples=None, eval_batch=None, metrics=None, lr=None,
             warmup=None, ema=None):
  """The run-length fields; the optional ones are left alone when None."""
  c.train.steps = steps
  c.train.batch_size = batch
  c.train.log_every = log_every
  c.train.checkpoint_every = checkpoint_every
  for value, section, field in ((eval_samples, c.eval, "num_samples"),
                                (eval_batch, c.eval, "batch_size"),
                                (metrics, c.eval, "metrics"),
                                (lr, c.optim, "lr"),
                                (warmup, c.optim, "warmup_steps"),
                                (ema, c.ema, "decay")):
    if value is not None:
      section[field] = value


# A CPU smoke run of an image distillation config: seconds per run.
SMOKE = dict(steps=10, batch=16, log_every=5, checkpoint_every=10,
             eval_samples=64, eval_batch=64, metrics=(), warmup=2, ema=0.9)


def unet(c, *, channels, mult, blocks, attn=(), dropout=0.0,
         time_embedding=None):
  """EDM SongUNet (`time_embedding='st'`: two times, for flow maps)."""
  c.model.name = "unet"
  c.model.dropout = dropout
  c.model.unet.model_channels = channels
  c.model.unet.channel_mult = tuple(mult)
  c.model.unet.num_blocks = blocks
  c.model.unet.attn_resolutions = tuple(attn)
  if time_embedding is not None:
    c.model.unet.time_embedding = time_embedding


def digits_unet(c, smoke=False, time_embedding=None):
  """The 8×8 digits UNet (configs/digits_fm.py's teacher and its students;
  16 channels in the smoke variants)."""
  unet(c, channels=16 if smoke else 32, mult=(1, 2), blocks=1,
       time_embedding=time_embedding)


def ddpmpp_unet(c, smoke, time_embedding=None):
  """The DDPM++ UNet of the 32×32 distillation configs (128 channels,
  (2, 2, 2), 4 blocks, attention at 16; a tiny UNet when `smoke`)."""
  if smoke:
    unet(c, channels=16, mult=(1, 2), blocks=1,
         time_embedding=time_embedding)
  else:
    unet(c, channels=128, mult=(2, 2, 2), blocks=4, attn=(16,), dropout=0.13,
         time_embedding=time_embedding)


def image32_data(c, smoke, name="cifar10"):
  """A 32×32×3 TFDS dataset; the smoke variant uses offline digits resized
  to the same shape (no download)."""
  c.data.name = name
  if smoke:
    c.data.offline_fallback = "digits"
    c.data.image_size = 32
    c.data.channels = 3


def checkerboard_mlp(c, smoke):
  """The checkerboard flow-matching teacher of configs/toy_fm.py (full or
  smoke) and its network, which the 2-D students share."""
  c.data.name = "checkerboard"
  c.model.name = "mlp"
  c.model.mlp.hidden = (64, 64) if smoke else (256, 256, 256)
  c.teacher.config = "configs/toy_fm.py:smoke" if smoke else "configs/toy_fm.py"
  c.teacher.workdir = ("runs/teacher_checkerboard_fm_smoke" if smoke
                       else "runs/teacher_checkerboard_fm")


def digits_teacher(c, smoke):
  """configs/digits_fm.py (full or smoke) as the teacher, its UNet for the
  student."""
  c.data.name = "digits"
  c.teacher.config = ("configs/digits_fm.py:smoke" if smoke
                      else "configs/digits_fm.py")
  c.teacher.workdir = ("runs/teacher_digits_fm_smoke" if smoke
                       else "runs/teacher_digits_fm")


def fm_teacher(data_fn, model_fn, smoke, full, smoke_schedule=None):
  """A flow-matching teacher config: `data_fn(c)`, `model_fn(c)`, then the
  `full` schedule (kwargs of `schedule`, lr 2e-4 unless given) or the
  smoke one (`SMOKE` updated with `smoke_schedule`); Heun sampling with 50
  steps (4 in smoke runs)."""
  c = base.get_config()
  c.method = "flow_matching"
  data_fn(c)
  model_fn(c)
  if smoke:
    schedule(c, **{**SMOKE, "lr": 2e-4, **(smoke_schedule or {})})
  else:
    schedule(c, **{"lr": 2e-4, **full})
  c.sample.steps = 4 if smoke else 50
  c.sample.method = "heun"
  return c


def teacher_variant(c, smoke, config_path, workdir):
  """Points a distillation config at the `:teacher` (`:teacher_smoke`)
  variant of its own file, trained into `workdir` (+ '_smoke')."""
  c.teacher.config = (f"{config_path}:"
                      f"{'teacher_smoke' if smoke else 'teacher'}")
  c.teacher.workdir = workdir + ("_smoke" if smoke else "")


def latent_gcm(c, name, arg, dataset):
  """A generator g: z (dimension 256, or 50 with `z50`) -> conv decoder ->
  tanh image, trained against f with minibatch-OT pairing and T_f/T_g =
  50/20 (the alternation ratio paper 000 reports; its text gives no
  separate latent-experiment settings). Variants combine with '_' (as
  in `z50_smoke`) or ','. Returns whether it is the smoke variant."""
  variants = parse_variants((arg or "").replace("_", ","), ("smoke", "z50"),
                            name)
  c.method = "gcm"
  c.data.name = dataset
  c.data.channels = 1
  c.gcm.latent_dim = 50 if "z50" in variants else 256
  c.gcm.generator = "conv"
  c.gcm.generator_output = "tanh"          # images live in [-1, 1]
  c.gcm.coupling = "ot"
  c.gcm.dt = 0.05
  c.gcm.t_f = 50
  c.gcm.t_g = 20
  return "smoke" in variants


def latent_gcm_smoke(c):
  """The CPU smoke schedule of the latent GCM configs (g#ρ0 vs ρ1 twice)."""
  schedule(c, steps=140, batch=64, log_every=35, checkpoint_every=70,
           eval_samples=200, eval_batch=200)
  c.train.eval_every = 70
