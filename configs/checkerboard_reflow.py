"""Vanilla reflow (K = 1, no regulariser) on the 2-D checkerboard (paper 003's
baseline), distilling the flow-matching teacher of configs/toy_fm.py.

Command:  python -m gcflow_jax.main --config=configs/checkerboard_reflow.py --workdir=runs/checkerboard_reflow
          (trains the teacher into runs/teacher_checkerboard_fm first if that
          directory has no checkpoint, ~3 CPU minutes)
Hardware: CPU (2 cores); ~5 minutes for 2000 steps once the pair cache
(65,536 pairs, 32 teacher Heun steps each, ~1 minute) exists.
Expected: the paper reports no 2-D number (abstract only). Measured 1/2-
step quality vs. piecewise reflow ± alignment (3 seeds) is in
benchmarks/results/reflow_alignment.json.
Variants: `:smoke` (60 steps, the smoke teacher, < 1 minute after it).
"""

from configs import base, common


def get_config(arg=None):
  smoke = "smoke" in common.parse_variants(arg, ("smoke",),
                                           "checkerboard_reflow.py")
  c = base.get_config()
  c.method = "reflow"
  # The student is initialised from the teacher: same network as toy_fm.py.
  common.checkerboard_mlp(c, smoke)
  c.optim.name = "adam"
  c.optim.lr = 3e-4
  c.optim.warmup_steps = 100
  c.optim.schedule = "cosine"
  c.ema.decay = 0.999
  c.train.steps = 2000
  c.train.batch_size = 512
  c.train.log_every = 200
  c.train.checkpoint_every = 1000
  c.eval.num_samples = 4000
  c.eval.metrics = ("sinkhorn", "mmd", "kl_hist")
  c.eval.sample_steps = 1
  c.reflow.num_intervals = 1
  c.reflow.teacher_steps = 32
  c.reflow.teacher_method = "heun"
  c.reflow.align_weight = 0.0
  # Pairs from the teacher ODE made once (64 Heun evaluations each).
  c.reflow.pairs = "cache"
  c.reflow.cache_dir = "runs/checkerboard_reflow_pairs_K{K}_seed{seed}"
  c.reflow.cache_num_pairs = 65536
  c.reflow.cache_shard_size = 16384
  c.reflow.sample_method = "euler"
  if smoke:
    common.schedule(c, steps=60, batch=256, log_every=20, checkpoint_every=30,
                    eval_samples=1000, warmup=10)
    c.reflow.teacher_steps = 8
    c.reflow.pairs = "online"
  return c
