"""The paper-002 claims benchmark (benchmarks/claims/fmm_claims.py): its
statistics and verdict rules against hand-computed answers, and a smoke run
of the three stages on the smoke teacher."""

import dataclasses
import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "claims"))

import fmm_claims  # noqa: E402  pylint: disable=g-import-not-at-top


def test_mean_std_is_the_sample_std():
  s = fmm_claims.mean_std([1.0, 2.0, 3.0, None])
  assert s["mean"] == pytest.approx(2.0)
  assert s["std"] == pytest.approx(1.0)        # ddof=1 (ddof=0: 0.816)
  assert (s["min"], s["max"], s["n"]) == (1.0, 3.0, 3)
  assert fmm_claims.mean_std([5.0])["std"] == 0.0
  assert fmm_claims.mean_std([None])["mean"] is None


def test_better_needs_separated_one_std_bands():
  a = {"mean": 1.0, "std": 0.5}
  assert fmm_claims.better(a, {"mean": 2.01, "std": 0.5})
  assert not fmm_claims.better(a, {"mean": 2.0, "std": 0.5})   # touching
  assert not fmm_claims.better({"mean": 2.01, "std": 0.5}, a)  # direction


def test_steps_to_threshold_is_the_first_crossing():
  curve = [{"step": 20, "value": 0.1}, {"step": 0, "value": 1.0},
           {"step": 10, "value": 0.3}, {"step": 30, "value": 0.5},
           {"step": 5, "value": float("nan")}]
  assert fmm_claims.steps_to_threshold(curve, 0.3) == 10    # <=, sorted
  assert fmm_claims.steps_to_threshold(curve, 0.29) == 20
  assert fmm_claims.steps_to_threshold(curve, 0.05) is None


def test_flattened_compares_the_last_change_with_the_seed_std():
  # seed means 0.50 -> 0.45 at the last step, std there 0.1: flat.
  flat = [[{"step": 0, "value": 0.5}, {"step": 1, "value": 0.35}],
          [{"step": 0, "value": 0.5}, {"step": 1, "value": 0.55}]]
  f = fmm_claims.flattened(flat)
  assert f["last_change"] == pytest.approx(0.05)
  assert f["last_std"] == pytest.approx(np.std([0.35, 0.55], ddof=1))
  assert f["flat"]
  falling = [[{"step": 0, "value": 0.5}, {"step": 1, "value": 0.30}],
             [{"step": 0, "value": 0.5}, {"step": 1, "value": 0.31}]]
  assert not fmm_claims.flattened(falling)["flat"]


def _rows(arm, seed, values_at_k1, ks=fmm_claims.KS):
  """A curve with evaluations at steps 0, 100, 200, ...; kl@K = kl@1."""
  return [{"arm": arm, "seed": seed, "step": 100 * i, "metric": "kl_hist",
           "value": v, "sample_steps": k}
          for i, v in enumerate(values_at_k1) for k in ks]


def test_verdict_follows_the_protocol():
  teacher_kl = 0.1                                   # threshold 0.2
  fast = [[1.0, 0.19, 0.15, 0.15], [1.0, 0.18, 0.16, 0.16],
          [1.0, 0.25, 0.19, 0.18]]                   # 100, 100, 200
  fast = [f + [f[-1]] for f in fast]                 # flat at the end
  slow = [[1.0, 0.5, 0.3, 0.19, 0.19], [1.0, 0.6, 0.2, 0.19, 0.19],
          [1.0, 0.5, 0.3, 0.2, 0.2]]                 # 300, 200, 300
  rows = [r for s in range(3) for r in _rows("lmd", s, fast[s])]
  rows += [r for s in range(3) for r in _rows("emd", s, slow[s])]
  out = fmm_claims.summarise(rows, teacher_kl, 400)
  assert out["threshold"] == pytest.approx(0.2)
  assert out["arms"]["lmd"]["steps_to_threshold"] == {0: 100, 1: 100, 2: 200}
  assert out["arms"]["emd"]["steps_to_threshold"] == {0: 300, 1: 200, 2: 300}
  # LMD 133 ± 58, EMD 267 ± 58: 191 < 209 -> reproduced.
  assert out["verdict"] == "reproduced", out["verdict_reason"]
  final = out["arms"]["lmd"]["final"]["kl@4"]
  assert final["mean"] == pytest.approx(np.mean([0.15, 0.16, 0.18]))
  # swapped arms: EMD faster beyond noise
  swapped = [{**r, "arm": {"lmd": "emd", "emd": "lmd"}[r["arm"]]}
             for r in rows]
  assert fmm_claims.summarise(swapped, teacher_kl, 400)["verdict"] == (
      "not reproduced")
  # overlapping bands
  close = [r for s in range(3) for r in _rows("lmd", s, fast[s])]
  close += [r for s in range(3) for r in _rows("emd", s, fast[(s + 1) % 3])]
  assert fmm_claims.summarise(close, teacher_kl, 400)["verdict"] == (
      "within noise")
  # one EMD seed never reaches it: LMD reproduced; nobody: not reached
  never = [r for r in rows if not (r["arm"] == "emd" and r["seed"] == 2)]
  never += _rows("emd", 2, [1.0, 0.5, 0.4, 0.3, 0.3])
  assert fmm_claims.summarise(never, teacher_kl, 400)["verdict"] == (
      "reproduced")
  # a curve still falling at the end: the budget does not count
  falling = [r for r in rows if not (r["arm"] == "emd" and r["step"] == 400)]
  falling += [{**r, "step": 400, "value": r["value"] - 0.05} for r in rows
              if r["arm"] == "emd" and r["step"] == 300]
  out = fmm_claims.summarise(falling, teacher_kl, 400)
  assert out["verdict"] == "not reached at this budget"
  assert "would read: reproduced" in out["verdict_reason"]
  out = fmm_claims.summarise(rows, 0.01, 300)
  assert out["verdict"] == "not reached at this budget"
  # Nobody at the threshold: the final 1-step KLs are reported beside it
  # (LMD 0.163 ± 0.015 vs EMD 0.193 ± 0.006 at step 300), not as the verdict.
  assert "LMD better by the mean ± std rule (reported" in out[
      "verdict_reason"]
  out = fmm_claims.summarise(swapped, 0.01, 300)
  assert out["verdict"] == "not reached at this budget"
  assert "EMD better by the mean ± std rule" in out["verdict_reason"]
  # fewer than 3 seeds
  two = [r for r in rows if r["seed"] < 2]
  assert fmm_claims.summarise(two, teacher_kl, 400)["verdict"] == (
      "not testable here at this budget")


def test_teacher_flat_is_the_relative_last_change():
  curve = [{"step": 10, "value": 0.49}, {"step": 0, "value": 2.0},
           {"step": 5, "value": 0.5}]
  f = fmm_claims.teacher_flat(curve)           # sorted: 0.5 -> 0.49
  assert f["flat"] and f["rel"] == pytest.approx(0.01 / 0.49)
  assert f["steps"] == [5, 10]
  # 0.6 -> 0.5: a 20 % drop is still moving (the first two would say flat).
  moving = curve[1:2] + [{"step": 5, "value": 0.6},
                         {"step": 10, "value": 0.5}]
  assert not fmm_claims.teacher_flat(moving)["flat"]
  # The change is measured against the last value, not the previous one:
  # 0.0526 -> 0.05 is 5.2 % of the last (not flat), 4.9 % of the previous.
  edge = [{"step": 0, "value": 0.0526}, {"step": 1, "value": 0.05}]
  assert not fmm_claims.teacher_flat(edge)["flat"]
  assert not fmm_claims.teacher_flat(curve[:1])["flat"]


def _student_record(seeds, arms=("lmd", "emd"), steps=3000, kl=0.1):
  args = {"steps": steps, "eval_every": 300, "full_every": 1500,
          "num_samples": 100_000, "teacher_config": "configs/toy_fm.py:xl",
          "teacher_workdir": "runs/t", "seeds": list(seeds),
          "arms": list(arms)}
  rows = [{"arm": a, "seed": s, "step": steps, "value": 0.5 + s,
           "sample_steps": 1} for s in seeds for a in arms]
  runs = {f"{a}/s{s}": {"wall_sec": 1.0} for s in seeds for a in arms}
  return {"rows": rows, "runs": runs, "args": args, "teacher_kl": kl,
          "command": "fmm_claims.py students"}


def test_merge_joins_seeds_of_one_budget_and_refuses_the_rest():
  m = fmm_claims.merge_student_results(
      [_student_record([0]), _student_record([1, 2])])
  assert m["args"]["seeds"] == [0, 1, 2]
  assert m["args"]["arms"] == ["emd", "lmd"]
  assert sorted((r["arm"], r["seed"]) for r in m["rows"]) == [
      (a, s) for a in ("emd", "lmd") for s in (0, 1, 2)]
  assert set(m["runs"]) == {f"{a}/s{s}" for a in ("lmd", "emd")
                            for s in (0, 1, 2)}
  # The merged record keeps where/when each part ran and the commands that
  # ran them (a merge of a merge included), not the merge's own.
  a, b = _student_record([0]), _student_record([1])
  a["machine"] = {"date": "2026-12-01T02:00"}
  b["machine"] = {"date": "2026-12-01T01:00"}
  b["command"] = "fmm_claims.py students --seeds=1"
  ab = fmm_claims.merge_student_results([a, b])
  assert [x["date"] for x in ab["machines"]] == ["2026-12-01T01:00",
                                                 "2026-12-01T02:00"]
  assert ab["run_command"] == ("fmm_claims.py students; "
                               "fmm_claims.py students --seeds=1")
  c = _student_record([2])
  c["machine"] = {"date": "2026-12-01T03:00"}
  abc = fmm_claims.merge_student_results(
      [dict(ab, command="fmm_claims.py merge"), c])
  assert len(abc["machines"]) == 3
  assert "merge" not in abc["run_command"]
  # The directories merged before are kept beside the new ones.
  assert fmm_claims.merge_student_results(
      [dict(ab, merged_from=["d1", "d2"]), dict(c, merged_from=["d2", "d3"])]
  )["merged_from"] == ["d1", "d2", "d3"]
  with pytest.raises(SystemExit, match="steps: 3000 vs 600"):
    fmm_claims.merge_student_results(
        [_student_record([0]), _student_record([1], steps=600)])
  with pytest.raises(SystemExit, match="teacher_kl"):
    fmm_claims.merge_student_results(
        [_student_record([0]), _student_record([1], kl=0.2)])
  with pytest.raises(SystemExit, match=r"\('lmd', 1\)\] in more than one "
                     "record, with different rows"):
    other = _student_record([1], arms=("lmd",))
    other["rows"][0]["value"] += 1e-9
    fmm_claims.merge_student_results([_student_record([0, 1]), other])
  # The same run merged again (a partial merge, then the split's own) is
  # kept once.
  twice = fmm_claims.merge_student_results(
      [_student_record([0, 1]), _student_record([1], arms=("lmd",))])
  assert sorted((r["arm"], r["seed"]) for r in twice["rows"]) == [
      ("emd", 0), ("emd", 1), ("lmd", 0), ("lmd", 1)]


def test_student_width_names_its_own_record_and_budget():
  import argparse
  base = argparse.Namespace(student_width=0)
  wide = argparse.Namespace(student_width=512)
  assert fmm_claims.students_record(base) == "claims_002_lmd_vs_emd"
  assert fmm_claims.students_record(wide) == "claims_002_lmd_vs_emd_w512"
  assert fmm_claims._student_workdir("lmd:stop_grad", 1, wide).endswith(
      os.path.join("claims002", "lmd_stop_grad_w512_s1"))
  assert fmm_claims._student_workdir("lmd", 1, base).endswith(
      os.path.join("claims002", "lmd_s1"))
  # --tag names another budget of the same students: its own record and
  # workdirs, after the width.
  long = argparse.Namespace(student_width=512, tag="long")
  assert fmm_claims.students_record(long) == "claims_002_lmd_vs_emd_w512_long"
  assert fmm_claims._student_workdir("emd", 2, long).endswith(
      os.path.join("claims002", "emd_w512_long_s2"))
  assert fmm_claims.students_record(argparse.Namespace(tag="long")) == \
      "claims_002_lmd_vs_emd_long"
  # The speed claim and the intervals diagnostic of those students too.
  assert fmm_claims.speed_record(base) == "claims_002_speed"
  assert fmm_claims.speed_record(long) == "claims_002_speed_w512_long"
  assert fmm_claims.intervals_record(long) == "fmm_intervals_w512_long"
  # The results page's claim row names what sets the record apart.
  long.steps = 20000
  assert fmm_claims._claim_qualifier(long) == (
      " (students 512 wide, 20000 steps)")
  assert fmm_claims._claim_qualifier(wide) == " (students 512 wide)"
  # The speed stage names the steps of the record it reads, not --steps
  # (whose default is the students stage's).
  assert fmm_claims._claim_qualifier(long, 40000) == (
      " (students 512 wide, 40000 steps)")
  assert fmm_claims._claim_qualifier(base) == ""
  # A record from before the option (no key) is the configs' width: it
  # merges with width 0 and not with 512.
  old = _student_record([0])
  new = _student_record([1])
  new["args"]["student_width"] = 0
  assert fmm_claims.merge_student_results([old, new])["args"]["seeds"] == [
      0, 1]
  new["args"]["student_width"] = 512
  with pytest.raises(SystemExit, match="student_width: 0 vs 512"):
    fmm_claims.merge_student_results([old, new])


def test_reproduce_command_redoes_a_merged_record_in_one_process():
  rec = fmm_claims.merge_student_results(
      [_student_record([0, 1]), _student_record([2])])
  cmd = fmm_claims.reproduce_command(rec["args"], rec["args"]["arms"],
                                     rec["args"]["seeds"])
  assert cmd.startswith("benchmarks/claims/fmm_claims.py students ")
  assert "--arms=emd,lmd --seeds=0,1,2" in cmd
  assert "--student_width" not in cmd and "--tag" not in cmd
  wide = dict(rec["args"], student_width=512, tag="20k")
  cmd = fmm_claims.reproduce_command(wide, ["lmd"], [0])
  assert cmd.endswith("--student_width=512 --tag=20k")
  # The command parses back to the record's budget.
  a = fmm_claims.parse(cmd.split()[1:])
  assert all(fmm_claims._budget_arg(vars(a), k) ==
             fmm_claims._budget_arg(wide, k)
             for k in fmm_claims.STUDENT_BUDGET)


def test_bad_arm_is_rejected_naming_the_allowed_ones():
  with pytest.raises(SystemExit, match="'lmd:stop_grad'"):
    fmm_claims.main(["students", "--arms=lmd,eulerian"])
  with pytest.raises(SystemExit, match="--tag='20K/x'"):
    fmm_claims.main(["students", "--tag=20K/x"])


def test_digits_setup_has_its_own_defaults_record_and_rule():
  """--setup=digits (PROTOCOL.md change 35): the digits teacher and
  metric as defaults, its own record and workdirs, fd@K summaries with the
  same rule, and nothing that only fits the checkerboard."""
  import argparse
  a = fmm_claims.parse(["students", "--setup=digits"])
  assert (a.teacher_config, a.num_samples, a.arms, a.teacher_ks) == (
      "configs/digits_fm.py", 1000, ("lmd", "emd"), (4, 8, 20))
  assert fmm_claims.parse(["students"]).num_samples == 100_000
  assert fmm_claims.students_record(a) == "claims_002_digits_lmd_vs_emd"
  assert fmm_claims._student_workdir("emd", 1, a).endswith(
      os.path.join("claims002", "digits_emd_s1"))
  digits = fmm_claims.SETUPS["digits"]
  assert digits.student_spec("emd") == "configs/digits_fmm_lmd.py:emd"
  assert digits.student_spec("lmd") == "configs/digits_fmm_lmd.py"
  assert fmm_claims.SETUPS["checkerboard"].student_spec("lmd:stop_grad") == (
      "configs/checkerboard_fmm_lmd.py:stop_grad")
  # An old record (no `setup` key) is the checkerboard's.
  assert fmm_claims.setup_of({"steps": 1}).name == "checkerboard"
  assert fmm_claims.students_record(argparse.Namespace()) == (
      "claims_002_lmd_vs_emd")
  for argv, match in (
      (["speed", "--setup=digits"], "checkerboard only"),
      (["intervals", "--setup=digits"], "checkerboard only"),
      (["students", "--setup=digits", "--student_width=64"], "UNet"),
      (["students", "--setup=digits", "--arms=lmd:stop_grad"],
       r"\('lmd', 'emd'\)"),
      (["students", "--setup=mnist"], "'checkerboard', 'digits'"),
      (["teacher", "--setup=digits", "--teacher_ks=4,8"], "contain 20")):
    with pytest.raises(SystemExit, match=match):
      fmm_claims.parse(argv)
  # The same rule on fd@K rows: LMD at the threshold (2 × 1.0) first.
  ks = digits.ks
  rows = [r for s in range(3) for r in _rows(
      "lmd", s, [9.0, 1.9, 1.5 + 0.01 * s, 1.5 + 0.01 * s], ks)]
  rows += [r for s in range(3) for r in _rows(
      "emd", s, [9.0, 4.0, 1.9 + 0.01 * s, 1.9 + 0.01 * s], ks)]
  out = fmm_claims.summarise(rows, 1.0, 300, digits)
  assert set(out["arms"]["lmd"]["final"]) == {"fd@1", "fd@2", "fd@4"}
  assert out["arms"]["emd"]["steps_to_threshold"] == {0: 200, 1: 200, 2: 200}
  assert out["arms"]["lmd"]["steps_to_threshold"] == {0: 100, 1: 100, 2: 100}
  assert out["verdict"] == "reproduced", out["verdict_reason"]
  assert "final 1-step FD LMD" in out["verdict_reason"]
  # Records of the two setups never merge; a digits record's command
  # parses back to its budget.
  rec = _student_record([0])
  other = dict(_student_record([1]))
  other["args"] = dict(other["args"], setup="digits")
  with pytest.raises(SystemExit, match="setup: checkerboard vs digits"):
    fmm_claims.merge_student_results([rec, other])
  args = vars(fmm_claims.parse(["students", "--setup=digits",
                                "--steps=4000"]))
  cmd = fmm_claims.reproduce_command(args, ["emd", "lmd"], [0, 1, 2])
  assert "--setup=digits" in cmd and "--num_samples" not in cmd
  assert "--teacher_config" not in cmd
  back = vars(fmm_claims.parse(cmd.split()[1:]))
  assert all(fmm_claims._budget_arg(back, k) == fmm_claims._budget_arg(
      args, k) for k in fmm_claims.STUDENT_BUDGET)


def test_fingerprint_names_exactly_these_parameters():
  """Equal trees (built in any key order) give one fingerprint; one ulp in
  one value, a dtype, a shape or a leaf's name gives another."""
  w = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
  a = {"dense": {"kernel": w, "bias": np.zeros(4, np.float32)}}
  b = {"dense": {"bias": np.zeros(4, np.float32), "kernel": w.copy()}}
  fp = fmm_claims.fingerprint(a)
  assert len(fp) == 16 and fp == fmm_claims.fingerprint(b)
  ulp = w.copy()
  ulp[1, 2] = np.nextafter(ulp[1, 2], np.float32(2))
  for other in ({"dense": {"kernel": ulp, "bias": a["dense"]["bias"]}},
                {"dense": {"kernel": w.astype(np.float64),
                           "bias": a["dense"]["bias"]}},
                {"dense": {"kernel": w.reshape(4, 3),
                           "bias": a["dense"]["bias"]}},
                {"dense": {"kernel": w, "bias2": a["dense"]["bias"]}}):
    assert fmm_claims.fingerprint(other) != fp


def test_teacher_note_says_which_runs_used_which_teacher():
  same = {"lmd/s0": {"teacher_fingerprint": "aa"},
          "emd/s0": {"teacher_fingerprint": "aa"}}
  assert fmm_claims.teacher_note(same, "aa") == ""
  # Runs from before fingerprints: nothing to say.
  assert fmm_claims.teacher_note({"lmd/s0": {}}, None) == ""
  mixed = {**same, "lmd/s1": {"teacher_fingerprint": "bb"},
           "emd/s1": {}}
  note = fmm_claims.teacher_note(mixed, "aa")
  assert "aa (the teacher record): emd/s0, lmd/s0" in note
  assert "bb: lmd/s1" in note and "not recorded: emd/s1" in note
  # A run without a teacher is neither 'not recorded' nor another teacher.
  free = {"direct/s0": {"teacher_fingerprint": None, "teacher_free": True}}
  assert fmm_claims.teacher_note({**same, **free}, "aa") == ""
  assert "direct" not in fmm_claims.teacher_note({**mixed, **free}, "aa")


def test_split_plan_is_one_single_run_command_per_missing_pair():
  a = fmm_claims.parse(["students", "--setup=digits", "--steps=3000",
                        "--eval_every=250", "--full_every=1000",
                        "--seeds=0,1", "--cores=0,0"])
  jobs = fmm_claims.split_jobs(a, {("lmd", 0)})
  assert [(j["arm"], j["seed"]) for j in jobs] == [
      ("emd", 0), ("lmd", 1), ("emd", 1)]
  assert len({j["dir"] for j in jobs}) == 3
  assert all(j["dir"].startswith(os.path.join(
      "runs", "claims002", "split", "claims_002_digits_lmd_vs_emd"))
             for j in jobs)
  for j in jobs:
    child = fmm_claims.parse(j["argv"])
    assert (child.arms, child.seeds, child.cores) == ((j["arm"],),
                                                      (j["seed"],), ())
    assert all(fmm_claims._budget_arg(vars(child), k)
               == fmm_claims._budget_arg(vars(a), k)
               for k in fmm_claims.STUDENT_BUDGET)
  with pytest.raises(SystemExit, match="students stage only"):
    fmm_claims.parse(["teacher", "--cores=0"])
  with pytest.raises(SystemExit, match="not among this machine's cores"):
    fmm_claims.parse(["students", "--cores=0,100000"])


def test_interval_rows_against_the_exact_gaussian_flow_map():
  """x0 ~ N(0, I) -> x1 ~ N(m, diag(σ²)) on the linear interpolant: the
  exact map X_{s,t}(x) = μ_t + sqrt(v_t/v_s)(x − μ_s) against the ODE of
  its own velocity has map_err ≈ 0, a map shifted by δ has map_err = |δ|²,
  and ode_move = E|Φ(x_s) − x_s|² = Σ_d (μ_t − μ_s)² + (r − 1)² v_s."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from gcflow_jax.math import flow_map as fm  # pylint: disable=g-import-not-at-top
  from gcflow_jax.math import interpolants  # pylint: disable=g-import-not-at-top
  interp = interpolants.get("linear")
  velocity, exact = fm.gaussian_flow_map(interp)
  m, sd = jnp.array([1.5, -0.5]), jnp.array([0.5, 2.0])
  params = {"mean": m, "std": sd}
  n = 200_000
  k0, k1 = jax.random.split(jax.random.key(0))
  x0 = jax.random.normal(k0, (n, 2))
  x1 = m + sd * jax.random.normal(k1, (n, 2))
  x_at = lambda s: interp.x_t(x0, x1, jnp.full((n,), s), None)  # noqa: E731
  vel = lambda x, t: velocity(params, x, t)  # noqa: E731
  delta = jnp.array([0.03, -0.04])           # |δ|² = 0.0025
  shifted = lambda p, x, s, t, key=None: exact(p, x, s, t) + delta  # noqa
  score = lambda y: float(np.mean(y[:, 0]))  # noqa: E731
  grid, starts = [0.0, 0.5, 1.0], (0.0, 0.75)
  cache = {}
  good = fmm_claims.interval_rows(exact, params, vel, x_at, grid, starts,
                                  score, cache)
  bad = fmm_claims.interval_rows(shifted, params, vel, x_at, grid, starts,
                                 score, cache)
  assert [(r["kind"], r["s"], r.get("steps")) for r in good] == [
      ("interval", 0.0, None), ("interval", 0.5, None), ("jump", 0.0, 1),
      ("chain", 0.0, 2), ("jump", 0.75, 1), ("chain", 0.75, 1)]

  def var(t):
    return (1 - t) ** 2 + t ** 2 * sd ** 2
  for g, b in zip(good, bad):
    s, t = g["s"], g["t"]
    assert g["map_err"] < 1e-6
    if g.get("steps", 1) == 1:
      assert b["map_err"] == pytest.approx(0.0025, rel=1e-3)
    else:
      # The two-step chain 0 -> 0.5 -> 1: the first shift is carried
      # through the second (affine) map, scaled by sqrt(v_1 / v_0.5).
      r = jnp.sqrt(var(1.0) / var(0.5))
      assert b["map_err"] == pytest.approx(
          float(jnp.sum((r * delta + delta) ** 2)), rel=1e-3)
    r = jnp.sqrt(var(t) / var(s))
    move = float(jnp.sum((t - s) ** 2 * m ** 2 + (r - 1) ** 2 * var(s)))
    assert g["ode_move"] == pytest.approx(move, rel=0.02)
    assert b["ode_move"] == g["ode_move"]    # the same cached reference
  for g, b in zip(good[2:], bad[2:]):   # jumps, chains: mean of ρ_1's x
    assert g["score_ode"] == pytest.approx(1.5, abs=0.01)
    assert g["score_map"] == pytest.approx(g["score_ode"], abs=1e-4)
    shift = 0.03 * (1 + (float(jnp.sqrt(var(1.0) / var(0.5))[0])
                         if b.get("steps") == 2 else 0.0))
    assert b["score_map"] == pytest.approx(g["score_map"] + shift, abs=1e-4)
  assert fmm_claims.ode_steps_for(0.0, 1.0) == 64
  assert fmm_claims.ode_steps_for(0.875, 1.0) == 8
  assert fmm_claims.ode_steps_for(0.99, 1.0) == 2
  with pytest.raises(SystemExit, match="--jump_starts"):
    fmm_claims.main(["intervals", "--jump_starts=0,1"])


@pytest.mark.slow
def test_smoke_stages_write_rows_and_claim_blocks(tmp_path, monkeypatch):
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  monkeypatch.chdir(tmp_path)
  monkeypatch.setitem(fmm_claims.SETUPS, "checkerboard", dataclasses.replace(
      fmm_claims.SETUPS["checkerboard"], teacher_steps=2))
  root_cfg = os.path.join(ROOT, "configs")
  os.symlink(root_cfg, tmp_path / "configs")
  common = ["--num_samples=500", "--teacher_config=configs/toy_fm.py:smoke",
            f"--teacher_workdir={tmp_path / 'teacher'}", "--teacher_ks=2",
            "--steps=4", "--eval_every=2"]
  fmm_claims.main(["teacher", "--teacher_eval_every=100", *common])
  teacher = json.loads((tmp_path / "claims_002_teacher.json").read_text())
  assert [r["step"] for r in teacher["curve"]] == [0, 100, 200]
  assert teacher["teacher"]["config"] == "configs/toy_fm.py:smoke"
  # The verdict follows the ratio to the floor and the curve's flatness
  # (at 500 samples the plug-in floor is itself large).
  kl = next(r["value"] for r in teacher["rows"] if r["sample_steps"] == 2)
  reached = kl <= fmm_claims.FLOOR_FACTOR * teacher["floor"]["mean"]
  flat = fmm_claims.teacher_flat(teacher["curve"])
  assert teacher["curve_flat"] == flat
  assert teacher["claim"]["verdict"] == fmm_claims.verdicts.outcome(
      reached, flat["flat"])
  fmm_claims.main(["students", "--arms=lmd,emd", "--seeds=0", *common])
  fmm_claims.main(["speed", "--ode_ks=1,2", "--repeats=1",
                   "--timing_samples=200", *common])
  fmm_claims.main(["verdict", *common])          # recomputed from the rows
  fmm_claims.main(["intervals", "--interval_k=2", "--jump_starts=0,0.5",
                   *common])
  iv = json.loads((tmp_path / "fmm_intervals.json").read_text())
  assert sorted({(r["arm"], r["kind"], r["s"]) for r in iv["rows"]}) == [
      (arm, kind, s) for arm in ("emd", "lmd")
      for kind, s in (("chain", 0.0), ("chain", 0.5), ("interval", 0.0),
                      ("interval", 0.5), ("jump", 0.0), ("jump", 0.5))]
  # One teacher reference for both students: the same ODE move.
  moves = {(r["kind"], r["s"]): r["ode_move"] for r in iv["rows"]
           if r["arm"] == "emd"}
  assert all(r["ode_move"] == moves[(r["kind"], r["s"])]
             for r in iv["rows"] if r["arm"] == "lmd")
  out = json.loads((tmp_path / "claims_002_lmd_vs_emd.json").read_text())
  assert [r["arm"] for r in out["summary"]] == ["emd", "lmd"]
  assert "run_command" in out
  keys = {"arm", "seed", "step", "metric", "value", "sample_steps"}
  assert all(keys <= set(r) for r in out["rows"])
  # steps 0 and 4 (the end) at every K, step 2 at one step only
  assert len(out["rows"]) == 2 * (2 * len(fmm_claims.KS) + 1)
  assert sorted(r["sample_steps"] for r in out["rows"]
                if r["arm"] == "lmd" and r["step"] == 2) == [1]
  with pytest.raises(SystemExit, match="another budget"):
    fmm_claims.main(["students", "--arms=lmd", "--seeds=0", *common[:-1],
                     "--eval_every=4"])
  assert out["claim"]["verdict"] == "not testable here at this budget"  # one seed
  for name in ("teacher", "speed"):
    claim = json.loads((tmp_path / f"claims_002_{name}.json").read_text())[
        "claim"]
    assert set(claim) == {"paper", "claim", "paper_figure", "metric",
                          "budget", "seeds", "verdict", "verdict_reason",
                          "our_figure"}
  # A student trained from data joins the record with no teacher to name,
  # and the note on the students' teachers leaves it out.
  fmm_claims.main(["students", "--arms=direct", "--seeds=0", *common])
  out = json.loads((tmp_path / "claims_002_lmd_vs_emd.json").read_text())
  assert out["runs"]["direct/s0"]["teacher_fingerprint"] is None
  assert out["runs"]["direct/s0"]["teacher_free"] is True
  assert out["runs"]["lmd/s0"]["teacher_fingerprint"] == (
      teacher["teacher"]["fingerprint"])
  assert "direct/s0" not in out["claim"]["verdict_reason"]


@pytest.mark.slow
def test_digits_smoke_stages_score_fd_digits(tmp_path, monkeypatch):
  """--setup=digits end to end on the smoke teacher: the teacher record's
  rows and floor are fd_digits, the students' rows fd@1/2/4 (steps 0 and 2
  at every K), and their threshold is 2× the teacher's Heun-20 score."""
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  monkeypatch.chdir(tmp_path)
  os.symlink(os.path.join(ROOT, "configs"), tmp_path / "configs")
  common = ["--setup=digits", "--num_samples=200",
            "--teacher_config=configs/digits_fm.py:smoke",
            f"--teacher_workdir={tmp_path / 'teacher'}", "--teacher_ks=20",
            "--steps=2", "--eval_every=2", "--full_every=2"]
  fmm_claims.main(["teacher", "--teacher_eval_every=30", *common])
  teacher = json.loads(
      (tmp_path / "claims_002_digits_teacher.json").read_text())
  assert [r["step"] for r in teacher["curve"]] == [0, 30, 60]
  assert [(r["metric"], r["sample_steps"]) for r in teacher["rows"]] == [
      ("fd_digits", 20)]
  assert teacher["claim"]["verdict"] == "measured"
  assert 0 < teacher["floor"]["mean"] < teacher["rows"][0]["value"]
  fmm_claims.main(["students", "--arms=lmd", "--seeds=0", *common])
  out = json.loads(
      (tmp_path / "claims_002_digits_lmd_vs_emd.json").read_text())
  # The run names the teacher it was distilled from: the recorded one.
  fp = teacher["teacher"]["fingerprint"]
  assert out["runs"]["lmd/s0"]["teacher_fingerprint"] == fp
  assert out["teacher_fingerprint"] == fp
  assert sorted((r["step"], r["sample_steps"]) for r in out["rows"]) == [
      (0, 1), (0, 2), (0, 4), (2, 1), (2, 2), (2, 4)]
  assert {r["metric"] for r in out["rows"]} == {"fd_digits"}
  assert out["teacher_kl"] == teacher["rows"][0]["value"]
  assert out["detail"]["threshold"] == pytest.approx(2 * out["teacher_kl"])
  assert "digits" in out["claim"]["claim"]


@pytest.mark.slow
def test_students_split_over_cores_merges_every_run(tmp_path, monkeypatch):
  """`students --cores=0,0`: the teacher readied first (recorded by the
  teacher stage when there is no record; retrained by the main trainer,
  record kept, when only its workdir is missing), then two single-run
  processes at once, their records merged into the results; a rerun
  trains nothing."""
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path / "results"))
  monkeypatch.chdir(tmp_path)
  os.symlink(os.path.join(ROOT, "configs"), tmp_path / "configs")
  common = ["--num_samples=500", "--teacher_config=configs/toy_fm.py:smoke",
            "--teacher_workdir=teacher", "--teacher_ks=16",
            "--teacher_eval_every=0", "--steps=4", "--eval_every=2",
            "--full_every=4", "--cores=0,0"]
  fmm_claims.main(["students", "--arms=lmd,emd", "--seeds=0", *common])
  results = tmp_path / "results"
  rec = json.loads((results / "claims_002_teacher.json").read_text())
  out = json.loads((results / "claims_002_lmd_vs_emd.json").read_text())
  assert sorted({(r["arm"], r["seed"]) for r in out["rows"]}) == [
      ("emd", 0), ("lmd", 0)]
  assert sorted(out["runs"]) == ["emd/s0", "lmd/s0"]
  assert len(out["merged_from"]) == 2
  assert out["teacher_kl"] == rec["rows"][0]["value"]
  fp = rec["teacher"]["fingerprint"]
  assert {r["teacher_fingerprint"] for r in out["runs"].values()} == {fp}
  fmm_claims.main(["students", "--arms=lmd,emd", "--seeds=0",
                   *common])                       # nothing left to run
  again = json.loads((results / "claims_002_lmd_vs_emd.json").read_text())
  assert again["rows"] == out["rows"]
  # A new machine: the record but no teacher workdir. The teacher is
  # retrained (the main trainer), the record and threshold stay.
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(tmp_path / "teacher")
  fmm_claims.main(["students", "--arms=lmd", "--seeds=1", *common])
  assert json.loads((results / "claims_002_teacher.json").read_text()) == rec
  out = json.loads((results / "claims_002_lmd_vs_emd.json").read_text())
  assert out["teacher_kl"] == rec["rows"][0]["value"]
  assert sorted(out["runs"]) == ["emd/s0", "lmd/s0", "lmd/s1"]
  assert out["runs"]["lmd/s1"]["teacher_fingerprint"]


def test_students_stage_records_a_teacher_free_run(tmp_path, monkeypatch):
  """The students stage (training faked: two evaluations and a small
  state) records a student trained from data ('direct', no teacher) as
  teacher-free and a distilled one ('lmd') by its teacher's parameters;
  the record's note on teachers names neither when the distilled one used
  the recorded teacher."""
  import types  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  monkeypatch.chdir(tmp_path)          # the students' workdirs: runs/...
  os.symlink(os.path.join(ROOT, "configs"), tmp_path / "configs")
  teacher_params = {"w": np.arange(3, dtype=np.float32)}
  fp = fmm_claims.fingerprint(teacher_params)
  (tmp_path / "claims_002_teacher.json").write_text(json.dumps({
      "rows": [{"sample_steps": fmm_claims.TEACHER_STEPS, "value": 0.05}],
      "teacher": {"fingerprint": fp}}))
  _, fc, *_ = fmm_claims._jax_imports()  # pylint: disable=protected-access

  def fake_curve(config, eval_every, score, num, eval_steps, log,
                 full_every):
    del eval_every, score, num, log, full_every
    teacher = (None if config.fmm.loss == "direct"
               else types.SimpleNamespace(params=teacher_params))
    curve = [{"step": s, "loss": 1.0, "train_sec": 0.0, "load1": 0.0,
              **{f"q@{k}": 0.5 for k in eval_steps}} for s in (0, 4)]
    return curve, types.SimpleNamespace(teacher=teacher), {
        "params": {"w": np.zeros(2, np.float32)}}
  monkeypatch.setattr(fc, "train_curve", fake_curve)
  fmm_claims.main(["students", "--arms=direct,lmd", "--seeds=0",
                   "--steps=4", "--eval_every=4", "--full_every=4",
                   "--num_samples=100"])
  out = json.loads((tmp_path / "claims_002_lmd_vs_emd.json").read_text())
  assert out["runs"]["direct/s0"]["teacher_fingerprint"] is None
  assert out["runs"]["direct/s0"]["teacher_free"] is True
  assert out["runs"]["lmd/s0"]["teacher_fingerprint"] == fp
  assert "teacher_free" not in out["runs"]["lmd/s0"]
  assert "students distilled from" not in out["claim"]["verdict_reason"]


def test_speed_times_a_kept_lmd_seed_and_names_the_kept_ones(tmp_path,
                                                              monkeypatch):
  """`speed --speed_seed=S` needs LMD seed S's kept state (a students run
  keeps it on its own machine): without it, it exits before building
  anything, naming the flag and the seeds whose state is here."""
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  monkeypatch.chdir(tmp_path)
  flags = ["--student_width=512", "--tag=40k"]
  with pytest.raises(SystemExit, match="run the `students` stage first"):
    fmm_claims.main(["speed", *flags])
  (tmp_path / "claims_002_lmd_vs_emd_w512_40k.json").write_text(
      json.dumps({"rows": [{"arm": arm, "seed": seed}
                           for arm, seed in (("lmd", 0), ("lmd", 1),
                                             ("lmd", 2), ("emd", 0))],
                  "args": {"steps": 40000}}))
  for d in ("lmd_w512_40k_s1/checkpoints", "lmd_w512_40k_s2/checkpoints",
            "lmd_w512_40k_s0", "emd_w512_40k_s0/checkpoints",
            "lmd_w512_s0/checkpoints", "lmd_w512_40k_s10x/checkpoints"):
    os.makedirs(tmp_path / "runs" / "claims002" / d)
  a = fmm_claims.parse(["speed", *flags])
  assert fmm_claims._kept_states("lmd", [0, 1, 2], a) == [1, 2]  # pylint: disable=protected-access
  monkeypatch.setattr(fmm_claims, "_jax_imports", lambda: pytest.fail(
      "built before checking the seed"))
  with pytest.raises(SystemExit, match=r"--speed_seed=0: .*lmd_w512_40k_s0 "
                     r"holds no checkpoint; .* kept here: \[1, 2\]"):
    fmm_claims.main(["speed", *flags])
  (tmp_path / "claims_002_lmd_vs_emd_w256.json").write_text(
      json.dumps({"rows": [], "args": {"steps": 3000}}))
  with pytest.raises(SystemExit, match=r"--speed_seed=1: .* kept here: none"):
    fmm_claims.main(["speed", "--student_width=256", "--speed_seed=1"])


def test_digits_mlp_setup_is_digits_with_mlp_teacher_and_students():
  """--setup=digits_mlp (PROTOCOL.md change 48): digits' metric, rule and
  arms; the teacher configs/digits_fm.py:mlp and the students
  digits_fmm_lmd.py:mlp / :emd,mlp, MLPs (512, 512, 512) on the flattened
  image; its own records and workdirs, the teacher the students load."""
  a = fmm_claims.parse(["students", "--setup=digits_mlp", "--steps=20000"])
  setup = fmm_claims.SETUPS["digits_mlp"]
  digits = fmm_claims.SETUPS["digits"]
  for field in ("metric", "num_samples", "ks", "arms", "teacher_steps",
                "teacher_ks", "allowed_arms"):
    assert getattr(setup, field) == getattr(digits, field), field
  assert (a.teacher_config, a.teacher_eval_every) == (
      "configs/digits_fm.py:mlp", 2000)
  assert fmm_claims.students_record(a) == "claims_002_digits_mlp_lmd_vs_emd"
  assert setup.teacher_record == "claims_002_digits_mlp_teacher"
  assert fmm_claims._student_workdir("emd", 2, a).endswith(
      os.path.join("claims002", "digits_mlp_emd_s2"))
  assert setup.student_spec("emd") == "configs/digits_fmm_lmd.py:emd,mlp"
  assert setup.student_spec("lmd") == "configs/digits_fmm_lmd.py:mlp"
  for arm, loss in (("lmd", "lmd"), ("emd", "emd")):
    cfg = fmm_claims.student_config(arm, 1, 20000, a)
    assert (cfg.fmm.loss, cfg.model.name, tuple(cfg.model.mlp.hidden)) == (
        loss, "mlp", (512, 512, 512))
    assert (cfg.optim.lr, cfg.optim.schedule, cfg.train.steps, cfg.seed,
            cfg.ema.decay) == (1e-3, "cosine", 20000, 1, fmm_claims.EMA_DECAY)
    assert (cfg.teacher.config, cfg.teacher.workdir) == (
        "configs/digits_fm.py:mlp",
        os.path.join("runs", "claims002", "teacher_digits_mlp"))
    assert cfg.data.name == "digits"
  tcfg = fmm_claims._jax_imports()[1].load(a.teacher_config)
  assert (tcfg.method, tcfg.model.name, tuple(tcfg.model.mlp.hidden),
          tcfg.train.steps, tcfg.optim.schedule) == (
              "flow_matching", "mlp", (512, 512, 512), 20000, "cosine")
  with pytest.raises(SystemExit, match="UNet or MLP"):
    fmm_claims.parse(["students", "--setup=digits_mlp",
                      "--student_width=64"])
