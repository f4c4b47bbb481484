r"""GCM distribution matching, Gaussian -> moons: distance against steps for
random pairing vs minibatch OT (paper 000; benchmark 1 of its issue).

python benchmarks/gcm_moons.py [--steps=3500] [--eval_every=350]
    [--seeds=0,1,2] [--couplings=random,ot] [--num_samples=1000]

Trains configs/gaussian_to_moons_gcm.py (MLP f and g, batch 256, T_f/T_g =
50/20, Δt = 0.05) with the shared trainer's compiled step
(`train.make_train_step`: the same optimizer gate, target updates and keys
as `python -m gcflow_jax.main`), once per coupling and seed, and every
`eval_every` steps scores `num_samples` generator samples g(z) against as
many fresh moons samples with the evaluation library: Sinkhorn divergence
(ε = 0.01·mean squared distance of the reference) and MMD² (RBF, 3
bandwidths). It also logs ‖g(z) − f_0(g(z))‖² (the f_0 = id diagnostic).
For scale it scores, with the same sample size, a second independent moons
sample (the floor), N(0, I), and the Gaussian with the moons' exact mean
and covariance (the best an affine generator can do).

`train_curve` is reused by benchmarks/gcm_schedule.py and gcm_latent.py.
Writes results/gcm_moons.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils, evaluation, train  # noqa: E402

CONFIG = "configs/gaussian_to_moons_gcm.py"


def load(spec: str, overrides: Optional[Dict[str, object]] = None):
  """Config `spec` with dotted-key overrides, e.g. {'gcm.coupling': 'ot'}."""
  return config_utils.load_config(spec, overrides)


def vector_scores(reference: np.ndarray) -> Callable[[np.ndarray], dict]:
  def score(samples):
    if not np.isfinite(samples).all():
      return {"sinkhorn": float("nan"), "mmd": float("nan")}
    return {"sinkhorn": evaluation.sinkhorn_divergence(samples, reference),
            "mmd": evaluation.mmd_rbf(samples, reference)}
  return score


def _log(line: str) -> None:
  print(line, flush=True)


def reference_scores(config, num: int) -> Dict[str, dict]:
  """Scores of reference distributions against the moons reference."""
  from gcflow_jax.data import toy  # pylint: disable=g-import-not-at-top
  ds = train.build(config).dataset
  ref = np.asarray(ds.reference(num))
  score = vector_scores(ref)
  rng = np.random.default_rng(0)
  mean, cov = toy.moments(config.data.name, config.data.toy_param)
  eps = rng.standard_normal((num, 2))
  return {
      "second_moons_sample": score(np.asarray(ds.global_batch(10**6, num))),
      "standard_normal": score(eps.astype(np.float32)),
      "moment_matched_gaussian": score(
          (mean + eps @ np.linalg.cholesky(cov).T).astype(np.float32)),
  }


def train_curve(config, eval_every: int, score: Callable[[np.ndarray], dict],
                num_samples: int, log=None, prepare=None,
                measure=None) -> List[dict]:
  """Trains `config` with the trainer's step; every `eval_every` steps (and
  at 0) scores g(z) from the method's eval params and records the window
  means of the GCM diagnostics.

  `prepare(run, state) -> state` edits the initial state (e.g. sets g);
  `measure(run, state, key, num) -> dict` replaces the scoring of g(z) by
  `score` (the same `key` at every evaluation)."""
  run = train.build(config)
  state = run.initial_state()
  if prepare is not None:
    state = prepare(run, state)
  step_fn = run.jit_train_step(donate_argnums=(0,))
  sample = jax.jit(run.method.sample_fn, static_argnums=(2, 3))
  eval_key = jax.random.key(1234)   # same z at every evaluation
  bs = config.train.batch_size
  keys = ("loss/consistency", "loss/generator", "gcm/f0_identity_err")
  rows, window = [], {k: [] for k in keys}
  sec = 0.0

  def evaluate(step):
    row = {"step": step, "train_sec": round(sec, 2)}
    for k in keys:
      row[k.split("/")[-1]] = (float(np.mean(window[k])) if window[k]
                               else None)
      window[k] = []
    if measure is not None:
      row.update(measure(run, state, eval_key, num_samples))
    else:
      params = run.method.eval_params(state.params, state.ema_params)
      row.update(score(np.asarray(
          sample(params, eval_key, num_samples, 1, state.extras))))
    rows.append(row)
    (log or _log)(" ".join(f"{k}={v:.4g}" if isinstance(v, float)
                           else f"{k}={v}" for k, v in row.items()))

  evaluate(0)
  for step in range(config.train.steps):
    batch = {"x": jnp.asarray(run.dataset.global_batch(step, bs))}
    t0 = time.perf_counter()
    state, m = step_fn(state, batch, run.k_train)
    m = jax.device_get(m)
    if step > 0:   # exclude compilation
      sec += time.perf_counter() - t0
    for k in keys:
      window[k].append(float(m[k]))
    if (step + 1) % eval_every == 0 or step + 1 == config.train.steps:
      evaluate(step + 1)
  return rows


def train_curves(label: str, settings: List[str],
                 overrides_of: Callable[[str], Dict[str, object]],
                 seeds: List[int], args) -> Tuple[Dict[str, list], list]:
  """Trains CONFIG once per (setting, seed) with `overrides_of(setting)`,
  `args.steps` steps, scoring every `args.eval_every` steps on
  `args.num_samples` samples. Returns ({setting: [curve per seed]}, rows)."""
  curves, rows = {}, []
  for setting in settings:
    for seed in seeds:
      cfg = load(CONFIG, {**overrides_of(setting), "seed": seed,
                          "train.steps": args.steps})
      print(f"== {label}={setting} seed={seed}", flush=True)
      ref = np.asarray(train.build(cfg).dataset.reference(args.num_samples))
      curve = train_curve(cfg, args.eval_every, vector_scores(ref),
                          args.num_samples)
      curves.setdefault(setting, []).append(curve)
      rows += [{label: setting, "seed": seed, **r} for r in curve]
  return curves, rows


def summarize(curves: Dict[str, List[List[dict]]], metric: str, last: int
              ) -> List[dict]:
  """Per setting: mean ± std over seeds of the final `metric`, and of its
  mean and std over the last `last` evaluations (stability)."""
  out = []
  for name, runs in curves.items():
    final = np.array([r[-1][metric] for r in runs])
    tail = np.array([[x[metric] for x in r[-last:]] for r in runs])
    f0 = np.array([r[-1]["f0_identity_err"] for r in runs])
    out.append({"setting": name, "seeds": len(runs),
                f"final_{metric}": float(final.mean()),
                f"final_{metric}_std": float(final.std()),
                f"tail{last}_{metric}_mean": float(tail.mean()),
                f"tail{last}_{metric}_std": float(tail.std(axis=1).mean()),
                "final_f0_err": float(f0.mean()),
                "sec_per_run": float(np.mean([r[-1]["train_sec"]
                                              for r in runs]))})
  return out


def main():
  load_start = os.getloadavg()  # shared host: report the contention
  ap = argparse.ArgumentParser()
  ap.add_argument("--steps", type=int, default=3500)
  ap.add_argument("--eval_every", type=int, default=350)
  ap.add_argument("--seeds", default="0,1,2")
  ap.add_argument("--couplings", default="random,ot")
  ap.add_argument("--num_samples", type=int, default=1000)
  args = ap.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  baselines = reference_scores(load(CONFIG), args.num_samples)
  print("baselines:", baselines, flush=True)
  curves, rows = train_curves(
      "coupling", args.couplings.split(","),
      lambda coupling: {"gcm.coupling": coupling}, seeds, args)
  # Distance against steps: mean over seeds.
  table = []
  for coupling, runs in curves.items():
    for i, r in enumerate(runs[0]):
      vals = lambda k: np.array([run[i][k] for run in runs])
      table.append({"coupling": coupling, "step": r["step"],
                    "sinkhorn": float(vals("sinkhorn").mean()),
                    "sinkhorn_std": float(vals("sinkhorn").std()),
                    "mmd": float(vals("mmd").mean()),
                    "mmd_std": float(vals("mmd").std()),
                    "f0_err": (float(vals("f0_identity_err").mean())
                               if r["f0_identity_err"] is not None else None)})
  print()
  print_table(table, ["coupling", "step", "sinkhorn", "sinkhorn_std", "mmd",
                      "mmd_std", "f0_err"])
  summary = summarize(curves, "sinkhorn", 3)
  print()
  print_table(summary, list(summary[0]))
  print("baselines (same sample size):", baselines)
  path = write_result("gcm_moons", rows, {"table": table,
                                          "summary": summary,
                                          "baselines": baselines,
                                          "config": CONFIG,
                                          "load_average": {
                                              "start": load_start,
                                              "end": os.getloadavg()}})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
