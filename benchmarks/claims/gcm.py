r"""Paper 000 (distribution matching with generalized consistency models):
the claims of benchmarks/claims/PROTOCOL.md, one section per claim.

python benchmarks/claims/gcm.py
    --claim=affine|affine_dt|affine_width|affine_coupling|affine_batch|
            affine_tf|affine_glr|affine_f_fixed_g|moons|mnist_latent
    [--seeds=0,1,2] [--steps=N (0: the config's budget)]
    [--variant=V (affine*: configs/gaussian_affine_gcm.py:V)]
    [--dts=0.05,0.025,0.0125 (affine_dt)] [--widths=128,256,512
    (affine_width)] [--couplings=ot_sinkhorn,ot_exact,random
    (affine_coupling)] [--batches=256,1024 (affine_batch)]
    [--tfs=50,200 (affine_tf)] [--g_lr_mults=10,3,1 (affine_glr)]
    [--tag=NAME (affine sweeps: another budget's own record)]
    [--cores=0,1] [--cache_dir=runs/claims000] [--train_only]
    [--latent_dim=256] (mnist_latent)

Every run trains with the project's trainer step through
`benchmarks/gcm_moons.train_curve` (the config as committed, only `seed`,
`train.steps` and the named variant changed) and scores the generator g(z) (one step) at step 0 and every
`train.eval_every` steps.

* affine — `python benchmarks/claims/gcm.py --claim=affine`
  configs/gaussian_affine_gcm.py (N = 8, affine g, 2,800 steps, batch
  256): ‖mean(g) − μ‖₂ and ‖cov(g) − Σ‖_F / ‖Σ‖_F on 100,000 samples
  against the closed-form target (μ_i = (−1)^i, Σ = ½ I + ½ 11ᵀ).
  Reproduced if both < 0.05 for every seed at the last evaluation. For
  scale the same estimators on 100,000 exact target samples (the floor).
* affine_dt — `python benchmarks/claims/gcm.py --claim=affine_dt
  --steps=11200 --variant=cosine` (PROTOCOL.md change 20): the affine run
  at each consistency step Δt of `--dts` (`gcm.dt`), same seeds and
  budget. Reproduced if at the smallest Δt both errors are < 0.05 for every
  seed and the covariance error there beats the largest Δt's by the
  mean ± std rule (is the error a discretisation bias of f?).
* affine_width — `python benchmarks/claims/gcm.py --claim=affine_width
  --steps=11200 --variant=cosine` (PROTOCOL.md change 25): the affine run
  with f's three hidden layers at each width of `--widths`, same seeds and
  budget. Reproduced if at the widest f both errors are < 0.05 for every
  seed and its covariance error beats the narrowest's by the mean ± std
  rule (is the error f's capacity?).
* affine_coupling — `python benchmarks/claims/gcm.py
  --claim=affine_coupling --steps=11200 --variant=cosine` (PROTOCOL.md
  change 29): the affine run with g's samples paired to the data by
  minibatch OT through a rounded Sinkhorn plan (the config's), exact
  minibatch OT (host assignment) and random pairing, same seeds and
  budget. Reproduced if exact OT or random pairing has both errors < 0.05
  for every seed and a covariance error better than the config's by the
  mean ± std rule (is the error the coupling's?).
* affine_batch — `python benchmarks/claims/gcm.py --claim=affine_batch
  --steps=11200 --variant=cosine --batches=256,1024` (PROTOCOL.md change
  31): the affine run at each batch size (the minibatch-OT coupling's and
  the gradients'), same steps, learning rate and seeds. Reproduced if at the
  largest batch both errors are < 0.05 for every seed and the covariance
  error beats the smallest batch's by the mean ± std rule.
* affine_tf — `python benchmarks/claims/gcm.py --claim=affine_tf
  --steps=11200 --variant=cosine --tfs=50,200` (PROTOCOL.md change 39):
  the affine run with T_f f updates per alternation cycle (`gcm.t_f`; T_g
  as configured), the same total steps. Reproduced if at the largest T_f
  both errors are < 0.05 for every seed and the covariance error beats the
  smallest T_f's by the mean ± std rule.
* affine_glr — `python benchmarks/claims/gcm.py --claim=affine_glr
  --steps=11200 --variant=cosine --g_lr_mults=10,3,1` (PROTOCOL.md change
  40): the affine run with g's learning rate at each multiple of the
  optimiser's (`gcm.g_lr_mult`; the first, 10, is the config's), the same
  steps. Reproduced if some other multiple has both errors < 0.05 for every
  seed and a covariance error better than the config's by the mean ± std
  rule.
* affine_f_fixed_g — `python benchmarks/claims/gcm.py
  --claim=affine_f_fixed_g --steps=11200 --variant=cosine` (PROTOCOL.md
  change 38, a diagnostic): the affine run's f trained with g frozen at
  the exact solution (`match`) and at A = 0.9 chol Σ (`near`); f_0(g(z))
  scored like g(z) above (the exact f gives the floor at both). Read out
  against claims_000_affine.json at the same steps: f's error at the
  match e, the share q of the near gap f_0 closes, and the predicted
  fixed-point error e/q against the affine record's residual.
* moons — `python benchmarks/claims/gcm.py --claim=moons`
  configs/gaussian_to_moons_gcm.py (minibatch OT, 3,500 steps, batch 256):
  the share of 10,000 samples whose nearest moon (distance to the noiseless
  arc) is the upper one. Reproduced if both shares lie in [0.45, 0.55] for
  every seed. Also logs the share within 0.2 of an arc (`on_moon`).
* mnist_latent — `python benchmarks/claims/gcm.py --claim=mnist_latent
  --cores=0,1` (PROTOCOL.md change 43): configs/mnist_latent_gcm.py
  (dim(z) = 256, 21,000 steps, batch 128, offline MNIST test images) with
  benchmarks/gcm_latent.py's CPU stand-in (MLP f, MLP decoder g). Every
  train.eval_every steps: the offline MNIST classifier's labels of 10,000
  g(z) (`evaluation.label_shares`: smallest class share, KL to uniform)
  and fd_mnist of the first 5,000 against 5,000 test images. Reproduced
  if at the end every seed's smallest share is >= 0.05 and its fd_mnist
  at most half its step-0 value, on flat curves. Each seed's rows are
  cached (`--cache_dir`), so a rerun resumes; `--cores` trains the
  missing seeds as pinned processes, two at a time on 0,1. Each run
  leaves its last evaluation's samples as a figure; the record keeps the
  first seed's beside it. `--latent_dim=50` (change 44): the same at
  dim(z) = 50, its own record claims_000_mnist_latent_coverage_z50.json.

A claim that fails while its curve still moves is "not reached at this
budget" (PROTOCOL.md). Writes results/claims_000_<claim>.json. The affine
sweeps (one table, `SWEEPS`: affine_dt, _width, _coupling, _batch, _tf,
_glr) rewrite their record after
every finished (arm, seed) run and reuse the finished runs of a record with
the same config and steps, so the same command resumes a stopped sweep; a
command that would drop a record's run (another budget or config) exits
before training and asks for `--tag=NAME`, which writes
claims_000_<claim>_<NAME>.json instead.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from typing import Any, Callable

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))
sys.path.insert(0, _HERE)
import split  # noqa: E402  pylint: disable=g-import-not-at-top
# A `--cores` child pins itself before JAX starts any thread.
split.pin_from_env()

import jax  # noqa: E402  pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from common import machine_info, read_result, result_path  # noqa: E402  pylint: disable=g-import-not-at-top
from gcm_latent import SETUPS as LATENT_SETUPS  # noqa: E402  pylint: disable=g-import-not-at-top
from gcm_moons import load, train_curve  # noqa: E402  pylint: disable=g-import-not-at-top
import verdicts as V  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import evaluation, run_record, train  # noqa: E402
from gcflow_jax.data import toy  # noqa: E402

PAPER = "000"
AFFINE_CONFIG = "configs/gaussian_affine_gcm.py"
MOONS_CONFIG = "configs/gaussian_to_moons_gcm.py"
AFFINE_TOL = 0.05
MOON_BAND = (0.45, 0.55)


def affine_score(mu: np.ndarray, cov: np.ndarray):
  """Mean error ‖m − μ‖₂ and relative covariance error ‖C − Σ‖_F/‖Σ‖_F."""
  def score(x):
    x = np.asarray(x, np.float64)
    if not np.isfinite(x).all():
      return {"mean_err": float("nan"), "cov_rel_err": float("nan")}
    c = np.cov(x, rowvar=False)
    return {"mean_err": float(np.linalg.norm(x.mean(0) - mu)),
            "cov_rel_err": float(np.linalg.norm(c - cov)
                                 / np.linalg.norm(cov))}
  return score


def moon_arcs(num: int = 2000) -> np.ndarray:
  """[2, num, 2] the noiseless upper and lower moons of `data.toy`."""
  th = np.linspace(0.0, np.pi, num)
  upper = np.stack([np.cos(th), np.sin(th)], 1)
  lower = np.stack([1.0 - np.cos(th), 0.5 - np.sin(th)], 1)
  return np.stack([upper, lower])


def moon_shares(x: np.ndarray, on_radius: float = 0.2) -> dict:
  """Share of points whose nearest arc is the upper moon, and share within
  `on_radius` of either arc."""
  x = np.asarray(x, np.float64)
  if not np.isfinite(x).all():
    return {"upper_share": float("nan"), "on_moon": float("nan")}
  arcs = moon_arcs()
  # [2, N]: distance of each point to each arc (dense polyline).
  d = np.stack([np.sqrt(((x[:, None, :] - a[None]) ** 2).sum(-1)).min(1)
                for a in arcs])
  return {"upper_share": float(np.mean(d[0] < d[1])),
          "on_moon": float(np.mean(d.min(0) < on_radius))}


def _train_seeds(spec, seeds, score, num_samples, arm, steps=0,
                 overrides=None, **hooks):
  """`hooks`: `prepare` / `measure` of `gcm_moons.train_curve`."""
  rows = []
  for seed in seeds:
    cfg = load(spec, {**(overrides or {}), "seed": seed,
                      **({"train.steps": steps} if steps else {})})
    print(f"== {arm} seed={seed}", flush=True)
    curve = train_curve(cfg, cfg.train.eval_every, score, num_samples,
                        **hooks)
    rows += [{"arm": arm, "seed": seed, **r} for r in curve]
  return rows, cfg


AFFINE_METRICS = ("mean_err", "cov_rel_err")
AFFINE_SAMPLES = 100_000


def _affine_target(variant=""):
  """(config spec, μ, Σ, score) of configs/gaussian_affine_gcm.py[:variant]."""
  spec = AFFINE_CONFIG + (f":{variant}" if variant else "")
  cfg0 = load(spec)
  mu, cov = toy.gaussian_params(cfg0.data.dim, cfg0.data.toy_param)
  return spec, mu, cov, affine_score(mu, cov)


def _affine_arm(rows, arm, steps):
  """One arm's rows at `steps`: per-metric summaries over seeds, whether
  both errors are below AFFINE_TOL for every seed, and whether each
  metric's curve has flattened."""
  final = [r for r in rows if r["arm"] == arm and r["step"] == steps]
  return {"stats": {m: V.summarize([r[m] for r in final])
                    for m in AFFINE_METRICS},
          "below": all(r[m] < AFFINE_TOL for r in final
                       for m in AFFINE_METRICS),
          "flat": {m: V.flattened(V.curve_of(rows, arm, m))
                   for m in AFFINE_METRICS}}


def claim_affine(seeds, steps=0, variant=""):
  spec, mu, cov, score = _affine_target(variant)
  num = AFFINE_SAMPLES
  rng = np.random.default_rng(0)
  exact = mu + rng.standard_normal((num, len(mu))) @ np.linalg.cholesky(cov).T
  floor = score(exact)
  rows, cfg = _train_seeds(spec, seeds, score, num, "affine_full", steps)
  judged = _affine_arm(rows, "affine_full", cfg.train.steps)
  passed, flat = judged["below"], judged["flat"]
  sm, sc = judged["stats"]["mean_err"], judged["stats"]["cov_rel_err"]
  verdict = V.outcome(passed, all(flat.values()))
  reason = (f"final mean error {V.format_summary(sm)}, covariance error "
            f"{V.format_summary(sc)} (threshold {AFFINE_TOL} for every seed; "
            f"every seed below: {passed}); curves flattened: {flat}; "
            f"estimator floor on exact samples: mean {floor['mean_err']:.3g}, "
            f"cov {floor['cov_rel_err']:.3g}")
  budget = (f"{cfg.train.steps} steps × batch {cfg.train.batch_size} "
            f"(T_f/T_g = {cfg.gcm.t_f}/{cfg.gcm.t_g}), lr {cfg.optim.lr:g} "
            f"{cfg.optim.schedule}, f MLP "
            f"{tuple(cfg.model.mlp.hidden)}, N = {cfg.data.dim}, CPU")
  return V.write_claim(
      PAPER, "affine", rows,
      paper_figure=("no number: an affine g between Gaussians has the exact "
                    "solution A Aᵀ = Σ, b = μ (issue #16)"),
      metric="‖mean(g) − μ‖₂ and ‖cov(g) − Σ‖_F/‖Σ‖_F, 100,000 samples",
      budget=budget, seeds=seeds, verdict=verdict, verdict_reason=reason,
      our_figure=(f"mean err {V.format_summary(sm)}; cov err "
                  f"{V.format_summary(sc)}"),
      extra={"exact_sample_floor": floor, "config": spec})


@dataclasses.dataclass(frozen=True)
class Sweep:
  """One setting of the affine claim's run swept over values, every arm
  with the same seeds and budget (`claim_sweep`), judged by the sweep rule
  (`sweep_verdict`).

  `key` names the arms ('<key>=<value>'); `flag` is the CLI flag of the
  comma-separated values (cast by `cast`, each `valid`, else exit naming
  `what`); `override(v)` the config overrides of value v; `label(v)` the
  arm in a verdict's text; `base(values)` the arm every other is judged
  against and `contenders(values)` those judged. With `pairwise` each
  contender is judged with `base` alone and the sweep passes if any does;
  otherwise (one contender) every arm's curves must also have flattened.
  `setting(cfg, values)` describes the swept setting in the budget;
  `against` ends the metric ('against <against>')."""
  change: int
  key: str
  flag: str
  default: str
  cast: Callable[[str], Any]
  override: Callable[[Any], dict]
  label: Callable[[Any], str]
  base: Callable[[list], Any]
  contenders: Callable[[list], list]
  setting: Callable[[Any, list], str]
  paper_figure: str
  against: str
  valid: Callable[[Any], bool] = lambda v: True
  what: str = "values"
  pairwise: bool = False

  def arm(self, value) -> str:
    return f"{self.key}={_shown(value)}"


def _f_mlp(cfg) -> str:
  return f"f MLP {tuple(cfg.model.mlp.hidden)}"


def _shown(value) -> str:
  """A swept value as arm names, flags and budgets show it (floats by
  `:g`: 10.0 -> '10')."""
  return f"{value:g}" if isinstance(value, float) else str(value)


def _listed(values) -> str:
  return "{" + ", ".join(map(_shown, values)) + "}"


_EXACT = "no number: the affine fit is exact (A Aᵀ = Σ, b = μ)"
_OT_CAVEAT = ("no number; the paper's own caveat: f_0 = id at matched "
              "marginals may fail under a poor minibatch-OT coupling")
COUPLING_ARMS = ("ot_sinkhorn", "ot_exact", "random")
COUPLING_OVERRIDES = {
    "ot_sinkhorn": {"gcm.coupling": "ot", "gcm.ot_solver": "sinkhorn"},
    "ot_exact": {"gcm.coupling": "ot", "gcm.ot_solver": "exact"},
    "random": {"gcm.coupling": "random"}}
_FIRST, _REST = (lambda vs: vs[0]), (lambda vs: list(vs[1:]))
_LEAST, _MOST = (lambda vs: [min(vs)]), (lambda vs: [max(vs)])

# The affine claim's sweeps, by claim name (PROTOCOL.md changes 20, 25, 29,
# 31, 39, 40).
SWEEPS = {
    # Is the error a discretisation bias of f? Smallest Δt vs largest.
    "affine_dt": Sweep(
        20, "dt", "dts", "0.05,0.025,0.0125", float,
        lambda dt: {"gcm.dt": dt}, lambda dt: f"Δt = {dt:g}", max, _LEAST,
        lambda cfg, vs: f"{_f_mlp(cfg)}, Δt ∈ {_listed(vs)}",
        _EXACT + "; the consistency loss is exact only as Δt → 0", "Δt"),
    # f's capacity? The widest f (three hidden layers) vs the narrowest.
    "affine_width": Sweep(
        25, "f_width", "widths", "128,256,512", int,
        lambda w: {"model.mlp.hidden": (w, w, w)}, lambda w: f"f width {w}",
        min, _MOST,
        lambda cfg, vs: (f"gcm.dt {cfg.gcm.dt:g}, f MLP (w, w, w) for w ∈ "
                         f"{_listed(vs)}"),
        _EXACT + " when f is the exact consistency function", "f's width",
        valid=lambda w: w >= 1, what="positive values"),
    # The coupling's? Each other coupling vs the config's (the first).
    "affine_coupling": Sweep(
        29, "coupling", "couplings", ",".join(COUPLING_ARMS), str,
        COUPLING_OVERRIDES.get, str, _FIRST, _REST,
        lambda cfg, vs: (f"gcm.dt {cfg.gcm.dt:g}, {_f_mlp(cfg)}, couplings "
                         f"{', '.join(vs)}"),
        _OT_CAVEAT + " (its suggested test: random pairing vs minibatch OT)",
        "the coupling", valid=lambda c: c in COUPLING_OVERRIDES,
        what=f"values of {COUPLING_ARMS}", pairwise=True),
    # The minibatch's? The largest batch (OT's and the gradients') vs the
    # smallest, at the same steps and learning rate.
    "affine_batch": Sweep(
        31, "batch", "batches", "256,1024", int,
        lambda b: {"train.batch_size": b}, lambda b: f"batch {b}", min, _MOST,
        lambda cfg, vs: (f"gcm.dt {cfg.gcm.dt:g}, {_f_mlp(cfg)}, "
                         f"{cfg.gcm.coupling} ({cfg.gcm.ot_solver}), one "
                         "batch size per arm"),
        _OT_CAVEAT, "the batch size", valid=lambda b: b >= 2,
        what="values >= 2"),
    # f lagging g? The most f updates per cycle vs the fewest, T_g as
    # configured and the same total steps.
    "affine_tf": Sweep(
        39, "t_f", "tfs", "50,200", int, lambda t: {"gcm.t_f": t},
        lambda t: f"T_f = {t}", min, _MOST,
        lambda cfg, vs: (f"T_f ∈ {_listed(vs)} / T_g {cfg.gcm.t_g}, gcm.dt "
                         f"{cfg.gcm.dt:g}, {_f_mlp(cfg)}"),
        _EXACT + "; the paper alternates T_f = 50 f and T_g = 20 g updates",
        "T_f", valid=lambda t: t >= 1, what="positive values"),
    # g overshooting f? Each other multiplier of g's learning rate vs the
    # config's (the first).
    "affine_glr": Sweep(
        40, "g_lr_mult", "g_lr_mults", "10,3,1", float,
        lambda m: {"gcm.g_lr_mult": m}, lambda m: f"g lr × {m:g}", _FIRST,
        _REST,
        lambda cfg, vs: (f"g's learning rate {cfg.optim.lr:g} × "
                         f"{_listed(vs)}, T_f/T_g {cfg.gcm.t_f}/"
                         f"{cfg.gcm.t_g}, gcm.dt {cfg.gcm.dt:g}, "
                         f"{_f_mlp(cfg)}"),
        _EXACT, "g's learning rate", valid=lambda m: m > 0,
        what="positive values", pairwise=True),
}


def _judge(rows, sweep, values, base, best, steps):
  """The sweep rule on the arms of `values`: reproduced if at `best` both
  errors are below AFFINE_TOL for every seed and its covariance error beats
  `base`'s by the mean ± std rule; a budget counts only if every arm's two
  curves have flattened. Returns (verdict, reason, per-arm summaries)."""
  arms = {v: sweep.arm(v) for v in values}
  for arm in arms.values():
    n = sum(r["arm"] == arm and r["step"] == steps for r in rows)
    if n < 2:
      raise ValueError(f"{arm}: {n} seeds at step {steps}; the rule needs "
                       ">= 2")
  judged = {v: _affine_arm(rows, arm, steps) for v, arm in arms.items()}
  below = judged[best]["below"]
  gains = V.better_summary(judged[best]["stats"]["cov_rel_err"],
                           judged[base]["stats"]["cov_rel_err"])
  flat = {arms[v]: j["flat"] for v, j in judged.items()}
  all_flat = all(x for f in flat.values() for x in f.values())
  verdict = V.outcome(below and gains, all_flat)
  lb, lbest = sweep.label(base), sweep.label(best)
  reason = ("; ".join(
      f"{sweep.label(v)}: cov err "
      f"{V.format_summary(j['stats']['cov_rel_err'])}, mean err "
      f"{V.format_summary(j['stats']['mean_err'])}"
      for v, j in judged.items())
            + f"; at {lbest} both < {AFFINE_TOL} for every seed: {below}; "
            f"cov err better at {lbest} than at {lb} (mean ± std rule): "
            f"{gains}; curves flattened: {flat}")
  return verdict, reason, {arms[v]: j["stats"] for v, j in judged.items()}


def sweep_verdict(name, rows, values, steps):
  """The rule of sweep `name` (SWEEPS) on rows {arm: '<key>=<value>', seed,
  step, mean_err, cov_rel_err}: each contender against the base; with one
  contender its verdict, else reproduced if any contender passes, "not
  reached" if none passes while a judged curve still moves, "not
  reproduced" otherwise. Returns (verdict, reason, per-arm summaries)."""
  sweep = SWEEPS[name]
  base, contenders = sweep.base(values), sweep.contenders(values)
  if not contenders or base in contenders:
    raise ValueError(f"{name}: give >= 2 distinct values")
  results = {c: _judge(rows, sweep, [base, c] if sweep.pairwise else values,
                       base, c, steps) for c in contenders}
  if len(results) == 1:
    return results[contenders[0]]
  verdicts = [v for v, _, _ in results.values()]
  verdict = next((v for v in (V.REPRODUCED, V.NOT_REACHED) if v in verdicts),
                 V.NOT_REPRODUCED)
  stats = {}
  for _, _, st in results.values():
    stats.update(st)
  reason = " | ".join(f"{sweep.label(c)} vs {sweep.label(base)}: {v} ({r})"
                      for c, (v, r, _) in results.items())
  return verdict, reason, stats


def _finished_runs(record, spec, budget_steps):
  """{(arm, seed): rows} of the runs already in results/claims_000_<record>
  .json that this sweep would train again: the record's config is `spec`
  and the run's curve ends at `budget_steps[(arm, seed)]` (the arm's name
  carries the swept value; the rest is the config).

  Exits, before any training, when the record holds a run this sweep would
  not keep (another config, another budget, or a value not swept now):
  rewriting the record would lose it; another budget gets its own record
  with --tag."""
  old = read_result(f"claims_{PAPER}_{record}")
  by_step = {}  # one row per (arm, seed, step): the record's last
  for r in (old or {}).get("rows", []):
    by_step.setdefault((r["arm"], r["seed"]), {})[r["step"]] = r
  lost = sorted(f"{arm} seed {seed} ({max(v)} steps)"
                for (arm, seed), v in by_step.items()
                if old.get("config") != spec
                or max(v) != budget_steps.get((arm, seed)))
  if lost:
    raise SystemExit(
        f"results/claims_{PAPER}_{record}.json holds runs this command "
        f"would not keep: {', '.join(lost)} (its config "
        f"{old.get('config')!r}, this one {spec!r}). Give --tag=NAME to "
        f"write claims_{PAPER}_{record}_NAME.json instead, or move the "
        "record away.")
  runs = {k: [v[st] for st in sorted(v)] for k, v in by_step.items()}
  if not runs:
    return {}, None
  # Where the reused runs came from (a record keeps its first origin).
  origin = old.get("reused_from") or {
      "machine": old.get("machine"), "command": old.get("command"),
      **({"how_written": old["how_written"]} if "how_written" in old
         else {})}
  return runs, {**origin, "runs": sorted(map(list, runs))}


def _sweep_values(name, text):
  """Sweep `name`'s comma-separated values, cast; exits naming its flag
  unless there are >= 2 distinct ones, each valid."""
  sweep = SWEEPS[name]
  values = [sweep.cast(v) for v in text.split(",") if v]
  if (len(values) < 2 or len(set(values)) != len(values)
      or not all(sweep.valid(v) for v in values)):
    raise SystemExit(f"--{sweep.flag}={text!r}: give >= 2 distinct "
                     f"{sweep.what}")
  return values


def claim_sweep(name, seeds, steps=0, variant="", values=None, tag=""):
  """PROTOCOL.md's change of sweep `name` (SWEEPS): the affine claim's run
  at each of `values` (its flag's text; default the sweep's), every arm in
  this process, same seeds and budget, judged by `sweep_verdict` and
  written as claims_000_<name>.json (claims_000_<name>_<tag>.json with a
  `tag`: another budget's own record and claim row).

  The record is rewritten after every finished (arm, seed) run ("not
  testable" with the runs still missing, until the last), and a rerun of
  the same command reuses the record's finished runs of the same config and
  steps (`_finished_runs`), so a stopped sweep resumes where it stopped."""
  sweep = SWEEPS[name]
  values = _sweep_values(name, sweep.default if values is None else values)
  spec, _, _, score = _affine_target(variant)
  cfgs = {v: load(spec, {**sweep.override(v),
                         **({"train.steps": steps} if steps else {})})
          for v in values}
  cfg = cfgs[values[-1]]
  plan = [(sweep.arm(v), seed) for v in values for seed in seeds]
  record = name + (f"_{V.check_tag(tag)}" if tag else "")
  runs, reused = _finished_runs(record, spec, {
      (sweep.arm(v), seed): cfgs[v].train.steps for v in values
      for seed in seeds})
  batch = " / ".join(map(str, sorted({c.train.batch_size
                                      for c in cfgs.values()})))
  budget = (f"{cfg.train.steps} steps × batch {batch} per "
            f"arm, lr {cfg.optim.lr:g} {cfg.optim.schedule}, "
            f"{sweep.setting(cfg, values)}, N = {cfg.data.dim}, CPU")
  text = ",".join(map(_shown, values))
  reproduce = (f"benchmarks/claims/gcm.py --claim={name} --seeds="
               f"{','.join(map(str, seeds))}"
               + (f" --steps={steps}" if steps else "")
               + (f" --variant={variant}" if variant else "")
               + f" --{sweep.flag}={text}"
               + (f" --tag={tag}" if tag else ""))

  def write():
    rows = [r for key in plan for r in runs.get(key, [])]
    missing = [f"{arm} seed {seed}" for arm, seed in plan
               if (arm, seed) not in runs]
    if missing:
      verdict, figure = V.NOT_TESTABLE, "partial: " + "; ".join(
          f"{arm} seed {seed}: cov err {rr[-1]['cov_rel_err']:.3g}"
          for (arm, seed), rr in runs.items())
      reason = ("runs still missing: " + ", ".join(missing) + " (the "
                "record is rewritten after every run; rerun the command "
                "to resume)")
    else:
      verdict, reason, stats = sweep_verdict(name, rows, values,
                                             cfg.train.steps)
      figure = "; ".join(
          f"{sweep.label(v)}: cov err "
          f"{V.format_summary(stats[sweep.arm(v)]['cov_rel_err'])}"
          for v in values)
    print(reason, flush=True)
    return V.write_claim(
        PAPER, record, rows, paper_figure=sweep.paper_figure,
        metric=("‖cov(g) − Σ‖_F/‖Σ‖_F and ‖mean(g) − μ‖₂ against "
                f"{sweep.against}, {AFFINE_SAMPLES:,} samples"),
        budget=budget, seeds=seeds, verdict=verdict, verdict_reason=reason,
        our_figure=figure,
        extra={"config": spec, "reproduce_command": reproduce,
               sweep.flag: values,
               **({"reused_from": reused} if reused else {})})

  path = None
  for v in values:
    for seed in seeds:
      key = (sweep.arm(v), seed)
      if key in runs:
        print(f"== {key[0]} seed={seed}: finished in the record, reused",
              flush=True)
        continue
      runs[key], _ = _train_seeds(spec, [seed], score, AFFINE_SAMPLES,
                                  key[0], steps, sweep.override(v))
      path = write()
  return path or write()


# PROTOCOL.md change 38: g frozen at A = scale · chol Σ, b = μ.
FIXED_G_ARMS = {"match": 1.0, "near": 0.9}
FIXED_G_LR_MULT = 1e-9


def fixed_g_params(g_params, a: np.ndarray, b: np.ndarray):
  """The affine generator's params (full structure) with A = `a`, b = `b`;
  refuses any other generator's tree."""
  inner = g_params.get("params", {})
  if set(inner) != {"kernel", "bias"} or inner["kernel"].shape != a.shape:
    raise ValueError("affine_f_fixed_g needs gcm.generator='affine' with "
                     f"affine_structure='full' and A {a.shape}; got params "
                     f"{jax.tree_util.tree_map(np.shape, g_params)}")
  return {**g_params, "params": {
      "kernel": jnp.asarray(a, inner["kernel"].dtype),
      "bias": jnp.asarray(b, inner["bias"].dtype)}}


def fixed_g_hooks(cfg, a: np.ndarray, b: np.ndarray, score):
  """`prepare` / `measure` hooks of `train_curve` for f trained at g frozen
  at (a, b): `prepare` sets g (online, target copy, EMA) to it; `measure`
  scores f_0(g(z)) with the online f, and reports the RMS displacement
  ‖f_0(x) − x‖ over samples, the score of g(z) itself (`g_` prefix) and g's
  largest parameter change since it was set (`g_drift`)."""
  # pylint: disable=g-import-not-at-top
  from gcflow_jax.methods import distribution_matching as dm
  from gcflow_jax.models import make_network
  _, net_apply, _ = make_network(cfg.model, (cfg.data.dim,), 1)
  f = dm.make_consistency_fn(net_apply)
  f0 = jax.jit(lambda pf, x: f(pf, x, 0.0))
  set_to = {}

  def prepare(run, state):
    del run
    g = fixed_g_params(state.params["g"], a, b)
    set_to["g"] = g
    # One copy per place: the train step donates the state's buffers.
    copy = lambda: jax.tree_util.tree_map(jnp.array, g)
    ema = state.ema_params
    if isinstance(ema, dict) and "g" in ema:
      ema = {**ema, "g": copy()}
    return state.replace(params={**state.params, "g": copy()},
                         extras={**state.extras, "g_target": copy()},
                         ema_params=ema)

  def measure(run, state, key, num):
    x = run.method.sample_fn(state.params, key, num)
    y = f0(state.params["f"], x)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    drift = max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
                for u, v in zip(jax.tree_util.tree_leaves(state.params["g"]),
                                jax.tree_util.tree_leaves(set_to["g"])))
    return {**score(y), **{f"g_{k}": v for k, v in score(x).items()},
            "disp_rms": float(np.sqrt(np.mean(np.sum((y - x) ** 2, 1)))),
            "g_drift": drift}

  return {"prepare": prepare, "measure": measure}


def fixed_g_readout(rows, steps, gap, residual):
  """PROTOCOL.md change 38's read-out on rows {arm: 'match'|'near', seed,
  step, cov_rel_err, ...}: e = `match`'s final covariance error, q = 1 −
  err_near / `gap` per seed, the predicted fixed-point error e / q (seeds
  paired), and whether it explains `residual` (the affine record's final
  covariance errors): within noise of it ("explained"), below it by the
  rule ("not explained": the alternation adds the rest), above it ("f alone
  predicts more"). Returns (text, summaries)."""
  final = {arm: {r["seed"]: r for r in rows
                 if r["arm"] == arm and r["step"] == steps}
           for arm in FIXED_G_ARMS}
  seeds = sorted(set(final["match"]) & set(final["near"]))
  if not seeds:
    raise ValueError(f"no seed has both arms at step {steps}")
  e = [final["match"][s]["cov_rel_err"] for s in seeds]
  q = [1.0 - final["near"][s]["cov_rel_err"] / gap for s in seeds]
  pred = [ei / qi if qi > 0 else float("inf") for ei, qi in zip(e, q)]
  st = {"e": V.summarize(e), "q": V.summarize(q),
        "predicted": V.summarize(pred), "residual": V.summarize(residual),
        "match_mean_err": V.summarize(
            [final["match"][s]["mean_err"] for s in seeds]),
        "match_disp_rms": V.summarize(
            [final["match"][s]["disp_rms"] for s in seeds])}
  if V.better_summary(st["predicted"], st["residual"]):
    what = ("not explained: the prediction is below the residual by the "
            "mean ± std rule, so the alternation of f and g adds the rest")
  elif V.better_summary(st["residual"], st["predicted"]):
    what = ("not explained: f alone predicts more than the residual (by "
            "the mean ± std rule)")
  else:
    what = ("explained by f at the fixed point: the prediction is within "
            "noise of the residual")
  text = (f"at the frozen match, f_0's covariance error e = "
          f"{V.format_summary(st['e'])} (mean error "
          f"{V.format_summary(st['match_mean_err'])}, RMS displacement "
          f"{V.format_summary(st['match_disp_rms'])}; 0 for the exact f); "
          f"share of the near arm's gap {gap:.3g} closed q = "
          f"{V.format_summary(st['q'])} (1 for the exact f); predicted "
          f"fixed-point covariance error e/q = "
          f"{V.format_summary(st['predicted'])} against the affine "
          f"record's {V.format_summary(st['residual'])}: {what}")
  return text, st


def claim_affine_f_fixed_g(seeds, steps=0, variant=""):
  """PROTOCOL.md change 38: the affine claim's f trained with g frozen at
  the exact solution (`match`) and at A = 0.9 chol Σ (`near`); f_0(g(z))
  scored against (μ, Σ), read out against claims_000_affine.json."""
  spec, mu, cov, score = _affine_target(variant)
  over = {"gcm.g_lr_mult": FIXED_G_LR_MULT}
  cfg = load(spec, {**over, **({"train.steps": steps} if steps else {})})
  if cfg.gcm.generator != "affine" or cfg.gcm.affine_structure != "full":
    raise SystemExit(f"{spec}: affine_f_fixed_g needs gcm.generator="
                     "'affine' and gcm.affine_structure='full'")
  affine = read_result(f"claims_{PAPER}_affine")
  residual = [r["cov_rel_err"] for r in affine.get("rows", [])
              if r.get("step") == cfg.train.steps]
  if affine and affine.get("config") != spec:
    raise SystemExit(f"results/claims_{PAPER}_affine.json is of "
                     f"{affine.get('config')!r}, not {spec!r}: pass the "
                     "same --variant as that record")
  if len(residual) < 2:
    raise SystemExit(f"results/claims_{PAPER}_affine.json has fewer than 2 "
                     f"seeds at step {cfg.train.steps}: run `gcm.py "
                     f"--claim=affine --steps={cfg.train.steps}"
                     f"{' --variant=' + variant if variant else ''}` first")
  chol = np.linalg.cholesky(cov)
  rows = []
  for arm, scale in FIXED_G_ARMS.items():
    hooks = fixed_g_hooks(cfg, scale * chol, mu, score)
    arm_rows, _ = _train_seeds(spec, seeds, score, AFFINE_SAMPLES, arm,
                               steps, over, **hooks)
    rows += arm_rows
  gap = float(np.linalg.norm((FIXED_G_ARMS["near"] ** 2 - 1.0) * cov)
              / np.linalg.norm(cov))
  text, st = fixed_g_readout(rows, cfg.train.steps, gap, residual)
  drift = max(r["g_drift"] for r in rows)
  flat = {arm: V.flattened(V.curve_of(rows, arm, "cov_rel_err"))
          for arm in FIXED_G_ARMS}
  reason = (f"{text}; f_0's covariance-error curves flattened: {flat}; g's "
            f"largest parameter change {drift:.2g} (frozen by gcm.g_lr_mult "
            f"= {FIXED_G_LR_MULT:g})")
  print(reason, flush=True)
  budget = (f"{cfg.train.steps} steps × batch {cfg.train.batch_size} "
            f"(T_f/T_g = {cfg.gcm.t_f}/{cfg.gcm.t_g}, g frozen), lr "
            f"{cfg.optim.lr:g} {cfg.optim.schedule}, gcm.dt {cfg.gcm.dt:g}, "
            f"f MLP {tuple(cfg.model.mlp.hidden)}, {cfg.gcm.coupling} "
            f"({cfg.gcm.ot_solver}), N = {cfg.data.dim}, CPU")
  return V.write_claim(
      PAPER, "affine_f_fixed_g", rows,
      paper_figure=("no number: the exact f_0 pushes g#ρ0 to ρ1, so f_0 = "
                    "id at the match (the paper's fixed-point argument)"),
      metric=("‖cov(f_0(g(z))) − Σ‖_F/‖Σ‖_F and ‖mean(f_0(g(z))) − μ‖₂, "
              "100,000 samples, g frozen"),
      budget=budget, seeds=seeds, verdict=V.MEASURED, verdict_reason=reason,
      our_figure=(f"e (match) {V.format_summary(st['e'])}; q (near) "
                  f"{V.format_summary(st['q'])}; predicted "
                  f"{V.format_summary(st['predicted'])} vs residual "
                  f"{V.format_summary(st['residual'])}"),
      extra={"config": spec, "arms": {k: f"A = {v:g} chol Σ, b = μ"
                                      for k, v in FIXED_G_ARMS.items()},
             "readout": st, "gap": gap, "g_drift_max": drift})


def claim_moons(seeds, steps=0):
  num = 10_000
  rows, cfg = _train_seeds(MOONS_CONFIG, seeds, moon_shares, num, "moons_ot",
                           steps)
  final = [r for r in rows if r["step"] == cfg.train.steps]
  lo, hi = MOON_BAND
  passed = all(lo <= r["upper_share"] <= hi for r in final)
  flat = V.flattened(V.curve_of(rows, "moons_ot", "upper_share"))
  s = V.summarize([r["upper_share"] for r in final])
  son = V.summarize([r["on_moon"] for r in final])
  verdict = V.outcome(passed, flat)
  reason = (f"upper-moon share {V.format_summary(s)}, per seed "
            f"{[round(r['upper_share'], 4) for r in final]} (band "
            f"[{lo}, {hi}] for every seed: {passed}); curve flattened: "
            f"{flat}; share within 0.2 of a moon {V.format_summary(son)}")
  budget = (f"{cfg.train.steps} steps × batch {cfg.train.batch_size}, "
            f"minibatch OT, MLP f {tuple(cfg.model.mlp.hidden)} / g "
            f"{tuple(cfg.gcm.generator_hidden)}, CPU")
  return V.write_claim(
      PAPER, "moons_coverage", rows,
      paper_figure="qualitative moons samples (no number)",
      metric="share of 10,000 g(z) samples nearest the upper moon",
      budget=budget, seeds=seeds, verdict=verdict, verdict_reason=reason,
      our_figure=f"upper share {V.format_summary(s)}",
      extra={"config": MOONS_CONFIG})


# PROTOCOL.md change 43: the MNIST latent run as a CPU stand-in.
MNIST_CONFIG = "configs/mnist_latent_gcm.py"
MNIST_LATENT = 256         # the paper's dim(z)
MNIST_SAMPLES = 10_000     # label shares
MNIST_FD_SAMPLES = 5_000   # fd_mnist: the first half of them
MIN_SHARE = 0.05           # half of uniform: no digit dropped
FD_RATIO = 0.5             # fd at most this share of its step-0 value
MNIST_METRICS = ("min_share", "kl_uniform", "fd_mnist")


def mnist_latent_overrides(latent_dim: int = MNIST_LATENT) -> dict:
  """The CPU stand-in of configs/mnist_latent_gcm.py (benchmarks/
  gcm_latent.py's: MLP f and MLP decoder, offline MNIST test images) at
  dim(z) = `latent_dim` (default 256, the paper's)."""
  return {**LATENT_SETUPS["mnist"][2], "gcm.latent_dim": latent_dim}


def mnist_arm(latent_dim: int) -> str:
  return f"z{latent_dim}"


def mnist_record(latent_dim: int) -> str:
  """The claim (record) name: dim(z) = 256 is the paper's claim; another
  dimension (e.g. 50, PROTOCOL.md change 44) is its own record."""
  base = "mnist_latent_coverage"
  return base if latent_dim == MNIST_LATENT else f"{base}_z{latent_dim}"


def mnist_score(reference: np.ndarray):
  """score(samples) of the MNIST latent claim: `evaluation.label_shares`
  ('mnist') of all samples and fd_mnist of the first len(reference) of
  them against `reference` (images in [-1, 1]; samples are clipped to it,
  as the sampler's tanh output already is). The reference's feature
  statistics are computed once, not at every evaluation."""
  n = len(reference)
  ref_stats = evaluation.compute_reference_stats(reference, "mnist")

  def score(samples):
    samples = np.asarray(samples)
    if not np.isfinite(samples).all():
      return {"min_share": float("nan"), "kl_uniform": float("nan"),
              "shares": None, "fd_mnist": float("nan")}
    samples = np.clip(samples, -1.0, 1.0)
    ls = evaluation.label_shares(samples, classifier="mnist")
    fd = evaluation.evaluate(samples[:n], ref_stats, metrics=["fd_mnist"])
    return {"min_share": ls["min_share"], "kl_uniform": ls["kl_uniform"],
            "shares": [round(float(v), 5) for v in ls["shares"]],
            "fd_mnist": float(fd["fd_mnist"])}
  return score


def _mnist_run(seed: int, steps: int, latent_dim: int = MNIST_LATENT):
  """(config, RunCache identity) of one MNIST latent run."""
  over = mnist_latent_overrides(latent_dim)
  cfg = load(MNIST_CONFIG, {**over, "seed": seed,
                            **({"train.steps": steps} if steps else {})})
  ident = {"config": MNIST_CONFIG, "overrides": over,
           "config_digest": split.config_digest(cfg),
           "eval_every": cfg.train.eval_every, "num": MNIST_SAMPLES,
           "fd_num": MNIST_FD_SAMPLES}
  return cfg, ident


def _mnist_reference(cfg):
  """The dataset's reference permutation of all test images: the first
  MNIST_FD_SAMPLES are fd_mnist's reference, the rest its floor."""
  return np.asarray(train.build(cfg).dataset.reference(
      MNIST_FD_SAMPLES * 2))


@functools.lru_cache(maxsize=4)
def _mnist_floors(seed: int) -> dict:
  """The scores of real images (seed `seed`'s reference permutation): the
  label shares of all of them and the fd_mnist of the second half against
  the first (fd_mnist's reference)."""
  ref = _mnist_reference(_mnist_run(seed, 0)[0])
  ls = evaluation.label_shares(ref, classifier="mnist")
  return {"num_images": len(ref),
          "label_shares_of_test_images": {
              "min_share": ls["min_share"], "kl_uniform": ls["kl_uniform"],
              "shares": [float(v) for v in ls["shares"]]},
          "fd_mnist_other_half": float(evaluation.evaluate(
              ref[MNIST_FD_SAMPLES:], ref[:MNIST_FD_SAMPLES],
              metrics=["fd_mnist"])["fd_mnist"])}


def with_samples_png(score, reference: np.ndarray, png: str,
                     eval_every: int, steps: int):
  """`score` that also draws the first 64 samples it scores (clipped to
  the image range) beside 64 `reference` images into `png`, titled with the
  step of `train_curve`'s k-th evaluation (0, eval_every, 2 eval_every,
  ..., `steps`); overwritten at every evaluation, so the last one stays."""
  from gcflow_jax import plotting  # pylint: disable=g-import-not-at-top
  calls = [0]

  def scored(samples):
    step = min(calls[0] * eval_every, steps)
    calls[0] += 1
    if np.isfinite(samples).all():
      plotting.save_samples_plot(
          png, np.clip(samples[:64], -1.0, 1.0), reference[:64],
          title=f"g(z), step {step}")
    return score(samples)
  return scored


def _mnist_train(seed: int, steps: int, latent_dim: int = MNIST_LATENT,
                 png: str = "") -> list:
  """One seed's rows (and, with `png`, its last evaluation's samples)."""
  cfg, _ = _mnist_run(seed, steps, latent_dim)
  ref = _mnist_reference(cfg)[:MNIST_FD_SAMPLES]
  score = mnist_score(ref)
  if png:
    score = with_samples_png(score, ref, png, cfg.train.eval_every,
                             cfg.train.steps)
  rows, _ = _train_seeds(MNIST_CONFIG, [seed], score, MNIST_SAMPLES,
                         mnist_arm(latent_dim), steps,
                         mnist_latent_overrides(latent_dim))
  return rows


def mnist_latent_verdict(rows, steps):
  """PROTOCOL.md change 43's rule on rows {seed, step, min_share,
  kl_uniform, fd_mnist, f0_identity_err}: reproduced if at `steps` every
  seed has min_share >= MIN_SHARE and fd_mnist <= FD_RATIO × its own
  step-0 value, with the seed-mean curves of MNIST_METRICS flattened.
  Returns (verdict, reason, {metric: summary, 'per_seed': ...})."""
  by_seed = {}
  for r in rows:
    by_seed.setdefault(r["seed"], {})[r["step"]] = r
  if len(by_seed) < 2:
    raise ValueError(f"{len(by_seed)} seeds; the rule needs >= 2")
  for seed, run in by_seed.items():
    if steps not in run or 0 not in run:
      raise ValueError(f"seed {seed} has no evaluation at step 0 and "
                       f"{steps}: {sorted(run)}")
  per_seed = {}
  for seed, run in sorted(by_seed.items()):
    last, first = run[steps], run[0]
    ratio = last["fd_mnist"] / first["fd_mnist"]
    per_seed[seed] = {
        "min_share": last["min_share"], "kl_uniform": last["kl_uniform"],
        "fd_mnist": last["fd_mnist"], "fd_step0": first["fd_mnist"],
        "fd_ratio": ratio, "covers": last["min_share"] >= MIN_SHARE,
        "images": ratio <= FD_RATIO}
  holds = all(p["covers"] and p["images"] for p in per_seed.values())
  curve = lambda m: [[run[st][m] for run in by_seed.values()]
                     for st in sorted(set.intersection(
                         *(set(run) for run in by_seed.values())))]
  flat = {m: V.flattened(curve(m)) for m in MNIST_METRICS}
  stats = {m: V.summarize([p[m] for p in per_seed.values()])
           for m in (*MNIST_METRICS, "fd_ratio")}
  f0 = {w: V.summarize([run[st]["f0_identity_err"]
                        for run in by_seed.values()])
        for w, st in (("first", min(st for st in
                                    next(iter(by_seed.values())) if st)),
                      ("last", steps))}
  stats.update({"per_seed": per_seed, "f0_identity_err": f0})
  reason = (
      f"at {steps} steps: smallest class share "
      f"{V.format_summary(stats['min_share'])} (per seed "
      f"{[round(p['min_share'], 4) for p in per_seed.values()]}; >= "
      f"{MIN_SHARE} on every seed: "
      f"{all(p['covers'] for p in per_seed.values())}); KL to uniform "
      f"{V.format_summary(stats['kl_uniform'])}; fd_mnist "
      f"{V.format_summary(stats['fd_mnist'])}, its share of step 0's "
      f"{V.format_summary(stats['fd_ratio'])} (<= {FD_RATIO} on every "
      f"seed: {all(p['images'] for p in per_seed.values())}); curves "
      f"flattened: {flat}; ‖g(z) − f_0(g(z))‖² (window mean) "
      f"{V.format_summary(f0['first'])} at the first evaluation, "
      f"{V.format_summary(f0['last'])} at the last")
  return V.outcome(holds, all(flat.values())), reason, stats


def _keep_samples_png(cache, arm: str, seeds, record: str):
  """Keeps the samples figure of the first of `seeds` whose run left one
  in `cache` (`with_samples_png`) beside the record, as
  <record>_samples_s<seed>.png in grey levels (the figure is grey: less
  than half the bytes); returns that file's name (None if no run left
  one: runs cached before the hook existed)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for seed in seeds:
    src = cache.path(arm, seed)[:-len(".json")] + ".png"
    if os.path.exists(src):
      dst = result_path(record)[:-len(".json")] + f"_samples_s{seed}.png"
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      with Image.open(src) as im:
        im.convert("L").save(dst + ".tmp", format="PNG", optimize=True)
      os.replace(dst + ".tmp", dst)
      return os.path.basename(dst)
  return None


def _run_meta(cache, arm: str, seeds) -> dict:
  """{seed: when, how long and at what load each cached run trained}."""
  out = {}
  for seed in seeds:
    meta = run_record.read_json(cache.path(arm, seed)).get("meta", {})
    out[str(seed)] = {"date": meta.get("machine", {}).get("date"),
                      "wall_sec": meta.get("wall_sec"),
                      "load_average_end": meta.get("load_average")}
  return out


def claim_mnist_latent(seeds, steps=0, cores=(), cache_dir="runs/claims000",
                       train_only=False, latent_dim=MNIST_LATENT):
  """PROTOCOL.md change 43 (change 44 with `latent_dim` = 50):
  configs/mnist_latent_gcm.py's CPU stand-in (`mnist_latent_overrides`)
  for each seed, scored every train.eval_every steps by `mnist_score`,
  judged by `mnist_latent_verdict`, written as claims_000_<mnist_record>.
  Each seed's rows are cached on their own (split.RunCache under
  <cache_dir>/mnist_latent_<steps>, arm z<latent_dim>), so a rerun
  resumes; `cores` trains every missing seed as its own pinned process (at
  most one per core at a time), then writes the record; `train_only`
  trains and caches `seeds` and writes no record (what such a process
  runs)."""
  arm = mnist_arm(latent_dim)
  cfg0, _ = _mnist_run(seeds[0], steps, latent_dim)
  steps = cfg0.train.steps
  cache = split.RunCache(os.path.join(cache_dir, f"mnist_latent_{steps}"))
  ident = lambda seed: _mnist_run(seed, steps, latent_dim)[1]
  if cores and not train_only:
    split.train_missing(cache, [(arm, seed) for seed in seeds],
                        lambda _, seed: [
                            os.path.abspath(__file__), "--claim=mnist_latent",
                            f"--seeds={seed}", f"--steps={steps}",
                            f"--cache_dir={cache_dir}",
                            f"--latent_dim={latent_dim}", "--train_only"],
                        cores)
  rows = []
  for seed in seeds:
    rows += cache.get_or_run(
        arm, seed, ident(seed),
        functools.partial(_mnist_train, seed, steps, latent_dim,
                          cache.path(arm, seed)[:-len(".json")] + ".png"),
        lambda: {"machine": machine_info(), "load_average": os.getloadavg()})
  if train_only:
    print(f"trained and cached {arm} seeds {seeds} in {cache.root}; the "
          "record is written by a run without --train_only", flush=True)
    return None
  verdict, reason, stats = mnist_latent_verdict(rows, steps)
  record = mnist_record(latent_dim)
  png = _keep_samples_png(cache, arm, seeds, f"claims_{PAPER}_{record}")
  floor = _mnist_floors(seeds[0])
  ls = floor["label_shares_of_test_images"]
  reason += (f"; floors: all {floor['num_images']:,} test images' smallest "
             f"share {ls['min_share']:.4f}, KL to uniform "
             f"{ls['kl_uniform']:.4f}; fd_mnist of the other "
             f"{MNIST_FD_SAMPLES:,} test images "
             f"{floor['fd_mnist_other_half']:.3g}. A CPU stand-in of the "
             "paper's setting (f an MLP, not a UNet; g an MLP decoder, not "
             "a conv generator)")
  print(reason, flush=True)
  budget = (f"{steps} steps × batch {cfg0.train.batch_size} (T_f/T_g = "
            f"{cfg0.gcm.t_f}/{cfg0.gcm.t_g}, minibatch OT), dim(z) = "
            f"{cfg0.gcm.latent_dim}, lr {cfg0.optim.lr:g}, f MLP "
            f"{tuple(cfg0.model.mlp.hidden)}, g MLP "
            f"{tuple(cfg0.gcm.generator_hidden)} (CPU stand-in), "
            f"{cfg0.data.offline_fallback}, CPU")
  return V.write_claim(
      PAPER, record, rows,
      paper_figure=(
          "MNIST samples at dim(z) = 256 (qualitative), 'without the mode "
          "collapse of GANs'" + ("" if latent_dim == MNIST_LATENT else
                                 f"; dim(z) = {latent_dim} is the paper "
                                 "summary's suggested check, not a paper "
                                 "experiment")),
      metric=(f"offline MNIST classifier labels of {MNIST_SAMPLES:,} g(z): "
              f"smallest class share and KL to uniform; fd_mnist of "
              f"{MNIST_FD_SAMPLES:,}"),
      budget=budget, seeds=seeds, verdict=verdict, verdict_reason=reason,
      our_figure=(f"smallest share {V.format_summary(stats['min_share'])}; "
                  f"KL to uniform {V.format_summary(stats['kl_uniform'])}; "
                  f"fd_mnist {V.format_summary(stats['fd_mnist'])}"),
      extra={"config": MNIST_CONFIG,
             "overrides": mnist_latent_overrides(latent_dim),
             "floors": floor, "per_seed": stats["per_seed"],
             "f0_identity_err": stats["f0_identity_err"],
             "cache": cache.root, "samples_png": png,
             "runs": _run_meta(cache, arm, seeds)})


CLAIMS = {"affine": claim_affine,
          **{name: functools.partial(claim_sweep, name) for name in SWEEPS},
          "affine_f_fixed_g": claim_affine_f_fixed_g,
          "moons": claim_moons, "mnist_latent": claim_mnist_latent}


def _add_args(ap):
  ap.add_argument("--steps", type=int, default=0,
                  help="training steps (0: the config's); evaluations stay "
                       "every train.eval_every steps")
  ap.add_argument("--variant", default="",
                  help="affine* only: a variant of the config "
                       "(e.g. 'cosine')")
  for name, sweep in SWEEPS.items():
    ap.add_argument(f"--{sweep.flag}", default=sweep.default,
                    help=f"{name} only (PROTOCOL.md change {sweep.change}): "
                         f"the values of {sweep.key}"
                         + (", the first is the baseline" if sweep.pairwise
                            else ""))
  ap.add_argument("--tag", default="",
                  help="affine sweeps only: a suffix (lowercase letters, "
                       "digits) giving another budget its own record, "
                       "claims_000_<claim>_<tag>.json")
  ap.add_argument("--cores", default="",
                  help="mnist_latent only: e.g. 0,1: every missing seed's "
                       "run as its own process, at most one per listed "
                       "core at a time (pinned, one XLA thread), then the "
                       "record")
  ap.add_argument("--cache_dir", default="runs/claims000",
                  help="mnist_latent only: each seed's rows, in <dir>/"
                       "mnist_latent_<steps>/ (a rerun resumes)")
  ap.add_argument("--latent_dim", type=int, default=MNIST_LATENT,
                  help="mnist_latent only: dim(z) (256, the paper's: "
                       "claims_000_mnist_latent_coverage.json; another: "
                       "its own record, _z<dim>)")
  ap.add_argument("--train_only", action="store_true",
                  help="mnist_latent only: train and cache --seeds' runs, "
                       "write no record")


def main():
  args = V.parse_args(CLAIMS, _add_args)
  affine = ("affine", "affine_f_fixed_g", *SWEEPS)
  if args.variant and args.claim not in affine:
    raise SystemExit(f"--variant={args.variant!r} applies to "
                     f"--claim={'|'.join(affine)} only")
  kw = {"variant": args.variant} if args.variant else {}
  if args.claim in SWEEPS:
    kw["values"] = getattr(args, SWEEPS[args.claim].flag)
    if V.check_tag(args.tag):
      kw["tag"] = args.tag
  elif args.tag:
    raise SystemExit(f"--tag={args.tag!r} applies to the affine sweeps "
                     f"only: --claim={'|'.join(SWEEPS)}")
  cores = split.parse_cores(args.cores)
  if args.latent_dim < 1:
    raise SystemExit(f"--latent_dim={args.latent_dim}: a positive integer")
  if args.claim == "mnist_latent":
    kw.update(cores=cores, cache_dir=args.cache_dir,
              train_only=args.train_only, latent_dim=args.latent_dim)
  elif cores or args.train_only or args.latent_dim != MNIST_LATENT:
    raise SystemExit("--cores, --train_only and --latent_dim apply to "
                     "--claim=mnist_latent only")
  print("wrote", CLAIMS[args.claim](args.seeds, args.steps, **kw))


if __name__ == "__main__":
  main()
