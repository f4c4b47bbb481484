"""Bookkeeping of the flow-map benchmarks (no training): the gap of a
distilled student to its own teacher, and dropping a setup from
results/fmm_convergence.json without losing the others."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import fmm_convergence  # noqa: E402  pylint: disable=g-import-not-at-top
import fmm_steps_quality  # noqa: E402  pylint: disable=g-import-not-at-top

TEACHER = [{"model": "teacher ODE (heun)", "kl@1": 6.0, "nfe@1": 2,
            "kl@4": 0.5, "nfe@4": 8, "kl@16": 0.25, "nfe@16": 32},
           {"model": "teacher ODE (euler)", "kl@64": 0.1}]


def test_gap_is_kl_minus_the_first_solvers_many_step_kl():
  ref = fmm_steps_quality.teacher_reference(TEACHER)
  assert ref == {"model": "teacher ODE (heun)", "steps": 16, "kl": 0.25}
  assert fmm_steps_quality.teacher_reference([]) == {}
  kls = {f"kl@{k}": 0.5 + 0.01 * k for k in fmm_steps_quality.KS}
  rows = {loss: fmm_steps_quality.with_gaps(
      {"model": f"fmm-{loss}", "seed": 0, "train_steps": 10, "batch": 4,
       **kls}, ref) for loss in ("lmd", "lmd:stop_grad", "progressive",
                                 "direct")}
  for loss in ("lmd", "lmd:stop_grad", "progressive"):   # distilled
    assert rows[loss]["distilled"] is True
    for k in fmm_steps_quality.KS:
      assert rows[loss][f"gap@{k}"] == pytest.approx(0.25 + 0.01 * k)
  assert rows["direct"]["distilled"] is False            # no teacher
  assert all(rows["direct"][f"gap@{k}"] is None
             for k in fmm_steps_quality.KS)
  assert rows["lmd"]["train_samples"] == 40
  # each gap sits right after its absolute KL in the table
  cols = list(rows["lmd"])
  assert cols[cols.index("kl@1") + 1] == "gap@1"


def test_drop_removes_one_setup_and_records_why(tmp_path, monkeypatch):
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  old = {"benchmark": "fmm_convergence", "command": "digits run",
         "machine": {"date": "d-digits", "load_average_1min": 3.0},
         "rows": [{"setup": "checkerboard", "q": 1.0},
                  {"setup": "digits", "q": 2.0}],
         "curves": {"checkerboard": {"lmd": []}, "digits": {"lmd": []}},
         "checkerboard_kl_floor_data_vs_data": 0.01,
         "runs": {"checkerboard": {"command": "cb run", "args": {"a": 1},
                                   "date": "d-cb"},
                  "digits": {"command": "digits run"}}}
  (tmp_path / "fmm_convergence.json").write_text(json.dumps(old))
  with pytest.raises(SystemExit, match="drop_reason"):
    fmm_convergence.drop(["digits"], "")
  with pytest.raises(SystemExit, match="mnist"):
    fmm_convergence.drop(["mnist"], "why")
  fmm_convergence.drop(["digits"], "curves still falling")
  new = json.loads((tmp_path / "fmm_convergence.json").read_text())
  assert new["rows"] == [{"setup": "checkerboard", "q": 1.0}]
  assert list(new["curves"]) == ["checkerboard"] == list(new["runs"])
  assert new["command"] == "cb run" and new["args"] == {"a": 1}
  assert new["machine"]["date"] == "d-cb"
  assert new["machine"]["load_average_1min"] is None
  assert new["checkerboard_kl_floor_data_vs_data"] == 0.01
  assert new["dropped"]["digits"]["reason"] == "curves still falling"
  assert "digits rows dropped: curves still falling" in new["note"]
  # A later checkerboard-only rerun keeps the record; a digits rerun
  # replaces it.
  _, _, extra = fmm_convergence.merge_previous(
      [], {"checkerboard": {}}, {}, {})
  assert "digits" in extra["dropped"]
  _, _, extra = fmm_convergence.merge_previous([], {"digits": {}}, {}, {})
  assert "dropped" not in extra
  with pytest.raises(SystemExit, match="no setup"):
    fmm_convergence.drop(["checkerboard"], "why")
