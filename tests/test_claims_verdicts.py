"""The claims suite's verdict rules (benchmarks/claims/verdicts.py) on
hand-made numbers, and the results page's claims section."""

import argparse
import json
import math
import os
import re
import sys

import pytest

import script_modules  # tests/script_modules.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


V = script_modules.load("claims_verdicts", "benchmarks", "claims",
                        "verdicts.py")


def test_summarize_sample_std_and_t_interval():
  s = V.summarize([1.0, 2.0, 3.0])
  assert s["mean"] == pytest.approx(2.0)
  assert s["std"] == pytest.approx(1.0)          # ddof = 1, not sqrt(2/3)
  half = 4.303 * 1.0 / math.sqrt(3)               # t_{0.975, 2}
  assert s["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
  assert V.summarize([5.0])["ci95"] is None
  with pytest.raises(ValueError, match="non-empty"):
    V.summarize([])


def test_better_needs_mean_plus_std_below_mean_minus_std():
  a = [0.9, 1.0, 1.1]                # mean 1.0, std 0.1
  assert V.better(a, [1.4, 1.5, 1.6])     # 1.1 < 1.4
  assert not V.better([1.4, 1.5, 1.6], a)  # flipped inequality fails here
  # Lower mean but overlapping bands: within noise (a means-only rule
  # would call it better).
  assert not V.better(a, [1.05, 1.15, 1.25])   # 1.1 < 1.05 is false
  # A's own std counts: mean_A < mean_B − std_B holds (1.0 < 1.15) but
  # mean_A + std_A = 1.2 does not.
  assert not V.better([0.8, 1.0, 1.2], [1.15, 1.15, 1.15])
  # B's std counts: mean_A + std_A = 1.1 < mean_B = 1.2 but not < 1.2 − 0.2.
  assert not V.better(a, [1.0, 1.2, 1.4])


def test_flattened_compares_last_step_against_seed_std_of_last():
  last = [1.8, 2.0, 2.2]                              # mean 2.0, std 0.2
  assert not V.flattened([[2.8, 3.0, 3.2], last])     # moved 1.0 > 0.2
  assert V.flattened([[2.0, 2.1, 2.2], last])         # moved 0.1 < 0.2
  # The std is the last evaluation's, not the previous one's: a noisy
  # previous step must not make a still-moving curve look flat.
  assert not V.flattened([[1.7, 2.1, 2.5], [1.99, 2.0, 2.01]])
  # Only the last two evaluations count.
  assert V.flattened([[9.0, 9.0, 9.1], [2.0, 2.1, 2.2], last])
  with pytest.raises(ValueError, match=">= 2 evaluations"):
    V.flattened([last])


def test_outcome_counts_a_budget_only_on_flat_curves():
  assert V.outcome(True, True) == V.REPRODUCED
  assert V.outcome(False, True) == V.NOT_REPRODUCED
  # A claim that holds while a curve still moves has not been reached yet.
  assert V.outcome(True, False) == V.NOT_REACHED
  assert V.outcome(False, False) == V.NOT_REACHED


def test_write_claim_refuses_unknown_verdict(tmp_path, monkeypatch):
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  kw = dict(paper_figure="p", metric="m", budget="b", seeds=[0, 1, 2],
            verdict_reason="r", our_figure="o")
  with pytest.raises(ValueError, match="verdict='better'"):
    V.write_claim("000", "x", [], verdict="better", **kw)
  path = V.write_claim("000", "x", [{"arm": "a", "seed": 0, "step": 1}],
                       verdict=V.WITHIN_NOISE, **kw)
  with open(path) as f:
    d = json.load(f)
  assert d["claim"]["verdict"] == "within noise"
  assert d["rows"] == [{"arm": "a", "seed": 0, "step": 1}]
  # A diagnostic's row: numbers with a read-out, no claim.
  path = V.write_claim("000", "y", [], verdict=V.MEASURED, **kw)
  with open(path) as f:
    assert json.load(f)["claim"]["verdict"] == "measured"


def test_records_name_commands_relative_to_the_repository(tmp_path,
                                                          monkeypatch):
  """A script started by absolute path (a split child) is recorded as run
  from the repository root: no machine's path in a committed record."""
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  script = os.path.join(ROOT, "benchmarks", "claims", "fmm_claims.py")
  monkeypatch.setattr(sys, "argv", [script, "teacher", "--setup=digits"])
  path = V.write_claim(
      "002", "x", [], paper_figure="p", metric="m", budget="b", seeds=[0],
      verdict=V.WITHIN_NOISE, verdict_reason=f"read {ROOT}/notes",
      our_figure="o", extra={"run_command": f"{script} students; {script} "
                                            "merge",
                             "workdir": os.path.join(ROOT, "runs")})
  with open(path) as f:
    d = json.load(f)
  assert d["command"] == "benchmarks/claims/fmm_claims.py teacher " \
      "--setup=digits"
  assert d["run_command"] == ("benchmarks/claims/fmm_claims.py students; "
                              "benchmarks/claims/fmm_claims.py merge")
  # Only the commands: other fields are as given.
  assert d["workdir"] == os.path.join(ROOT, "runs")
  assert d["claim"]["verdict_reason"] == f"read {ROOT}/notes"


def test_results_page_puts_every_claims_file_first(tmp_path):
  res = tmp_path / "results"
  res.mkdir()
  machine = {"backend": "cpu", "device_kind": "cpu", "cpu_count": 2,
             "device_count": 1, "jax": "0.10.2", "date": "2026-11-30"}
  for paper, claim, verdict in (("000", "affine", "reproduced"),
                                ("002", "lmd_vs_emd", "within noise")):
    redo = ({"reproduce_command": "y.py --all"} if paper == "002" else
            {"samples_png": "claims_000_affine_samples_s1.png"})
    (res / f"claims_{paper}_{claim}.json").write_text(json.dumps({
        "benchmark": f"claims_{paper}_{claim}", "command": "x.py", **redo,
        "machine": machine, "rows": [],
        "claim": {"paper": paper, "claim": claim, "paper_figure": "KL 0.07",
                  "metric": "m", "budget": "10 steps", "seeds": [0, 1, 2],
                  "verdict": verdict, "verdict_reason": "because",
                  "our_figure": "1 ± 0.1"}}))
  (res / "gcm_moons.json").write_text(json.dumps({
      "benchmark": "gcm_moons", "machine": machine, "rows": [{"a": 1}]}))
  text = script_modules.load("make_results", "scripts",
                             "make_results.py").render(str(res))
  claims_at = text.index("## The papers' claims")
  assert claims_at < text.index("## Distribution matching")
  assert ("| 000 | affine | KL 0.07 | 1 ± 0.1 | 10 steps | **reproduced** |"
          in text)
  # A record written from cached runs shows the command that redoes them.
  assert "Command: `python x.py`" in text
  assert "Command: `python y.py --all`" in text
  # A record naming a samples figure beside it links it.
  assert re.search(
      r"data \[`(.*)/claims_000_affine.json`\]\(\.\./\1/claims_000_affine"
      r"\.json\); samples \[`claims_000_affine_samples_s1.png`\]\(\.\./\1/"
      r"claims_000_affine_samples_s1\.png\)\.", text)
  assert text.count("; samples [") == 1
  assert "| 002 | lmd_vs_emd |" in text            # the other branch's files
  assert "### claims_000_affine" not in text        # not repeated below


def _bench_module(name, *parts):
  """A benchmarks/ script as a module, with benchmarks/ and
  benchmarks/claims/ importable as the scripts expect."""
  import sys  # pylint: disable=g-import-not-at-top
  for d in (("benchmarks",), ("benchmarks", "claims")):
    path = os.path.join(ROOT, *d)
    if path not in sys.path:
      sys.path.insert(0, path)
  return script_modules.load(name, "benchmarks", *parts)


def _gcm_claims():
  return _bench_module("claims_gcm", "claims", "gcm.py")


def test_moon_shares_label_each_point_by_its_nearest_arc():
  G = _gcm_claims()
  import numpy as np  # pylint: disable=g-import-not-at-top
  th = np.linspace(0.05, np.pi - 0.05, 300)
  upper = np.stack([np.cos(th), np.sin(th)], 1)
  lower = np.stack([1.0 - np.cos(th), 0.5 - np.sin(th)], 1)
  # One upper point per three lower ones; the lower moon's points lie
  # close to the upper arc's centre region, so swapped labels would fail.
  out = G.moon_shares(np.concatenate([upper[::3], lower]))
  assert out["upper_share"] == pytest.approx(100 / 400)
  assert out["on_moon"] == pytest.approx(1.0)
  far = G.moon_shares(np.array([[0.0, 3.0], [1.0, -2.0]]))
  assert far["upper_share"] == pytest.approx(0.5)   # (0, 3) is nearer the top
  assert far["on_moon"] == 0.0


def test_affine_score_is_the_mean_and_relative_covariance_error():
  G = _gcm_claims()
  import numpy as np  # pylint: disable=g-import-not-at-top
  mu = np.array([1.0, -1.0])
  cov = np.array([[1.0, 0.5], [0.5, 1.0]])
  # Two-point design with exact moments: mean mu + d, covariance 4·cov.
  lchol = np.linalg.cholesky(cov)
  e = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
  d = np.array([0.3, 0.4])
  x = mu + d + 2.0 * e @ lchol.T * np.sqrt(3.0 / 4.0)
  s = G.affine_score(mu, cov)(x)
  assert s["mean_err"] == pytest.approx(0.5)       # |(0.3, 0.4)|
  assert s["cov_rel_err"] == pytest.approx(3.0)    # ‖4Σ − Σ‖/‖Σ‖


def _affine_dt_rows(final, prev=None, arm_of=lambda dt: f"dt={dt:g}"):
  """Rows of an affine sweep (default: the Δt claim's): per swept value v
  (arm `arm_of(v)`), per seed, the errors at steps 700 and 1400; `final[v]`
  = [(mean_err, cov_rel_err)] per seed at 1400, the 700-step values
  `prev[v]` (default: the same, i.e. flat curves)."""
  rows = []
  for v, per_seed in final.items():
    for seed, (m, c) in enumerate(per_seed):
      pm, pc = (prev or final)[v][seed]
      rows += [{"arm": arm_of(v), "seed": seed, "step": 700,
                "mean_err": pm, "cov_rel_err": pc},
               {"arm": arm_of(v), "seed": seed, "step": 1400,
                "mean_err": m, "cov_rel_err": c}]
  return rows


def test_affine_width_claim_compares_the_widest_with_the_narrowest():
  G = _gcm_claims()
  narrow = [(0.03, 0.090), (0.02, 0.080), (0.04, 0.085)]
  wide = [(0.01, 0.020), (0.02, 0.030), (0.01, 0.025)]

  def judge(by_width):
    return G.sweep_verdict(
        "affine_width",
        _affine_dt_rows(by_width, arm_of=G.SWEEPS["affine_width"].arm),
        [128, 256, 512], 1400)
  verdict, reason, stats = judge({128: narrow, 256: narrow, 512: wide})
  assert verdict == V.REPRODUCED, reason
  assert stats["f_width=512"]["cov_rel_err"]["mean"] == pytest.approx(0.025)
  assert "f width 512" in reason
  # The widest arm worse than the narrowest: a min/max mix-up would pass.
  verdict, reason, _ = judge({128: wide, 256: wide, 512: narrow})
  assert verdict == V.NOT_REPRODUCED, reason
  # Only the middle arm good: the rule reads the widest.
  verdict, _, _ = judge({128: narrow, 256: wide, 512: narrow})
  assert verdict == V.NOT_REPRODUCED


def test_affine_coupling_claim_passes_if_any_other_coupling_fixes_it():
  G = _gcm_claims()
  bad = [(0.03, 0.090), (0.02, 0.080), (0.04, 0.085)]
  good = [(0.01, 0.020), (0.02, 0.030), (0.01, 0.025)]
  couplings = ["ot_sinkhorn", "ot_exact", "random"]

  def rows(by, prev=None):
    names = {0.1: "ot_sinkhorn", 0.2: "ot_exact", 0.3: "random"}
    arm = G.SWEEPS["affine_coupling"].arm
    return _affine_dt_rows(by, prev, lambda v: arm(names[v]))
  verdict, reason, stats = G.sweep_verdict(
      "affine_coupling", rows({0.1: bad, 0.2: bad, 0.3: good}), couplings, 1400)
  assert verdict == V.REPRODUCED, reason
  assert stats["coupling=random"]["cov_rel_err"]["mean"] == pytest.approx(
      0.025)
  assert "random vs ot_sinkhorn: reproduced" in reason
  verdict, _, _ = G.sweep_verdict(
      "affine_coupling", rows({0.1: bad, 0.2: good, 0.3: bad}), couplings, 1400)
  assert verdict == V.REPRODUCED
  # Only the baseline good: the rule never credits the first coupling.
  verdict, _, _ = G.sweep_verdict(
      "affine_coupling", rows({0.1: good, 0.2: bad, 0.3: bad}), couplings, 1400)
  assert verdict == V.NOT_REPRODUCED
  # No coupling good, one curve still moving: not reached.
  moving = [(0.03, 0.20), (0.02, 0.20), (0.04, 0.20)]
  verdict, _, _ = G.sweep_verdict(
      "affine_coupling", rows({0.1: bad, 0.2: bad, 0.3: bad},
           {0.1: bad, 0.2: bad, 0.3: moving}), couplings, 1400)
  assert verdict == V.NOT_REACHED
  with pytest.raises(SystemExit, match="--couplings="):
    G.claim_sweep("affine_coupling", [0, 1], values="ot_sinkhorn,sinkhorn")


def test_affine_batch_claim_compares_the_largest_batch_with_the_smallest():
  G = _gcm_claims()
  bad = [(0.03, 0.090), (0.02, 0.080), (0.04, 0.085)]
  good = [(0.01, 0.020), (0.02, 0.030), (0.01, 0.025)]

  def rows(by):
    return _affine_dt_rows(by, arm_of=G.SWEEPS["affine_batch"].arm)
  verdict, reason, stats = G.sweep_verdict(
      "affine_batch", rows({256: bad, 1024: good}), [256, 1024], 1400)
  assert verdict == V.REPRODUCED, reason
  assert stats["batch=1024"]["cov_rel_err"]["mean"] == pytest.approx(0.025)
  assert "batch 1024" in reason
  # The order of --batches does not matter; the smaller batch good fails.
  verdict, _, _ = G.sweep_verdict(
      "affine_batch", rows({256: good, 1024: bad}), [1024, 256], 1400)
  assert verdict == V.NOT_REPRODUCED
  with pytest.raises(SystemExit, match="--batches="):
    G.claim_sweep("affine_batch", [0, 1], values="256,256")


def test_affine_tf_claim_compares_the_most_f_updates_with_the_fewest():
  """PROTOCOL.md change 39; and the sweep trains each T_f through
  `gcm.t_f` with the total steps unchanged."""
  G = _gcm_claims()
  bad = [(0.03, 0.090), (0.02, 0.080), (0.04, 0.085)]
  good = [(0.01, 0.020), (0.02, 0.030), (0.01, 0.025)]

  def rows(by):
    return _affine_dt_rows(by, arm_of=G.SWEEPS["affine_tf"].arm)
  verdict, reason, _ = G.sweep_verdict(
      "affine_tf", rows({50: bad, 200: good}), [50, 200], 1400)
  assert verdict == V.REPRODUCED, reason
  assert "T_f = 200" in reason
  verdict, _, _ = G.sweep_verdict(
      "affine_tf", rows({50: good, 200: bad}), [200, 50], 1400)
  assert verdict == V.NOT_REPRODUCED
  with pytest.raises(SystemExit, match="--tfs="):
    G.claim_sweep("affine_tf", [0, 1], values="50,0")


def test_affine_glr_claim_judges_each_multiplier_against_the_configs():
  """PROTOCOL.md change 40: g's learning-rate multipliers, the first (the
  config's 10) the baseline, each other judged against it alone."""
  G = _gcm_claims()
  bad = [(0.03, 0.090), (0.02, 0.080), (0.04, 0.085)]
  good = [(0.01, 0.020), (0.02, 0.030), (0.01, 0.025)]
  moving = [(0.03, 0.20), (0.02, 0.20), (0.04, 0.20)]
  arm = G.SWEEPS["affine_glr"].arm
  assert (arm(10.0), arm(0.3)) == ("g_lr_mult=10", "g_lr_mult=0.3")

  def judge(by, prev=None):
    return G.sweep_verdict("affine_glr", _affine_dt_rows(by, prev, arm),
                           [10.0, 3.0, 1.0], 1400)
  verdict, reason, stats = judge({10.0: bad, 3.0: good, 1.0: bad})
  assert verdict == V.REPRODUCED, reason
  assert "g lr × 3 vs g lr × 10: reproduced" in reason
  assert "g lr × 1 vs g lr × 10: not reproduced" in reason
  assert stats["g_lr_mult=3"]["cov_rel_err"]["mean"] == pytest.approx(0.025)
  # Only the config's multiplier good: the baseline is never credited, and
  # the smallest value is not taken as the baseline.
  verdict, _, _ = judge({10.0: good, 3.0: bad, 1.0: bad})
  assert verdict == V.NOT_REPRODUCED
  # A moving curve in a pair judged only with the baseline: not reached.
  verdict, _, _ = judge({10.0: bad, 3.0: bad, 1.0: bad},
                        {10.0: bad, 3.0: bad, 1.0: moving})
  assert verdict == V.NOT_REACHED
  with pytest.raises(SystemExit, match="--g_lr_mults="):
    G.claim_sweep("affine_glr", [0, 1], values="10,0")
  with pytest.raises(SystemExit, match="--g_lr_mults="):
    G.claim_sweep("affine_glr", [0, 1], values="10,10")


@pytest.mark.parametrize("name, values, read, expected, in_budget", [
    ("affine_dt", "0.05,0.0125", lambda c: c.gcm.dt,
     {"dt=0.05": 0.05, "dt=0.0125": 0.0125}, "Δt ∈ {0.05, 0.0125}"),
    ("affine_width", "128,512", lambda c: tuple(c.model.mlp.hidden),
     {"f_width=128": (128,) * 3, "f_width=512": (512,) * 3},
     "for w ∈ {128, 512}"),
    ("affine_coupling", None, lambda c: (c.gcm.coupling, c.gcm.ot_solver),
     {"coupling=ot_sinkhorn": ("ot", "sinkhorn"),
      "coupling=ot_exact": ("ot", "exact"),
      "coupling=random": ("random", "sinkhorn")},
     "couplings ot_sinkhorn, ot_exact, random"),
    ("affine_batch", "256,1024", lambda c: c.train.batch_size,
     {"batch=256": 256, "batch=1024": 1024}, "batch 256 / 1024"),
    ("affine_tf", "50,200", lambda c: (c.gcm.t_f, c.gcm.t_g),
     {"t_f=50": (50, 20), "t_f=200": (200, 20)}, "T_f ∈ {50, 200} / T_g 20"),
    ("affine_glr", None, lambda c: c.gcm.g_lr_mult,
     {"g_lr_mult=10": 10.0, "g_lr_mult=3": 3.0, "g_lr_mult=1": 1.0},
     "g's learning rate 0.002 × {10, 3, 1}"),
])
def test_affine_sweep_trains_each_value_through_its_override(
    name, values, read, expected, in_budget, tmp_path, monkeypatch):
  """Each sweep of the table trains its arms with the swept setting (and
  only it) changed, at the given steps and variant, and its record names
  the command that reruns it (the flag's default where none is given)."""
  G = _gcm_claims()
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  seen = {}

  def fake_train(spec, seeds, score, num, arm, steps=0, overrides=None):
    del score, num
    cfg = G.load(spec, {**overrides, "train.steps": steps})
    seen[arm] = (read(cfg), cfg.optim.schedule, cfg.train.steps)
    return [{"arm": arm, "seed": seeds[0], "step": st, "mean_err": 0.01,
             "cov_rel_err": 0.02} for st in (steps // 2, steps)], cfg
  monkeypatch.setattr(G, "_train_seeds", fake_train)
  path = G.claim_sweep(name, [0, 1], steps=40, variant="cosine",
                       values=values)
  assert seen == {arm: (v, "cosine", 40) for arm, v in expected.items()}
  rec = json.loads(open(path).read())
  sweep = G.SWEEPS[name]
  assert rec["reproduce_command"] == (
      f"benchmarks/claims/gcm.py --claim={name} --seeds=0,1 --steps=40 "
      f"--variant=cosine --{sweep.flag}={values or sweep.default}")
  assert in_budget in rec["claim"]["budget"]


def test_affine_sweep_writes_every_run_and_resumes_from_its_record(
    tmp_path, monkeypatch):
  G = _gcm_claims()
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  trained = []
  err = {256: 0.09, 1024: 0.02}

  def fake_train(spec, seeds, score, num, arm, steps=0, overrides=None):
    del score, num
    (seed,) = seeds
    cfg = G.load(spec, {**overrides, "train.steps": steps})
    trained.append((arm, seed))
    if (arm, seed) == ("batch=1024", 1) and fail_on_second[0]:
      raise KeyboardInterrupt  # the run stopped partway
    e = err[cfg.train.batch_size] + 1e-3 * seed
    return [{"arm": arm, "seed": seed, "step": st, "mean_err": e,
             "cov_rel_err": e} for st in (steps // 2, steps)], cfg
  monkeypatch.setattr(G, "_train_seeds", fake_train)
  fail_on_second = [True]
  with pytest.raises(KeyboardInterrupt):
    G.claim_sweep("affine_batch", [0, 1], steps=40, values="256,1024")
  path = os.path.join(str(tmp_path), "claims_000_affine_batch.json")
  rec = json.loads(open(path).read())
  # Three runs finished before the stop; each was written as it finished.
  assert sorted({(r["arm"], r["seed"]) for r in rec["rows"]}) == [
      ("batch=1024", 0), ("batch=256", 0), ("batch=256", 1)]
  assert rec["claim"]["verdict"] == V.NOT_TESTABLE
  assert "batch=1024 seed 1" in rec["claim"]["verdict_reason"]
  # A run's row written twice (a record assembled from a log) counts once.
  rec["rows"].append(dict(rec["rows"][0]))
  with open(path, "w") as f:
    json.dump(rec, f)
  # The same command again trains only the missing run, then judges all.
  trained.clear()
  fail_on_second[0] = False
  G.claim_sweep("affine_batch", [0, 1], steps=40, values="256,1024")
  assert trained == [("batch=1024", 1)]
  rec = json.loads(open(path).read())
  assert rec["claim"]["verdict"] == V.REPRODUCED
  assert len(rec["rows"]) == 8
  assert sorted(map(tuple, rec["reused_from"]["runs"])) == [
      ("batch=1024", 0), ("batch=256", 0), ("batch=256", 1)]
  assert rec["reproduce_command"] == (
      "benchmarks/claims/gcm.py --claim=affine_batch --seeds=0,1 "
      "--steps=40 --batches=256,1024")
  # Another budget, another config, or fewer values or seeds would drop
  # the record's runs: refused before any training, naming --tag, and the
  # record is left as it was.
  before = open(path).read()
  trained.clear()
  for kw in ({"steps": 60, "values": "256,1024"},
             {"steps": 40, "variant": "cosine", "values": "256,1024"},
             {"steps": 40, "values": "256,512"}):
    with pytest.raises(SystemExit, match="--tag=NAME"):
      G.claim_sweep("affine_batch", [0, 1], **kw)
  with pytest.raises(SystemExit, match="batch=1024 seed 1 \\(40 steps\\)"):
    G.claim_sweep("affine_batch", [0], steps=40, values="256,1024")
  assert trained == [] and open(path).read() == before
  # With a tag another budget gets its own record and reuses nothing.
  tagged = G.claim_sweep("affine_batch", [0, 1], steps=60,
                         values="256,1024", tag="b60")
  assert tagged == os.path.join(str(tmp_path),
                                "claims_000_affine_batch_b60.json")
  assert len(trained) == 4 and open(path).read() == before
  rec = json.loads(open(tagged).read())
  assert rec["claim"]["claim"] == "affine_batch_b60"
  assert rec["reproduce_command"].endswith("--batches=256,1024 --tag=b60")
  assert {r["step"] for r in rec["rows"]} == {30, 60}
  with pytest.raises(SystemExit, match="--tag"):
    G.claim_sweep("affine_batch", [0, 1], steps=60, values="256,1024",
                  tag="B 60")


def test_gcm_cli_passes_a_tag_to_the_sweeps_only(monkeypatch):
  G = _gcm_claims()
  got = {}
  monkeypatch.setitem(G.CLAIMS, "affine_glr",
                      lambda seeds, steps, **kw: got.update(kw) or "x")
  monkeypatch.setattr(sys, "argv", [
      "gcm.py", "--claim=affine_glr", "--steps=22400", "--variant=cosine",
      "--g_lr_mults=10,1", "--tag=22k"])
  G.main()
  assert got == {"variant": "cosine", "values": "10,1", "tag": "22k"}
  for argv in (["--claim=moons", "--tag=22k"],
               ["--claim=affine_glr", "--tag=22K"]):
    monkeypatch.setattr(sys, "argv", ["gcm.py", *argv])
    with pytest.raises(SystemExit, match="--tag="):
      G.main()


def test_affine_dt_claim_needs_the_smallest_step_below_tol_and_better():
  G = _gcm_claims()
  big = [(0.03, 0.090), (0.02, 0.080), (0.04, 0.085)]
  small = [(0.01, 0.020), (0.02, 0.030), (0.01, 0.025)]
  dts = [0.05, 0.0125]

  def judge(final, prev=None, steps=1400):
    return G.sweep_verdict("affine_dt", _affine_dt_rows(final, prev), dts,
                           steps)
  verdict, reason, stats = judge({0.05: big, 0.0125: small})
  assert verdict == V.REPRODUCED, reason
  assert stats["dt=0.0125"]["cov_rel_err"]["mean"] == pytest.approx(0.025)
  assert "at Δt = 0.0125 both < 0.05" in reason
  # The same numbers with the arms' Δt swapped: the error grows as Δt
  # shrinks, so the claim fails (a min/max mix-up would pass it).
  verdict, reason, _ = judge({0.05: small, 0.0125: big})
  assert verdict == V.NOT_REPRODUCED, reason
  # One seed's covariance error at the smallest Δt above the tolerance.
  worse = small[:2] + [(0.01, 0.06)]
  verdict, _, _ = judge({0.05: big, 0.0125: worse})
  assert verdict == V.NOT_REPRODUCED
  # A mean error above the tolerance fails it too.
  verdict, _, _ = judge({0.05: big, 0.0125: small[:2] + [(0.07, 0.02)]})
  assert verdict == V.NOT_REPRODUCED
  # Passing numbers on a covariance curve still falling by more than the
  # seed std: not reached.
  prev = {0.05: big, 0.0125: [(m, c + 0.05) for m, c in small]}
  verdict, _, _ = judge({0.05: big, 0.0125: small}, prev)
  assert verdict == V.NOT_REACHED
  # A middle arm still moving counts too: every arm's curves must flatten.
  verdict, _, _ = G.sweep_verdict(
      "affine_dt", _affine_dt_rows(
          {0.05: big, 0.025: big, 0.0125: small},
          {0.05: big, 0.025: [(m, c + 0.05) for m, c in big],
           0.0125: small}), [0.05, 0.025, 0.0125], 1400)
  assert verdict == V.NOT_REACHED
  with pytest.raises(ValueError, match="seeds at step 2800"):
    judge({0.05: big, 0.0125: small}, steps=2800)


def _fixed_g_rows(match, near, step=11200):
  return ([{"arm": "match", "seed": i, "step": step, "cov_rel_err": c,
            "mean_err": 0.01, "disp_rms": 0.02} for i, c in enumerate(match)]
          + [{"arm": "near", "seed": i, "step": step, "cov_rel_err": c,
              "mean_err": 0.01, "disp_rms": 0.3} for i, c in enumerate(near)])


def test_affine_f_fixed_g_readout_predicts_e_over_q_per_seed():
  G = _gcm_claims()
  residual = [0.083, 0.098, 0.083]
  # f closes half the near gap (q = 0.5): e is doubled, seed by seed.
  text, st = G.fixed_g_readout(
      _fixed_g_rows([0.02, 0.03, 0.025], [0.095, 0.095, 0.095]), 11200,
      0.19, residual)
  assert st["q"]["mean"] == pytest.approx(0.5)
  assert st["predicted"]["mean"] == pytest.approx(0.05)
  assert st["predicted"]["std"] == pytest.approx(0.01)
  assert "alternation of f and g adds the rest" in text
  # Seeds paired: the largest e with the smallest q (0.045 / 0.4 = 0.1125).
  text, st = G.fixed_g_readout(
      _fixed_g_rows([0.04, 0.045, 0.035], [0.095, 0.114, 0.076]), 11200,
      0.19, residual)
  assert st["predicted"]["max"] == pytest.approx(0.045 / 0.4)
  assert "within noise of the residual" in text
  # An f that predicts far more than the residual.
  text, _ = G.fixed_g_readout(
      _fixed_g_rows([0.1, 0.11, 0.12], [0.1, 0.1, 0.1]), 11200, 0.19,
      residual)
  assert "f alone predicts more" in text
  with pytest.raises(ValueError, match="both arms at step 2800"):
    G.fixed_g_readout(_fixed_g_rows([0.1], [0.1]), 2800, 0.19, residual)


def test_affine_f_fixed_g_sets_g_to_the_given_map_and_f0_starts_at_id():
  """prepare puts A, b into g (online, target, EMA) so that g(z) = A z + b
  for the sampler's own z (a transposed A would differ: A is not
  symmetric); at step 0 f is the identity, so f_0(g(z)) scores like g(z)
  and the displacement is exactly 0."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  G = _gcm_claims()
  gcm_moons = script_modules.load("gcm_moons", "benchmarks", "gcm_moons.py")
  spec, mu, cov, score = G._affine_target("smoke")
  # Random pairing: the config's OT calls the host from inside the step,
  # which conftest's 8-device CPU mesh cannot run (see _train_cli in
  # tests/methods/test_distribution_matching.py).
  cfg = G.load(spec, {"gcm.g_lr_mult": G.FIXED_G_LR_MULT,
                      "gcm.coupling": "random", "gcm.t_f": 1,
                      "gcm.t_g": 1,   # g steps too: its drift is checked
                      "train.steps": 3, "train.eval_every": 3})
  a = 0.9 * np.linalg.cholesky(cov)
  assert not np.allclose(a, a.T)
  hooks = G.fixed_g_hooks(cfg, a, mu, score)
  seen = {}

  def prepare(run, state):
    state = hooks["prepare"](run, state)
    key = jax.random.key(7)
    z = np.asarray(jax.random.normal(key, (5, cfg.gcm.latent_dim)))
    for where in (state.params["g"], state.extras["g_target"]):
      x = np.asarray(run.method.sample_fn({"g": where}, key, 5))
      np.testing.assert_allclose(x, z @ a.T + mu, rtol=1e-5, atol=1e-5)
    seen["prepared"] = True
    return state

  rows = gcm_moons.train_curve(cfg, 3, score, 4000, log=lambda _: None,
                               prepare=prepare, measure=hooks["measure"])
  assert seen["prepared"]
  first, last = rows[0], rows[-1]
  assert first["disp_rms"] == 0.0
  assert first["cov_rel_err"] == pytest.approx(first["g_cov_rel_err"])
  assert first["g_cov_rel_err"] == pytest.approx(0.19, abs=0.06)
  assert last["step"] == 3 and last["disp_rms"] > 0.0
  assert last["g_drift"] < 1e-8
  with pytest.raises(ValueError, match="gcm.generator='affine'"):
    G.fixed_g_params({"params": {"w": np.zeros((2, 2))}}, a, mu)


def _reflow_file(ema_align, ema_base, online_align, online_base):
  """A reflow_alignment.json with flat curves of 3 seeds per arm; EMA
  curves only where `ema_*` is given."""
  rows, curves = [], []
  sets = {"online": (online_align, online_base)}
  if ema_align is not None:
    sets["ema"] = (ema_align, ema_base)
  for par, (va, vb) in sets.items():
    for variant, vals in (("piecewise_align", va), ("piecewise", vb)):
      for seed, v in enumerate(vals):
        tag = {"params": par} if ema_align is not None else {}
        curves.append({"dataset": "digits", "variant": variant, "seed": seed,
                       "metric": "fd_digits", "K": 2, **tag,
                       "points": [{"step": s, "sample_steps": 2, "value": v}
                                  for s in (600, 1200)]})
        rows.append({"dataset": "digits", "variant": variant, "seed": seed,
                     "metric": "fd_digits", "sample_steps": 1,
                     "value": 10 * v, "train_steps": 1200, **tag})
  return {"rows": rows, "curves": curves,
          "machine": {"date": "2026-11-30"}}


def test_reflow_claim_reads_the_deployed_ema_rows_when_they_exist(
    tmp_path, monkeypatch):
  R = _bench_module("claims_reflow", "claims", "reflow.py")
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  lo, hi = [0.30, 0.31, 0.32], [0.90, 0.91, 0.92]
  # EMA says align is better, online says the opposite: EMA decides.
  res = _reflow_file(lo, hi, hi, lo)
  assert R.deployed_params(res, "digits") == "ema"
  with open(R.claim_dataset(res, "digits")) as f:
    d = json.load(f)
  assert d["claim"]["verdict"] == V.REPRODUCED
  assert "ema parameters" in d["claim"]["verdict_reason"]
  assert {r["fd_digits"] for r in d["rows"] if r["sample_steps"] == 1} == {
      10 * v for v in lo + hi}
  # Files without EMA curves (written before change 15): the online rows.
  old = _reflow_file(None, None, hi, lo)
  assert R.deployed_params(old, "digits") == "online"
  with open(R.claim_dataset(old, "digits")) as f:
    assert json.load(f)["claim"]["verdict"] == V.NOT_REPRODUCED


def test_reflow_claim_states_the_arms_budget_and_labels_other_runs(
    tmp_path, monkeypatch):
  R = _bench_module("claims_reflow", "claims", "reflow.py")
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  res = _reflow_file([0.9, 0.91, 0.92], [0.3, 0.31, 0.32], [1.0] * 3,
                     [1.0] * 3)
  for c in res["curves"]:
    c.update(align_weight=0.1, align_start_steps=600)
  # A vanilla reflow run of a shorter budget, listed first (merged files
  # keep older runs ahead of newer ones).
  res["curves"].insert(0, {
      "dataset": "digits", "variant": "reflow", "seed": 0, "K": 1,
      "metric": "fd_digits", "params": "ema", "align_weight": 0.1,
      "align_start_steps": 300,
      "points": [{"step": 600, "sample_steps": 1, "value": 0.5}]})
  res["rows"].append({"dataset": "digits", "variant": "reflow", "seed": 0,
                      "metric": "fd_digits", "sample_steps": 1,
                      "value": 0.5, "train_steps": 600, "params": "ema"})
  with open(R.claim_dataset(res, "digits")) as f:
    claim = json.load(f)["claim"]
  assert claim["verdict"] == V.NOT_REPRODUCED
  assert claim["budget"].startswith("1200 steps per arm")
  assert "start 600" in claim["budget"]
  assert "reflow (600 steps) 0.5" in claim["verdict_reason"]
  assert "piecewise_align 9.1" in claim["verdict_reason"]  # same budget


def test_reflow_alignment_merge_lets_a_later_file_replace_its_runs(
    tmp_path, monkeypatch):
  import argparse  # pylint: disable=g-import-not-at-top
  B = _bench_module("bench_reflow_alignment", "reflow_alignment.py")
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))

  def part(name, dataset, seeds, value, params=None):
    tag = {"params": params} if params else {}
    obj = {"rows": [{"dataset": dataset, "variant": "piecewise", "K": 2,
                     "sample_steps": 2, "seed": s, "metric": "fd_digits",
                     "value": value, **tag} for s in seeds],
           "curves": [{"dataset": dataset, "variant": "piecewise",
                       "seed": s, "points": [], **tag} for s in seeds]}
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(obj))
    return str(p)

  old = part("old", "digits", [0, 1, 2], 5.0)
  keep = part("keep", "gmm", [0], 1.0)
  new = part("new", "digits", [0, 1], 2.0, params="ema")
  B.merge(argparse.Namespace(merge=",".join([old, keep, new]), relabel=0,
                             name="merged"))
  with open(tmp_path / "merged.json") as f:
    d = json.load(f)
  got = sorted((r["dataset"], r["seed"], B.params_of(r), r["value"])
               for r in d["rows"])
  assert got == [("digits", 0, "ema", 2.0), ("digits", 1, "ema", 2.0),
                 ("digits", 2, "online", 5.0), ("gmm", 0, "online", 1.0)]
  assert len(d["curves"]) == 4
  summ = {(s["dataset"], s["params"]): (s["num_seeds"], s["mean"])
          for s in d["summary"]}
  assert summ[("digits", "ema")] == (2, 2.0)
  assert summ[("digits", "online")] == (1, 5.0)


def _consistency_claims():
  return _bench_module("claims_consistency", "claims", "consistency.py")


def test_batch_ot_cost_spans_ic_at_batch_one_and_exact_ot_at_full_batch():
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  C = _consistency_claims()
  x = jax.random.normal(jax.random.key(0), (24, 3))
  z = jax.random.normal(jax.random.key(1), (24, 3))
  ic = float(np.mean(np.sum((np.asarray(x) - np.asarray(z)) ** 2, 1)))
  assert C.batch_ot_cost(x, z, 1) == pytest.approx(ic, rel=1e-5)
  # Full batch: the exact assignment, checked by brute force on 6 points.
  xs, zs = np.asarray(x[:6]), np.asarray(z[:6])
  import itertools  # pylint: disable=g-import-not-at-top
  best = min(np.mean(np.sum((xs - zs[list(p)]) ** 2, 1))
             for p in itertools.permutations(range(6)))
  assert C.batch_ot_cost(x[:6], z[:6], 6) == pytest.approx(best, rel=1e-5)
  # Chunks of 4 of 6 pairs: the pair-weighted mean of the two chunks' OT.
  four = min(np.sum((xs[:4] - zs[:4][list(p)]) ** 2)
             for p in itertools.permutations(range(4)))
  two = min(np.sum((xs[4:] - zs[4:][list(p)]) ** 2)
            for p in itertools.permutations(range(2)))
  assert C.batch_ot_cost(x[:6], z[:6], 4) == pytest.approx(
      (four + two) / 6, rel=1e-5)


def test_transport_claim_needs_the_data_second_moment_when_asked(
    tmp_path, monkeypatch):
  C = _consistency_claims()
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  sigmas = [0.5, 2.0, 8.0]

  def rows(m2_f):
    return [{"arm": "gc", "seed": sd, "step": st, "sigma": s,
             "c": 10.0 + 0.01 * sd, "m2_f": m2_f, "m2_x": 50.0}
            for sd in range(3) for st in (100, 200) for s in sigmas]

  def verdict(m2_f, tol):
    path = C._verdict_transport(rows(m2_f), sigmas, [0, 1, 2], 200,
                                c_ic=30.0, c_ot=20.0, budget="b",
                                claim="t", marginal_tol=tol)
    with open(path) as f:
      return json.load(f)["claim"]["verdict"]

  # c_GC = 10 < c_OT = 20 < c_IC = 30 on flat curves.
  assert verdict(52.0, 0.1) == V.REPRODUCED        # 4 % off: a coupling
  assert verdict(30.0, 0.1) == V.NOT_REPRODUCED    # shrunk outputs
  assert verdict(30.0, None) == V.REPRODUCED       # the toy's rule


def test_reflow_alignment_sweep_relabel_tags_each_variant_once(
    tmp_path, monkeypatch):
  import argparse  # pylint: disable=g-import-not-at-top
  B = _bench_module("bench_reflow_alignment", "reflow_alignment.py")
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))

  def part(name, variant, lam):
    run = {"dataset": "digits", "variant": variant, "seed": 0}
    obj = {"rows": [dict(run, K=2, sample_steps=2, metric="fd_digits",
                         value=1.0)],
           "curves": [dict(run, points=[], align_weight=lam,
                           align_start_steps=600)]}
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(obj))
    return str(p)

  first = part("a", "piecewise_align", 0.01)
  B.merge(argparse.Namespace(merge=first, relabel=1, name="sweep1"))
  again = str(tmp_path / "sweep1.json")
  base = part("b", "piecewise", 0.0)
  B.merge(argparse.Namespace(merge=f"{again},{base}", relabel=1,
                             name="sweep2"))
  with open(tmp_path / "sweep2.json") as f:
    names = sorted(r["variant"] for r in json.load(f)["rows"])
  assert names == ["piecewise", "piecewise_align_lam0.01_start600"]


def test_mnist_quality_claim_with_curves_uses_the_protocol_rule(
    tmp_path, monkeypatch):
  C = _consistency_claims()
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  finals = {"gc": [1.0, 1.02, 0.98], "ot": [2.0, 2.02, 1.98],
            "ic": [3.0, 3.02, 2.98]}

  def acc(last_move):
    rows = []
    for arm, vals in finals.items():
      for seed, v in enumerate(vals):
        rows.append({"arm": arm, "seed": seed, "steps": 100,
                     "fd_mnist@1": v, "fd_mnist@2": v,
                     "curve": [{"step": 50, "fd_mnist@1": v + last_move},
                               {"step": 100, "fd_mnist@1": v}]})
    return ({"machine": {"device_kind": "H200", "date": "d"}},
            {"rows": rows, "real_vs_real": 0.1,
             "setup": {"steps": 100, "batch": 256, "dtype": "bfloat16",
                       "data": "mnist", "samples": 2000, "curve_points": 2,
                       "net": {"model_channels": 32,
                               "channel_mult": [1, 2]}}})

  def verdict(last_move):
    a, q = acc(last_move)
    with open(C._quality_curves_record(a, q, ["gc", "ot", "ic"])) as f:
      return json.load(f)["claim"]["verdict"]

  assert verdict(0.0) == V.REPRODUCED          # GC < OT < IC, flat
  assert verdict(0.5) == V.NOT_REACHED         # still falling by 0.5


def test_quality_toy_ict_s1_sets_every_arm_and_writes_its_own_record(
    tmp_path, monkeypatch):
  import argparse  # pylint: disable=g-import-not-at-top
  C = _consistency_claims()
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  seen = {}

  def fake_curves(arms, seeds, steps, num, keys, tag, cache):
    del num, keys, tag, cache
    seen.update(arms)
    # GC < OT < IC at 1 step on flat curves.
    val = {"gc": 0.1, "ot": 0.2, "ic": 0.3}
    return [{"arm": a, "seed": sd, "step": st, "sinkhorn@1": val[a] + 1e-3 * sd,
             "sinkhorn@2": val[a]}
            for a in arms for sd in seeds for st in (steps // 2, steps)]
  monkeypatch.setattr(C, "_toy_sinkhorn_curves", fake_curves)
  cache_dir = str(tmp_path / "cache")
  path = C.claim_quality_toy([0, 1, 2], argparse.Namespace(
      steps=100, ict_s1=160, cache_dir=cache_dir))
  assert os.path.basename(path) == "claims_001_c_quality_toy_s1_160.json"
  assert all(o["ict.s1"] == 160 for o in seen.values())
  claim = json.loads(open(path).read())["claim"]
  assert "iCT N 10 → 160" in claim["budget"]
  assert claim["verdict"] == V.REPRODUCED
  # A --tag (another budget) gets its own record beside it.
  path = C.claim_quality_toy([0, 1, 2], argparse.Namespace(
      steps=100, ict_s1=160, tag="18k", cache_dir=cache_dir))
  assert os.path.basename(path) == "claims_001_c_quality_toy_s1_160_18k.json"
  # Without the option: the config's N and the main record.
  seen.clear()
  path = C.claim_quality_toy([0, 1, 2], argparse.Namespace(
      steps=100, cache_dir=cache_dir))
  assert os.path.basename(path) == "claims_001_c_quality_toy.json"
  assert all("ict.s1" not in o for o in seen.values())
  monkeypatch.setattr(sys, "argv", ["consistency.py", "--claim=quality_toy",
                                    "--ict_s1=5"])
  with pytest.raises(SystemExit, match="--ict_s1=5"):
    C.main()
  for bad in (["--claim=quality_toy", "--tag=18K"],
              ["--claim=quality", "--tag=long"]):
    monkeypatch.setattr(sys, "argv", ["consistency.py", *bad])
    with pytest.raises(SystemExit, match="--tag="):
      C.main()


# ------------------------------------------------- 000 MNIST latent (43) --
def _mnist_rows(final, step0_fd=30.0, prev=None, steps=700):
  """Rows of the MNIST latent claim: per seed (min_share, fd) at `steps`,
  `prev` (the same) at steps/2 (default: equal to the final), fd
  `step0_fd` at step 0."""
  rows = []
  for seed, (share, fd) in enumerate(final):
    p_share, p_fd = (prev or final)[seed]
    for step, sh, f, f0 in ((0, 0.0, step0_fd, None),
                            (steps // 2, p_share, p_fd, 9.0 + seed),
                            (steps, share, fd, 2.0 + seed)):
      rows.append({"arm": "z256", "seed": seed, "step": step,
                   "min_share": sh, "kl_uniform": 0.1 - sh,
                   "fd_mnist": f, "f0_identity_err": f0})
  return rows


def test_mnist_latent_rule_needs_every_digit_and_half_the_untrained_fd():
  G = _gcm_claims()
  good = [(0.07, 10.0), (0.08, 11.0), (0.075, 12.0)]
  verdict, reason, st = G.mnist_latent_verdict(_mnist_rows(good), 700)
  assert verdict == V.REPRODUCED
  assert st["per_seed"][2]["fd_ratio"] == pytest.approx(12.0 / 30.0)
  # The f_0 = id signal: the first evaluation after step 0, and the last.
  assert st["f0_identity_err"]["first"]["mean"] == pytest.approx(10.0)
  assert st["f0_identity_err"]["last"]["mean"] == pytest.approx(3.0)
  assert "every seed: True" in reason
  # One seed drops a digit (share 0.04 < 0.05): not reproduced.
  dropped = [(0.07, 10.0), (0.04, 11.0), (0.075, 12.0)]
  assert G.mnist_latent_verdict(_mnist_rows(dropped), 700)[0] == (
      V.NOT_REPRODUCED)
  # Exactly the threshold counts as covered; 0.5 × step 0 as images.
  edge = [(0.05, 15.0), (0.08, 11.0), (0.075, 12.0)]
  assert G.mnist_latent_verdict(_mnist_rows(edge), 700)[0] == V.REPRODUCED
  # One seed's fd above half its own step-0 value: not reproduced.
  noisy = [(0.07, 10.0), (0.08, 16.0), (0.075, 12.0)]
  assert G.mnist_latent_verdict(_mnist_rows(noisy), 700)[0] == (
      V.NOT_REPRODUCED)
  # Passing while fd still falls fast: the budget does not count.
  moving = [(0.07, 20.0), (0.08, 21.0), (0.075, 22.0)]
  v, reason, _ = G.mnist_latent_verdict(
      _mnist_rows(good, prev=moving), 700)
  assert v == V.NOT_REACHED and "'fd_mnist': False" in reason
  # A seed dropping a digit while the share curve still moves.
  v, _, _ = G.mnist_latent_verdict(
      _mnist_rows(dropped, prev=[(0.0, 10.0)] * 3), 700)
  assert v == V.NOT_REACHED
  with pytest.raises(ValueError, match="needs >= 2"):
    G.mnist_latent_verdict(_mnist_rows(good[:1]), 700)
  with pytest.raises(ValueError, match="no evaluation at step 0 and 800"):
    G.mnist_latent_verdict(_mnist_rows(good), 800)


def test_mnist_latent_runs_the_stand_in_at_the_papers_latent_dimension():
  G = _gcm_claims()
  cfg, ident = G._mnist_run(3, 0)  # pylint: disable=protected-access
  assert cfg.train.steps == 21_000 and cfg.train.batch_size == 128
  assert cfg.gcm.latent_dim == 256 and cfg.seed == 3
  assert (cfg.model.name, tuple(cfg.model.mlp.hidden)) == ("mlp",
                                                           (512, 512, 512))
  assert (cfg.gcm.generator, tuple(cfg.gcm.generator_hidden)) == (
      "mlp", (512, 512))
  assert cfg.data.offline_fallback == "mnist_test"
  assert ident["eval_every"] == 3500 and ident["num"] == 10_000
  # Another budget is another run identity (another cache directory too).
  assert G._mnist_run(3, 700)[1] != ident  # pylint: disable=protected-access
  # dim(z) = 50 (change 44): only the latent dimension differs.
  cfg50, ident50 = G._mnist_run(3, 0, 50)  # pylint: disable=protected-access
  assert cfg50.gcm.latent_dim == 50
  assert {k: v for k, v in ident50["overrides"].items()
          if ident["overrides"].get(k) != v} == {"gcm.latent_dim": 50}
  assert (G.mnist_record(256), G.mnist_record(50)) == (
      "mnist_latent_coverage", "mnist_latent_coverage_z50")


def test_mnist_score_reads_labels_and_fd_of_real_and_one_digit_images():
  from gcflow_jax.evaluation import features  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(os.path.join(features.MNIST_TEST_DIR,
                                     "t10k-labels-idx1-ubyte.gz")):
    pytest.skip("shared MNIST test set not present")
  import numpy as np  # pylint: disable=g-import-not-at-top
  G = _gcm_claims()
  x, y = features.load_mnist_data("test")
  score = G.mnist_score(x[:1000])
  real = score(x[1000:3000])
  # 2,000 real images: every digit near its frequency, fd near the floor.
  assert real["min_share"] > 0.07 and real["kl_uniform"] < 0.01
  assert np.argmin(real["shares"]) == np.argmin(np.bincount(y[1000:3000]))
  ones = score(np.concatenate([x[1000:3000][y[1000:3000] == 1]] * 4))
  assert ones["min_share"] == 0.0 and ones["shares"][1] > 0.97
  assert ones["kl_uniform"] > 2.0
  assert ones["fd_mnist"] > 10 * real["fd_mnist"]
  assert math.isnan(score(np.full((4, 28, 28, 1), np.nan))["min_share"])


def test_mnist_latent_caches_each_seed_splits_and_resumes(tmp_path,
                                                          monkeypatch):
  G = _gcm_claims()
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path / "res"))
  cache_dir = str(tmp_path / "cache")
  trained = []
  final = {0: (0.07, 10.0), 1: (0.08, 11.0), 2: (0.075, 12.0)}

  def fake_train(seed, steps, latent_dim=256, png=""):
    assert png == os.path.join(cache_dir, "mnist_latent_700",
                               f"z{latent_dim}_s{seed}.png")
    if seed == 1:   # seed 0 stands for a run cached before the figure
      from PIL import Image  # pylint: disable=g-import-not-at-top
      Image.new("RGBA", (8, 4), (200, 200, 200, 255)).save(png)
    trained.append((seed, steps) if latent_dim == 256
                   else (seed, steps, latent_dim))
    rows = [r for r in _mnist_rows([final[seed]], steps=steps)]
    return [{**r, "seed": seed} for r in rows]
  monkeypatch.setattr(G, "_mnist_train", fake_train)
  # A child's run: trains and caches its seed, writes no record.
  assert G.claim_mnist_latent([0], 700, cache_dir=cache_dir,
                              train_only=True) is None
  assert trained == [(0, 700)]
  assert not os.path.exists(tmp_path / "res")
  launched = []

  def fake_run_on_cores(jobs, cores, finished):
    assert cores == (0, 1)
    for job in jobs:   # as the children would
      launched.append(job)
      flags = dict(a[2:].split("=", 1) for a in job.argv[1:] if "=" in a)
      assert "--train_only" in job.argv
      G.claim_mnist_latent([int(flags["seeds"])], int(flags["steps"]),
                           cache_dir=flags["cache_dir"], train_only=True,
                           latent_dim=int(flags["latent_dim"]))
      assert finished(job)
    return []
  monkeypatch.setattr(G.split, "run_on_cores", fake_run_on_cores)
  path = G.claim_mnist_latent([0, 1, 2], 700, cores=(0, 1),
                              cache_dir=cache_dir)
  # Seed 0 was cached: only seeds 1 and 2 are launched, each once.
  assert [j.name for j in launched] == ["z256 seed 1", "z256 seed 2"]
  assert launched[0].argv[0].endswith(os.path.join("claims", "gcm.py"))
  assert launched[0].log == os.path.join(cache_dir, "mnist_latent_700",
                                         "z256_s1.log")
  assert trained == [(0, 700), (1, 700), (2, 700)]
  rec = json.loads(open(path).read())
  assert os.path.basename(path) == "claims_000_mnist_latent_coverage.json"
  assert rec["claim"]["verdict"] == V.REPRODUCED
  assert rec["claim"]["seeds"] == [0, 1, 2] and len(rec["rows"]) == 9
  assert "f MLP (512, 512, 512)" in rec["claim"]["budget"]
  # The first seed with a samples figure has it copied beside the record.
  assert rec["samples_png"] == "claims_000_mnist_latent_coverage_samples_s1.png"
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(tmp_path / "res" / rec["samples_png"]) as kept:
    assert (kept.mode, kept.size, kept.getpixel((3, 2))) == ("L", (8, 4),
                                                             200)
  # Each run's date, wall-clock seconds and load, from its cache file.
  assert set(rec["runs"]) == {"0", "1", "2"}
  assert rec["runs"]["1"]["wall_sec"] >= 0.0
  assert len(rec["runs"]["1"]["load_average_end"]) == 3
  # The floors are the real test images' (every digit present).
  floors = rec["floors"]
  assert floors["label_shares_of_test_images"]["min_share"] > 0.08
  assert floors["fd_mnist_other_half"] < 1.0
  # A rerun trains nothing; a failed child stops the command by its log.
  G.claim_mnist_latent([0, 1, 2], 700, cache_dir=cache_dir)
  assert len(trained) == 3
  monkeypatch.setattr(G.split, "run_on_cores",
                      lambda jobs, cores, finished: list(jobs))
  with pytest.raises(SystemExit, match="z256_s3.log"):
    G.claim_mnist_latent([3], 700, cores=(0,), cache_dir=cache_dir)
  # dim(z) = 50: its own arm in the same cache, its own record.
  before = open(path).read()
  launched.clear()
  monkeypatch.setattr(G.split, "run_on_cores", fake_run_on_cores)
  path50 = G.claim_mnist_latent([0, 1], 700, cores=(0, 1),
                                cache_dir=cache_dir, latent_dim=50)
  assert [j.name for j in launched] == ["z50 seed 0", "z50 seed 1"]
  assert "--latent_dim=50" in launched[0].argv
  assert os.path.basename(path50) == (
      "claims_000_mnist_latent_coverage_z50.json")
  rec50 = json.loads(open(path50).read())
  assert rec50["overrides"]["gcm.latent_dim"] == 50
  assert "dim(z) = 50" in rec50["claim"]["budget"]
  assert open(path).read() == before   # the D = 256 record stays


def test_gcm_cli_passes_cores_to_the_mnist_claim_only(monkeypatch):
  G = _gcm_claims()
  got = {}
  monkeypatch.setitem(G.CLAIMS, "mnist_latent",
                      lambda seeds, steps, **kw: got.update(kw) or "x")
  monkeypatch.setattr(sys, "argv", [
      "gcm.py", "--claim=mnist_latent", "--cores=0,1", "--cache_dir=c"])
  G.main()
  assert got == {"cores": (0, 1), "cache_dir": "c", "train_only": False,
                 "latent_dim": 256}
  for argv, msg in ((["--claim=moons", "--cores=0"], "--cores, "),
                    (["--claim=moons", "--train_only"], "--train_only"),
                    (["--claim=moons", "--latent_dim=50"], "--latent_dim"),
                    (["--claim=mnist_latent", "--latent_dim=0"],
                     "--latent_dim=0: a positive"),
                    (["--claim=mnist_latent", "--cores=a"], "--cores='a'"),
                    (["--claim=mnist_latent", f"--cores={os.cpu_count()}"],
                     "not among this machine")):
    monkeypatch.setattr(sys, "argv", ["gcm.py", *argv])
    with pytest.raises(SystemExit, match=msg):
      G.main()


def test_with_samples_png_scores_as_given_and_keeps_the_last_figure(
    tmp_path, monkeypatch):
  """The MNIST claim's samples figure: the wrapped score returns what
  `score` returns for the same samples; each call draws its first 64
  samples, clipped to [-1, 1], titled with train_curve's evaluation step
  (0, every eval_every, the last at `steps`); non-finite samples draw
  nothing."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from gcflow_jax import plotting  # pylint: disable=g-import-not-at-top
  G = _gcm_claims()
  drawn = []
  real_plot = plotting.save_samples_plot
  monkeypatch.setattr(plotting, "save_samples_plot",
                      lambda path, x, ref, title: drawn.append(
                          (path, x.copy(), title)) or real_plot(
                              path, x, ref, title))
  score = lambda x: {"mean": float(np.mean(x))}
  ref = np.zeros((80, 28, 28, 1), np.float32)
  png = str(tmp_path / "s.png")
  scored = G.with_samples_png(score, ref, png, eval_every=3500, steps=8000)
  x = np.linspace(-3, 3, 100 * 784, dtype=np.float32).reshape(100, 28, 28, 1)
  for _ in range(4):
    assert scored(x) == score(x)
  assert [t for _, _, t in drawn] == [f"g(z), step {s}"
                                      for s in (0, 3500, 7000, 8000)]
  path, first, _ = drawn[-1]
  assert path == png and os.path.getsize(png) > 1000
  np.testing.assert_array_equal(first, np.clip(x[:64], -1.0, 1.0))
  bad = x.copy()
  bad[0, 0, 0, 0] = np.nan
  assert math.isnan(scored(bad)["mean"]) and len(drawn) == 4


def _quality_rows(finals, ks, last_move=0.0, steps=100):
  """(c) rows on images: per arm and seed, a curve at steps/2 and steps
  whose last change is `last_move`; 2-step and KID values mirror the
  1-step one reversed (so only the 1-step metric can order the arms)."""
  rows = []
  for arm, vals in finals.items():
    for seed, v in enumerate(vals):
      for step, val in ((steps // 2, v + last_move), (steps, v)):
        row = {"arm": arm, "seed": seed, "step": step}
        for k in ks:
          suffix = "" if ks == (1,) else f"@{k}"
          row[f"fd_mnist{suffix}"] = val if k == 1 else 10.0 - val
          row[f"kid_mnist{suffix}"] = 10.0 - val
        rows.append(row)
  return rows


def test_quality_images_rule_reads_one_step_fd_and_flat_curves_only():
  C = _consistency_claims()
  setup = {**C.QUALITY_IMAGES["mnist"]}
  ordered = {"gc": [1.0, 1.02, 0.98], "ot": [2.0, 2.02, 1.98],
             "ic": [3.0, 3.02, 2.98]}
  verdict, reason, our = C.quality_images_verdict(
      setup, _quality_rows(ordered, (1, 2)), 100)
  assert verdict == V.REPRODUCED
  # The 2-step values run the other way; they are reported, not judged.
  assert "2 steps fd_mnist" in reason and "'GC < OT': False" in reason
  assert our.startswith("1 step: GC 1 ± 0.02")
  assert C.quality_images_verdict(
      setup, _quality_rows(ordered, (1, 2), last_move=0.5), 100)[0] == (
          V.NOT_REACHED)
  # OT ahead of GC on flat curves: the paper's order fails.
  swapped = {"gc": ordered["ot"], "ot": ordered["gc"], "ic": ordered["ic"]}
  assert C.quality_images_verdict(
      setup, _quality_rows(swapped, (1, 2)), 100)[0] == V.NOT_REPRODUCED
  # Overlapping bands (GC's mean lower but within OT's std): not ordered.
  close = {"gc": [1.0, 1.5, 0.5], "ot": [1.2, 1.3, 1.1], "ic": [3.0, 3.1,
                                                                2.9]}
  assert C.quality_images_verdict(
      setup, _quality_rows(close, (1, 2)), 100)[0] == V.NOT_REPRODUCED


def test_quality_images_keys_and_identities():
  C = _consistency_claims()
  digits, mnist = C.QUALITY_IMAGES["digits"], C.QUALITY_IMAGES["mnist"]
  # The digits record keeps its unsuffixed keys (its rows on record).
  assert C.quality_key(digits, "fd_digits", 1) == "fd_digits"
  assert C.quality_key(mnist, "fd_mnist", 2) == "fd_mnist@2"
  # The digits runs' cache identity is the one their cache was written
  # with: the coupling overrides, the metrics and the sample key only.
  cfg, ident = C._quality_images_run("digits", "ot", 1, 40)
  assert ident["overrides"] == {"ict.coupling": "ot", "ict.gc_mu": 0.5}
  assert set(ident) == {"config", "overrides", "config_digest",
                        "eval_every", "metrics", "sample_key"}
  assert cfg.model.name == "unet" and cfg.seed == 1
  cfg, ident = C._quality_images_run("mnist", "gc", 2, 16000)
  assert (cfg.data.name, cfg.model.name) == ("mnist5k", "mlp")
  assert tuple(cfg.model.mlp.hidden) == (1024, 1024, 1024)
  assert cfg.ict.coupling == "gc" and cfg.ict.gc_mu == 0.5
  assert cfg.train.steps == 16000 and ident["eval_every"] == 1600
  assert cfg.eval.num_samples == 5000
  # The recipe is digits_gc's: only data, network and evaluation differ.
  base = C.load(C.DIGITS_CONFIG)
  assert (cfg.optim.name, cfg.optim.lr, cfg.ict.s1) == (
      base.optim.name, base.optim.lr, base.ict.s1)
  assert ident["ks"] == [1, 2] and ident["reference"] == "mnist_test"


def test_quality_digits_record_is_rebuilt_word_for_word_from_its_rows():
  """The shared (c)-on-images code gives the digits record on file (written
  by its own function before MNIST shared it) from that record's rows."""
  C = _consistency_claims()
  with open(os.path.join(ROOT, "benchmarks", "results",
                         "claims_001_c_quality_digits.json")) as f:
    rec = json.load(f)
  claim = rec["claim"]
  verdict, reason, our = C.quality_images_verdict(
      C.QUALITY_IMAGES["digits"], rec["rows"],
      max(r["step"] for r in rec["rows"]))
  assert verdict == claim["verdict"]
  assert our == claim["our_figure"]
  assert claim["verdict_reason"] == (
      reason + ". Paper scale: CIFAR-10, 100k steps × batch 512, FID")


def test_best_over_run_reports_each_arms_lowest_value_and_its_step():
  C = _consistency_claims()
  setup = C.QUALITY_IMAGES["mnist"]
  rows = []
  for arm, base in (("gc", 1.0), ("ot", 2.0), ("ic", 3.0)):
    for seed in (0, 1):
      # Best at step 50, worse at the end (a run that degraded).
      for step, v in ((0, 50.0), (50, base + seed), (100, 40.0)):
        rows.append({"arm": arm, "seed": seed, "step": step,
                     "fd_mnist@1": v})
  text = C.best_over_run(setup, rows)
  assert "GC 1.5 ± 0.707" in text and "at steps [50, 50]" in text
  assert "IC 3.5 ± 0.707" in text
  assert text.startswith("lowest 1-step fd_mnist over the run")


def test_settled_needs_every_seed_within_the_factor_of_its_own_lowest():
  C = _consistency_claims()
  rows = []
  for seed, curve in enumerate(([50.0, 10.0, 11.9], [50.0, 20.0, 21.0])):
    for step, v in zip((0, 50, 100), curve):
      rows.append({"arm": "gc", "seed": seed, "step": step, "m": v})
  assert C.settled(rows, "gc", "m", 1.2)
  # One seed that rose past 1.2× its own lowest is enough to fail, even
  # though it ends below the other seed's lowest.
  rows[2]["m"] = 12.1
  assert not C.settled(rows, "gc", "m", 1.2)
  assert C.settled(rows, "gc", "m", 1.25)
  # The last value is the last step's, whatever the rows' order.
  shuffled = rows[::-1]
  assert not C.settled(shuffled, "gc", "m", 1.2)
  rows[1]["m"] = float("nan")
  assert not C.settled(rows, "gc", "m", 10.0)
  with pytest.raises(ValueError, match="no rows of arm 'ot'"):
    C.settled(rows, "ot", "m", 1.2)


def test_mnist_adam_setup_is_change_45s_but_optimiser_and_curriculum_end():
  C = _consistency_claims()
  base_cfg, base_ident = C._quality_images_run("mnist", "ic", 0, 16000)
  for s1 in C.MNIST_ADAM_S1:
    setup = C.QUALITY_IMAGES[f"mnist_adam_s{s1}"]
    assert setup["record"] == f"c_quality_mnist_mlp_adam_s{s1}"
    cfg, ident = C._quality_images_run(f"mnist_adam_s{s1}", "ic", 0, 16000)
    assert (cfg.optim.name, cfg.optim.lr, cfg.ict.s1) == ("adam", 1e-4, s1)
    assert (cfg.optim.b1, cfg.optim.b2) == (0.9, 0.99)
    extra = {k: v for k, v in ident["overrides"].items()
             if base_ident["overrides"].get(k) != v}
    assert extra == {"optim.name": "adam", "optim.lr": 1e-4, "ict.s1": s1}
    assert ({k: v for k, v in ident.items() if k not in (
        "overrides", "config_digest")} == {k: v for k, v in base_ident.items()
                                           if k not in ("overrides",
                                                        "config_digest")})
    assert ident["config_digest"] != base_ident["config_digest"]
  # The rule: ordered, flat by the old test, but GC seed 0 was at 0.8
  # early on and ended at 1.0 (> 1.2 × 0.8): not reached, not reproduced.
  setup = C.QUALITY_IMAGES["mnist_adam_s160"]
  ordered = {"gc": [1.0, 1.02, 0.98], "ot": [2.0, 2.02, 1.98],
             "ic": [3.0, 3.02, 2.98]}
  rows = _quality_rows(ordered, (1, 2))
  assert C.quality_images_verdict(setup, rows, 100)[0] == V.REPRODUCED
  for low, want in ((0.84, V.REPRODUCED), (0.8, V.NOT_REACHED)):
    early = {**rows[0], "step": 10, "fd_mnist@1": low}
    assert C.quality_images_verdict(setup, [early] + rows, 100)[0] == want
  rows = [early] + rows
  assert C.quality_images_verdict(C.QUALITY_IMAGES["mnist"], rows,
                                  100)[0] == V.REPRODUCED


def test_quality_mnist_adam_refuses_an_s1_outside_the_protocol(
    monkeypatch):
  C = _consistency_claims()
  monkeypatch.setattr(sys, "argv", ["consistency.py",
                                    "--claim=quality_mnist_adam",
                                    "--ict_s1=320"])
  with pytest.raises(SystemExit, match="--ict_s1 in \\(80, 160\\)"):
    C.main()


def test_quality_images_reproduce_command_trains_every_run():
  C = _consistency_claims()
  args = argparse.Namespace(claim="quality_mnist_adam", ict_s1=160,
                            steps=16000, arms="", cores=())
  assert C.reproduce_command(args, [0, 1, 2]) == (
      "python benchmarks/claims/consistency.py --claim=quality_mnist_adam "
      "--ict_s1=160 --steps=16000 --seeds=0,1,2 --cores=0,1")
  args = argparse.Namespace(claim="quality_mnist", ict_s1=0, steps=16000)
  assert C.reproduce_command(args, [0, 1, 2]) == (
      "python benchmarks/claims/consistency.py --claim=quality_mnist "
      "--steps=16000 --seeds=0,1,2 --cores=0,1")


def test_mnist_adam_stage1_picks_160_then_80_and_gates_the_other_runs(
    tmp_path, monkeypatch):
  C = _consistency_claims()
  args = argparse.Namespace(claim="quality_mnist_adam", cache_dir=str(
      tmp_path), steps=20, arms="gc", seeds=[1], cores=(), ict_s1=160)

  def put(s1, curve):
    name = f"mnist_adam_s{s1}"
    ident = C._quality_images_run(name, "ic", 0, 20)[1]
    rows = [{"arm": "ic", "seed": 0, "step": 10 * i, "fd_mnist@1": v}
            for i, v in enumerate(curve)]
    C._cache(args, C.QUALITY_IMAGES[name]["record"]).put("ic", 0, ident,
                                                          rows)

  put(160, [50.0, 10.0, 12.5])            # rose 1.25×: not settled
  st = C.mnist_adam_stage1(args)
  assert st["chosen"] is None and "s1 = 80: not run" in st["text"]
  put(80, [50.0, 10.0, 11.0])
  st = C.mnist_adam_stage1(args)
  assert st["chosen"] == 80 and st["runs"]["160"]["settled"] is False
  assert (st["runs"]["80"]["last"], st["runs"]["80"]["lowest"]) == (11.0,
                                                                    10.0)
  # Stage 2 at the s1 stage 1 did not pick is refused before training.
  with pytest.raises(SystemExit, match="has not picked it"):
    C.claim_quality_mnist_adam([1], args)
  put(160, [50.0, 10.0, 11.9])
  assert C.mnist_adam_stage1(args)["chosen"] == 160
  # Stage 1 itself (IC seed 0) always runs: here it is cached, so no
  # training, and a subset of arms writes no record.
  args.arms, args.ict_s1 = "ic", 80
  assert C.claim_quality_mnist_adam([0], args) is None


def test_mnist_cosine_setup_is_change_46s_s80_but_the_schedule(monkeypatch):
  """Change 47: change 46's s1 = 80 setup with only optim.schedule =
  'cosine' added (the same evaluation identity), change 46's settle rule,
  and no stage 1; s1 is fixed, so --ict_s1 is refused."""
  C = _consistency_claims()
  setup = C.QUALITY_IMAGES["mnist_adam_s80_cosine"]
  base = C.QUALITY_IMAGES["mnist_adam_s80"]
  assert setup["record"] == "c_quality_mnist_mlp_adam_s80_cosine"
  assert setup["settle"] == base["settle"] == 1.2
  assert base["stage1"] and not setup["stage1"]
  cfg, ident = C._quality_images_run("mnist_adam_s80_cosine", "gc", 0,
                                     12800)
  _, base_ident = C._quality_images_run("mnist_adam_s80", "gc", 0, 12800)
  assert (cfg.optim.name, cfg.optim.lr, cfg.optim.schedule, cfg.ict.s1,
          cfg.optim.warmup_steps) == ("adam", 1e-4, "cosine", 80, 0)
  extra = {k: v for k, v in ident["overrides"].items()
           if base_ident["overrides"].get(k) != v}
  assert extra == {"optim.schedule": "cosine"}
  assert ({k: v for k, v in ident.items() if k not in (
      "overrides", "config_digest")} == {k: v for k, v in base_ident.items()
                                         if k not in ("overrides",
                                                      "config_digest")})
  assert ident["eval_every"] == 1280
  # The settle clause is part of this setup's rule too.
  rows = _quality_rows({"gc": [1.0, 1.02, 0.98], "ot": [2.0, 2.02, 1.98],
                        "ic": [3.0, 3.02, 2.98]}, (1, 2))
  assert C.quality_images_verdict(setup, rows, 100)[0] == V.REPRODUCED
  early = {**rows[0], "step": 10, "fd_mnist@1": 0.8}
  assert C.quality_images_verdict(setup, [early] + rows,
                                  100)[0] == V.NOT_REACHED
  args = argparse.Namespace(claim="quality_mnist_cosine", ict_s1=0,
                            steps=12800)
  assert C.reproduce_command(args, [0, 1, 2]) == (
      "python benchmarks/claims/consistency.py --claim=quality_mnist_cosine "
      "--steps=12800 --seeds=0,1,2 --cores=0,1")
  monkeypatch.setattr(sys, "argv", ["consistency.py",
                                    "--claim=quality_mnist_cosine",
                                    "--ict_s1=160"])
  with pytest.raises(SystemExit, match="s1 = 80 fixed"):
    C.main()


def _gc_only_rows(curves):
  """(d) rows on images: arm -> per seed the 1-step fd_mnist at steps 0,
  50, 100."""
  return [{"arm": arm, "seed": seed, "step": step, "fd_mnist@1": v}
          for arm, per_seed in curves.items()
          for seed, curve in enumerate(per_seed)
          for step, v in zip((0, 50, 100), curve)]


def test_diverged_compares_each_seeds_last_value_with_its_own_lowest():
  C = _consistency_claims()
  rows = _gc_only_rows({"a": [[50.0, 10.0, 14.9], [50.0, 10.0, 15.1],
                              [50.0, 10.0, float("nan")]]})
  assert C.diverged(rows, "a", "fd_mnist@1", 1.5) == [False, True, True]
  assert C.diverged(rows[::-1], "a", "fd_mnist@1", 1.5) == [False, True,
                                                            True]
  with pytest.raises(ValueError, match="no rows of arm 'b'"):
    C.diverged(rows, "b", "fd_mnist@1", 1.5)


def test_gc_only_images_verdict_needs_the_controls_to_hold():
  """(d) on MNIST (PROTOCOL.md change 49): GC-only with the curriculum
  diverges on every seed, the fixed-N GC-only and the IC curriculum arms
  on none, with those two curves flat."""
  C = _consistency_claims()
  setup = C.QUALITY_IMAGES["mnist_gc_only"]
  up = [[50.0, 10.0, 20.0], [50.0, 11.0, 21.0], [50.0, 12.0, 22.0]]
  flat = [[50.0, 10.0, 10.1], [50.0, 11.0, 10.9], [50.0, 12.0, 12.0]]
  falling = [[50.0, 20.0, 12.0], [50.0, 21.0, 13.0], [50.0, 22.0, 14.0]]
  arms = list(C.GC_ONLY_ARMS)
  assert arms == ["gc_only_curriculum", "gc_only_fixed_n", "ic_curriculum"]

  def verdict(curr, fixed, ic):
    return C.gc_only_images_verdict(setup, _gc_only_rows(dict(zip(
        arms, (curr, fixed, ic)))))[0]

  assert verdict(up, flat, flat) == V.REPRODUCED
  # The fix still moving: no verdict yet.
  assert verdict(up, falling, flat) == V.NOT_REACHED
  # IC diverges too (the curriculum's, not GC-only's), or the fix fails.
  assert verdict(up, flat, up) == V.NOT_REPRODUCED
  assert verdict(up, up, flat) == V.NOT_REPRODUCED
  # The curriculum did not diverge on every seed: not reproduced once
  # every curve is flat, not reached while one still moves.
  assert verdict(flat, flat, flat) == V.NOT_REPRODUCED
  assert verdict(falling, flat, flat) == V.NOT_REACHED
  assert verdict(up[:2] + [flat[2]], flat, flat) == V.NOT_REACHED
  reason = C.gc_only_images_verdict(setup, _gc_only_rows(dict(zip(
      arms, (up, flat, flat)))))[1]
  assert "'gc_only_curriculum': [True, True, True]" in reason
  assert "gc_only_curriculum 21 ± 1" in reason


def test_gc_only_mnist_arms_are_change_46s_stand_in_at_a_constant_rate():
  C = _consistency_claims()
  _, base = C._quality_images_run("mnist_adam_s160", "gc", 0, 12800)
  want = {"gc_only_curriculum": ("gc", 1.0, 1280),
          "gc_only_fixed_n": ("gc", 1.0, 10), "ic_curriculum": ("ic", None,
                                                                1280)}
  for arm, (coupling, mu, s1) in want.items():
    cfg, ident = C._quality_images_run("mnist_gc_only", arm, 0, 12800)
    assert (cfg.ict.coupling, cfg.ict.s0, cfg.ict.s1) == (coupling, 10, s1)
    if mu is not None:
      assert cfg.ict.gc_mu == mu
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.schedule) == (
        "adam", 1e-4, "constant")
    assert ({k: v for k, v in ident.items() if k not in (
        "overrides", "config_digest")} == {k: v for k, v in base.items()
                                           if k not in ("overrides",
                                                        "config_digest")})
  assert C.QUALITY_IMAGES["mnist_gc_only"]["record"] == (
      "d_gc_only_divergence_mnist_mlp")
