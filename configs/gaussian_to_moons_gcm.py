"""GCM distribution matching: N(0, I_2) -> two moons with MLPs (paper 000).

Command:  python -m gcflow_jax.main --config=configs/gaussian_to_moons_gcm.py --workdir=runs/moons_gcm
Hardware: CPU (2 cores); about 3 minutes (3,500 steps = 50 cycles).
Expected: the paper shows moons samples qualitatively (no number); we
measured eval/sinkhorn ≈ 0.02 and eval/mmd ≈ 0.002 with minibatch OT
(benchmarks/results/gcm_moons.json; a moment-matched Gaussian scores 0.10
and 0.017, N(0, I) 0.82 and 0.23).
Variants: `:smoke` (350 steps = 5 cycles of T_f/T_g = 50/20, small MLPs,
~30 s), `:random` (random pairing instead of minibatch OT),
`:random_smoke`, `:ot` (= the default).
"""

from configs import base


def get_config(arg=None):
  c = base.get_config()
  c.method = "gcm"
  c.data.name = "moons"
  # The consistency model f: F(x, t) of f_t(x) = x + (1 - t) F(x, t).
  c.model.name = "mlp"
  c.model.mlp.hidden = (128, 128, 128)
  c.model.mlp.time_dim = 64
  c.gcm.latent_dim = 2
  c.gcm.generator = "mlp"
  c.gcm.generator_hidden = (128, 128)
  # Minibatch OT (ott-jax Sinkhorn, rounded to a permutation); Δt = 0.05:
  # both measured better than random pairing / Δt = 0.01 (benchmarks/).
  c.gcm.coupling = "ot"
  c.gcm.dt = 0.05
  c.gcm.t_dist = "uniform"
  c.gcm.schedule = "alternating"
  c.gcm.t_f = 50
  c.gcm.t_g = 20
  c.optim.name = "adam"
  c.optim.lr = 1e-3
  c.ema.decay = 0.99
  c.train.steps = 3500
  c.train.batch_size = 256
  c.train.log_every = 350
  c.train.checkpoint_every = 1750
  c.eval.num_samples = 2000
  c.eval.metrics = ("sinkhorn", "mmd", "kl_hist")
  variant = arg or ""
  for coupling in ("ot", "random"):
    if variant.startswith(coupling):
      c.gcm.coupling = coupling
      variant = variant[len(coupling):].lstrip("_")
  if variant == "":
    pass
  elif variant == "smoke":
    c.model.mlp.hidden = (128, 128)
    c.gcm.generator_hidden = (64, 64)
    c.train.steps = 350
    c.train.log_every = 70
    c.train.checkpoint_every = 175
    c.eval.num_samples = 1000
  else:
    raise ValueError(f"configs/gaussian_to_moons_gcm.py variant {arg!r} is "
                     "not one of ('', 'smoke', 'random', 'random_smoke', 'ot', "
                     "'ot_smoke')")
  return c
