r"""Regenerates docs/RESULTS.md from the benchmarks' JSON (never typed by hand).

python scripts/make_results.py [--results=benchmarks/results]
    [--out=docs/RESULTS.md] [--check]

The page opens with "The papers' claims": one table row per
`claims_*.json` (benchmarks/claims/: claim, the paper's figure, ours, the
budget and the verdict), then each claim's verdict reason, command, machine
and data. Every other file in benchmarks/results/ becomes one section: the
command that produced it, the machine and date recorded in it, its summary (or rows) as
a table, its notes, and the paper's number beside ours where the paper has
one (`PAPER` below: facts quoted from the papers in ../shared/papers and the
issues, not results of ours). `--check` exits 1 if the page is out of date
(the test suite runs it).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (section title, benchmark-name prefixes), in page order.
SECTIONS = (
    ("Trainer and evaluation library (issues #2, #4)",
     ("throughput", "feature_throughput")),
    ("Consistency models with generator-induced flows (paper 001, issue #3)",
     ("consistency_", "ot_cost")),
    ("Train-step CPU time against an earlier commit (issue #15)",
     ("step_compare",)),
    ("Train-step speed and a short quality run on one accelerator "
     "(issue #15)", ("accelerator",)),
    ("Flow map matching (paper 002, issue #5)", ("fmm_",)),
    ("Distribution matching with generalized consistency models "
     "(paper 000, issue #6)", ("gcm_",)),
    ("Reflow with marginal alignment (paper 003, issues #7, #13)",
     ("reflow_",)),
)

# What the papers report for the same question (quoted, not measured here).
PAPER = {
    "consistency_quality": (
        "Paper 001, Table 1 (CIFAR-10, 1 step, 100k steps at batch 512): "
        "FID IC 7.42 ± 0.04, OT 6.75 ± 0.04, GC (μ = 0.5) 5.95 ± 0.05, i.e. "
        "the ordering GC < OT < IC."),
    "consistency_throughput": (
        "Issue #3: GC (μ = 0.5) should cost about μ·F/(F+G) ≈ 12% more than "
        "IC per step when the endpoint forward runs on the ⌊μB⌋ GC samples "
        "only; the published code pays ~23% (endpoint on the whole batch)."),
    "ot_cost": ("Paper 001 gives no timing for the OT coupling."),
    "accelerator": (
        "Issue #15's GPU goal: 100k steps at batch 512 of "
        "configs/cifar_gc.py in ≤ 3 h on one H100-class GPU, i.e. ≤ 108 "
        "ms/step, and ≥ 33% bf16 MFU. Paper 001 trains CIFAR-10 for 100k "
        "steps at batch 512 (its GPU time is not stated)."),
    "fmm_convergence": (
        "Paper 002: LMD converges about an order of magnitude faster than "
        "EMD (CIFAR-10 and ImageNet-32)."),
    "fmm_steps_quality": (
        "Paper 002 gives no 2-D number. The follow-up's checkerboard table "
        "reports KL 0.086 at 1 step → 0.070 at 8 steps for Lagrangian "
        "self-distillation (LSD, no teacher; per issue 14 a ~1M-parameter "
        "network and ~10^4× our training samples): not a distillation "
        "(LMD) number. Our distilled students are read by gap@K, their KL "
        "above their own teacher's many-step KL."),
    "fmm_sampling_speed": (
        "Paper 002: the one-step map samples 10–20× faster than the teacher "
        "ODE at matched quality."),
    "fmm_jvp_cost": ("Paper 002 gives no step-cost figure."),
    "gcm_moons": ("Paper 000's toy results are qualitative (no number)."),
    "reflow_alignment": (
        "Paper 003: abstract only; no number to compare with."),
}

MAX_COLUMNS = 14

CLAIMS_PREFIX = "claims_"
CLAIM_COLUMNS = (("paper", "paper"), ("claim", "claim"),
                 ("paper_figure", "paper's figure"),
                 ("our_figure", "our figure"), ("budget", "budget"),
                 ("verdict", "verdict"))



def _python(cmd: str) -> str:
  """The command line as run: records name the script, some with `python`."""
  cmd = cmd.strip()
  return cmd if cmd.split(" ", 1)[0].startswith("python") else f"python {cmd}"

def _fmt(v) -> str:
  if isinstance(v, bool):
    return str(v)
  if isinstance(v, float):
    return f"{v:.4g}"
  if isinstance(v, int):
    return f"{v:,}" if abs(v) >= 10000 else str(v)
  return "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")


def _table(rows) -> list:
  rows = [r for r in rows if isinstance(r, dict)]
  if not rows:
    return ["(no rows)"]
  cols = []
  for r in rows:
    for k, v in r.items():
      if k not in cols and not isinstance(v, (dict, list)):
        cols.append(k)
  # mean/std pairs are shown through their formatted column where present.
  cols = [c for c in cols if not (c.endswith(("_mean", "_std")) and
                                  c.rsplit("_", 1)[0] in cols)]
  dropped = cols[MAX_COLUMNS:]
  cols = cols[:MAX_COLUMNS]
  out = ["| " + " | ".join(cols) + " |",
         "|" + "---|" * len(cols)]
  for r in rows:
    out.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
  if dropped:
    out.append("")
    out.append(f"(columns not shown: {', '.join(dropped)}; see the JSON)")
  return out


def _machine(d) -> str:
  m = d.get("machine", {}) or {}
  dev = m.get("device_kind", "?")
  backend = m.get("backend", "?")
  parts = [f"{backend} ({dev})", f"{m.get('cpu_count', '?')} CPU cores",
           f"{m.get('device_count', len(m.get('devices', []) or []) or '?')}"
           " device(s)", f"jax {m.get('jax', '?')}"]
  load = m.get("load_average_1min", d.get("loadavg_1m"))
  if load is not None:
    parts.append(f"load average {float(load):.1f}")
  return ", ".join(parts)


def _section(path: str) -> list:
  with open(path) as f:
    d = json.load(f)
  name = d.get("benchmark") or os.path.basename(path)[:-5]
  rel = os.path.relpath(path, ROOT)
  date = (d.get("machine", {}) or {}).get("date") or d.get("time") or "?"
  out = [f"### {name}", ""]
  cmd = d.get("command")
  out.append(f"* Command: `{_python(cmd)}`" if cmd else
             f"* Command: `python benchmarks/{name}.py`")
  for earlier in d.get("earlier_commands") or []:
    out.append(f"* Rows kept from an earlier run: `{_python(earlier)}`")
  out.append(f"* Machine: {_machine(d)}")
  out.append(f"* Date: {date}")
  out.append(f"* Data: [`{rel}`](../{rel})")
  if d.get("partial"):
    out.append("* **Partial**: the run did not finish every configuration.")
  paper = next((v for k, v in PAPER.items() if name.startswith(k)), None)
  if paper:
    out.append(f"* Paper: {paper}")
  out.append("")
  if d.get("summary"):
    out += ["Summary:", ""] + _table(d["summary"]) + [""]
  rows = d.get("rows") or d.get("results") or []
  if rows and not d.get("summary"):
    out += _table(rows) + [""]
  elif rows:
    out.append(f"({len(rows)} per-run rows in the JSON.)")
    out.append("")
  for key in ("note", "transcribed", "interpretation"):
    if isinstance(d.get(key), str):
      out += [f"> {key}: {d[key]}", ""]
  return out


def _samples_link(d: dict, rel: str) -> str:
  """'; samples [name](...)' for a record naming a samples figure beside it
  (`samples_png`), else ''."""
  png = d.get("samples_png")
  if not png:
    return ""
  path = os.path.join(os.path.dirname(rel), png)
  return f"; samples [`{png}`](../{path})"


def _claims_section(paths) -> list:
  """The papers' claims: one row per claims_*.json (benchmarks/claims/
  README.md gives the `claim` block), then each claim's reason and source."""
  out = ["## The papers' claims", "",
         "One row per claim of the four papers, from "
         "`benchmarks/results/claims_*.json` (protocol, seeds, budgets and "
         "verdict rules fixed beforehand in "
         "[benchmarks/claims/PROTOCOL.md](../benchmarks/claims/PROTOCOL.md)"
         "). Our figure: mean ± sample std over seeds (95% t-interval of the "
         "mean). The paper's figure is quoted, not measured here.", "",
         "| " + " | ".join(h for _, h in CLAIM_COLUMNS) + " |",
         "|" + "---|" * len(CLAIM_COLUMNS)]
  details = []
  for path in paths:
    with open(path) as f:
      d = json.load(f)
    c = d.get("claim")
    rel = os.path.relpath(path, ROOT)
    if not isinstance(c, dict):
      c = {"claim": os.path.basename(path)[len(CLAIMS_PREFIX):-5],
           "verdict": "(no claim block in the JSON)"}
    out.append("| " + " | ".join(
        f"**{_fmt(c.get(k))}**" if k == "verdict" else _fmt(c.get(k))
        for k, _ in CLAIM_COLUMNS) + " |")
    date = (d.get("machine", {}) or {}).get("date") or "?"
    # A record written from cached runs names the command that redoes them.
    cmd = d.get("reproduce_command") or d.get("command")
    reason = _fmt(c.get("verdict_reason")).rstrip(".")
    details.append(
        f"* **{_fmt(c.get('paper'))} {_fmt(c.get('claim'))}: "
        f"{_fmt(c.get('verdict'))}.** {reason}. "
        f"Metric: {_fmt(c.get('metric'))}. Seeds: "
        f"{_fmt(', '.join(map(str, c.get('seeds') or [])))}. "
        + (f"Command: `{_python(cmd)}`; " if cmd else "")
        + f"{_machine(d)}, {date}; data [`{rel}`](../{rel})"
        + _samples_link(d, rel) + ".")
  return out + ["", "Reasons and sources:", ""] + details + [""]


def render(results_dir: str) -> str:
  files = sorted(glob.glob(os.path.join(results_dir, "*.json")))
  lines = ["# Results", "",
           "Generated by `python scripts/make_results.py` from "
           "`benchmarks/results/*.json`; do not edit by hand. Each section "
           "gives the command that produced the numbers, the machine and "
           "date recorded by the benchmark, and the paper's number where "
           "there is one. CPU timings were taken on a shared 2-core machine: "
           "compare ratios, not absolute times, across sections.", ""]
  claims = [p for p in files
            if os.path.basename(p).startswith(CLAIMS_PREFIX)]
  if claims:
    lines += _claims_section(claims)
  used = set(claims)
  for title, prefixes in SECTIONS:
    mine = [p for p in files
            if os.path.basename(p).startswith(prefixes) and p not in used]
    if not mine:
      continue
    used.update(mine)
    lines += [f"## {title}", ""]
    for p in mine:
      lines += _section(p)
  rest = [p for p in files if p not in used]
  if rest:
    lines += ["## Other", ""]
    for p in rest:
      lines += _section(p)
  return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
  ap = argparse.ArgumentParser()
  ap.add_argument("--results", default=os.path.join(ROOT, "benchmarks",
                                                    "results"))
  ap.add_argument("--out", default=os.path.join(ROOT, "docs", "RESULTS.md"))
  ap.add_argument("--check", action="store_true")
  args = ap.parse_args(argv)
  text = render(args.results)
  if args.check:
    old = open(args.out).read() if os.path.exists(args.out) else ""
    if old != text:
      print(f"{args.out} is out of date: run python scripts/make_results.py")
      return 1
    return 0
  tmp = args.out + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, args.out)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
