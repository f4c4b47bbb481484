"""Flow map matching (LMD) on sklearn digits (8×8×1, offline), small UNet.

Distils the flow-matching teacher of configs/digits_fm.py (trained first
into runs/teacher_digits_fm if it has no checkpoint; shared with the reflow
configs) into a two-time UNet flow map X_{s,t}(x) = x + (t − s) v(s, t, x).
The UNet is the teacher's, with two time embeddings.

Command:  python -m gcflow_jax.main --config=configs/digits_fmm_lmd.py --workdir=runs/digits_fmm_lmd
Hardware: CPU (2 cores), ~15 minutes (+ ~10 for the teacher); a GPU makes
it about a minute.
Expected: the paper has no digits experiment; eval/fd_digits of the one-
step map should approach the teacher's (20 Heun steps). LMD vs EMD
(benchmarks/claims/PROTOCOL.md change 35: `fmm_claims.py students
--setup=digits --steps=3000 --eval_every=250 --full_every=1000
--cores=0,1`, 3 seeds each, one thread per run, 2026-12-01): after 3,000
steps the 1-step fd_digits is 0.298 ± 0.028 (LMD) against 0.938 ± 0.008
(`:emd`), LMD ahead at 1, 2 and 4 steps and at every evaluation, but
neither reached 2× the teacher's 0.134 on every seed and EMD's curve still
falls: "not reached at this budget" (results/
claims_002_digits_lmd_vs_emd.json).
Variants: `:smoke` (20 steps, tiny UNet, the smoke teacher), `:emd` (the
Eulerian loss, same budget), `:emd,smoke`; `:mlp` (a CPU stand-in, with
any of the others: an MLP (512, 512, 512) student on the flattened image,
distilled from configs/digits_fm.py:mlp with Adam 1e-3 and a cosine decay
to 0 over 20,000 steps, as the checkerboard students;
benchmarks/claims/PROTOCOL.md change 48).
"""

from configs import base, common, digits_fm


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke", "emd", "mlp"),
                                  "digits_fmm_lmd.py")
  smoke = "smoke" in variants
  c = base.get_config()
  c.method = "fmm"
  common.digits_teacher(c, smoke)
  common.digits_unet(c, smoke, time_embedding="st")
  c.optim.lr = 2e-4
  c.optim.warmup_steps = 100
  c.optim.grad_clip = 1.0
  c.ema.decay = 0.999
  c.train.steps = 2000
  c.train.batch_size = 128
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  c.eval.num_samples = 1000
  c.eval.batch_size = 500
  c.eval.metrics = ("fd_digits", "kid_digits")
  c.fmm.loss = "emd" if "emd" in variants else "lmd"
  c.fmm.time_order = "forward"
  # The UNet sees raw times in [0, 1] like the teacher: low-frequency time
  # embeddings keep the JVP ∂_t X tame.
  c.fmm.time_scale = 1.0
  c.fmm.sample_steps = 1
  if "mlp" in variants:
    teacher = "configs/digits_fm.py:mlp" + (",smoke" if smoke else "")
    c.teacher.config = teacher
    c.teacher.workdir = ("runs/teacher_digits_fm_mlp"
                         + ("_smoke" if smoke else ""))
    digits_fm.mlp(c, smoke)
    # As the checkerboard students: moderate time frequencies (the losses
    # differentiate the map in time), Adam 1e-3 with a cosine decay.
    c.model.mlp.time_scale = 30.0
    c.optim.schedule = "cosine"
    common.schedule(c, steps=20_000, batch=c.train.batch_size,
                    log_every=c.train.log_every, checkpoint_every=5000,
                    lr=1e-3)
  if smoke:
    c.teacher.use_ema = False     # 60 steps: the teacher's EMA is ~its init
    common.schedule(c, steps=20, batch=32, log_every=10, checkpoint_every=10,
                    eval_samples=200, eval_batch=200, warmup=2, ema=0.9)
  return c
