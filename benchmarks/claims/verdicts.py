"""Verdict rules and the claim-record writer shared by the claims scripts.

The rules are the ones fixed in PROTOCOL.md before any run:
* summary: mean ± std over seeds (sample std, ddof = 1) and, with n >= 2
  seeds, the 95% Student-t interval of the mean;
* "A better than B" (lower is better): mean_A + std_A < mean_B − std_B,
  otherwise "within noise";
* a curve has flattened when its last two evaluations (means over seeds)
  differ by less than the seed std of the last one.

Every claim is written to results/claims_<paper>_<claim>.json: `rows` (one
per arm, seed and evaluation step) and a `claim` block (see README.md).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from common import write_result  # noqa: E402  pylint: disable=g-import-not-at-top

__all__ = ["REPRODUCED", "NOT_REPRODUCED", "WITHIN_NOISE", "NOT_REACHED",
           "NOT_TESTABLE", "MEASURED", "summarize", "format_summary", "better",
           "better_summary",
           "flattened", "outcome", "parse_args", "write_claim"]

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
WITHIN_NOISE = "within noise"
NOT_REACHED = "not reached at this budget"
NOT_TESTABLE = "not testable here at this budget"
# A diagnostic or precondition row: numbers with a read-out, no claim.
MEASURED = "measured"

# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..10.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262,
         2.228)


def summarize(values: Sequence[float]) -> Dict[str, object]:
  """Mean, sample std (ddof = 1), n and the 95% t-interval of the mean
  (None with fewer than 2 values or more than 11)."""
  v = np.asarray(values, np.float64)
  if v.ndim != 1 or v.size == 0:
    raise ValueError(f"values must be a non-empty 1-D sequence, got shape "
                     f"{v.shape}")
  n = int(v.size)
  mean = float(v.mean())
  std = float(v.std(ddof=1)) if n > 1 else 0.0
  ci = None
  if 2 <= n <= len(_T975) + 1:
    half = _T975[n - 2] * std / math.sqrt(n)
    ci = [mean - half, mean + half]
  return {"mean": mean, "std": std, "n": n, "ci95": ci,
          "min": float(v.min()), "max": float(v.max())}


def format_summary(s: Dict[str, object], digits: int = 3) -> str:
  """'m ± s (95% [lo, hi], n = k)' in `digits` significant digits."""
  g = lambda x: f"{x:.{digits}g}"
  text = f"{g(s['mean'])} ± {g(s['std'])}"
  if s["ci95"] is not None:
    lo, hi = s["ci95"]
    text += f" (95% [{g(lo)}, {g(hi)}], n = {s['n']})"
  else:
    text += f" (n = {s['n']})"
  return text


def better(a: Sequence[float], b: Sequence[float]) -> bool:
  """True if A is better than B for a lower-is-better metric: mean_A +
  std_A < mean_B − std_B (sample stds over seeds)."""
  return better_summary(summarize(a), summarize(b))


def better_summary(sa: dict, sb: dict) -> bool:
  """`better` on summaries ({'mean', 'std'}, e.g. from `summarize`)."""
  return sa["mean"] + sa["std"] < sb["mean"] - sb["std"]


def flattened(curve: Sequence[Sequence[float]]) -> bool:
  """`curve[i]` holds the seeds' values at evaluation i (in step order).
  True if the seed means of the last two evaluations differ by less than
  the seed std of the last one. Needs >= 2 evaluations and >= 2 seeds."""
  if len(curve) < 2:
    raise ValueError(f"flattened needs >= 2 evaluations, got {len(curve)}")
  last, prev = summarize(curve[-1]), summarize(curve[-2])
  if last["n"] < 2:
    raise ValueError("flattened needs >= 2 seeds at the last evaluation")
  return abs(last["mean"] - prev["mean"]) < last["std"]


def outcome(holds: bool, flat: bool) -> str:
  """Verdict of a claim judged at the end of its budget. PROTOCOL.md: a
  budget counts only if every curve has flattened, so a claim that holds
  or fails while a curve still moves is "not reached at this budget";
  on flat curves it is "reproduced" or "not reproduced"."""
  if not flat:
    return NOT_REACHED
  return REPRODUCED if holds else NOT_REPRODUCED


def parse_args(claims, add_args=None) -> argparse.Namespace:
  """`--claim` (one of `claims`) and `--seeds` (comma-separated ints, into
  `args.seeds` as a list), plus what `add_args(parser)` adds."""
  ap = argparse.ArgumentParser()
  ap.add_argument("--claim", required=True)
  ap.add_argument("--seeds", default="0,1,2")
  if add_args is not None:
    add_args(ap)
  args = ap.parse_args()
  if args.claim not in claims:
    raise SystemExit(f"--claim={args.claim!r} is not one of {tuple(claims)}")
  args.seeds = [int(v) for v in args.seeds.split(",")]
  return args


def check_tag(tag: str) -> str:
  """A `--tag` (a record-name suffix for another budget): '' or lowercase
  letters and digits; exits naming the flag otherwise."""
  if not re.fullmatch(r"[a-z0-9]*", tag):
    raise SystemExit(f"--tag={tag!r}: only lowercase letters and digits")
  return tag


def curve_of(rows: List[dict], arm: str, metric: str,
             arm_key: str = "arm") -> List[List[float]]:
  """Per evaluation step (ascending) the seeds' `metric` values of `arm`."""
  steps = sorted({r["step"] for r in rows if r[arm_key] == arm})
  return [[r[metric] for r in rows if r[arm_key] == arm and r["step"] == s]
          for s in steps]


def write_claim(paper: str, claim: str, rows: List[dict], *,
                paper_figure: str, metric: str, budget: str,
                seeds: Sequence[int], verdict: str, verdict_reason: str,
                our_figure: str, extra: Optional[dict] = None) -> str:
  """Writes results/claims_<paper>_<claim>.json (atomically)."""
  allowed = (REPRODUCED, NOT_REPRODUCED, WITHIN_NOISE, NOT_REACHED,
             NOT_TESTABLE, MEASURED)
  if verdict not in allowed:
    raise ValueError(f"verdict={verdict!r} is not one of {allowed}")
  block = {"paper": paper, "claim": claim, "paper_figure": paper_figure,
           "metric": metric, "budget": budget, "seeds": list(seeds),
           "verdict": verdict, "verdict_reason": verdict_reason,
           "our_figure": our_figure}
  return write_result(f"claims_{paper}_{claim}", rows,
                      {"claim": block, **(extra or {})})
