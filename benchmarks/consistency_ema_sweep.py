r"""Toy iCT, IC vs minibatch OT: how the EMA used for sampling changes the
comparison.

python benchmarks/consistency_ema_sweep.py [--couplings=ic,ot]
    [--seeds=0,1,2] [--steps=1000] [--num_samples=2000]
    [--workdir=/tmp/gcflow_consistency_ema_sweep]

One training run per (coupling, seed) of configs/toy_ict.py (2-D
checkerboard, 3×256 MLP, batch 512, the trainer's step function, data
stream and keys), identical but for `ict.coupling` and `seed`. IC and OT
training never reads the EMA, so every EMA arm below is an average of the
*same* parameter trajectory, kept side by side during the run (same budget
for every arm by construction):

  published     the trainer's EMA: the GC paper's warm-up schedule (decay
                0.9999, power 2/3, every 5 calls; gcflow_jax/math/ema.py),
                whose averaging horizon is ~(1 + c)^(2/3) updates of 5
                steps: ~170 steps at step 1,000, ~1,000 at step 3,000;
  const_0.999   d = 0.999 every step (horizon ~1,000 steps);
  const_0.99    d = 0.99 (horizon ~100 steps);
  online        the online parameters (no averaging).

Scores (lower is better): Sinkhorn divergence and MMD of 2000 samples
against 2000 reference points, 1-step ('@1') and 2-step ('@2', σ = 0.821)
samples; OT runs re-noise the 2-step sampler with OT pairing (the sampler's
default for OT-trained models) and also report the old independent
re-noising ('@2ic'). The same sampling key for every arm. Metric, arms,
seeds and budget were fixed before any run (the budget, 1,000 steps
instead of configs/toy_ict.py's 4,000 or consistency_quality's 3,000, was
cut to what the shared 2-core host could run for both couplings × 3 seeds;
the long-horizon case is then const_0.999). Mean ± std over seeds.
Per-run results are cached in --workdir (a killed sweep resumes).
Prints a table, writes results/consistency_ema_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from common import print_table, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils, evaluation, methods, train  # noqa: E402
from gcflow_jax.math import ema as ema_lib  # noqa: E402

CONST_DECAYS = (0.999, 0.99)
ARMS = ("published",) + tuple(f"const_{d}" for d in CONST_DECAYS) + (
    "online",)
METRICS = ("sinkhorn", "mmd")


def _config(coupling, seed, args, renoise="auto"):
  c = config_utils.load_config("configs/toy_ict.py")
  c.unlock()
  c.seed = seed
  c.ict.coupling = coupling
  c.ict.sample_renoise = renoise
  c.train.steps = args.steps
  c.train.plot = False
  c.eval.num_samples = args.num_samples
  c.lock()
  return c


def _train(config):
  """Runs the trainer's step over the trainer's batches; returns the final
  state, the constant-decay EMAs and the training time."""
  run = train.build(config)
  state = run.initial_state()
  step_fn = run.jit_train_step(donate_argnums=(0,))

  @jax.jit
  def ema_step(emas, params):
    return tuple(
        ema_lib.update(jnp.int32(1), e, params, schedule="constant",
                       decay=d)
        for e, d in zip(emas, CONST_DECAYS))

  emas = tuple(jax.tree_util.tree_map(jnp.copy, state.params)
               for _ in CONST_DECAYS)
  bs = config.train.batch_size
  t0 = time.time()
  for s in range(config.train.steps):
    batch = {"x": jnp.asarray(run.dataset.local_batch(s, bs, 0, 1))}
    state, _ = step_fn(state, batch, run.k_train)
    emas = ema_step(emas, state.params)
  jax.block_until_ready(emas)
  return run, state, emas, time.time() - t0


def _score(method, params, extras, n, steps, ref):
  fn = jax.jit(method.sample_fn, static_argnums=(2, 3))
  x = np.asarray(fn(params, jax.random.key(12345), n, steps, extras))
  s = evaluation.evaluate(x, ref, metrics=list(METRICS))
  return {k: float(s[k]) for k in METRICS}


def _one(coupling, seed, args):
  path = os.path.join(args.workdir, f"{coupling}_s{seed}.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  config = _config(coupling, seed, args)
  run, state, emas, sec = _train(config)
  arms = {"published": state.ema_params, "online": state.params,
          **{f"const_{d}": e for d, e in zip(CONST_DECAYS, emas)}}
  n = args.num_samples
  ref = run.dataset.reference(n)
  ic_method = None
  if coupling == "ot":
    ic_method = methods.get(_config(coupling, seed, args, renoise="ic"),
                            run.dataset.shape)
  row = {"coupling": coupling, "seed": seed, "steps": config.train.steps,
         "train_sec": sec, "sample_renoise@2": run.method.info[
             "sample_renoise"]}
  for arm in ARMS:
    p = arms[arm]
    for tag, method, steps in (("@1", run.method, 1), ("@2", run.method, 2),
                               ("@2ic", ic_method, 2)):
      if method is None:
        continue
      for k, v in _score(method, p, state.extras, n, steps, ref).items():
        row[f"{arm}/{k}{tag}"] = v
  os.makedirs(args.workdir, exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(row, f)
  os.replace(path + ".tmp", path)
  return row


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--couplings", default="ic,ot")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--steps", type=int, default=1000)
  p.add_argument("--num_samples", type=int, default=2000)
  p.add_argument("--workdir", default="/tmp/gcflow_consistency_ema_sweep")
  args = p.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  rows, summary = [], []
  for coupling in args.couplings.split(","):
    per_seed = []
    for seed in seeds:
      t0 = time.time()
      row = _one(coupling, seed, args)
      print(f"[{coupling}/seed {seed}] {time.time() - t0:.0f} s", flush=True)
      rows.append(row)
      per_seed.append(row)
    for arm in ARMS:
      s = {"coupling": coupling, "ema": arm, "seeds": len(per_seed),
           "steps": args.steps}
      for tag in ("@1", "@2", "@2ic"):
        for m in METRICS:
          k = f"{arm}/{m}{tag}"
          if k not in per_seed[0]:
            continue
          vals = [r[k] for r in per_seed]
          mean = statistics.mean(vals)
          std = statistics.stdev(vals) if len(vals) > 1 else 0.0
          s[f"{m}{tag}_mean"], s[f"{m}{tag}_std"] = mean, std
          s[f"{m}{tag}"] = f"{mean:.3g} ± {std:.2g}"
      summary.append(s)
  print_table(summary, ["coupling", "ema", "seeds", "steps", "sinkhorn@1",
                        "sinkhorn@2", "sinkhorn@2ic", "mmd@1", "mmd@2"])
  path = write_result("consistency_ema_sweep", rows, {
      "summary": summary, "settings": vars(args), "arms": list(ARMS),
      "load_average_1_5_15": os.getloadavg(),
      "note": ("One training run per (coupling, seed); every EMA arm averages "
               "that run's parameters. '@1' 1-step, '@2' 2-step samples (OT "
               "runs re-noise with OT pairing), '@2ic' 2-step with "
               "independent re-noising (the sampler before "
               "ict.sample_renoise). 'published' is the trainer's EMA.")})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
