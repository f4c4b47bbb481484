r"""Sample quality vs number of flow-map steps (K chosen after training).

python benchmarks/fmm_steps_quality.py [--losses=lmd,direct,progressive]
    [--steps=3000] [--num_samples=100000] [--seeds=0]
    [--teacher_methods=heun,euler] [--teacher_ks=1,2,4,8,16,32,64]
python benchmarks/fmm_steps_quality.py --regap   # recompute gaps only

Trains (with the shared trainer, `train.train_and_evaluate`, into
runs/fmm_bench/checkerboard_<loss>_<steps>_s<seed>; reused when already
there) the checkerboard configs configs/checkerboard_fmm_{lmd,direct,
progressive}.py for `--steps` steps (a loss may name a config variant,
e.g. `lmd:stop_grad`), then samples each EMA model with K = 1, 2, 4, 8, 16
uniform steps and scores KL(data || model) on 50×50 histograms
(`num_samples` samples each, the evaluation library's kl_hist). The teacher
ODE (Heun and Euler, 1..64 steps) and the data-vs-data estimator floor are
reported alongside.

A distilled student cannot beat its teacher, so next to each absolute KL
the table gives the student's gap to its own teacher, gap@K = KL at K
steps − the teacher's many-step KL (the first solver of
`--teacher_methods` at its largest K); students trained without a teacher
(direct FMM) have no gap. `--regap` recomputes the gaps (and the labels)
from the rows of an existing results/fmm_steps_quality.json without
training or sampling anything, keeping its command, machine and date.

For reference only, the published checkerboard numbers of the follow-up
work (Boffi, Albergo & Vanden-Eijnden 2025, "How to build a consistency
model"): KL 0.086 at 1 step and 0.070 at 8 steps for Lagrangian
*self-distillation* (LSD), a teacher-free method, trained (per the review
in issue 14) with a ~1M-parameter network on ~10^4 times our number of
training samples. They are not Lagrangian map distillation (LMD) numbers:
the closest of our rows is the teacher-free fmm-direct, at a far smaller
budget. Paper 002 itself gives no 2-D number. Writes
results/fmm_steps_quality.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_info, print_table, read_result, write_result  # noqa: E402  pylint: disable=g-import-not-at-top
from fmm_convergence import load, sampler  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import evaluation, train  # noqa: E402
from gcflow_jax.methods import flow_maps  # noqa: E402
from gcflow_jax.models import make_network  # noqa: E402

KS = (1, 2, 4, 8, 16)
TEACHER_KS = (1, 2, 4, 8, 16, 32, 64)
PUBLISHED = {
    "source": "Boffi, Albergo & Vanden-Eijnden (2025), 'How to build a "
              "consistency model', checkerboard KL table",
    "method": "Lagrangian self-distillation (LSD): direct training without "
              "a teacher, not Lagrangian map distillation (LMD)",
    "budget": "per the review in issue 14: a ~1M-parameter network and "
              "~10^4x our training samples (ours: see num_params and "
              "train_samples)",
    "kl@1": 0.086, "kl@8": 0.070}


def spec_of(loss: str) -> str:
  """'lmd' -> configs/checkerboard_fmm_lmd.py, 'lmd:stop_grad' -> the
  file's variant."""
  name, _, variant = loss.partition(":")
  spec = f"configs/checkerboard_fmm_{name}.py"
  return f"{spec}:{variant}" if variant else spec


def trained(loss: str, steps: int, seed: int):
  """(config, run, state) of a finished checkerboard run (trained if
  missing)."""
  spec = spec_of(loss)
  config = load(spec, {"train.steps": steps, "seed": seed,
                       "train.plot": False})
  workdir = os.path.join("runs", "fmm_bench",
                         f"checkerboard_{loss.replace(':', '_')}_{steps}"
                         f"_s{seed}")
  train_sec = None
  if not (train.has_checkpoint(workdir)
          and train.restore_state(config, workdir).step == steps):
    print(f"training {spec} ({steps} steps) into {workdir}", flush=True)
    t0 = time.perf_counter()
    train.train_and_evaluate(config, workdir)
    train_sec = time.perf_counter() - t0
  state = train.restore_state(config, workdir)
  run = train.build(config)
  run_info = {"workdir": workdir, "train_wall_sec": train_sec,
              "loadavg_after_train": os.getloadavg()}
  return config, run, state, run_info


def teacher_reference(teacher_rows):
  """The teacher's many-step KL: the first solver's row at its largest K
  ({} without teacher rows)."""
  if not teacher_rows:
    return {}
  row = teacher_rows[0]
  k = max(int(c.split("@")[1]) for c in row if c.startswith("kl@"))
  return {"model": row["model"], "steps": k, "kl": row[f"kl@{k}"]}


def with_gaps(row: dict, reference: dict) -> dict:
  """`row` with gap@K = kl@K − the teacher's many-step KL after each kl@K
  (None for a student trained without a teacher, or without a reference),
  the bookkeeping columns last."""
  loss = row["model"].removeprefix("fmm-")
  config = load(spec_of(loss))
  distilled = flow_maps.needs_teacher(config)
  out = {k: row[k] for k in ("model", "seed", "train_steps") if k in row}
  for k in KS:
    kl = row.get(f"kl@{k}")
    out[f"kl@{k}"] = kl
    out[f"gap@{k}"] = (kl - reference["kl"] if distilled and reference
                       and kl is not None else None)
  out["distilled"] = distilled
  if "batch" in row:
    out["batch"] = row["batch"]
    out["train_samples"] = row["train_steps"] * row["batch"]
  if "num_params" not in row:   # rows written before it was recorded
    _, _, init_fn = make_network(config.model, (2,), 2)
    out["num_params"] = sum(x.size for x in jax.tree_util.tree_leaves(
        jax.eval_shape(init_fn, jax.random.key(0))))
  for k, v in row.items():
    if k not in out and not k.startswith("gap@"):
      out[k] = v
  return out


def gap_note(reference: dict) -> str:
  if not reference:
    return "no teacher rows: no gap@K"
  return (f"gap@K = kl@K − the teacher's many-step KL ({reference['model']}"
          f", {reference['steps']} steps: {reference['kl']:.4f}), for the "
          "students distilled from that teacher (distilled=True); direct "
          "FMM has no teacher and no gap. The published 0.086 / 0.070 "
          "(follow-up, LSD) are teacher-free: compare them with fmm-direct, "
          "not with LMD.")


def report(rows, teacher_rows, reference, floor, n):
  cols = (["model", "seed", "train_steps"]
          + [c for k in KS for c in (f"kl@{k}", f"gap@{k}")])
  print(f"\nKL(data || model), 50x50 histograms, {n} samples; estimator "
        f"floor (data vs data) {floor:.4f}")
  print(gap_note(reference))
  print_table(rows + [{"model": "published LSD (follow-up; self-distilled, "
                                "no teacher)",
                       "kl@1": PUBLISHED["kl@1"],
                       "kl@8": PUBLISHED["kl@8"]}], cols)
  if teacher_rows:
    print("\nteacher ODE (K steps; NFE = 2K for Heun):")
    ks = sorted(int(c.split("@")[1]) for c in teacher_rows[0]
                if c.startswith("kl@"))
    print_table(teacher_rows, ["model"] + [f"kl@{k}" for k in ks])


def regap():
  """Recomputes gaps and labels from the existing JSON (no training)."""
  old = read_result("fmm_steps_quality")
  if not old:
    raise SystemExit("--regap: no results/fmm_steps_quality.json to read")
  reference = teacher_reference(old.get("teacher_ode"))
  rows = [with_gaps(r, reference) for r in old["rows"]]
  report(rows, old.get("teacher_ode"), reference,
         old["kl_floor_data_vs_data"], old["num_samples"])
  keep = {k: v for k, v in old.items()
          if k not in ("benchmark", "rows", "published")}
  print("wrote", write_result("fmm_steps_quality", rows, {
      **keep, "published": PUBLISHED, "teacher_reference": reference,
      "note": gap_note(reference),
      "regap": {"command": " ".join(sys.argv),
                "date": machine_info()["date"],
                "note": "gap@K columns and labels recomputed from the rows "
                        "of the run above; no model was retrained"}}))


def main():
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--losses", default="lmd,direct,progressive")
  p.add_argument("--steps", type=int, default=3000)
  p.add_argument("--num_samples", type=int, default=100_000)
  p.add_argument("--seeds", default="0")
  p.add_argument("--teacher_methods", default="heun,euler",
                 help="teacher ODE solvers to score ('' skips the teacher)")
  p.add_argument("--teacher_ks", default=",".join(map(str, TEACHER_KS)))
  p.add_argument("--regap", action="store_true",
                 help="only recompute gap@K from the existing JSON")
  a = p.parse_args()
  if a.regap:
    regap()
    return
  teacher_ks = tuple(int(k) for k in a.teacher_ks.split(",") if k)
  n = a.num_samples
  rows, teacher_rows = [], []
  reference = floor = None
  key = jax.random.key(2024)
  for seed in (int(s) for s in a.seeds.split(",")):
    for loss in a.losses.split(","):
      config, run, state, info = trained(loss, a.steps, seed)
      if reference is None:
        reference = run.dataset.reference(n)
        floor = evaluation.kl_hist_2d(run.dataset.global_batch(10**6, n),
                                      reference)
      draw = sampler(run, n)
      row = {"model": f"fmm-{loss}", "seed": seed, "train_steps": a.steps,
             "batch": config.train.batch_size,
             "num_params": sum(x.size for x in jax.tree_util.tree_leaves(
                 state.params)), **info}
      for k in KS:
        row[f"kl@{k}"] = evaluation.kl_hist_2d(
            draw(state.ema_params, k, key, state.extras), reference)
      rows.append(row)
      print_table(rows[-1:], ["model", "seed"] + [f"kl@{k}" for k in KS])
      if run.teacher is not None and not teacher_rows:
        for method in [m for m in a.teacher_methods.split(",") if m]:
          ode = jax.jit(flow_maps.make_teacher_ode_sampler(
              run.teacher.velocity, (2,), method), static_argnums=(2, 3))
          trow = {"model": f"teacher ODE ({method})"}
          for k in teacher_ks:
            x = np.concatenate([np.asarray(ode(
                run.teacher.params, jax.random.fold_in(key, i), n // 5, k))
                                for i in range(5)])
            trow[f"kl@{k}"] = evaluation.kl_hist_2d(x, reference)
            trow[f"nfe@{k}"] = k * (2 if method == "heun" else 1)
          teacher_rows.append(trow)
          print_table(teacher_rows[-1:], ["model"] + [
              f"kl@{k}" for k in teacher_ks])
  teacher_ref = teacher_reference(teacher_rows)
  rows = [with_gaps(r, teacher_ref) for r in rows]
  report(rows, teacher_rows, teacher_ref, floor, n)
  print("wrote", write_result("fmm_steps_quality", rows, {
      "teacher_ode": teacher_rows, "teacher_reference": teacher_ref,
      "note": gap_note(teacher_ref),
      "kl_floor_data_vs_data": floor, "published": PUBLISHED,
      "num_samples": n, "args": vars(a),
      "loadavg_at_end": os.getloadavg()}))


if __name__ == "__main__":
  main()
