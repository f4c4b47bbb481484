r"""Paper 003 (reflow with marginal alignment): the abstract's claim that the
marginal-alignment regulariser improves few-step generation, read from
results/reflow_alignment.json (trained by benchmarks/reflow_alignment.py;
no training here).

python benchmarks/claims/reflow.py [--claim=alignment]

* alignment — `python benchmarks/claims/reflow.py --claim=alignment`
  Per dataset present in the file (gmm, checkerboard, digits when its rows
  exist): piecewise reflow + alignment vs piecewise reflow (K = 2, same
  budget and seeds), metric at K = 2 Euler steps along each run's curve
  and 1-step at the end. Reproduced if piecewise_align is better than
  piecewise at 2 steps (mean ± std rule) with both curves flattened;
  "not reproduced" if piecewise is better, "within noise" otherwise; a
  curve that has not flattened makes it "not reached at this budget".
  Vanilla reflow rows (K = 1, no interior knot, so no alignment arm) are
  shown for scale. Where a dataset's runs scored the trainer's EMA copy
  (what `train.evaluate` deploys), the verdict reads those rows and curves
  (PROTOCOL.md change 15); otherwise the online parameters.

Writes results/claims_003_<dataset>.json.
"""

from __future__ import annotations

import argparse
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))
sys.path.insert(0, _HERE)
from common import read_result  # noqa: E402  pylint: disable=g-import-not-at-top
import verdicts as V  # noqa: E402  pylint: disable=g-import-not-at-top

PAPER = "003"
ALIGN, BASE = "piecewise_align", "piecewise"
K = 2


def _params(r: dict) -> str:
  return r.get("params", "online")


def deployed_params(res: dict, dataset: str) -> str:
  """'ema' where the dataset's runs scored the trainer's EMA copy (what
  `train.evaluate` deploys; PROTOCOL change 15), else 'online'."""
  return ("ema" if any(c["dataset"] == dataset and _params(c) == "ema"
                       for c in res.get("curves", [])) else "online")


def dataset_rows(res: dict, dataset: str, params: str = "online") -> list:
  """One row per (arm, seed, step): the K-step curve points of every
  variant, plus the final 1-step values, of one parameter set."""
  rows = []
  for c in res.get("curves", []):
    if c["dataset"] != dataset or _params(c) != params:
      continue
    for p in c["points"]:
      rows.append({"arm": c["variant"], "seed": c["seed"], "step": p["step"],
                   "sample_steps": p["sample_steps"], c["metric"]: p["value"]})
  for r in res["rows"]:
    if (r["dataset"] == dataset and r["sample_steps"] == 1
        and _params(r) == params):
      rows.append({"arm": r["variant"], "seed": r["seed"],
                   "step": r["train_steps"], "sample_steps": 1,
                   r["metric"]: r["value"]})
  return rows


def claim_dataset(res: dict, dataset: str) -> str:
  params = deployed_params(res, dataset)
  rows = dataset_rows(res, dataset, params)
  metric = next(r["metric"] for r in res["rows"] if r["dataset"] == dataset)
  kr = [r for r in rows if r["sample_steps"] == K]
  arms = [a for a in (ALIGN, BASE) if any(r["arm"] == a for r in kr)]
  if arms != [ALIGN, BASE]:
    raise ValueError(f"reflow_alignment.json has no {ALIGN!r} and {BASE!r} "
                     f"K = {K} curves for dataset {dataset!r} (got {arms})")
  curve = {a: V.curve_of(kr, a, metric) for a in arms}
  final = {a: curve[a][-1] for a in arms}
  flat = {a: V.flattened(curve[a]) for a in arms}
  # 1-step values at the end of training (the curves of K = 1 variants
  # are 1-step too, so read the final rows).
  one_rows = {a: [r for r in res["rows"] if r["dataset"] == dataset
                  and r["variant"] == a and r["sample_steps"] == 1
                  and _params(r) == params]
              for a in (ALIGN, BASE, "reflow")}
  one = {a: [r["value"] for r in v] for a, v in one_rows.items()}
  s = {a: V.summarize(final[a]) for a in arms}
  if not all(flat.values()):
    verdict = V.NOT_REACHED
  elif V.better(final[ALIGN], final[BASE]):
    verdict = V.REPRODUCED
  elif V.better(final[BASE], final[ALIGN]):
    verdict = V.NOT_REPRODUCED
  else:
    verdict = V.WITHIN_NOISE
  steps = sorted({r["step"] for r in kr})

  def one_label(a):
    # A variant shown for scale may come from a run of another budget.
    budgets = sorted({r["train_steps"] for r in one_rows[a]})
    return a if budgets == [steps[-1]] else (
        f"{a} ({', '.join(map(str, budgets))} steps)")

  extra_one = ", ".join(f"{one_label(a)} {V.format_summary(V.summarize(v))}"
                        for a, v in one.items() if v)
  reason = (f"{params} parameters; {metric} at {K} steps: {ALIGN} "
            f"{V.format_summary(s[ALIGN])} vs {BASE} "
            f"{V.format_summary(s[BASE])}; {ALIGN} better: "
            f"{V.better(final[ALIGN], final[BASE])}, {BASE} better: "
            f"{V.better(final[BASE], final[ALIGN])}; curves (steps "
            f"{steps}) flattened: {flat}; 1 step: {extra_one}")
  sample = next(c for c in res["curves"] if c["dataset"] == dataset
                and c["variant"] == ALIGN and _params(c) == params)
  budget = (f"{steps[-1]} steps per arm (benchmarks/reflow_alignment.py), "
            f"K = {K}, align weight {sample.get('align_weight')}, start "
            f"{sample.get('align_start_steps')}")
  return V.write_claim(
      PAPER, dataset, rows,
      paper_figure=("abstract only: the regulariser improves few-step "
                    "generation (no number)"),
      metric=(f"{metric} at {K} Euler steps of the {params} parameters "
              "(lower is better)"), budget=budget,
      seeds=sorted({r["seed"] for r in kr}), verdict=verdict,
      verdict_reason=reason,
      our_figure=(f"{ALIGN} {V.format_summary(s[ALIGN])} vs {BASE} "
                  f"{V.format_summary(s[BASE])}"),
      extra={"source": "results/reflow_alignment.json",
             "source_date": res["machine"]["date"]})


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--claim", default="alignment")
  args = ap.parse_args()
  if args.claim != "alignment":
    raise SystemExit(f"--claim={args.claim!r} is not one of ('alignment',)")
  res = read_result("reflow_alignment")
  if not res:
    raise SystemExit("results/reflow_alignment.json is missing: run "
                     "benchmarks/reflow_alignment.py first")
  for dataset in sorted({c["dataset"] for c in res.get("curves", [])}):
    print("wrote", claim_dataset(res, dataset))


if __name__ == "__main__":
  main()
