r"""Paper 002 (flow map matching) claims on the 2-D checkerboard and digits.

python benchmarks/claims/fmm_claims.py teacher [--setup=digits]
python benchmarks/claims/fmm_claims.py students [--arms=lmd,emd,lmd:stop_grad]
    [--seeds=0,1,2] [--steps=1000] [--eval_every=100] [--full_every=500]
    [--student_width=W] [--tag=NAME] [--setup=digits] [--cores=0,1]
python benchmarks/claims/fmm_claims.py speed [--repeats=5] [--speed_seed=0]
python benchmarks/claims/fmm_claims.py verdict   # recompute from the rows
python benchmarks/claims/fmm_claims.py merge --merge_from=DIR[,DIR]
python benchmarks/claims/fmm_claims.py intervals [--interval_k=8]
    [--jump_starts=0,0.5,0.75,0.875] [--student_width=W] [--tag=NAME]

The protocol is benchmarks/claims/PROTOCOL.md, section "Paper 002".

* `teacher`: the flow-matching teacher configs/toy_fm.py:xl (trained
  first into runs/claims002/teacher_xl if missing, with its kl_hist at
  Heun 16 every `--teacher_eval_every` steps; a single seed, so its curve
  counts as flat when the last two values differ by < 5 %), scored with the
  16-step Heun ODE: `kl_hist` (KL(data || model), 50×50 histograms on the
  reference's bounding box, 100,000 samples), next to the same estimator's
  floor (exact samples vs an independent reference draw, 3 draws).
  Writes results/claims_002_teacher.json.
* `students`: the LMD and EMD students of configs/checkerboard_fmm_lmd.py /
  _emd.py (and the `:stop_grad` ablation of LMD, the `direct` student
  trained from data, the `progressive` one) distilled from that
  teacher with the shared trainer's compiled step, the same student
  network, optimizer, data stream and keys per seed; every `eval_every`
  steps the EMA parameters (decay 0.99, a ~100-step horizon, so the curve
  shows the model at that step) are scored with `kl_hist` at one step, and
  every `full_every` steps and at the end at 1/2/4/8 sampling steps.
  Steps-to-threshold: the first evaluated step whose 1-step
  KL is <= 2× the teacher's 16-step Heun KL. Each (arm, seed) is written as
  soon as it finishes (a rerun skips the finished ones) and its final
  state is saved under runs/claims002/<arm>_s<seed>.
  Writes results/claims_002_lmd_vs_emd.json. Seeds can be split across
  processes, each with its own GCFLOW_BENCH_DIR holding a copy of
  claims_002_teacher.json; `merge --merge_from=DIR,...` then joins their
  records (same budget and teacher, no (arm, seed) twice) into results/.
  `--cores=0,1` does that split in one command: each (arm, seed) its own
  process, at most one per listed core at a time (pinned, one XLA
  thread), in runs/claims002/split/<record>/<arm>_s<seed>, then the merge;
  one process readies the teacher first (the teacher stage without a
  teacher record; with one, e.g. on a new machine, the main trainer into
  the teacher workdir, keeping the record and its threshold), and a rerun
  resumes (finished runs are skipped). Each run records the fingerprint
  of its teacher's parameters.
* `speed`: the one-step LMD student (seed `--speed_seed`, default 0; its
  final state must be kept on this machine) vs the teacher ODE at matched
  quality (the cheapest Heun step count whose KL is at most the student's),
  samples/s, student and teacher calls interleaved. Run it pinned
  (`taskset -c 1`); the load average is recorded with each row.
  Writes results/claims_002_speed.json (+ the students' --student_width /
  --tag suffix, its own record and claim row, for those students).
* `intervals`: a diagnostic of the students of a record (same
  --student_width/--tag): each final EMA map against the teacher's ODE
  map (Heun, 64 steps per unit time) on exact samples x_s of ρ_s, per
  interval of the K-step grid (mean squared distance, next to how far the
  interval moves points), and from each of --jump_starts to 1 both the one
  jump X_{s,1} and the K-step sampler's chain (kl_hist of their samples
  beside the ODE's from the same points).
  Writes results/fmm_intervals<suffix>.json.

`--setup=digits` (PROTOCOL.md change 35) runs the `teacher`, `students`,
`verdict` and `merge` stages on sklearn digits (8×8) instead: the teacher
configs/digits_fm.py (runs/claims002/teacher_digits, fd_digits of its EMA
at Heun 20 every 500 steps while it trains), the UNet students of
configs/digits_fmm_lmd.py and its `:emd` variant (workdirs
runs/claims002/digits_<arm>_s<seed>), the metric `fd_digits` (Fréchet
distance in the offline digits classifier's features, 1,000 samples
against 1,000 reference images, a floor from real images beside it) at 1,
2 and 4 steps, the same threshold rule (2× the teacher's Heun-20 score);
records results/claims_002_digits_teacher.json and
claims_002_digits_lmd_vs_emd[<suffix>].json. The speed and intervals
stages are the checkerboard's only.

`--setup=digits_mlp` (PROTOCOL.md change 48) is the same on a CPU
stand-in: the teacher configs/digits_fm.py:mlp and the students
configs/digits_fmm_lmd.py:mlp / `:emd,mlp`, MLPs (512, 512, 512) on the
flattened image (runs/claims002/teacher_digits_mlp,
runs/claims002/digits_mlp_<arm>_s<seed>; records
claims_002_digits_mlp_teacher.json, claims_002_digits_mlp_lmd_vs_emd.json).

Rows: one per (arm, seed, evaluation step, sample_steps) with keys arm,
seed, step, metric, value, sample_steps; each file has a `claim` block
(paper, claim, paper_figure, metric, budget, seeds, verdict,
verdict_reason, our_figure). Verdict rules (PROTOCOL.md): "A better than
B" needs mean_A + std_A < mean_B − std_B, and a budget counts only if every
arm's curve has flattened (last two evaluations differ by less than the
seed std of the last).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from common import machine_info, print_table, read_result, result_path, write_result  # noqa: E402  pylint: disable=g-import-not-at-top
import split  # noqa: E402  pylint: disable=g-import-not-at-top
import verdicts  # noqa: E402  pylint: disable=g-import-not-at-top

TEACHER_SPEC = "configs/toy_fm.py:xl"
TEACHER_DIR = os.path.join("runs", "claims002", "teacher_xl")
N = 100_000           # samples per kl_hist (and reference samples)
TEACHER_STEPS = 16    # Heun steps of the teacher's reference KL
FLOOR_FACTOR = 3.0    # the protocol's teacher target: KL <= 3 × floor
# One teacher seed, so no seed std: its curve counts as flat when the last
# two evaluations differ by less than this fraction of the last (change 23).
TEACHER_FLAT_REL = 0.05
THRESHOLD_FACTOR = 2.0
KS = (1, 2, 4, 8)
EMA_DECAY = 0.99
METRIC = "kl_hist"


@dataclasses.dataclass(frozen=True)
class Setup:
  """What `--setup` fixes: the teacher, the metric, the sampling steps
  scored and the students' configs and record."""
  name: str
  teacher_config: str
  teacher_workdir: str
  teacher_steps: int          # Heun steps of the teacher's reference score
  teacher_ks: Tuple[int, ...]
  teacher_eval_every: int
  metric: str                 # lower is better
  short: str                  # its name in summaries: kl@1, fd@1
  metric_text: str            # how it is computed (for the record)
  num_samples: int            # samples per score (and reference points)
  ks: Tuple[int, ...]         # sampling steps scored
  arms: Tuple[str, ...]       # the default --arms
  allowed_arms: Tuple[str, ...]
  record: str                 # the students' record, before the suffix
  teacher_record: str
  data_text: str
  # Digits: variants of configs/digits_fmm_lmd.py every student gets
  # (besides `:emd` for EMD), e.g. ('mlp',).
  student_variants: Tuple[str, ...] = ()

  def student_spec(self, arm: str) -> str:
    name, _, variant = arm.partition(":")
    if self.name != "checkerboard":   # one config; EMD is its `:emd` variant
      variants = (("emd",) if name == "emd" else ()) + self.student_variants
      return "configs/digits_fmm_lmd.py" + (
          ":" + ",".join(variants) if variants else "")
    return f"configs/checkerboard_fmm_{name}.py" + (f":{variant}" if variant
                                                    else "")


SETUPS = {
    "checkerboard": Setup(
        name="checkerboard", teacher_config=TEACHER_SPEC,
        teacher_workdir=TEACHER_DIR, teacher_steps=TEACHER_STEPS,
        teacher_ks=(8, 16), teacher_eval_every=5000, metric=METRIC,
        short="kl", metric_text="kl_hist over 50×50 histograms",
        num_samples=N, ks=KS,
        arms=("lmd", "emd", "lmd:stop_grad"),
        allowed_arms=("lmd", "emd", "lmd:stop_grad", "direct",
                      "progressive"),
        record="claims_002_lmd_vs_emd", teacher_record="claims_002_teacher",
        data_text="2-D checkerboard"),
    # PROTOCOL.md change 35: LMD vs EMD on sklearn digits (8×8), the
    # configs' UNet students of the configs/digits_fm.py teacher.
    "digits": Setup(
        name="digits", teacher_config="configs/digits_fm.py",
        teacher_workdir=os.path.join("runs", "claims002", "teacher_digits"),
        teacher_steps=20, teacher_ks=(4, 8, 20), teacher_eval_every=500,
        metric="fd_digits", short="fd",
        metric_text="fd_digits, the Fréchet distance in the offline "
                    "digits classifier's features",
        num_samples=1000, ks=(1, 2, 4), arms=("lmd", "emd"),
        allowed_arms=("lmd", "emd"),
        record="claims_002_digits_lmd_vs_emd",
        teacher_record="claims_002_digits_teacher",
        data_text="sklearn digits (8×8)"),
}
# PROTOCOL.md change 48: the digits comparison on a CPU stand-in, an MLP
# (512, 512, 512) on the flattened image for the teacher
# (configs/digits_fm.py:mlp) and the students (digits_fmm_lmd.py:mlp).
SETUPS["digits_mlp"] = dataclasses.replace(
    SETUPS["digits"], name="digits_mlp",
    teacher_config="configs/digits_fm.py:mlp",
    teacher_workdir=os.path.join("runs", "claims002", "teacher_digits_mlp"),
    teacher_eval_every=2000, record="claims_002_digits_mlp_lmd_vs_emd",
    teacher_record="claims_002_digits_mlp_teacher",
    data_text="sklearn digits (8×8), MLP stand-in", student_variants=("mlp",))


def setup_of(a) -> Setup:
  """The `--setup` of a command line or a record's args (records from
  before the option are the checkerboard's)."""
  if isinstance(a, dict):
    return SETUPS[a.get("setup") or "checkerboard"]
  return SETUPS[getattr(a, "setup", None) or "checkerboard"]


# ------------------------------------------------------------ statistics --
def mean_std(values: Sequence[float]) -> Dict[str, Optional[float]]:
  """`verdicts.summarize` (mean, sample std with ddof = 1, min, max, n) of
  the values that are not None; all None when there are none."""
  v = [x for x in values if x is not None]
  if not v:
    return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
  return verdicts.summarize(v)


# PROTOCOL.md: A better (lower) than B iff mean_A + std_A < mean_B − std_B.
better = verdicts.better_summary


def steps_to_threshold(curve: Sequence[Dict], threshold: float
                       ) -> Optional[int]:
  """First evaluated step whose value is <= threshold (None if never);
  `curve`: rows {step, value} in any order."""
  for r in sorted(curve, key=lambda r: r["step"]):
    if r["value"] is not None and np.isfinite(r["value"]) \
        and r["value"] <= threshold:
      return r["step"]
  return None


def flattened(curves: Sequence[Sequence[Dict]]) -> Dict:
  """PROTOCOL.md's rule (`verdicts.flattened`) on an arm's curves, one list
  of {step, value} per seed (same steps), with the numbers it compared."""
  steps = sorted({r["step"] for c in curves for r in c})
  if len(steps) < 2:
    return {"flat": False, "last_change": None, "last_std": None}
  at = [[r["value"] for c in curves for r in c if r["step"] == s]
        for s in steps[-2:]]
  prev, last = mean_std(at[0]), mean_std(at[1])
  return {"flat": bool(verdicts.flattened(at)) if last["n"] > 1 else False,
          "last_change": abs(last["mean"] - prev["mean"]),
          "last_std": last["std"]}


def _fmt_ms(s: Dict, digits: int = 3) -> str:
  """`verdicts.format_summary` ('m ± s (95% [lo, hi], n = k)', the results
  page's form, `digits` significant digits), 'n/a' without values."""
  if s["mean"] is None:
    return "n/a"
  return verdicts.format_summary(s, digits)


def summarise(rows: List[Dict], teacher_kl: float, budget: int,
              setup: Optional[Setup] = None) -> Dict:
  """Per arm: final kl@K (fd@K on digits; mean ± std over seeds),
  flattening at 1 step, steps to the threshold per seed; and the
  LMD-vs-EMD verdict. `teacher_kl`: the teacher's reference score."""
  setup = setup or SETUPS["checkerboard"]
  ks, short = setup.ks, setup.short
  threshold = THRESHOLD_FACTOR * teacher_kl
  arms = sorted({r["arm"] for r in rows})
  out = {"threshold": threshold, "arms": {}}
  for arm in arms:
    seeds = sorted({r["seed"] for r in rows if r["arm"] == arm})
    curve = {(s, k): [r for r in rows if r["arm"] == arm and r["seed"] == s
                      and r["sample_steps"] == k] for s in seeds for k in ks}
    last = max(r["step"] for r in rows if r["arm"] == arm)
    final = {k: mean_std([r["value"] for s in seeds for r in curve[(s, k)]
                          if r["step"] == last]) for k in ks}
    reach = {s: steps_to_threshold(curve[(s, 1)], threshold) for s in seeds}
    out["arms"][arm] = {
        "seeds": seeds, "last_step": last,
        "final": {f"{short}@{k}": final[k] for k in ks},
        "flat@1": flattened([curve[(s, 1)] for s in seeds]),
        "steps_to_threshold": reach,
        "steps_to_threshold_stats": mean_std(list(reach.values()))
        if all(v is not None for v in reach.values()) else None}
  out["verdict"], out["verdict_reason"] = verdict(out, budget, short)
  return out


def verdict(summary: Dict, budget: int, short: str = "kl"):
  """LMD reaches the threshold in fewer steps than EMD (PROTOCOL.md);
  `short`: the metric's name in the summary (kl, fd)."""
  name = short.upper()
  arms = summary["arms"]
  if "lmd" not in arms or "emd" not in arms:
    return verdicts.NOT_TESTABLE, "LMD or EMD rows missing"
  lmd, emd = arms["lmd"], arms["emd"]
  if min(len(lmd["seeds"]), len(emd["seeds"])) < 3:
    return (verdicts.NOT_TESTABLE, f"fewer than 3 seeds (LMD {lmd['seeds']}, "
            f"EMD {emd['seeds']})")
  thr = summary["threshold"]
  l_s, e_s = lmd["steps_to_threshold_stats"], emd["steps_to_threshold_stats"]
  if l_s is None and e_s is None:
    result, detail = None, (
        f"neither arm's 1-step {name} reached the threshold {thr:.4f} (2× the "
        f"teacher's) on every seed within {budget} steps (LMD "
        f"{lmd['steps_to_threshold']}, EMD {emd['steps_to_threshold']})")
  elif e_s is None:
    result, detail = "reproduced", (
        f"LMD reached the threshold {thr:.4f} on every seed (steps "
        f"{_fmt_ms(l_s, 5)}); EMD not on every seed within {budget} steps "
        f"({emd['steps_to_threshold']})")
  elif l_s is None:
    result, detail = "not reproduced", (
        f"EMD reached the threshold {thr:.4f} on every seed (steps "
        f"{_fmt_ms(e_s, 5)}); LMD not on every seed within {budget} steps "
        f"({lmd['steps_to_threshold']})")
  else:
    detail = (f"steps to 1-step {name} <= {thr:.4f}: LMD {_fmt_ms(l_s, 5)}, "
              f"EMD {_fmt_ms(e_s, 5)}")
    result = ("reproduced" if better(l_s, e_s) else
              "not reproduced" if better(e_s, l_s) else "within noise")
  # Beside the protocol's rule (not part of it): the final 1-step scores.
  fl, fe = lmd["final"][f"{short}@1"], emd["final"][f"{short}@1"]
  detail += (f"; final 1-step {name} LMD {_fmt_ms(fl)}, EMD {_fmt_ms(fe)}: "
             + ("LMD better" if better(fl, fe) else
                "EMD better" if better(fe, fl) else "within noise")
             + " by the mean ± std rule (reported, not the verdict)")
  # PROTOCOL.md: a budget counts only if every arm's curve has flattened.
  not_flat = [a for a in ("lmd", "emd") if not arms[a]["flat@1"]["flat"]]
  if not_flat:
    return "not reached at this budget", (
        f"1-step {name} curves not flat at the end (last change >= seed std: "
        f"{not_flat}); "
        f"{detail}" + (f"; would read: {result}" if result else ""))
  if result is None:
    return "not reached at this budget", detail
  return result, detail


# ---------------------------------------------------------------- stages --
def _jax_imports():
  """Heavy imports, only for the stages that train or sample."""
  # pylint: disable=g-import-not-at-top
  import jax
  import fmm_convergence
  from gcflow_jax import checkpoint as ckpt_lib
  from gcflow_jax import evaluation, train
  from gcflow_jax.methods import flow_maps
  return jax, fmm_convergence, ckpt_lib, evaluation, train, flow_maps


def fingerprint(params) -> str:
  """16 hex digits of the SHA-256 of a parameter tree's leaves (path, dtype,
  shape and bytes, in the tree's order): equal for the same parameters on
  any machine, different after any change of a value, so a students run can
  say which teacher it was distilled from (a teacher retrained on another
  machine or session may differ in the last bits)."""
  import hashlib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    x = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{x.dtype}|{x.shape}|".encode())
    h.update(x.tobytes())
  return h.hexdigest()[:16]


def teacher_note(runs: Dict, recorded: Optional[str]) -> str:
  """What the runs' teacher fingerprints say, for a record's verdict
  reason: '' when every run names the recorded teacher; otherwise which
  runs came from which teacher (or from an unrecorded one). Runs trained
  without a teacher (`teacher_free`) are left out."""
  runs = {k: r for k, r in runs.items() if not r.get("teacher_free")}
  if not any(r.get("teacher_fingerprint") for r in runs.values()):
    return ""     # runs from before fingerprints: nothing is known
  by_fp = {}
  for name, r in sorted(runs.items()):
    by_fp.setdefault(r.get("teacher_fingerprint"), []).append(name)
  if recorded and set(by_fp) == {recorded}:
    return ""
  parts = [f"{fp if fp else 'not recorded'}"
           f"{' (the teacher record)' if fp and fp == recorded else ''}: "
           f"{', '.join(names)}" for fp, names in by_fp.items()]
  return ("; students distilled from teacher parameters " + "; ".join(parts)
          + " (same teacher config and seed; a retrained teacher may differ "
          "in the last bits)")


def teacher_overrides(a) -> Dict[str, object]:
  return {"teacher.config": a.teacher_config,
          "teacher.workdir": a.teacher_workdir}


def _num_params(params) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return sum(x.size for x in jax.tree_util.tree_leaves(params))


def teacher_flat(curve: Sequence[Dict]) -> Dict:
  """The single-seed rule of change 23 on the teacher's curve rows {step,
  value}: flat iff |last − previous| < TEACHER_FLAT_REL × last."""
  c = sorted(curve, key=lambda r: r["step"])
  if len(c) < 2:
    return {"flat": False, "last_change": None, "rel": None}
  change = abs(c[-1]["value"] - c[-2]["value"])
  rel = change / c[-1]["value"]
  return {"flat": bool(rel < TEACHER_FLAT_REL), "last_change": change,
          "rel": rel, "steps": [c[-2]["step"], c[-1]["step"]]}


def train_teacher_curve(a, tcfg, reference, fc, ckpt_lib, train):
  """Trains the teacher into a.teacher_workdir (unless a finished run is
  there) with the setup's metric of its EMA at Heun `teacher_steps` every
  a.teacher_eval_every steps; returns the curve rows ([] if not trained)."""
  setup = setup_of(a)
  k = setup.teacher_steps
  step = train.latest_step(a.teacher_workdir)
  if step is not None:
    if step < tcfg.train.steps:
      raise SystemExit(
          f"{a.teacher_workdir} stops at step {step} of {tcfg.train.steps} "
          "(an interrupted curve run; the cosine schedule cannot resume "
          "into the same curve): move it away and rerun")
    print(f"[teacher] {a.teacher_workdir} is finished (step {step}); no "
          "curve is trained", flush=True)
    return []
  print(f"[teacher] training {a.teacher_config} into {a.teacher_workdir}, "
        f"{setup.metric} every {a.teacher_eval_every} steps", flush=True)
  curve, _, state = fc.train_curve(
      tcfg, a.teacher_eval_every, fc.quality_fn(setup.metric, reference),
      a.num_samples, eval_steps=(k,),
      log=lambda s: print("  " + s, flush=True))
  ck = ckpt_lib.Checkpointer(a.teacher_workdir)
  ck.save(tcfg.train.steps, state, force=True)
  ck.close()
  return [{"step": r["step"], "value": r[f"q@{k}"],
           "train_loss": r["loss"], "train_sec": r["train_sec"],
           "load1": r["load1"]} for r in curve]


def _teacher_claim(setup: Setup, a, value: float, floor: Dict, flat: Dict,
                   flat_txt: str, budget: str, seed: int) -> Dict:
  """The teacher's claim block: on the checkerboard the protocol's target
  (KL <= FLOOR_FACTOR × the floor, curve flat); on digits no target, the
  teacher only sets the students' threshold (PROTOCOL.md change 35)."""
  ratio = value / floor["mean"]
  text = (f"{floor['mean']:.4f} ± {floor['std']:.4f}")
  if setup.name == "checkerboard":
    return {
        "paper": "002", "claim": "checkerboard flow-matching teacher within "
        f"{FLOOR_FACTOR:g}× of exact samples' kl_hist floor (precondition "
        "of the LMD/EMD comparison)",
        "paper_figure": "follow-up (Boffi et al. 2025) checkerboard KL 0.07 "
        "at 8 steps with a ~1M-parameter MLP (self-distillation, not a "
        "teacher)",
        "metric": f"kl_hist 50×50, {a.num_samples:,} samples, Heun "
                  f"{setup.teacher_steps} steps",
        "budget": budget, "seeds": [seed],
        "verdict": verdicts.outcome(ratio <= FLOOR_FACTOR, flat["flat"]),
        "verdict_reason": (f"teacher KL {value:.4f} = {ratio:.1f}× the floor "
                           f"{text} (target <= {FLOOR_FACTOR:g}×); "
                           f"{flat_txt}; earlier teachers: configs/toy_fm.py "
                           "0.355, :large (6,000 steps) 0.238"),
        "our_figure": f"{value:.4f} (floor {floor['mean']:.4f})"}
  return {
      "paper": "002", "claim": f"{setup.data_text} flow-matching teacher "
      "(sets the threshold of the digits LMD/EMD comparison)",
      "paper_figure": "no digits experiment in the paper",
      "metric": f"{setup.metric}, {a.num_samples:,} samples, Heun "
                f"{setup.teacher_steps} steps",
      "budget": budget, "seeds": [seed], "verdict": verdicts.MEASURED,
      "verdict_reason": (f"teacher {setup.metric} {value:.4f} = "
                         f"{ratio:.1f}× the floor {text} (real data against "
                         f"the reference, 3 draws); {flat_txt}"),
      "our_figure": f"{value:.4f} (floor {floor['mean']:.4f})"}


def stage_teacher(a):
  jax, fc, ckpt_lib, _, train, flow_maps = _jax_imports()
  setup = setup_of(a)
  tcfg = fc.load(a.teacher_config)
  t0 = time.perf_counter()
  dataset = fc.data.make_dataset(tcfg.data, 0)
  reference = dataset.reference(a.num_samples)
  score = fc.quality_fn(setup.metric, reference)
  curve = (train_teacher_curve(a, tcfg, reference, fc, ckpt_lib, train)
           if a.teacher_eval_every else [])
  if not curve:
    old = read_result(setup.teacher_record) or {}
    if old.get("teacher", {}).get("config") == a.teacher_config:
      curve = old.get("curve", [])
  # The students' own teacher (EMA parameters; trained first if missing).
  teacher = train.restore_teacher(student_config("lmd", 0, a.steps, a),
                                  dataset.shape)
  floors = [score(dataset.global_batch(10**6 + i, a.num_samples))
            for i in range(3)]
  floor = mean_std(floors)
  ode = jax.jit(flow_maps.make_teacher_ode_sampler(
      teacher.velocity, dataset.shape, "heun"), static_argnums=(2, 3))
  key = jax.random.key(2024)
  chunks = min(5, a.num_samples)
  rows = []
  for k in a.teacher_ks:
    x = np.concatenate([np.asarray(ode(
        teacher.params, jax.random.fold_in(key, i), a.num_samples // chunks,
        k)) for i in range(chunks)])
    rows.append({"arm": "teacher", "seed": tcfg.seed,
                 "step": teacher.step, "metric": setup.metric,
                 "value": score(x), "sample_steps": k, "solver": "heun",
                 "nfe": 2 * k})
    print_table(rows[-1:], ["arm", "sample_steps", "value"])
  value = next(r["value"] for r in rows
               if r["sample_steps"] == setup.teacher_steps)
  # PROTOCOL.md: without a curve (fewer than two evaluations) flattening
  # is unknown, so the budget does not count whatever the ratio.
  flat = teacher_flat(curve)
  if flat["rel"] is None:
    flat_txt = "no training curve recorded, so its flattening is unknown"
  else:
    flat_txt = (f"curve ({setup.metric} every "
                f"{curve[1]['step'] - curve[0]['step']} steps) "
                f"{'flat' if flat['flat'] else 'not flat'}: last change "
                f"{flat['rel']:.1%} of the last value (rule < "
                f"{TEACHER_FLAT_REL:.0%})")
  num_params = _num_params(teacher.params)
  budget = (f"{tcfg.train.steps} steps × batch {tcfg.train.batch_size}, "
            f"{_model_text(tcfg)} ({num_params:,} params), "
            f"{tcfg.optim.name} lr {tcfg.optim.lr} {tcfg.optim.schedule}, "
            f"EMA {tcfg.ema.decay}")
  claim = _teacher_claim(setup, a, value, floor, flat, flat_txt, budget,
                         tcfg.seed)
  print(claim["verdict_reason"])
  print("wrote", write_result(setup.teacher_record, rows, {
      "claim": claim, "floor": {**floor, "draws": floors},
      "curve": curve, "curve_flat": flat,
      "teacher": {"config": a.teacher_config, "workdir": a.teacher_workdir,
                  "num_params": num_params,
                  "fingerprint": fingerprint(teacher.params),
                  "wall_sec_this_command": time.perf_counter() - t0},
      "args": vars(a)}))


def _model_text(cfg) -> str:
  """The network of a config, for budgets: 'MLP (512, 512, 512)' or
  'UNet 32 channels, mult (1, 2)'."""
  if cfg.model.name == "mlp":
    return f"MLP {tuple(cfg.model.mlp.hidden)}"
  return (f"UNet {cfg.model.unet.model_channels} channels, mult "
          f"{tuple(cfg.model.unet.channel_mult)}")


def _width(a) -> int:
  """--student_width (0: the configs' student MLP); records written before
  the option existed have none."""
  return int(getattr(a, "student_width", 0) or 0)


def _tag(a) -> str:
  """--tag ('' without one, and for records from before the option)."""
  return getattr(a, "tag", "") or ""


def _suffix(a) -> str:
  """`_w<width>` for students of another width, then `_<tag>` for a
  --tag (another budget of the same students): each its own record and
  workdirs, so one budget never mixes with or overwrites another."""
  w, tag = _width(a), _tag(a)
  return (f"_w{w}" if w else "") + (f"_{tag}" if tag else "")


def _claim_qualifier(a, steps: Optional[int] = None) -> str:
  """' (students 512 wide, 20000 steps)': what sets a record's claim row
  apart from the main one (the width, and the steps of a --tag budget:
  `steps`, the students record's, where the stage reads one; else
  --steps)."""
  parts = ([f"students {_width(a)} wide"] if _width(a) else []) + (
      [f"{a.steps if steps is None else steps} steps"] if _tag(a) else [])
  return f" ({', '.join(parts)})" if parts else ""


def students_record(a) -> str:
  """The students' record: claims_002_lmd_vs_emd (claims_002_digits_lmd_vs_emd
  for --setup=digits) + `_suffix` (a separate claim row)."""
  return setup_of(a).record + _suffix(a)


def speed_record(a) -> str:
  """The speed claim of the students `a` names (its own claim row)."""
  return "claims_002_speed" + _suffix(a)


def _student_workdir(arm: str, seed: int, a=None) -> str:
  setup = setup_of(a)     # None (no args): the checkerboard's
  prefix = "" if setup.name == "checkerboard" else setup.name + "_"
  return os.path.join("runs", "claims002", prefix + arm.replace(":", "_")
                      + _suffix(a) + f"_s{seed}")


def student_config(arm: str, seed: int, steps: int, a):
  _, fc, *_ = _jax_imports()
  spec = setup_of(a).student_spec(arm)
  w = _width(a)
  return fc.load(spec, {"train.steps": steps, "seed": seed,
                        "ema.decay": EMA_DECAY, "train.plot": False,
                        **teacher_overrides(a),
                        **({"model.mlp.hidden": (w, w, w)} if w else {})})


def stage_students(a):
  if a.cores:
    return stage_students_split(a)
  jax, fc, ckpt_lib, *_ = _jax_imports()
  setup = setup_of(a)
  teacher = read_result(setup.teacher_record)
  if not teacher:
    raise SystemExit(f"no results/{setup.teacher_record}.json: run the "
                     f"`teacher` stage (--setup={setup.name}) first (its "
                     "score sets the threshold)")
  teacher_kl = next(r["value"] for r in teacher["rows"]
                    if r["sample_steps"] == setup.teacher_steps)
  teacher_fp = teacher.get("teacher", {}).get("fingerprint")
  old = read_result(students_record(a))
  if old and any(_budget_arg(old["args"], k) != _budget_arg(vars(a), k)
                 for k in STUDENT_BUDGET):
    raise SystemExit(
        f"results/{students_record(a)}.json holds runs of another budget ("
        + ", ".join(f"{k}={_budget_arg(old['args'], k)}"
                    for k in STUDENT_BUDGET)
        + "); move it away first (its rows would be mixed or lost)")
  rows = list(old.get("rows", []))
  runs = dict(old.get("runs", {}))
  for seed in a.seeds:
    for arm in a.arms:
      if any(r["arm"] == arm and r["seed"] == seed for r in rows):
        print(f"{arm} seed {seed}: already in the results, skipped")
        continue
      config = student_config(arm, seed, a.steps, a)
      ds_ref = fc.data.make_dataset(config.data, 0).reference(a.num_samples)
      print(f"== {arm} seed {seed}: {a.steps} steps", flush=True)
      t0 = time.perf_counter()
      curve, run, state = fc.train_curve(
          config, a.eval_every, fc.quality_fn(setup.metric, ds_ref),
          a.num_samples, eval_steps=setup.ks,
          log=lambda s: print("  " + s, flush=True),
          full_every=a.full_every)
      for r in curve:
        for k in (k for k in setup.ks if f"q@{k}" in r):
          rows.append({"arm": arm, "seed": seed, "step": r["step"],
                       "metric": setup.metric, "value": r[f"q@{k}"],
                       "sample_steps": k, "train_loss": r["loss"],
                       "train_sec": r["train_sec"], "load1": r["load1"]})
      workdir = _student_workdir(arm, seed, a)
      ck = ckpt_lib.Checkpointer(workdir)
      ck.save(a.steps, state, force=True)
      ck.close()
      # A student trained from data (direct) has no teacher to name.
      fp = None if run.teacher is None else fingerprint(run.teacher.params)
      if fp is not None and fp != teacher_fp:
        print(f"[teacher] fingerprint {fp} is not the teacher record's "
              f"({teacher_fp}): a "
              "retrained teacher; the run records which it used", flush=True)
      runs[f"{arm}/s{seed}"] = {"wall_sec": time.perf_counter() - t0,
                                "teacher_fingerprint": fp,
                                **({"teacher_free": True} if fp is None
                                   else {}),
                                "workdir": workdir,
                                "date": machine_info()["date"],
                                "loadavg_at_end": os.getloadavg()}
      write_students(rows, runs, teacher_kl, a, teacher_fp=teacher_fp)
  write_students(rows, runs, teacher_kl, a, teacher_fp=teacher_fp)


def split_jobs(a, done: Sequence) -> List[Dict]:
  """The `students --cores=...` plan: one job per (arm, seed) of --arms ×
  --seeds not in `done` (the record's finished pairs), each with its own
  GCFLOW_BENCH_DIR under runs/claims002/split/<record>/ and the one-run
  `students` command line (the record's budget, that arm and seed)."""
  root = os.path.join("runs", "claims002", "split", students_record(a))
  done = set(map(tuple, done))
  jobs = []
  for seed in a.seeds:
    for arm in a.arms:
      if (arm, seed) in done:
        continue
      argv = reproduce_command(vars(a), [arm], [seed]).split()[1:]
      jobs.append({"arm": arm, "seed": seed, "argv": argv,
                   "dir": os.path.join(root, f"{arm.replace(':', '_')}"
                                       f"_s{seed}")})
  return jobs


def _job_finished(job, a) -> bool:
  path = os.path.join(job["dir"], students_record(a) + ".json")
  if not os.path.exists(path):
    return False
  with open(path) as f:
    rows = json.load(f)["rows"]
  return any(r["arm"] == job["arm"] and r["seed"] == job["seed"]
             and r["step"] == a.steps for r in rows)


def split_teacher_command(a, recorded: bool) -> List[str]:
  """The one process that readies the teacher before a split: without a
  teacher record, the `teacher` stage (trains and records it); with one
  (e.g. a new machine without runs/), the main trainer on the teacher
  config into the teacher workdir, as a single `students` process would:
  the record, hence the students' threshold, stays, and each run records
  the fingerprint of the parameters it was distilled from."""
  if not recorded:
    return [sys.executable, os.path.abspath(__file__), "teacher",
            f"--setup={setup_of(a).name}",
            f"--teacher_config={a.teacher_config}",
            f"--teacher_workdir={a.teacher_workdir}",
            f"--teacher_ks={','.join(map(str, a.teacher_ks))}",
            f"--teacher_eval_every={a.teacher_eval_every}",
            f"--num_samples={a.num_samples}"]
  return [sys.executable, "-m", "gcflow_jax.main",
          f"--config={a.teacher_config}", f"--workdir={a.teacher_workdir}"]


def stage_students_split(a):
  """`students --cores=C1,C2,...`: the runs of --arms × --seeds as separate
  `students` processes, at most one per listed core at a time, each pinned
  to its core with one XLA thread and writing its own directory; then
  `merge` of every finished one into the results. The teacher is readied
  first by one process on the first core (`split_teacher_command`), since
  the students processes must not each train it. Rerunning the command
  skips runs already in the results or finished in their directory, so a
  killed split resumes."""
  import shutil  # pylint: disable=g-import-not-at-top
  _, fc, _, _, train, _ = _jax_imports()
  teacher_path = result_path(setup_of(a).teacher_record)
  want = fc.load(a.teacher_config).train.steps

  def teacher_ready():
    return (os.path.exists(teacher_path)
            and train.latest_step(a.teacher_workdir) == want)

  if not teacher_ready():
    cmd = split_teacher_command(a, os.path.exists(teacher_path))
    log_path = os.path.join("runs", "claims002", "split",
                            students_record(a), "teacher_log.txt")
    print(f"[split] readying the teacher: {' '.join(cmd[1:])}", flush=True)
    # gcflow_jax.main does not read split.PIN_ENV: run_on_cores also pins
    # the child by PID.
    if split.run_on_cores([split.Job("teacher", cmd[1:], log_path)],
                          a.cores[:1]) or not teacher_ready():
      raise SystemExit(f"[split] the teacher is not ready; see {log_path}")
  old = read_result(students_record(a))
  done = {(r["arm"], r["seed"]) for r in old.get("rows", [])}
  jobs = split_jobs(a, done)
  pending = [j for j in jobs if not _job_finished(j, a)]
  print(f"[split] {len(jobs)} runs to merge, {len(pending)} to train on "
        f"cores {list(a.cores)}", flush=True)
  for job in pending:
    os.makedirs(job["dir"], exist_ok=True)
    shutil.copy(teacher_path, job["dir"])
  by_name = {f"{j['arm']} seed {j['seed']}": j for j in pending}
  failed = split.run_on_cores(
      [split.Job(name, [os.path.abspath(__file__), *j["argv"]],
                 os.path.join(j["dir"], "log.txt"),
                 {"GCFLOW_BENCH_DIR": j["dir"]})
       for name, j in by_name.items()],
      a.cores, lambda job: _job_finished(by_name[job.name], a))
  merge = [j["dir"] for j in jobs if _job_finished(j, a)]
  if merge:
    stage_merge(argparse.Namespace(**{**vars(a), "merge_from": merge}))
  if failed:
    raise SystemExit("[split] failed runs (their logs): " + ", ".join(
        job.log for job in failed))


def write_students(rows, runs, teacher_kl, a, extra=None, teacher_fp=None):
  """Summarises `rows` and writes the students' record; `teacher_fp`: the
  teacher record's parameter fingerprint (each run names its own)."""
  setup = setup_of(a)
  ks, short = setup.ks, setup.short
  cfg = student_config("lmd", 0, a.steps, a)
  summary = summarise(rows, teacher_kl, a.steps, setup)
  table = []
  for arm, s in summary["arms"].items():
    table.append({"arm": arm, "seeds": len(s["seeds"]),
                  **{k: _fmt_ms(v) for k, v in s["final"].items()},
                  "flat@1": s["flat@1"]["flat"],
                  "steps_to_thr": str(s["steps_to_threshold"])})
  print_table(table, ["arm", "seeds", *[f"{short}@{k}" for k in ks],
                      "flat@1", "steps_to_thr"])
  arms = summary["arms"]
  order = ["lmd", "emd"] + sorted(set(arms) - {"lmd", "emd"})
  fig = "; ".join(f"{arm}: steps-to-threshold {arms[arm]['steps_to_threshold']}"
                  f", final {short}@1 "
                  f"{_fmt_ms(arms[arm]['final'][f'{short}@1'])}"
                  for arm in order if arm in arms)
  on = "" if setup.name == "checkerboard" else f", on {setup.data_text}"
  claim = {
      "paper": "002",
      "claim": "Lagrangian map distillation (LMD) reaches a fixed quality in "
               "fewer training steps than Eulerian (EMD)" + on
               + _claim_qualifier(a),
      "paper_figure": "Boffi et al. 2024, LMD vs EMD training curves "
                      "(LMD about an order of magnitude faster, on images)",
      "metric": (f"steps until the 1-step {setup.metric_text} "
                 f"({a.num_samples:,} samples) <= {THRESHOLD_FACTOR:g}× the "
                 f"teacher's Heun-{setup.teacher_steps} score "
                 f"({teacher_kl:.4f}); {short} at "
                 f"{'/'.join(map(str, ks))} steps"),
      "budget": (f"{a.steps} steps × batch {cfg.train.batch_size} per arm, "
                 f"{_model_text(cfg)}, {cfg.optim.name} "
                 f"{cfg.optim.lr} {cfg.optim.schedule}, EMA {EMA_DECAY}; "
                 f"1-step {short.upper()} every {a.eval_every} steps, "
                 f"{'/'.join(map(str, ks))} every {a.full_every}; teacher "
                 f"{a.teacher_config}"),
      "seeds": sorted({r["seed"] for r in rows}),
      "verdict": summary["verdict"],
      "verdict_reason": summary["verdict_reason"]
                        + teacher_note(runs, teacher_fp),
      "our_figure": fig}
  ablation = None
  if "lmd" in arms and "lmd:stop_grad" in arms:
    fa = arms["lmd"]["final"][f"{short}@1"]
    fb = arms["lmd:stop_grad"]["final"][f"{short}@1"]
    ablation = {
        "claim": "fmm.stop_grad_target (semi-gradient LMD) vs the paper's "
                 "full-gradient LMD, 1-step kl at the end of the budget",
        "lmd": _fmt_ms(fa), "lmd:stop_grad": _fmt_ms(fb),
        "result": ("full gradient better" if better(fa, fb) else
                   "stop-gradient better" if better(fb, fa) else
                   "within noise")}
  return write_result(students_record(a), rows, {
      "claim": claim, "summary": table, "detail": summary,
      "ablation_stop_grad": ablation, "teacher_kl": teacher_kl,
      "teacher_fingerprint": teacher_fp,
      "runs": runs, "args": vars(a),
      "reproduce_command": reproduce_command(
          vars(a), sorted({r["arm"] for r in rows}),
          sorted({r["seed"] for r in rows})),
      **(extra or {})})


def reproduce_command(args: Dict, arms: Sequence[str],
                      seeds: Sequence[int]) -> str:
  """The one `students` command that redoes every (arm, seed) of a record
  in a single process (a record merged from split processes names the
  merge, not the runs)."""
  setup = setup_of(args)
  cmd = (f"benchmarks/claims/fmm_claims.py students --arms={','.join(arms)} "
         f"--seeds={','.join(map(str, seeds))}")
  if setup.name != "checkerboard":
    cmd += f" --setup={setup.name}"
  for k in ("steps", "eval_every", "full_every"):
    cmd += f" --{k}={args[k]}"
  if args.get("num_samples", setup.num_samples) != setup.num_samples:
    cmd += f" --num_samples={args['num_samples']}"
  for k, default in (("teacher_config", setup.teacher_config),
                     ("teacher_workdir", setup.teacher_workdir)):
    if args.get(k, default) != default:
      cmd += f" --{k}={args[k]}"
  if _width(argparse.Namespace(**args)):
    cmd += f" --student_width={args['student_width']}"
  if args.get("tag"):
    cmd += f" --tag={args['tag']}"
  return cmd


STUDENT_BUDGET = ("setup", "steps", "eval_every", "full_every",
                  "num_samples", "teacher_config", "teacher_workdir",
                  "student_width")


def _budget_arg(args: Dict, key: str):
  if key == "student_width":
    return _width(argparse.Namespace(**args))
  if key == "setup":
    return setup_of(args).name
  return args.get(key)


def merge_student_results(results: Sequence[Dict]) -> Dict:
  """One claims_002_lmd_vs_emd record from several (seeds split across
  processes or machines): rows and runs concatenated, args' seeds and arms
  the union. Refuses records of different budgets or teachers, and an
  (arm, seed) present twice with different rows (with the same rows it is
  the same run, kept once)."""
  if not results:
    raise SystemExit("merge: nothing to merge")
  first = results[0]
  def key(res):
    return {**{k: _budget_arg(res["args"], k) for k in STUDENT_BUDGET},
            "teacher_kl": res["teacher_kl"]}
  for res in results[1:]:
    want, got = key(first), key(res)
    diff = [f"{k}: {want[k]} vs {got[k]}" for k in want if want[k] != got[k]]
    if diff:
      raise SystemExit("merge: records of different budgets or teachers ("
                       + ", ".join(diff) + ")")
  seen, rows, runs = set(), [], {}
  for res in results:
    pairs = {(r["arm"], r["seed"]) for r in res["rows"]}
    again = pairs & seen
    # The same run merged twice (e.g. a partial merge, then the split's own
    # at its end) is skipped; two different runs of one (arm, seed) are not
    # merged.
    differ = sorted(p for p in again if _run_rows(res["rows"], p)
                    != _run_rows(rows, p))
    if differ:
      raise SystemExit(f"merge: {differ} in more than one record, with "
                       "different rows")
    seen |= pairs
    rows += [r for r in res["rows"] if (r["arm"], r["seed"]) not in again]
    runs.update(res["runs"])
  args = dict(first["args"])
  args["seeds"] = sorted({s for _, s in seen})
  args["arms"] = sorted({a for a, _ in seen})
  # Where and when the runs were measured (a merged record's own list, or
  # its machine block), and the commands that ran them, not the merge's.
  machines = {json.dumps(m, sort_keys=True): m for res in results
              for m in res.get("machines") or [res.get("machine") or {}]}
  commands = {c for res in results
              for c in res.get("run_command", res.get("command", "")).split(
                  "; ") if c}
  return {"rows": rows, "runs": runs, "args": args,
          "teacher_kl": first["teacher_kl"],
          "teacher_fingerprint": next(
              (res["teacher_fingerprint"] for res in results
               if res.get("teacher_fingerprint")), None),
          "machines": sorted(machines.values(),
                             key=lambda m: str(m.get("date"))),
          "run_command": "; ".join(sorted(commands)),
          # Every directory merged into any part, in order, once.
          "merged_from": list(dict.fromkeys(
              d for res in results for d in res.get("merged_from", [])))}


def _run_rows(rows: Sequence[Dict], pair) -> List[str]:
  """The rows of one (arm, seed), as sorted JSON (for comparing runs)."""
  return sorted(json.dumps(r, sort_keys=True) for r in rows
                if (r["arm"], r["seed"]) == tuple(pair))


def stage_merge(a):
  """Merges the claims_002_lmd_vs_emd.json of each --merge_from directory
  into the results (with the record already there, if any)."""
  results = [r for r in [read_result(students_record(a))] if r]
  for d in a.merge_from:
    path = os.path.join(d, students_record(a) + ".json")
    if not os.path.exists(path):
      raise SystemExit(f"--merge_from: {path} does not exist")
    with open(path) as f:
      results.append(json.load(f))
  m = merge_student_results(results)
  print("wrote", write_students(
      m["rows"], m["runs"], m["teacher_kl"], argparse.Namespace(**m["args"]),
      {"merged_from": list(dict.fromkeys([*m["merged_from"],
                                          *a.merge_from])),
       "run_command": m["run_command"],
       "machines": m["machines"], "machine": m["machines"][0]},
      teacher_fp=m["teacher_fingerprint"]))


def stage_verdict(a):
  old = read_result(students_record(a))
  if not old:
    raise SystemExit(f"no results/{students_record(a)}.json")
  ns = argparse.Namespace(**old["args"])
  print("wrote", write_students(
      old["rows"], old["runs"], old["teacher_kl"], ns,
      {"run_command": old.get("run_command", old["command"]),
       # The record stays dated by its runs, not by this re-derivation.
       "machine": old["machine"], "rederived": machine_info()["date"],
       **{k: old[k] for k in ("merged_from", "machines") if k in old}},
      teacher_fp=old.get("teacher_fingerprint")))


def _kept_states(arm: str, seeds, a) -> List[int]:
  """Of `seeds`, those whose `arm` students run kept its final state here
  (its workdir holds checkpoints)."""
  from gcflow_jax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  return sorted(s for s in set(seeds) if os.path.isdir(
      ckpt_lib.checkpoint_dir(_student_workdir(arm, s, a))))


def stage_speed(a):
  seed = a.speed_seed
  old = read_result(students_record(a))
  if not old:
    raise SystemExit(f"run the `students` stage first (LMD seed {seed})")
  kept = _kept_states("lmd", {r["seed"] for r in old["rows"]
                              if r["arm"] == "lmd"}, a)
  if seed not in kept:
    raise SystemExit(
        f"--speed_seed={seed}: {_student_workdir('lmd', seed, a)} holds no "
        f"checkpoint; LMD seeds whose state is kept here: {kept or 'none'} "
        "(a students run keeps its final state on the machine that trained "
        "it)")
  jax, fc, _, _, train, flow_maps = _jax_imports()
  steps = old["args"]["steps"]
  config = student_config("lmd", seed, steps, a)
  run = train.build(config)
  state = train.restore_state(config, _student_workdir("lmd", seed, a), run)
  score = fc.quality_fn(METRIC, run.dataset.reference(a.num_samples))
  key = jax.random.key(7)
  sample = jax.jit(run.method.sample_fn, static_argnums=(2, 3))
  ode = jax.jit(flow_maps.make_teacher_ode_sampler(
      run.teacher.velocity, (2,), "heun"), static_argnums=(2, 3))

  def student(n):
    return sample(state.ema_params, key, n, 1, state.extras)
  teacher_params = _num_params(run.teacher.params)
  student_params = _num_params(state.ema_params)

  def teacher(k):
    return lambda n: ode(run.teacher.params, key, n, k)

  # Quality on num_samples; the teacher's step counts in increasing order
  # until the first one at least as good as the one-step student (the
  # cheapest match: more steps only cost more).
  samplers = {"flow map K=1": (student, 1)}
  quality = {"flow map K=1": score(student(a.num_samples))}
  match = None
  for k in a.ode_ks:
    name = f"teacher Heun {k}"
    samplers[name] = (teacher(k), 2 * k)
    quality[name] = score(teacher(k)(a.num_samples))
    print(f"{name}: {quality[name]:.4f} (student "
          f"{quality['flow map K=1']:.4f})", flush=True)
    if quality[name] <= quality["flow map K=1"]:
      match = name
      break
  # Timing on timing_samples, interleaved: one call of each per round.
  n = a.timing_samples
  for fn, _ in samplers.values():
    jax.block_until_ready(fn(n))          # compile for this size
  times = {name: [] for name in samplers}
  loads = []
  for _ in range(a.repeats):
    for name, (fn, _) in samplers.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(n))
      times[name].append(time.perf_counter() - t0)
    loads.append(os.getloadavg()[0])
  rows = [{"arm": name, "seed": seed, "step": steps, "metric": METRIC,
           "value": quality[name], "sample_steps": nfe, "nfe": nfe,
           "timing_samples": n, "sec_median": float(np.median(times[name])),
           "samples_per_sec": n / float(np.median(times[name])),
           "sec_all": times[name]}
          for name, (_, nfe) in samplers.items()]
  stu = rows[0]
  if match:
    m = next(r for r in rows if r["arm"] == match)
    speedup = m["sec_median"] / stu["sec_median"]
    # The teacher's network may be larger than the student's: split the
    # speedup into the cost per network evaluation and the count of them.
    per_eval = (m["sec_median"] / m["nfe"]) / stu["sec_median"]
    verdict = verdicts.MEASURED
    reason = (f"one-step LMD (KL {stu['value']:.4f}): "
              f"{stu['samples_per_sec']:.3g} samples/s; cheapest teacher "
              f"at least as good, {match} (KL {m['value']:.4f}): "
              f"{m['samples_per_sec']:.3g} samples/s; speedup {speedup:.1f}× "
              f"= {m['nfe']} network evaluations × {per_eval:.1f}× the "
              f"student's cost per evaluation (teacher {teacher_params:,} "
              f"parameters, student {student_params:,}; load1 "
              f"{min(loads):.1f}-{max(loads):.1f})")
  else:
    speedup = None
    verdict = verdicts.NOT_TESTABLE
    reason = (f"no teacher step count in {a.ode_ks} is as good as the "
              f"one-step student (KL {stu['value']:.4f}): no matched pair")
  print_table(rows, ["arm", "nfe", "value", "sec_median", "samples_per_sec"])
  print(reason, flush=True)
  claim = {"paper": "002",
           "claim": "a one-step flow map samples much faster than the "
                    "teacher ODE at matched quality"
                    + _claim_qualifier(a, steps),
           "paper_figure": "Boffi et al. 2024, sampling cost vs quality",
           "metric": f"samples/s drawing {n:,} samples (median of "
                     f"{a.repeats} interleaved rounds); quality {METRIC} "
                     f"on {a.num_samples:,} samples",
           "budget": f"LMD seed {seed} of {students_record(a)} ({steps} "
                     "steps)",
           "seeds": [seed], "verdict": verdict, "verdict_reason": reason,
           "our_figure": f"{speedup:.1f}× vs {match}" if match else "n/a"}
  print("wrote", write_result(speed_record(a), rows, {
      "claim": claim, "speedup": speedup, "teacher_params": teacher_params,
      "student_params": student_params, "load1_per_round": loads,
      "affinity": sorted(os.sched_getaffinity(0)), "args": vars(a)}))


# ------------------------------------------------------------- intervals --
ODE_PER_UNIT = 64      # Heun steps per unit time of the reference ODE maps
X1_STEP = 2 ** 30      # the toy sampler's step for x1: never a training step


def ode_steps_for(s: float, t: float) -> int:
  """Heun steps of the reference map over [s, t] (ODE_PER_UNIT per unit
  time, at least 2)."""
  return max(2, int(np.ceil(ODE_PER_UNIT * (t - s) - 1e-9)))


def interval_rows(flow_map, params, velocity, x_at, grid, jump_starts,
                  score, cache) -> List[Dict]:
  """Where a flow map X departs from the ODE map Φ of `velocity` (b(x, t),
  t [B]), with exact samples x_s = x_at(s) of ρ_s as inputs:

  * per interval [s, t] of `grid` (the K-step sampler's): `map_err` = mean
    |X_{s,t}(x_s) − Φ_{s,t}(x_s)|², next to `ode_move` = mean
    |Φ_{s,t}(x_s) − x_s|² (how far the interval moves points);
  * per s of `jump_starts`, the jump to t = 1: the same two numbers and
    `score_map` = score(X_{s,1}(x_s)) beside `score_ode` =
    score(Φ_{s,1}(x_s)) (the sample quality of the map's last jump from an
    exact ρ_s, against the ODE's from the same points);
  * per s of `jump_starts`, the chain to t = 1 on the grid's times after
    s (`steps` maps, as the K-step sampler takes them from there): the
    same numbers, so a chain worse than the jump from the same exact start
    shows errors compounding through the map's own outputs.

  Φ is Heun with `ode_steps_for(s, t)` steps; its outputs are kept in
  `cache` by (s, t), so every map is compared with the same reference."""
  # pylint: disable=g-import-not-at-top
  import jax
  from gcflow_jax.math import flow_map as fm_lib
  ode = jax.jit(fm_lib.ode_map, static_argnums=(0, 4))
  apply = jax.jit(flow_map)

  def sq(u, v):
    return float(np.mean(np.sum((np.asarray(u, np.float64)
                                 - np.asarray(v, np.float64)) ** 2, -1)))

  def one(s, t):
    xs = x_at(s)
    if (s, t) not in cache:
      cache[(s, t)] = np.asarray(ode(velocity, xs, s, t,
                                     ode_steps_for(s, t)))
    y = np.asarray(apply(params, xs, s, t))
    return y, cache[(s, t)], {"s": s, "t": t, "map_err": sq(y, cache[(s, t)]),
                              "ode_move": sq(cache[(s, t)], xs)}

  rows = [{"kind": "interval", **one(s, t)[2]}
          for s, t in zip(grid[:-1], grid[1:])]
  for s in jump_starts:
    y, ref, row = one(s, 1.0)
    score_ode = score(ref)   # the jump's and the chain's reference
    rows.append({"kind": "jump", **row, "steps": 1, "score_map": score(y),
                 "score_ode": score_ode})
    times = [s] + [g for g in grid if g > s + 1e-9]
    y = x_at(s)
    for u, v in zip(times[:-1], times[1:]):
      y = apply(params, y, u, v)
    rows.append({"kind": "chain", "s": s, "t": 1.0, "map_err": sq(y, ref),
                 "ode_move": row["ode_move"], "steps": len(times) - 1,
                 "score_map": score(np.asarray(y)), "score_ode": score_ode})
  return rows


def intervals_record(a) -> str:
  return "fmm_intervals" + _suffix(a)


def stage_intervals(a):
  """Per student of the students record (final EMA parameters) and seed:
  `interval_rows` on the K = --interval_k grid and the jumps from
  --jump_starts to 1, against the teacher's ODE map, x_s = I_s(x0, x1) of
  the teacher's interpolant with x1 an independent data draw (not the
  kl_hist reference), `--num_samples` points. Writes
  results/fmm_intervals<suffix>.json (a diagnostic, not a claim)."""
  jax, fc, _, _, train, flow_maps = _jax_imports()
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from gcflow_jax.math import interpolants  # pylint: disable=g-import-not-at-top
  old = read_result(students_record(a))
  if not old:
    raise SystemExit(f"no results/{students_record(a)}.json: run the "
                     "`students` stage of this budget first")
  steps = old["args"]["steps"]
  done = sorted({(r["arm"], r["seed"]) for r in old["rows"]
                 if r["step"] == steps and r["arm"] in a.arms
                 and r["seed"] in a.seeds})
  if not done:
    raise SystemExit(f"results/{students_record(a)}.json has no finished "
                     f"run of --arms={','.join(a.arms)} --seeds="
                     f"{','.join(map(str, a.seeds))}")
  n = a.num_samples
  grid = [float(v) for v in np.linspace(0.0, 1.0, a.interval_k + 1)]
  cache, rows, x_fixed, t0 = {}, [], {}, time.perf_counter()
  for arm, seed in done:
    config = student_config(arm, seed, steps, a)
    run = train.build(config)
    state = train.restore_state(config, _student_workdir(arm, seed, a), run)
    if not x_fixed:   # one x0, x1, teacher and reference for every student
      data = fc.data.make_dataset(config.data, 0)
      x_fixed.update(
          x1=jnp.asarray(data.global_batch(X1_STEP, n)),
          x0=jax.random.normal(jax.random.key(11), (n, 2)),
          interp=interpolants.get(run.teacher.interp),
          score=fc.quality_fn(METRIC, data.reference(n)),
          velocity=lambda x, t, p=run.teacher.params, v=run.teacher.velocity:
          v(p, x, t))

    def x_at(s):
      return x_fixed["interp"].x_t(x_fixed["x0"], x_fixed["x1"],
                                   jnp.full((n,), s), None)
    print(f"== {arm} seed {seed}", flush=True)
    for r in interval_rows(flow_maps.flow_map_of(config, (2,)),
                           state.ema_params, x_fixed["velocity"], x_at, grid,
                           a.jump_starts, x_fixed["score"], cache):
      rows.append({"arm": arm, "seed": seed, "step": steps, **r})
      print("  " + " ".join(f"{k}={v:.4g}" if isinstance(v, float)
                            else f"{k}={v}" for k, v in rows[-1].items()
                            if k not in ("arm", "seed", "step")), flush=True)
  summary = []
  for arm in sorted({r["arm"] for r in rows}):
    for kind, s, t in sorted({(r["kind"], r["s"], r["t"]) for r in rows}):
      sel = [r for r in rows if (r["arm"], r["kind"], r["s"], r["t"])
             == (arm, kind, s, t)]
      out = {"arm": arm, "kind": kind, "s": s, "t": t,
             **({"steps": sel[0]["steps"]} if "steps" in sel[0] else {})}
      for key in ("map_err", "ode_move", "score_map", "score_ode"):
        if key in sel[0]:
          st = mean_std([r[key] for r in sel])
          out[key] = st["mean"]
          out[key + "_std"] = st["std"]
      summary.append(out)
  print_table(summary, ["arm", "kind", "s", "t", "steps", "map_err",
                        "map_err_std",
                        "ode_move", "score_map", "score_map_std",
                        "score_ode"])
  print("wrote", write_result(intervals_record(a), rows, {
      "summary": summary, "students_record": students_record(a),
      "metric": f"map_err, ode_move: mean squared distance on {n:,} exact "
                f"x_s; score: {METRIC} on {n:,} samples",
      "reference_ode": f"teacher {a.teacher_config}, Heun "
                       f"{ODE_PER_UNIT} steps per unit time",
      "wall_sec": time.perf_counter() - t0, "args": vars(a)}))


def _csv(cast):
  return lambda s: tuple(cast(x) for x in s.split(",") if x)


def parse(argv=None) -> argparse.Namespace:
  """The command line, validated (bad values exit naming the flag)."""
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("stage", choices=("teacher", "students", "speed",
                                   "verdict", "merge", "intervals"))
  p.add_argument("--setup", default="checkerboard",
                 help="checkerboard (the protocol's main comparison), "
                 "digits (PROTOCOL.md change 35: teacher, students, "
                 "verdict, merge) or digits_mlp (change 48: the same on an "
                 "MLP stand-in); sets the defaults of the teacher and "
                 "scoring flags")
  p.add_argument("--merge_from", type=_csv(str), default=(),
                 help="merge: directories holding claims_002_lmd_vs_emd.json"
                 " of the same budget (e.g. seeds run elsewhere with "
                 "GCFLOW_BENCH_DIR)")
  p.add_argument("--arms", type=_csv(str), default=None,
                 help="default: lmd,emd,lmd:stop_grad (digits: lmd,emd)")
  p.add_argument("--seeds", type=_csv(int), default=(0, 1, 2))
  p.add_argument("--steps", type=int, default=1000)
  p.add_argument("--eval_every", type=int, default=100,
                 help="1-step kl every this many steps")
  p.add_argument("--full_every", type=int, default=500,
                 help="kl at every K of 1/2/4/8 every this many steps "
                 "(and at the end)")
  p.add_argument("--teacher_ks", type=_csv(int), default=None,
                 help="teacher: Heun step counts scored (default: 8,16; "
                 "digits 4,8,20)")
  p.add_argument("--ode_ks", type=_csv(int), default=(1, 2, 4, 8, 16, 32))
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--speed_seed", type=int, default=0,
                 help="speed: the LMD student seed timed (its students run "
                 "must have kept its final state here)")
  p.add_argument("--num_samples", type=int, default=None,
                 help="samples per score (the protocol: 100,000 per "
                 "kl_hist; 1,000 per fd_digits)")
  p.add_argument("--timing_samples", type=int, default=20_000,
                 help="samples per timed call (speed)")
  p.add_argument("--teacher_config", default=None,
                 help=f"default: {TEACHER_SPEC} (digits: "
                 f"{SETUPS['digits'].teacher_config})")
  p.add_argument("--teacher_workdir", default=None,
                 help=f"default: {TEACHER_DIR} (digits: "
                 f"{SETUPS['digits'].teacher_workdir})")
  p.add_argument("--student_width", type=int, default=0,
                 help="students: the width of every student's three hidden "
                 "layers (0: the configs'); its own record "
                 "claims_002_lmd_vs_emd_w<width> and workdirs")
  p.add_argument("--tag", default="",
                 help="students: a name for another budget (lowercase "
                 "letters and digits); its own record "
                 "claims_002_lmd_vs_emd[_w<width>]_<tag> and workdirs")
  p.add_argument("--cores", type=_csv(int), default=(),
                 help="students: run each (arm, seed) as its own process, "
                 "at most one per listed core at a time (pinned, one XLA "
                 "thread; a core may be listed twice), then merge them; "
                 "one process on the first core readies the teacher first")
  p.add_argument("--interval_k", type=int, default=8,
                 help="intervals: the K-step sampler's grid whose intervals "
                 "are compared with the teacher's ODE map")
  p.add_argument("--jump_starts", type=_csv(float),
                 default=(0.0, 0.5, 0.75, 0.875),
                 help="intervals: the times s of the jumps X_{s,1} scored")
  p.add_argument("--teacher_eval_every", type=int, default=None,
                 help="teacher: train it (if its workdir has no checkpoint) "
                 "with its score every this many steps (default 5000; "
                 "digits 500, digits_mlp 2000); 0 = the main trainer, no curve")
  a = p.parse_args(argv)
  if a.setup not in SETUPS:
    raise SystemExit(f"--setup={a.setup!r} is not one of {tuple(SETUPS)}")
  setup = SETUPS[a.setup]
  for name in ("arms", "teacher_config", "teacher_workdir", "num_samples",
               "teacher_ks", "teacher_eval_every"):
    if getattr(a, name) is None:
      setattr(a, name, getattr(setup, name))
  if setup.name != "checkerboard":
    if a.stage in ("speed", "intervals"):
      raise SystemExit(f"the {a.stage} stage is for --setup=checkerboard "
                       f"only (not {a.setup!r})")
    if a.student_width:
      raise SystemExit(f"--student_width sets the checkerboard students' "
                       f"MLP width: --setup={a.setup!r} fixes its students' "
                       f"network (UNet or MLP) in its configs")
  if a.student_width < 0:
    raise SystemExit(f"--student_width={a.student_width} must be >= 0")
  verdicts.check_tag(a.tag)
  if a.cores and a.stage != "students":
    raise SystemExit(f"--cores applies to the students stage only (not "
                     f"{a.stage!r})")
  split.check_cores(a.cores)
  if a.teacher_eval_every < 0:
    raise SystemExit(f"--teacher_eval_every={a.teacher_eval_every} must be "
                     ">= 0")
  if not all(0.0 <= s < 1.0 for s in a.jump_starts):
    raise SystemExit(f"--jump_starts={a.jump_starts}: each in [0, 1)")
  for name in ("num_samples", "timing_samples", "steps", "eval_every",
               "full_every", "repeats", "interval_k"):
    if getattr(a, name) < 1:
      raise SystemExit(f"--{name}={getattr(a, name)} must be >= 1")
  for arm in a.arms:
    if arm not in setup.allowed_arms:
      raise SystemExit(f"--arms: {arm!r} is not one of {setup.allowed_arms} "
                       f"(--setup={setup.name})")
  if setup.teacher_steps not in a.teacher_ks:
    raise SystemExit(f"--teacher_ks must contain {setup.teacher_steps} "
                     f"(--setup={setup.name})")
  return a


def main(argv=None):
  split.pin_from_env()
  a = parse(argv)
  {"teacher": stage_teacher, "students": stage_students,
   "speed": stage_speed, "verdict": stage_verdict,
   "merge": stage_merge, "intervals": stage_intervals}[a.stage](a)


if __name__ == "__main__":
  main()
