r"""Convergence of Lagrangian (LMD) vs Eulerian (EMD) map distillation.

python benchmarks/fmm_convergence.py [--setups=checkerboard,digits]
    [--steps=2000] [--eval_every=200] [--digits_steps=600]
    [--digits_eval_every=100] [--digits_batch=0] [--digits_warmup=-1]
    [--num_samples=100000]
    [--ema_decay=0.99] [--save]
python benchmarks/fmm_convergence.py --drop=digits --drop_reason="..."

Trains the LMD and EMD students of configs/checkerboard_fmm_lmd.py /
configs/digits_fmm_lmd.py from the same initialisation, data stream and
keys with the shared trainer's compiled step (`train.make_train_step`:
same optimizer, schedule, EMA), and every `eval_every` steps records the
mean training loss over the window and the 1- and 4-step sample quality of
the EMA parameters (EMA decay `--ema_decay`, 0.99 by default instead of the
configs' 0.999, so the curve is not an average over the last ~1000 steps):

* checkerboard: KL(data || model) of 50×50 histograms on the reference's
  bounding box, `num_samples` model and reference samples (the evaluation
  library's `kl_hist`; N >> 2500 cells so the plug-in estimate is not
  dominated by empty cells);
* digits: the evaluation library's `fd_digits` (Fréchet distance in the
  offline digits classifier's features, 1000 samples).

It then reports, for quality thresholds q, the first evaluated step at which
each loss reaches q and the ratio EMD/LMD (the paper: LMD converges about an
order of magnitude faster than EMD). The teachers are the configs' (trained
first if missing: runs/teacher_checkerboard_fm ~3 CPU minutes,
runs/teacher_digits_fm ~10 CPU minutes on an idle machine). Writes
results/fmm_convergence.json, keeping the rows and curves of setups not
rerun from an existing file. `--drop=SETUPS` removes those setups' rows and
curves from that file instead (nothing is trained), recording
`--drop_reason` and the date under `dropped`.

A comparison only means something once both curves have flattened: size
`--steps` / `--digits_steps` so that they do (checkerboard: 3000 steps; the
digits UNet needs >= 2000 steps per arm, far beyond the 150 of an earlier
run whose curves were still falling).

`train_curve` and `quality_fn` are reused by the other fmm_* benchmarks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_info, print_table, read_result, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import checkpoint as ckpt_lib  # noqa: E402
from gcflow_jax import config_utils, data, evaluation, train  # noqa: E402

SETUPS = {"checkerboard": ("configs/checkerboard_fmm_lmd.py", "kl_hist"),
          "digits": ("configs/digits_fmm_lmd.py", "fd_digits")}


def load(spec: str, overrides: Optional[Dict[str, object]] = None):
  """Config `spec` with dotted-key overrides, e.g. {'fmm.loss': 'emd'}."""
  return config_utils.load_config(spec, overrides)


def quality_fn(metric: str, reference: np.ndarray) -> Callable:
  """samples [N, ...] -> scalar quality (lower is better)."""
  def score(samples):
    samples = np.asarray(samples)
    if not np.isfinite(samples).all():
      return float("nan")
    if metric == "kl_hist":
      return evaluation.kl_hist_2d(samples, reference, bins=50)
    samples = np.clip(samples, -1.0, 1.0)
    return float(evaluation.evaluate(samples, reference,
                                     metrics=[metric])[metric])
  return score


def sampler(run, num: int, batch: int = 20_000):
  """(params, steps, key) -> numpy samples, in chunks, jit per chunk size."""
  fn = jax.jit(run.method.sample_fn, static_argnums=(2, 3))

  def draw(params, steps, key, extras=None):
    out, done, i = [], 0, 0
    while done < num:
      n = min(batch, num - done)
      out.append(np.asarray(fn(params, jax.random.fold_in(key, i), n, steps,
                               extras)))
      done, i = done + n, i + 1
    return np.concatenate(out)
  return draw


def train_curve(config, eval_every: int, score: Callable, num_samples: int,
                eval_steps=(1,), log=print,
                full_every: Optional[int] = None) -> List[dict]:
  """Trains `config` for config.train.steps with the trainer's step and
  evaluates the EMA params every `eval_every` steps (and at step 0) with
  K in `eval_steps` sampling steps; with `full_every`, only the first K at
  evaluations whose step is not a multiple of it (nor the last)."""
  run = train.build(config)
  state = run.initial_state()
  step_fn = run.jit_train_step(donate_argnums=(0,))
  draw = sampler(run, num_samples)
  bs = config.train.batch_size
  rows, window = [], []
  eval_key = jax.random.key(1234)   # same noise at every evaluation

  def evaluate(step, seconds):
    row = {"step": step, "train_sec": seconds,
           "loss": float(np.mean(window)) if window else None,
           "load1": os.getloadavg()[0]}
    full = (not full_every or step % full_every == 0
            or step == config.train.steps)
    for k in eval_steps if full else eval_steps[:1]:
      row[f"q@{k}"] = score(draw(state.ema_params, k, eval_key,
                                 state.extras))
    rows.append(row)
    log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in row.items()))

  sec = 0.0
  evaluate(0, sec)
  for step in range(config.train.steps):
    batch = {"x": jnp.asarray(run.dataset.global_batch(step, bs))}
    t0 = time.perf_counter()
    state, m = step_fn(state, batch, run.k_train)
    if step > 0:   # exclude compilation
      jax.block_until_ready(m["loss"])
      sec += time.perf_counter() - t0
    window.append(float(m["loss"]))
    if (step + 1) % eval_every == 0 or step + 1 == config.train.steps:
      evaluate(step + 1, sec)
      window = []
  return rows, run, state


def steps_to_reach(rows: List[dict], q: float, key: str = "q@1"
                   ) -> Optional[int]:
  for r in rows:
    if np.isfinite(r[key]) and r[key] <= q:
      return r["step"]
  return None


def compare(setup: str, curves: Dict[str, List[dict]]) -> List[dict]:
  """Steps for LMD and EMD to reach thresholds set by the curves."""
  lmd, emd = curves["lmd"], curves["emd"]
  best_emd = min(r["q@1"] for r in emd if np.isfinite(r["q@1"]))
  best_lmd = min(r["q@1"] for r in lmd if np.isfinite(r["q@1"]))
  start = lmd[0]["q@1"]
  out = []
  for name, q in (("EMD's best", best_emd),
                  ("halfway (init -> LMD best)", 0.5 * (start + best_lmd)),
                  ("LMD best x 1.25", 1.25 * best_lmd),
                  ("LMD best", best_lmd)):
    s_l, s_e = steps_to_reach(lmd, q), steps_to_reach(emd, q)
    total = lmd[-1]["step"]
    ratio = (s_e / s_l if s_e and s_l else
             (f"> {total / s_l:.3g}" if s_l and not s_e else None))
    out.append({"setup": setup, "threshold": name, "q": q,
                "lmd_steps": s_l, "emd_steps": s_e if s_e else f"> {total}",
                "emd_over_lmd": ratio})
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--setups", default="checkerboard,digits")
  p.add_argument("--steps", type=int, default=2000)
  p.add_argument("--eval_every", type=int, default=200)
  p.add_argument("--digits_steps", type=int, default=600)
  p.add_argument("--digits_eval_every", type=int, default=100)
  p.add_argument("--digits_batch", type=int, default=0,
                 help="digits batch size (0: the config's 128)")
  p.add_argument("--digits_warmup", type=int, default=-1,
                 help="digits LR warm-up steps (-1: the config's 100)")
  p.add_argument("--num_samples", type=int, default=100_000)
  p.add_argument("--ema_decay", type=float, default=0.99)
  p.add_argument("--save", action="store_true",
                 help="checkpoint each final state into "
                 "runs/fmm_bench/conv_<setup>_<loss>_<steps>")
  p.add_argument("--drop", default="",
                 help="setups to remove from the existing JSON (no run)")
  p.add_argument("--drop_reason", default="")
  a = p.parse_args()
  if a.drop:
    drop(a.drop.split(","), a.drop_reason)
    return
  curves_all, summary, extra = {}, [], {}
  for setup in a.setups.split(","):
    spec, metric = SETUPS[setup]
    steps = a.steps if setup == "checkerboard" else a.digits_steps
    every = a.eval_every if setup == "checkerboard" else a.digits_eval_every
    curves = {}
    for loss in ("lmd", "emd"):
      # A short EMA (0.99, ~100-step horizon) so that the curve shows the
      # model at each step rather than an average over the last ~1000.
      overrides = {"fmm.loss": loss, "train.steps": steps,
                   "ema.decay": a.ema_decay}
      if setup == "digits" and a.digits_batch:
        overrides["train.batch_size"] = a.digits_batch
      if setup == "digits" and a.digits_warmup >= 0:
        overrides["optim.warmup_steps"] = a.digits_warmup
      config = load(spec, overrides)
      dataset = data.make_dataset(config.data, config.seed)
      n = min(1000, dataset.size) if setup == "digits" else a.num_samples
      reference = dataset.reference(n)
      print(f"== {setup} {loss}: {steps} steps, metric {metric} "
            f"({n} samples)", flush=True)
      rows, _, state = train_curve(config, every,
                                   quality_fn(metric, reference), n,
                                   eval_steps=(1, 4),
                                   log=lambda s: print("  " + s, flush=True))
      curves[loss] = rows
      if a.save:
        # Final state, for reuse (e.g. fmm_sampling_speed --digits_workdir).
        workdir = os.path.join("runs", "fmm_bench",
                               f"conv_{setup}_{loss}_{steps}")
        ck = ckpt_lib.Checkpointer(workdir)
        ck.save(steps, state, force=True)
        ck.close()
        print(f"  saved {workdir}", flush=True)
    if setup == "checkerboard":
      # The estimator's floor: two independent reference sets.
      ds = data.make_dataset(load(spec).data, 0)
      extra["checkerboard_kl_floor_data_vs_data"] = evaluation.kl_hist_2d(
          ds.global_batch(10**6, a.num_samples), ds.reference(a.num_samples))
    curves_all[setup] = curves
    summary += compare(setup, curves)
    for loss, rows in curves.items():
      print(f"\n{setup} {loss}:")
      print_table(rows, ["step", "loss", "q@1", "q@4", "train_sec"])
  print()
  print_table(summary, ["setup", "threshold", "q", "lmd_steps", "emd_steps",
                        "emd_over_lmd"])
  print(extra)
  summary, curves_all, extra = merge_previous(summary, curves_all, extra,
                                              vars(a))
  print("wrote", write_result("fmm_convergence", summary,
                              {"curves": curves_all, **extra,
                               "args": vars(a)}))


def merge_previous(summary, curves, extra, args):
  """Keeps the rows and curves of setups not rerun now from an existing
  results/fmm_convergence.json (setups are run separately on a busy CPU)."""
  old = read_result("fmm_convergence")
  if not old:
    return summary, curves, extra
  done = set(curves)
  kept = [r for r in old.get("rows", []) if r.get("setup") not in done]
  old_curves = {k: v for k, v in old.get("curves", {}).items()
                if k not in done}
  runs = {k: v for k, v in old.get("runs", {}).items() if k not in done}
  if not runs and old_curves:   # a file written before `runs` existed
    runs = {k: {"command": old.get("command"), "args": old.get("args"),
                "date": old.get("machine", {}).get("date")}
            for k in old_curves}
  for k in done:
    runs[k] = {"command": " ".join(sys.argv), "args": args,
               "loadavg_at_end": os.getloadavg()}
  extra = {**{k: v for k, v in old.items() if k.startswith(tuple(
      f"{s}_" for s in old_curves))}, **extra, "runs": runs}
  dropped = {k: v for k, v in old.get("dropped", {}).items()
             if k not in done}
  if dropped:   # setups removed by --drop and not rerun now
    extra.update(dropped=dropped, note=drop_note(dropped))
  return kept + summary, {**old_curves, **curves}, extra


def drop_note(dropped: dict) -> str:
  return "; ".join(f"{s} rows dropped: {d['reason']}"
                   for s, d in dropped.items())


def drop(setups: List[str], reason: str):
  """Removes `setups` from results/fmm_convergence.json (rows, curves,
  per-setup extras and runs); the file's command and machine become those
  of a remaining setup's run."""
  for setup in setups:
    if setup not in SETUPS:
      raise SystemExit(f"--drop={setup!r} is not one of {tuple(SETUPS)}")
  if not reason:
    raise SystemExit("--drop needs --drop_reason (recorded in the JSON)")
  old = read_result("fmm_convergence")
  if not old:
    raise SystemExit("--drop: no results/fmm_convergence.json to edit")
  gone = set(setups)
  rows = [r for r in old.get("rows", []) if r.get("setup") not in gone]
  runs = {k: v for k, v in old.get("runs", {}).items() if k not in gone}
  if not runs:
    raise SystemExit(f"--drop={','.join(setups)} would leave no setup")
  keep = {k: v for k, v in old.items()
          if k not in ("benchmark", "rows", "curves", "runs", "dropped")
          and not k.startswith(tuple(f"{s}_" for s in gone))}
  first = runs[sorted(runs)[0]]
  machine = dict(old.get("machine", {}))
  if first.get("date"):
    # The machine block was written by the dropped run: keep the
    # remaining run's date and drop the load figure that is not its own.
    machine.update(date=first["date"], load_average_1min=None)
  dropped = {**old.get("dropped", {}),
             **{s: {"reason": reason, "date": machine_info()["date"]}
                for s in setups}}
  print("wrote", write_result("fmm_convergence", rows, {
      **keep, "command": first.get("command", old.get("command")),
      "args": first.get("args", old.get("args")), "machine": machine,
      "curves": {k: v for k, v in old.get("curves", {}).items()
                 if k not in gone},
      "runs": runs, "dropped": dropped, "note": drop_note(dropped)}))


if __name__ == "__main__":
  main()
