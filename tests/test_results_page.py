"""docs/RESULTS.md is generated from benchmarks/results/*.json by
scripts/make_results.py and must be regenerated when a result changes."""

import json
import os

import script_modules  # tests/script_modules.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
  return script_modules.load("make_results", "scripts", "make_results.py")


def test_results_page_is_up_to_date():
  assert _script().main(["--check"]) == 0, (
      "docs/RESULTS.md is stale: run python scripts/make_results.py")


def test_page_carries_command_machine_and_numbers(tmp_path):
  res = tmp_path / "results"
  res.mkdir()
  (res / "fmm_convergence.json").write_text(json.dumps({
      "benchmark": "fmm_convergence", "command": "benchmarks/x.py --a=1",
      "machine": {"backend": "gpu", "device_kind": "H100", "cpu_count": 16,
                  "device_count": 1, "jax": "0.10.2",
                  "date": "2026-01-02T03:04:05+00:00"},
      "rows": [{"setup": "checkerboard", "emd_over_lmd": 2.4}]}))
  text = _script().render(str(res))
  assert "`python benchmarks/x.py --a=1`" in text
  assert "gpu (H100)" in text and "2026-01-02T03:04:05" in text
  assert "| checkerboard | 2.4 |" in text
  assert "order of magnitude faster" in text     # the paper's claim beside


def test_commands_are_prefixed_with_python_once(tmp_path):
  # Some records name the script, others the whole `python …` line; the
  # page shows each as one runnable line, never `python python …`.
  res = tmp_path / "results"
  res.mkdir()
  for name, cmd in (("a_bench", "benchmarks/a.py --x=1"),
                    ("b_bench", "python benchmarks/b.py --y=2")):
    (res / f"{name}.json").write_text(json.dumps({
        "benchmark": name, "command": cmd,
        "earlier_commands": [cmd + " --z=3"],
        "machine": {"date": "2026-01-02T03:04:05+00:00"},
        "rows": [{"k": 1}]}))
  text = _script().render(str(res))
  assert "python python" not in text
  assert "`python benchmarks/a.py --x=1`" in text
  assert "`python benchmarks/b.py --y=2`" in text
  assert "`python benchmarks/b.py --y=2 --z=3`" in text
