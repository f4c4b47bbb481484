r"""Few-step quality of vanilla reflow, reflow + marginal alignment and
piecewise reflow + alignment (paper 003), at 1, 2 and 4 student steps.

python benchmarks/reflow_quality.py [--datasets=checkerboard,digits]
    [--seeds=0,1,2] [--steps=checkerboard:600,digits:150] [--batch=0]
    [--variants=vanilla,align,piecewise_align] [--set=reflow.align_weight=1]
    [--num_eval=0] [--name=reflow_quality]

For every (dataset, variant, seed): builds the run from the variant's config
exactly as the trainer does (`train.build`: teacher restored from
`teacher.workdir`, trained there first if missing; same jitted
`make_train_step`), trains `--steps` steps, then samples the *online*
parameters (runs are too short for the EMA to have moved off the teacher
initialisation) with 1, 2 and 4 Euler steps and scores them with
`gcflow_jax.evaluation.evaluate` against fresh reference data:
checkerboard — Sinkhorn divergence and MMD (4,000 samples); digits —
Fréchet distance and KID in the offline digits-classifier feature space
(1,000 samples). The teacher itself (Heun, 50 steps, and Euler with 1/2/4
steps) is the reference row. Prints mean ± std over seeds and writes
results/reflow_quality.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np
from flax import serialization

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils, evaluation, train  # noqa: E402
from gcflow_jax.methods import reflow  # noqa: E402

CONFIGS = {
    "checkerboard": {
        "vanilla": "configs/checkerboard_reflow.py",
        "align": "configs/checkerboard_reflow_align.py",
        "piecewise": "configs/checkerboard_piecewise_reflow_align.py:noalign",
        "piecewise_align": "configs/checkerboard_piecewise_reflow_align.py",
    },
    "digits": {
        "vanilla": "configs/digits_reflow_align.py:vanilla",
        "align": "configs/digits_reflow_align.py",
        "piecewise": "configs/digits_reflow_align.py:piecewise,vanilla",
        "piecewise_align": "configs/digits_reflow_align.py:piecewise",
    },
}
METRICS = {"checkerboard": ("sinkhorn", "mmd"),
           "digits": ("fd_digits", "kid_digits")}
NUM_EVAL = {"checkerboard": 4000, "digits": 1000}
SAMPLE_STEPS = (1, 2, 4)


def _apply_sets(config, sets):
  for s in sets:
    k, _, v = s.partition("=")
    node = config
    *path, leaf = k.split(".")
    for p in path:
      node = node[p]
    old = node[leaf]
    node[leaf] = type(old)(eval(v)) if not isinstance(old, str) else v  # pylint: disable=eval-used


def _score(samples, reference, dataset):
  """Metrics of `samples`; images are clipped to [-1, 1] first, as the
  trainer's evaluation does, with the clipped fraction reported."""
  extra = {}
  if samples.ndim == 4:
    extra["clipped_frac"] = float(np.mean(np.abs(samples) > 1.0))
    samples = np.clip(samples, -1.0, 1.0)
  return {**evaluation.evaluate(samples, reference, list(METRICS[dataset]),
                                progress=False), **extra}


STUDENT_DIR = os.path.join("runs", "bench_reflow")


def student_path(dataset, variant, seed):
  """Where `run_one` leaves the trained student (reflow_telescoping.py
  reuses it)."""
  return os.path.join(STUDENT_DIR, f"{dataset}_{variant}_seed{seed}.msgpack")


def run_one(spec, dataset, seed, steps, batch, sets, save_to=None,
            num_eval=0):
  config = config_utils.load_config(spec)
  config.unlock()
  config.seed = seed
  config.train.steps = steps      # the LR schedule spans the benchmark run
  if batch:
    config.train.batch_size = batch
  _apply_sets(config, sets)
  config.lock()
  run = train.build(config)
  state = jax.jit(run.init_state)()
  step_fn = train.jit_step(train.make_train_step(run.method, run.tx, config.ema),
                    donate_argnums=(0,))
  bs = config.train.batch_size
  load_start = os.getloadavg()[0]
  t0 = time.perf_counter()
  metrics = None
  for s in range(steps):
    batch_x = run.dataset.global_batch(s, bs)
    state, metrics = step_fn(state, {"x": batch_x}, run.k_train)
  metrics = jax.device_get(metrics)
  train_s = time.perf_counter() - t0
  if save_to:
    os.makedirs(os.path.dirname(save_to), exist_ok=True)
    with open(save_to + ".tmp", "wb") as f:
      f.write(serialization.to_bytes(jax.device_get(state.params)))
    os.replace(save_to + ".tmp", save_to)
  n = num_eval or NUM_EVAL[dataset]
  reference = run.dataset.reference(n)
  sample = jax.jit(run.method.sample_fn, static_argnums=(2, 3))
  out = {"train_s": train_s,
         "loadavg_1m_start": load_start,
         "loadavg_1m_end": os.getloadavg()[0],
         "final_loss_reflow": float(metrics["loss/reflow"]),
         "final_align_kl_sum": float(metrics.get("align/kl_sum", np.nan))}
  for m in SAMPLE_STEPS:
    x = np.asarray(sample(state.params, jax.random.fold_in(run.k_eval, m), n,
                          m))
    for k, v in _score(x, reference, dataset).items():
      if k in METRICS[dataset] + ("clipped_frac",):
        out[f"{k}@{m}"] = float(v)
  return out, run


def teacher_rows(run, dataset, num_eval=0):
  teacher = run.teacher
  n = num_eval or NUM_EVAL[dataset]
  reference = run.dataset.reference(n)
  rows = []
  for method, steps in (("heun", 50), ("euler", 1), ("euler", 2),
                        ("euler", 4)):
    fn = jax.jit(reflow.make_teacher_sampler(teacher.velocity,
                                             run.dataset.shape, method),
                 static_argnums=(2, 3))
    x = np.asarray(fn(teacher.params, jax.random.key(123), n, steps))
    sc = _score(x, reference, dataset)
    rows.append({"dataset": dataset, "variant": f"teacher {method}",
                 "steps": steps,
                 **{k: float(sc[k]) for k in METRICS[dataset]
                    + ("clipped_frac",) if k in sc}})
  return rows


def _summary_rows(per_run):
  """mean ± std over seeds per (dataset, variant, sampling steps)."""
  rows = []
  keys = []
  for r in per_run:
    if (r["dataset"], r["variant"]) not in keys:
      keys.append((r["dataset"], r["variant"]))
  for dataset, variant in keys:
    runs = [r for r in per_run
            if r["dataset"] == dataset and r["variant"] == variant]
    for m in SAMPLE_STEPS:
      row = {"dataset": dataset, "variant": variant, "steps": m,
             "num_seeds": len(runs), "seeds": [r["seed"] for r in runs]}
      for met in METRICS[dataset]:
        vals = np.asarray([r[f"{met}@{m}"] for r in runs])
        row[met] = float(vals.mean())
        row[f"{met}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.
        row[f"{met} (mean±std)"] = f"{row[met]:.4g} ± {row[met + '_std']:.2g}"
      row["train_s"] = float(np.mean([r["train_s"] for r in runs]))
      if all(f"clipped_frac@{m}" in r for r in runs):
        row["clipped_frac"] = float(np.mean(
            [r[f"clipped_frac@{m}"] for r in runs]))
      rows.append(row)
  return rows


def _print_tables(rows, teacher):
  """The summary (and teacher reference) table of every dataset."""
  for dataset in sorted({r["dataset"] for r in rows}):
    print()
    print_table([r for r in rows if r["dataset"] == dataset],
                ["dataset", "variant", "steps", "num_seeds"] +
                [f"{m} (mean±std)" for m in METRICS[dataset]] +
                ["clipped_frac", "train_s"])
    trows = [r for r in teacher if r["dataset"] == dataset]
    if trows:    # none with --teacher_rows=0
      print()
      print_table(trows, ["dataset", "variant", "steps"] +
                  list(METRICS[dataset]))


def merge(args):
  """Aggregates the per-run rows of several result files (runs split per
  variant/seed to use a shared machine's cores) into one result."""
  import json  # pylint: disable=g-import-not-at-top
  per_run, teacher, sources = [], [], []
  for path in args.merge.split(","):
    with open(path) as f:
      obj = json.load(f)
    sources.append({"file": os.path.basename(path),
                    "command": obj.get("command"),
                    "partial": obj.get("partial", False)})
    for r in obj.get("per_run", []):
      r = dict(r, source=os.path.basename(path))
      r["variant"] = r["variant"] + r.get("tag", "")
      per_run.append(r)
    teacher += obj.get("teacher", [])
  rows = _summary_rows(per_run)
  _print_tables(rows, teacher)
  path = write_result(args.name, rows, {
      "per_run": per_run, "teacher": teacher, "sources": sources,
      "note": "merged from runs split per variant/seed (see sources and "
              "each per_run row's command-line settings); online (non-EMA) "
              "params after the stated steps from the teacher "
              "initialisation; Euler sampling with 1/2/4 steps"})
  print(f"wrote {path}")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--datasets", default="checkerboard,digits")
  # Aligned variants first: they create the pair caches (with the teacher's
  # log-density change) that the vanilla ones then share.
  ap.add_argument("--variants", default="align,vanilla,piecewise_align")
  ap.add_argument("--seeds", default="0,1,2")
  ap.add_argument("--steps", default="checkerboard:600,digits:150")
  ap.add_argument("--batch", type=int, default=0)
  ap.add_argument("--set", action="append", default=[],
                  help="config override applied to every variant, k=v")
  ap.add_argument("--name", default="reflow_quality")
  ap.add_argument("--teacher_rows", type=int, default=1,
                  help="0: skip the teacher reference rows (e.g. in runs "
                       "split per seed and merged with --merge)")
  ap.add_argument("--tag", default="",
                  help="suffix of the saved students' file names")
  ap.add_argument("--merge", default="",
                  help="comma-separated result JSONs of earlier (partial) "
                       "runs: aggregate their per-run rows and write "
                       "--name, without training")
  ap.add_argument("--num_eval", type=int, default=0,
                  help="samples per evaluation (0 = 4,000 checkerboard, "
                       "1,000 digits); Sinkhorn cost grows as n²")
  args = ap.parse_args()
  steps_of = dict((k, int(v)) for k, v in
                  (s.split(":") for s in args.steps.split(",")))
  seeds = [int(s) for s in args.seeds.split(",")]
  if args.merge:
    merge(args)
    return
  per_run, teacher = [], []
  for dataset in args.datasets.split(","):
    run = None
    for variant in args.variants.split(","):
      spec = CONFIGS[dataset][variant]
      for seed in seeds:
        res, run = run_one(spec, dataset, seed, steps_of[dataset], args.batch,
                           args.set,
                           save_to=student_path(dataset, variant + args.tag,
                                                seed),
                           num_eval=args.num_eval)
        per_run.append({"dataset": dataset, "variant": variant, "seed": seed,
                        "config": spec, "tag": args.tag,
                        "train_steps": steps_of[dataset],
                        "overrides": args.set,
                        "num_eval": args.num_eval or NUM_EVAL[dataset],
                        **res})
        print(f"{dataset} {variant} seed {seed}: " + ", ".join(
            f"{k}={v:.4g}" for k, v in res.items()), flush=True)
        # Partial result after every run, so an interrupted benchmark still
        # leaves its finished runs on disk (overwritten by the final write).
        write_result(args.name, _summary_rows(per_run), {
            "per_run": per_run, "partial": True, "seeds": seeds,
            "train_steps": steps_of, "overrides": args.set})
    if args.teacher_rows:
      teacher += teacher_rows(run, dataset, args.num_eval)
  rows = _summary_rows(per_run)
  _print_tables(rows, teacher)
  path = write_result(args.name, rows, {
      "per_run": per_run, "teacher": teacher, "seeds": seeds,
      "train_steps": steps_of, "overrides": args.set,
      "num_eval": args.num_eval or NUM_EVAL,
      "note": "online (non-EMA) params after --steps steps from the teacher "
              "initialisation; Euler sampling with 1/2/4 steps"})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
