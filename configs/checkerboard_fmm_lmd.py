"""Flow map matching, Lagrangian map distillation (LMD), 2-D checkerboard.

Distils the flow-matching teacher of configs/toy_fm.py (trained first into
runs/teacher_checkerboard_fm if that directory has no checkpoint; shared
with the reflow configs) into a two-time flow map X_{s,t}(x) = x + (t − s)
v(s, t, x), (s, t) uniform on 0 ≤ s ≤ t ≤ 1.

Command:  python -m gcflow_jax.main --config=configs/checkerboard_fmm_lmd.py --workdir=runs/checkerboard_fmm_lmd
Hardware: CPU (2 cores); a few minutes (+ ~3 for the teacher).
Expected: paper 002 gives no 2-D number. Ours, at 1/2/4/8/16 steps, is in
benchmarks/results/fmm_steps_quality.json (eval here: 1 step): measured KL
0.460 at 1 step, 0.439 at 8 (100k samples, 3000 steps at batch 512), i.e.
0.105 / 0.084 above the teacher's own KL (Heun, 16 steps: 0.355), which
bounds a distilled student; data-vs-data floor 0.015. The follow-up's
checkerboard KL of 0.086 (1 step) / 0.070 (8 steps) belongs to Lagrangian
*self*-distillation (no teacher), with, per the review in issue 14, a
~1M-parameter network and ~10^4 times our training samples: not an LMD
number and not comparable with this config. From the stronger
configs/toy_fm.py:xl teacher (Heun 16: 0.058), 3,000 steps, 3 seeds
(benchmarks/claims/fmm_claims.py, PROTOCOL.md changes 24, 26, one idle
core, 2026-12-01): LMD 0.515 ± 0.059 at 1 step, 0.342 ± 0.006 at 4,
0.333 ± 0.025 at 8; EMD 0.454 ± 0.010 / 0.376 ± 0.017 / 0.358 ± 0.021;
flat curves, 6-9× the teacher: this 166k-parameter student, not the
teacher, now bounds the quality (results/claims_002_lmd_vs_emd.json). As
wide as the teacher (MLP 512 × 3, change 27): LMD 0.373 ± 0.025 / 0.286
± 0.016 / 0.284 ± 0.017 at 1/4/8 steps, EMD 0.399 ± 0.013 / 0.322 ±
0.008 / 0.308 ± 0.004, still 5-7× the teacher after 3,000 steps
(results/claims_002_lmd_vs_emd_w512.json). The same wide students for
20,000 steps (change 28, one core each, 2026-12-01): LMD 0.117 ± 0.004 at
1 step (2.0× the teacher; seed 0 reached 2× at step 16,000, seeds 1 and 2
ended at 0.118 / 0.120), EMD 0.218 ± 0.001; both curves flat. EMD is
ahead for the first ~5,000 steps, LMD from ~6,000 on. With more steps
EMD improves (0.125 ± 0.004 at 8) while LMD gets worse (0.191 ± 0.020
at 8) (results/claims_002_lmd_vs_emd_w512_20k.json). Where
(`fmm_claims.py intervals`, PROTOCOL change 33,
results/fmm_intervals_w512_20k.json): from exact samples of ρ_s every
LMD jump X_{s,1} is better than EMD's (KL 0.119 vs 0.218 from s = 0,
0.053 vs 0.091 from 0.875), and from exact ρ_0.5 LMD's 4-step chain
scores 0.117; its loss at 8 steps comes from the first half, where its
per-interval error against the teacher ODE is 14-20× EMD's (mean squared
distance 1-3e-5 vs ~1e-6) and compounds through the later maps. For
40,000 steps (change 34, one core per run, 2026-12-01): LMD reaches 2×
the teacher's KL on every seed (steps 20,000 ± 2,000), EMD on none (1-step
KL 0.092 ± 0.002 vs 0.176 ± 0.004, both curves flat): the paper's
ordering, "reproduced" at this budget; at 8 steps EMD is still the
better (0.097 vs 0.156) (results/claims_002_lmd_vs_emd_w512_40k.json).
Variants: `:smoke` (60 steps, tiny MLP, the smoke teacher), `:stop_grad`
(ablation: fmm.stop_grad_target=True, the semi-gradient that does not
backpropagate through the teacher; same zero-residual minimiser, a
different gradient away from it).
"""

from configs import base, common


def get_config(arg=None):
  variants = common.parse_variants(arg, ("smoke", "stop_grad"),
                                  "checkerboard_fmm_lmd.py")
  smoke = "smoke" in variants
  c = base.get_config()
  c.method = "fmm"
  common.checkerboard_mlp(c, smoke)
  # Time features of the student: the LMD/EMD/direct losses differentiate
  # the map in time (JVP), so keep the embedding frequencies moderate (the
  # teacher's 1000 makes ∂_t X large and noisy; sCM makes the same choice).
  c.model.mlp.time_scale = 30.0
  c.optim.name = "adam"
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  c.optim.schedule = "cosine"
  c.optim.grad_clip = 1.0
  c.ema.decay = 0.999
  c.train.steps = 3000
  c.train.batch_size = 512
  c.train.log_every = 250
  c.train.checkpoint_every = 1000
  # 4000 samples as in toy_fm.py (the library's Sinkhorn runs dense up to
  # 4096 points). kl_hist on 50×50 cells is biased upwards at this N; the
  # benchmarks score 100k samples.
  c.eval.num_samples = 4000
  c.eval.batch_size = 4000
  c.eval.metrics = ("sinkhorn", "mmd", "kl_hist")
  c.fmm.loss = "lmd"
  c.fmm.time_order = "forward"
  c.fmm.time_embedding = "st"
  c.fmm.sample_steps = 1
  c.fmm.stop_grad_target = "stop_grad" in variants
  if smoke:
    # The smoke teacher's EMA (decay 0.999 over 200 steps) is still close to
    # its zero-output init; distil its raw parameters instead.
    c.teacher.use_ema = False
    # EMA decay 0.9: the 60-step EMA is the trained model.
    common.schedule(c, steps=60, batch=256, log_every=20, checkpoint_every=30,
                    eval_samples=1000, eval_batch=500, warmup=10, ema=0.9)
  return c
