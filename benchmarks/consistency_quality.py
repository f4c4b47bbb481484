r"""Quality at equal steps: iCT with IC vs minibatch OT vs GC (μ = 0.5).

python benchmarks/consistency_quality.py [--data=toy,digits] [--seeds=0,1,2]
    [--toy_steps=3000] [--digits_steps=800] [--digits_batch=64]
    [--digits_channels=16]
    [--workdir=/tmp/gcflow_consistency_quality]

Each (data, coupling, seed) is a full run of the trainer
(`train.train_and_evaluate`) from configs/toy_ict.py (2-D checkerboard, MLP)
or configs/digits_gc.py (sklearn digits 8×8, small SongUNet), identical but
for `ict.coupling` and `seed`, scored on 1-step samples with the evaluation
library: Sinkhorn divergence and MMD on the toy, the Fréchet / kernel
distances in the offline digits classifier's feature space (fd_digits,
kid_digits) on digits. Lower is better for all. Reports mean ± std over
seeds. A persistent compilation cache makes seeds 2 and 3 reuse the
compiled step of seed 1.
2-step samples ('@2') re-noise as the sampler does by default: with OT
pairing for OT-trained models (ict.sample_renoise='auto').
`--merge` replaces only the (data, coupling) groups of this invocation in
the existing JSON and keeps the others (their command and machine are kept
under 'previous_runs').
Prints a table, writes results/consistency_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from common import print_table, read_result, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils, train  # noqa: E402

METRICS = {"toy": ("sinkhorn", "mmd"), "digits": ("fd_digits", "kid_digits")}
CONFIGS = {"toy": "configs/toy_ict.py", "digits": "configs/digits_gc.py"}


def _config(dataset, coupling, seed, args):
  c = config_utils.load_config(CONFIGS[dataset])
  c.unlock()
  c.seed = seed
  c.ict.coupling = coupling
  c.ict.gc_mu = 0.5
  c.train.plot = False
  c.train.checkpoint_every = 10 ** 9  # final checkpoint only
  if dataset == "toy":
    c.train.steps = args.toy_steps
    c.eval.metrics = METRICS["toy"]
    c.eval.num_samples = 4000
  else:
    c.train.steps = args.digits_steps
    c.train.batch_size = args.digits_batch
    c.model.unet.model_channels = args.digits_channels
    c.eval.num_samples = 1000
  c.train.log_every = max(1, c.train.steps // 5)
  c.lock()
  return c


def _extra_scores(config, wd, dataset):
  """Scores the final state beyond the trainer's 1-step EMA evaluation:
  2-step EMA samples ('@2') and 1-step samples of the online parameters
  ('@online'), cached in wd/extra_scores.json."""
  path = os.path.join(wd, "extra_scores.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  from gcflow_jax import evaluation  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  run = train.build(config)
  state = train.restore_state(config, wd)
  n = config.eval.num_samples
  fn = jax.jit(run.method.sample_fn, static_argnums=(2, 3))
  ref = run.dataset.reference(n)
  out = {}
  for tag, params, steps in (("@2", state.ema_params, 2),
                             ("@online", state.params, 1)):
    samples = np.asarray(fn(params, jax.random.key(12345), n, steps,
                            state.extras))
    scores = evaluation.evaluate(samples, ref,
                                 metrics=list(METRICS[dataset]))
    for k in METRICS[dataset]:
      out[k + tag] = float(scores[k])
  with open(path, "w") as f:
    json.dump(out, f)
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--data", default="toy,digits")
  p.add_argument("--couplings", default="ic,ot,gc")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--toy_steps", type=int, default=3000)
  p.add_argument("--digits_steps", type=int, default=800)
  p.add_argument("--digits_batch", type=int, default=64)
  p.add_argument("--digits_channels", type=int, default=16)
  p.add_argument("--workdir", default="/tmp/gcflow_consistency_quality")
  p.add_argument("--cache_dir", default="/tmp/gcflow_jax_compile_cache")
  p.add_argument("--merge", action="store_true",
                 help="keep the existing JSON's other (data, coupling) rows")
  args = p.parse_args()
  jax.config.update("jax_compilation_cache_dir", args.cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  seeds = [int(s) for s in args.seeds.split(",")]

  runs, summary = [], []
  for dataset in args.data.split(","):
    for coupling in args.couplings.split(","):
      per_seed = []
      for seed in seeds:
        wd = os.path.join(args.workdir, f"{dataset}_{coupling}_s{seed}")
        if not os.path.exists(os.path.join(wd, "metrics.json")):
          t0 = time.time()
          train.train_and_evaluate(_config(dataset, coupling, seed, args),
                                   wd)
          print(f"[{dataset}/{coupling}/seed {seed}] {time.time() - t0:.0f}"
                " s", flush=True)
        with open(os.path.join(wd, "metrics.json")) as f:
          m = json.load(f)
        extra = _extra_scores(_config(dataset, coupling, seed, args), wd,
                              dataset)
        row = {"data": dataset, "coupling": coupling, "seed": seed,
               "steps": m["steps"], "train_sec": m["train_sec"]}
        for k in METRICS[dataset]:
          row[k] = m[f"eval/{k}"]
          row.update({k + t: extra[k + t] for t in ("@2", "@online")})
        runs.append(row)
        per_seed.append(row)
      s = {"data": dataset, "coupling": coupling, "seeds": len(per_seed),
           "steps": per_seed[0]["steps"]}
      for k in [m + t for m in METRICS[dataset]
                for t in ("", "@2", "@online")]:
        vals = [r[k] for r in per_seed]
        s[k + "_mean"] = statistics.mean(vals)
        s[k + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        s[k] = f"{s[k + '_mean']:.4g} ± {s[k + '_std']:.2g}"
      summary.append(s)
      print(s, flush=True)
  extra = {"settings": vars(args)}
  if args.merge:
    old = read_result("consistency_quality")
    done = {(s["data"], s["coupling"]) for s in summary}
    runs = [r for r in old.get("rows", [])
            if (r["data"], r["coupling"]) not in done] + runs
    summary = [s for s in old.get("summary", [])
               if (s["data"], s["coupling"]) not in done] + summary
    extra["previous_runs"] = old.get("previous_runs", []) + [
        {k: old.get(k) for k in ("command", "machine", "settings", "note",
                                 "load_average_1_5_15") if k in old}]
    extra["rerun_groups"] = sorted(f"{d}/{c}" for d, c in done)
    extra["note"] = (old.get("note", "") + " Groups " + ", ".join(
        extra["rerun_groups"]) + " were rerun by the command above (their "
        "'@2' re-noises as the current sampler does); the other groups keep "
        "the numbers of the runs in previous_runs.")
  for dataset in sorted({s["data"] for s in summary}):
    rows = [s for s in summary if s["data"] == dataset]
    print_table(rows, ["data", "coupling", "seeds", "steps"]
                + [m + t for t in ("", "@2", "@online")
                   for m in METRICS[dataset]])
    main_metric = METRICS[dataset][0]
    order = sorted(rows, key=lambda r: r[main_metric + "_mean"])
    print(f"{dataset}: ordering by {main_metric} (best first): "
          + " < ".join(r["coupling"] for r in order))
  path = write_result("consistency_quality", runs,
                      {"summary": summary, **extra})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
