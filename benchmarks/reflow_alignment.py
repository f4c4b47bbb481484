r"""Few-step quality of vanilla reflow, piecewise reflow and piecewise reflow
+ marginal alignment (paper 003; issue 13's row format).

python benchmarks/reflow_alignment.py [--datasets=gmm,checkerboard,digits]
    [--variants=reflow,piecewise_align,piecewise] [--seeds=0,1,2]
    [--steps=gmm:2000,checkerboard:1200,digits:300] [--curve=4]
    [--align_weight=-1] [--start_frac=0.5] [--warmup_frac=0.1]
    [--name=reflow_alignment]

Datasets:
  gmm           the closed-form Gaussian-mixture teacher
                (`gcflow_jax.math.gaussian_mixture`; exact velocity, exact
                pairs from a 32-step RK4 solve, exact score); a 3×128 MLP
                student trained from scratch; metric `mmd` (RBF, median
                bandwidths) against 4,000 exact data samples; the extra
                variant `piecewise_blend` is piecewise reflow with
                knot_gap = 0 (the blended version), and every K = 2 run
                records the velocity error at the knot.
  checkerboard  configs/checkerboard_reflow.py (K = 1) and
                configs/checkerboard_piecewise_reflow_align.py(:noalign)
                (K = 2), students initialised from the flow-matching
                teacher; metric `sinkhorn` (4,000 samples).
  digits        configs/digits_reflow_align.py :vanilla / :noalign /
                :align; metric `fd_digits` (1,000 samples).
  checkerboard_fast  the checkerboard configs' teacher, student network,
                batch, λ, align_batch and lr, but the seeds trained side by
                side (vmapped, one compile) on one cache of `--pairs`
                teacher trajectories made in the process (the seeds differ
                in their batches), Adam with cosine decay and no warm-up;
                reported under dataset `checkerboard` with this noted.
Every arm of a dataset has the same budget (`--steps`), optimiser and
seeds; the regulariser starts at `start_frac` of the budget and ramps over
`warmup_frac` (`reflow.align_start_steps/align_warmup_steps`), λ from the
config unless `--align_weight` >= 0. Samples use Euler steps (1 and 2 = K);
config runs (checkerboard, digits) score both the online parameters and the
trainer's EMA copy (what `train.evaluate` deploys) with the same keys, rows
and curves tagged `params`; the vmapped runners score the online parameters
(their lr decays to 0). The curve (metric at sample_steps = K of the
variant, every budget/curve steps) is kept per run and parameter set in
`curves`. `--merge`: a later file replaces an earlier one's runs of the same
(dataset, variant, seed).

`reflow_align` (K = 1) has no rows: the regulariser acts at interior knots
and K = 1 has none (docs/reflow_marginal_alignment.md §4); the config
validation refuses it.

Rows (`rows`): dataset, variant, K, sample_steps, seed, params, metric,
value, train_steps, train_s. `summary`: mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, read_result, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils, evaluation, teachers, train  # noqa: E402
from gcflow_jax import data as gcdata  # noqa: E402
from gcflow_jax.evaluation import distances  # noqa: E402
from gcflow_jax.math import interpolants as interp_lib  # noqa: E402
from gcflow_jax.math.gaussian_mixture import GaussianMixtureFlow  # noqa: E402
from gcflow_jax.methods import reflow  # noqa: E402
from gcflow_jax.models import make_network  # noqa: E402

CONFIGS = {
    "checkerboard": {
        "reflow": "configs/checkerboard_reflow.py",
        "piecewise": "configs/checkerboard_piecewise_reflow_align.py:noalign",
        "piecewise_align": "configs/checkerboard_piecewise_reflow_align.py",
    },
    "digits": {
        "reflow": "configs/digits_reflow_align.py:vanilla",
        "piecewise": "configs/digits_reflow_align.py:noalign",
        "piecewise_align": "configs/digits_reflow_align.py:align",
    },
}
METRIC = {"gmm": "mmd", "checkerboard": "sinkhorn",
          "checkerboard_fast": "sinkhorn", "digits": "fd_digits"}
NUM_EVAL = {"gmm": 4000, "checkerboard": 4000, "checkerboard_fast": 4000,
            "digits": 1000}
SAMPLE_STEPS = (1, 2)
# Parameter sets scored by the trainer-config runs (the vmapped runners use
# a cosine-decayed lr and score the online parameters only).
PARAMS = ("online", "ema")
NOTE = ("rows tagged `params`: 'online' (the vmapped gmm/checkerboard "
        "runners, cosine-decayed lr, and rows written before the EMA was "
        "scored) or 'ema' (the trainer's EMA copy, which train.evaluate "
        "deploys; config runs score both, same sampling keys); Euler "
        "sampling")

# The closed-form teacher: three well-separated isotropic modes.
GMM = GaussianMixtureFlow(np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]]),
                          np.array([0.3, 0.3, 0.3]), np.ones(3) / 3)
GMM_K = {"reflow": 1, "piecewise": 2, "piecewise_align": 2,
         "piecewise_blend": 2}
GMM_GAP = 0.1
GMM_LAMBDA = 0.1


def _score(x, ref, dataset):
  if x.ndim == 4:             # images: clipped like the trainer's evaluation
    x = np.clip(x, -1.0, 1.0)
  if dataset == "gmm":
    return float(distances.mmd_rbf(x, ref))
  m = METRIC[dataset]
  return float(evaluation.evaluate(x, ref, [m], progress=False)[m])


def _schedule(steps, start_frac, warmup_frac):
  return int(start_frac * steps), max(1, int(warmup_frac * steps))


def run_config(dataset, variant, seed, steps, curve, args):
  """One run through the trainer's own build and step (configs)."""
  config = config_utils.load_config(CONFIGS[dataset][variant])
  config.unlock()
  config.seed = seed
  config.train.steps = steps        # the LR schedule spans the run
  if config.reflow.align_weight > 0:
    start, warm = _schedule(steps, args.start_frac, args.warmup_frac)
    config.reflow.align_start_steps = start
    config.reflow.align_warmup_steps = warm
    if args.align_weight >= 0:
      config.reflow.align_weight = args.align_weight
  # Benchmark-wide: a smaller pair cache per seed, and no logged KL value
  # (the teacher's Δ^T is not needed for the gradient), identical for all
  # arms of a dataset.
  config.reflow.cache_num_pairs = args.pairs
  config.reflow.cache_shard_size = args.pairs
  config.reflow.estimate_value = False
  config.lock()
  run = train.build(config)
  state = run.initial_state()
  step_fn = run.jit_train_step(donate_argnums=(0,))
  n = args.num_eval or NUM_EVAL[dataset]
  ref = run.dataset.reference(n)
  sample = jax.jit(run.method.sample_fn, static_argnums=(2, 3))
  k_int = config.reflow.num_intervals
  bs = config.train.batch_size
  evals = _eval_points(steps, curve)
  # Both parameter sets, each with the same sampling keys (paired).
  which = {"online": lambda st: st.params, "ema": lambda st: st.ema_params}
  curve_rows = {p: [] for p in PARAMS}
  train_s, metrics = 0.0, None
  s = 0
  for stop in evals:
    t0 = time.perf_counter()
    while s < stop:
      state, metrics = step_fn(state, {"x": run.dataset.global_batch(s, bs)},
                               run.k_train)
      s += 1
    jax.block_until_ready(state.params)
    train_s += time.perf_counter() - t0
    for p in PARAMS:
      x = np.asarray(sample(which[p](state),
                            jax.random.fold_in(run.k_eval, k_int), n, k_int))
      curve_rows[p].append({"step": stop, "sample_steps": k_int,
                            "value": _score(x, ref, dataset),
                            "loss_reflow": float(metrics["loss/reflow"])})
  finals = {p: {} for p in PARAMS}
  for p in PARAMS:
    for m in SAMPLE_STEPS:
      if m == k_int:
        finals[p][m] = curve_rows[p][-1]["value"]
        continue
      x = np.asarray(sample(which[p](state), jax.random.fold_in(run.k_eval, m),
                            n, m))
      finals[p][m] = _score(x, ref, dataset)
  return k_int, finals, curve_rows, train_s, {
      "config": CONFIGS[dataset][variant],
      "ema_decay": float(config.ema.decay),
      "align_weight": float(config.reflow.align_weight),
      "align_start_steps": int(config.reflow.align_start_steps),
      "align_warmup_steps": int(config.reflow.align_warmup_steps)}


def _eval_points(steps, curve):
  return sorted({max(1, int(round(steps * (i + 1) / curve)))
                 for i in range(curve)})


def _vmapped_setup(dataset, variant, args):
  """(apply_fn, init(key) -> params, teacher velocity, lr, extras) of the
  side-by-side runner: `gmm` (exact teacher, MLP from scratch) or
  `checkerboard_fast` (the checkerboard configs' teacher and student, the
  student initialised from it, pairs from a cache made once)."""
  if dataset == "gmm":
    cfg = ml_collections.ConfigDict({
        "name": "mlp", "dropout": 0.0,
        "mlp": {"hidden": (128, 128, 128), "time_dim": 32,
                "time_scale": 1000.0}})
    _, apply_fn, init_fn = make_network(cfg, (2,), 1)
    return (apply_fn, init_fn, lambda p, x, t: GMM.velocity(x, t), 1e-3,
            {"teacher": None}, None)
  config = config_utils.load_config(CONFIGS["checkerboard"][variant])
  config.unlock()
  config.teacher.train_if_missing = False
  t = teachers.load(config, (2,))
  k_int = config.reflow.num_intervals
  segs = jax.jit(lambda x: reflow.teacher_segments(
      lambda y, tt: t.velocity(t.params, y, tt), x,
      reflow.make_knots(k_int), config.reflow.teacher_steps,
      config.reflow.teacher_method))(jax.random.normal(
          jax.random.fold_in(jax.random.key(0), 0x9A1C), (args.pairs, 2)))
  extras = {"teacher": t.params,
            "pairs": {k: jnp.moveaxis(v, 1, 0) for k, v in segs.items()}}
  return (t.apply_fn, lambda key: t.params, t.velocity, config.optim.lr,
          extras, config)


def run_gmm(variant, seeds, steps, curve, args, dataset="gmm"):
  """Seeds trained side by side (vmapped, one compile per variant): the
  closed-form teacher (`gmm`: exact pairs, MLP from scratch) or the
  checkerboard teacher (`checkerboard_fast`). Returns one result tuple per
  seed (as `run_config`)."""
  k_int = GMM_K[variant]
  gap = 0.0 if variant == "piecewise_blend" or k_int == 1 else GMM_GAP
  lam = 0.0
  if variant == "piecewise_align":
    lam = args.align_weight if args.align_weight >= 0 else GMM_LAMBDA
  start, warm = _schedule(steps, args.start_frac, args.warmup_frac)
  apply_fn, init_fn, tvel, lr, ext, config = _vmapped_setup(
      dataset, variant, args)
  batch, align_batch = 256, 64
  if config is not None:
    r = config.reflow
    batch, align_batch = config.train.batch_size, r.align_batch
    if lam:
      lam = args.align_weight if args.align_weight >= 0 else r.align_weight
  loss_fn = reflow.make_reflow_loss(
      apply_fn, tvel, interp_lib.linear(),
      k_int, teacher_steps=32 // k_int, teacher_method="rk4",
      knot_gap=gap, align_weight=lam, align_start_steps=start,
      align_warmup_steps=warm, align_batch=align_batch, logdet="exact",
      estimate_value=False,
      pair_source="online" if config is None else "cache")
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
  keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
  params = jax.vmap(lambda kd: init_fn(jax.random.wrap_key_data(kd)))(keys)
  opt = jax.vmap(tx.init)(params)
  roots = jnp.stack([jax.random.key_data(jax.random.fold_in(
      jax.random.key(s), 1)) for s in seeds])

  def one_seed(p, o, kd, i):
    def obj(q):
      per, aux = loss_fn(q, {"x": jnp.zeros((batch, 2))},
                         jax.random.fold_in(jax.random.wrap_key_data(kd), i),
                         step=i, extras=ext)
      return jnp.mean(per), aux
    (_, aux), g = jax.value_and_grad(obj, has_aux=True)(p)
    up, o = tx.update(g, o, p)
    return optax.apply_updates(p, up), o, aux["loss/reflow"]

  def one(carry, i):
    p, o = carry
    p, o, lr = jax.vmap(one_seed, (0, 0, 0, None))(p, o, roots, i)
    return (p, o), lr

  @jax.jit
  def train_chunk(carry, idx):
    return jax.lax.scan(one, carry, idx)

  sample = jax.jit(reflow.make_student_sampler(
      apply_fn, (2,), reflow.make_knots(k_int), reflow.knot_gaps(k_int, gap)),
                   static_argnums=(2, 3))
  n = args.num_eval or NUM_EVAL[dataset]
  if dataset == "gmm":
    refs = [np.asarray(GMM.sample(jax.random.key(10_000 + s), n))
            for s in seeds]
  else:
    data = gcdata.make_dataset(config.data, config.seed)
    refs = [np.asarray(data.reference(n))] * len(seeds)
  take = lambda tree, j: jax.tree.map(lambda a: a[j], tree)
  evals = _eval_points(steps, curve)
  curves = [[] for _ in seeds]
  train_s, s, carry = 0.0, 0, (params, opt)
  for stop in evals:
    t0 = time.perf_counter()
    carry, losses = train_chunk(carry, jnp.arange(s, stop))
    jax.block_until_ready(losses)
    train_s += time.perf_counter() - t0
    s = stop
    for j, seed in enumerate(seeds):
      x = np.asarray(sample(take(carry[0], j),
                            jax.random.key(20_000 + seed), n, k_int))
      curves[j].append({"step": stop, "sample_steps": k_int,
                        "value": _score(x, refs[j], dataset),
                        "loss_reflow": float(jnp.mean(losses[-50:, j]))})
  out = []
  for j, seed in enumerate(seeds):
    p = take(carry[0], j)
    finals = {}
    for m in SAMPLE_STEPS:
      if m == k_int:
        finals[m] = curves[j][-1]["value"]
        continue
      x = np.asarray(sample(p, jax.random.key(20_000 + seed), n, m))
      finals[m] = _score(x, refs[j], dataset)
    extra = {"align_weight": lam, "align_start_steps": start,
             "align_warmup_steps": warm, "knot_gap": gap,
             "train_s_note": "seeds trained side by side (vmapped); "
                             "train_s is the wall time of all of them"}
    if k_int == 2 and dataset == "gmm":
      # Velocity error at the interior knot: ‖u_θ(x, t_1) − (Φ(x) − x)/h‖
      # RMS over teacher states x ~ p_{t_1}, the target the K-step sampler
      # reads there.
      segs = reflow.teacher_segments(
          lambda x, t: GMM.velocity(x, t),
          jax.random.normal(jax.random.key(30_000 + seed), (n, 2)),
          reflow.make_knots(2), 32, "rk4")
      xk, x1 = segs["states"][1], segs["states"][2]
      v = apply_fn(p, xk, jnp.full((n,), 0.5))
      extra["knot_velocity_rmse"] = float(jnp.sqrt(jnp.mean(jnp.sum(
          (v - (x1 - xk) / 0.5) ** 2, axis=1))))
    out.append((k_int, {"online": finals}, {"online": curves[j]}, train_s,
                extra))
  return out


def params_of(r: dict) -> str:
  """'online' or 'ema' (rows and curves written before both were scored
  are the online parameters)."""
  return r.get("params", "online")


def summarise(rows):
  out = []
  keys = sorted({(r["dataset"], r["variant"], params_of(r),
                  r["sample_steps"]) for r in rows})
  for ds, var, par, m in keys:
    vals = np.asarray([r["value"] for r in rows if r["dataset"] == ds and
                       r["variant"] == var and params_of(r) == par and
                       r["sample_steps"] == m])
    out.append({"dataset": ds, "variant": var, "params": par,
                "sample_steps": m, "metric": METRIC[ds],
                "num_seeds": len(vals),
                "mean": float(vals.mean()),
                "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0})
  return out


def _run_key(r: dict) -> tuple:
  return r["dataset"], r["variant"], r["seed"]


def merge(args):
  """One result from the parts' rows and curves (each part's command and
  arguments kept in `sources`)."""
  import json  # pylint: disable=g-import-not-at-top
  rows, curves, sources = [], [], []
  for path in args.merge.split(","):
    with open(path) as f:
      obj = json.load(f)
    part_rows, part_curves = obj["rows"], obj.get("curves", [])
    if args.relabel:
      # A sweep: the variant names carry λ_align and the start step (from
      # each run's curves).
      lam = {(c["dataset"], c["variant"], c["seed"]):
             (c.get("align_weight"), c.get("align_start_steps"))
             for c in part_curves}

      def tag(r, lam=lam):
        w, start = lam.get((r["dataset"], r["variant"], r["seed"]),
                           (0, 0))
        # Already tagged (a merged sweep merged again): leave the name.
        return (f"{r['variant']}_lam{w:g}_start{start}"
                if w and "_lam" not in r["variant"] else r["variant"])
      part_rows = [dict(r, variant=tag(r)) for r in part_rows]
      part_curves = [dict(c, variant=tag(c)) for c in part_curves]
    # A later file replaces an earlier one's runs of the same (dataset,
    # variant, seed): a rerun merged after the file it updates.
    redo = {_run_key(r) for r in part_rows}
    rows = [r for r in rows if _run_key(r) not in redo] + part_rows
    curves = [c for c in curves if _run_key(c) not in redo] + part_curves
    sources.append({"file": os.path.basename(path),
                    "command": obj.get("command"),
                    "partial": obj.get("partial", False),
                    "machine": obj.get("machine"), "args": obj.get("args")})
  summary = summarise(rows)
  print_table(summary, ["dataset", "variant", "params", "sample_steps",
                        "metric", "num_seeds", "mean", "std"])
  path = write_result(args.name, rows, {
      "curves": curves, "summary": summary, "sources": sources,
      "note": "merged from runs split per dataset/variant (see sources); "
              + NOTE + "; same budget, optimiser and seeds for every arm of "
              "a dataset; reflow_align (K = 1) is undefined (no interior "
              "knot), see docs/reflow_marginal_alignment.md"})
  print(f"wrote {path}")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--datasets", default="gmm,checkerboard,digits")
  # Aligned variants before the unaligned ones: the aligned run creates the
  # pair cache with the teacher's Δ^T, which the unaligned one can share.
  ap.add_argument("--variants", default="piecewise_align,piecewise,reflow")
  ap.add_argument("--seeds", default="0,1,2")
  ap.add_argument("--steps", default="gmm:2000,checkerboard:1200,digits:300")
  ap.add_argument("--curve", type=int, default=4)
  ap.add_argument("--align_weight", type=float, default=-1.0,
                  help="λ_align for the aligned variant (< 0: the config's)")
  ap.add_argument("--start_frac", type=float, default=0.5)
  ap.add_argument("--warmup_frac", type=float, default=0.1)
  ap.add_argument("--pairs", type=int, default=16384,
                  help="cached teacher trajectories per (K, seed)")
  ap.add_argument("--num_eval", type=int, default=0,
                  help="samples per evaluation (0: gmm/checkerboard 4,000, "
                       "digits 1,000)")
  ap.add_argument("--keep", type=int, default=0,
                  help="1: keep the rows of an existing result with this "
                       "--name that this run does not redo")
  ap.add_argument("--name", default="reflow_alignment")
  ap.add_argument("--relabel", type=int, default=0,
                  help="with --merge: append λ_align and the start step "
                       "to aligned variants' names (for the sweep)")
  ap.add_argument("--merge", default="",
                  help="comma-separated result JSONs of runs split per "
                       "dataset/variant (to use several processes): write "
                       "their rows and curves as --name, without training")
  args = ap.parse_args()
  if args.merge:
    merge(args)
    return
  steps_of = {k: int(v) for k, v in (s.split(":")
                                     for s in args.steps.split(","))}
  seeds = [int(s) for s in args.seeds.split(",")]
  old = read_result(args.name) if args.keep else {}
  rows, curves = list(old.get("rows", [])), list(old.get("curves", []))
  redo = {(d, v, s) for d in args.datasets.split(",")
          for v in args.variants.split(",") for s in seeds}
  rows = [r for r in rows if (r["dataset"], r["variant"], r["seed"])
          not in redo]
  curves = [c for c in curves if (c["dataset"], c["variant"], c["seed"])
            not in redo]
  # Seed-major: an interrupted benchmark has every arm at the seeds done
  # (gmm: all seeds of a variant at once).
  for dataset in args.datasets.split(","):
    steps = steps_of[dataset]
    if dataset in ("gmm", "checkerboard_fast"):
      jobs = [(v, seeds) for v in args.variants.split(",")]
    else:
      jobs = [(v, [s]) for s in seeds for v in args.variants.split(",")]
    for variant, job_seeds in jobs:
      if dataset in ("gmm", "checkerboard_fast"):
        results = run_gmm(variant, job_seeds, steps, args.curve, args,
                          dataset)
      else:
        results = [run_config(dataset, variant, job_seeds[0], steps,
                              args.curve, args)]
      for seed, res in zip(job_seeds, results):
        k_int, finals, curve_rows, train_s, extra = res
        if dataset == "checkerboard_fast":
          extra = dict(extra, runner="checkerboard_fast (vmapped seeds)")
        row_ds = "checkerboard" if dataset == "checkerboard_fast" else dataset
        for par in finals:
          for m, v in finals[par].items():
            rows.append({"dataset": row_ds, "variant": variant, "K": k_int,
                         "sample_steps": m, "seed": seed, "params": par,
                         "metric": METRIC[dataset], "value": v,
                         "train_steps": steps, "train_s": train_s})
          curves.append({"dataset": row_ds, "variant": variant, "seed": seed,
                         "params": par, "K": k_int, "metric": METRIC[dataset],
                         "points": curve_rows[par], **extra})
          print(f"{dataset} {variant} seed {seed} {par}: K={k_int} " +
                " ".join(f"{m}-step={v:.4g}" for m, v in finals[par].items())
                + f" train_s={train_s:.0f} curve=" +
                ",".join(f"{c['value']:.3g}" for c in curve_rows[par]) +
                (f" knot_rmse={extra['knot_velocity_rmse']:.3f}"
                 if "knot_velocity_rmse" in extra else ""), flush=True)
      # Written after every job: an interrupted benchmark keeps its rows.
      write_result(args.name, rows, {"curves": curves,
                                     "summary": summarise(rows),
                                     "partial": True, "args": vars(args)})
  summary = summarise(rows)
  print_table(summary, ["dataset", "variant", "params", "sample_steps",
                        "metric", "num_seeds", "mean", "std"])
  path = write_result(args.name, rows, {
      "curves": curves, "summary": summary, "args": vars(args),
      "note": NOTE + "; same budget, optimiser and seeds for every arm of "
              "a dataset; reflow_align (K = 1) is undefined (no interior "
              "knot), see docs/reflow_marginal_alignment.md"})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
