"""benchmarks/claims/split.py (per-run caches, runs split over pinned
cores) and its use by the consistency claims: resume, --arms, --cores,
--curriculum_steps."""

import argparse
import json
import os
import sys

import pytest

import script_modules  # tests/script_modules.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "claims"))
import split as S  # noqa: E402  pylint: disable=g-import-not-at-top


def _consistency():
  return script_modules.load("claims_consistency_split", "benchmarks",
                             "claims", "consistency.py")


# ------------------------------------------------------------- RunCache --

def test_run_cache_returns_rows_only_for_the_same_identity(tmp_path):
  cache = S.RunCache(str(tmp_path / "c"))
  ident = {"config": "configs/toy_ict.py", "overrides": {"ict.s1": 160},
           "steps": (10, 20)}
  assert cache.get("gc", 0, ident) is None
  rows = [{"arm": "gc", "seed": 0, "step": 10, "v": 0.5}]
  path = cache.put("gc", 0, ident, rows, machine={"date": "today"})
  assert path == cache.path("gc", 0)
  # Tuples are stored as lists: the same identity still matches.
  assert cache.get("gc", 0, ident) == rows
  assert cache.get("gc", 1, ident) is None
  with open(path) as f:
    entry = json.load(f)
  assert entry["meta"] == {"machine": {"date": "today"}}
  # Another run under the same name stops, naming the file and the field,
  # and the file is left as it was.
  other = {**ident, "overrides": {"ict.s1": 80}}
  with pytest.raises(SystemExit, match=r"gc_s0\.json.*overrides: cached "
                     r"\{'ict\.s1': 160\}, asked \{'ict\.s1': 80\}"):
    cache.get("gc", 0, other)
  with pytest.raises(SystemExit, match="extra"):
    cache.get("gc", 0, {**ident, "extra": 1})
  with open(path) as f:
    assert json.load(f) == entry
  # An arm name with a colon gets a file-safe name; distinct arms differ.
  assert os.path.basename(cache.path("lmd:stop_grad", 2)) == \
      "lmd_stop_grad_s2.json"
  # A file that is not a cache entry is not silently replaced.
  with open(cache.path("ot", 0), "w") as f:
    json.dump([1, 2], f)
  with pytest.raises(SystemExit, match="not a run-cache file"):
    cache.get("ot", 0, ident)


def test_run_cache_get_or_run_trains_once_and_collects_the_rest(tmp_path):
  cache = S.RunCache(str(tmp_path))
  calls = []

  def run():
    calls.append(1)
    return [{"step": 1, "v": len(calls)}]

  ident = lambda arm, seed=0: {"arm_over": arm, "seed": seed}  # noqa: E731
  assert cache.collect([("a", 0), ("b", 0)], ident) == (
      [], [("a", 0), ("b", 0)])
  meta = lambda: {"when": len(calls)}  # noqa: E731  called after the run
  assert cache.get_or_run("a", 0, ident("a"), run, meta) == [
      {"step": 1, "v": 1}]
  assert cache.get_or_run("a", 0, ident("a"), run, meta) == [
      {"step": 1, "v": 1}]
  assert len(calls) == 1
  with open(cache.path("a", 0)) as f:
    stored = json.load(f)["meta"]
  assert stored["when"] == 1 and stored["wall_sec"] >= 0
  assert cache.collect([("a", 0), ("b", 0)], ident) == (
      [{"step": 1, "v": 1}], [("b", 0)])
  # The identity is asked per (arm, seed): another seed's is another run.
  cache.put("b", 1, {"arm_over": "b", "seed": 0}, [])
  with pytest.raises(SystemExit, match="seed: cached 0, asked 1"):
    cache.collect([("b", 1)], ident)


def test_config_digest_follows_every_resolved_value():
  from gcflow_jax import config_utils  # pylint: disable=g-import-not-at-top
  load = config_utils.load_config
  a = S.config_digest(load("configs/toy_ict.py", {"ict.s1": 160}))
  assert a == S.config_digest(load("configs/toy_ict.py", {"ict.s1": 160}))
  assert a != S.config_digest(load("configs/toy_ict.py", {"ict.s1": 161}))
  assert a != S.config_digest(load("configs/toy_ict.py", {"ict.s1": 160,
                                                          "seed": 1}))
  assert len(a) == 16 and int(a, 16) >= 0


# ---------------------------------------------------------- run_on_cores --

_CHILD = """
import json, os, sys
out = {"affinity": sorted(os.sched_getaffinity(0)),
       "pin": os.environ.get("GCFLOW_SPLIT_CORE"),
       "xla": os.environ.get("XLA_FLAGS"), "extra": os.environ.get("EXTRA")}
print(json.dumps(out))
if sys.argv[1] == "fail":
  sys.exit(3)
open(sys.argv[2], "w").write("done" if sys.argv[1] == "ok" else "")
"""


def test_run_on_cores_pins_each_child_and_reports_the_failed(tmp_path):
  script = tmp_path / "child.py"
  script.write_text(_CHILD)
  jobs = [S.Job(name, [str(script), name, str(tmp_path / f"{name}.out")],
                str(tmp_path / "logs" / f"{name}.log"), {"EXTRA": name})
          for name in ("ok", "fail", "unfinished")]
  said = []
  core = max(os.sched_getaffinity(0))   # one this process may use
  failed = S.run_on_cores(
      jobs, [core, core],
      lambda job: (tmp_path / f"{job.name}.out").read_text() == "done",
      poll_s=0.05, say=said.append)
  assert [j.name for j in failed] == ["fail", "unfinished"]
  for job in jobs:
    with open(job.log) as f:
      out = json.loads(f.readline())
    assert out["affinity"] == [core] and out["pin"] == str(core)
    assert out["extra"] == job.name
    assert S.ONE_THREAD_XLA_FLAGS in out["xla"]
  assert any("fail: FAILED (exit 3)" in line for line in said)
  assert any("unfinished: FAILED (exit 0)" in line for line in said)
  assert any(line == "[split] ok: finished" for line in said)


def _dead_pid() -> int:
  import subprocess  # pylint: disable=g-import-not-at-top
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def test_take_claim_is_exclusive_and_takes_over_a_dead_holders(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  me = os.uname().nodename
  path = str(tmp_path / "c" / "gc_s0.json.claim")
  assert S.take_claim(path)
  assert open(path).read().split() == [me, str(os.getpid())]
  # This process's own claim handed to its child: the holder changes.
  assert S.take_claim(path, 12345)
  assert open(path).read().split() == [me, "12345"]
  # A live holder on this host keeps it; so does any holder elsewhere.
  other = subprocess.Popen([sys.executable, "-c",
                            "import time; time.sleep(30)"])
  try:
    with open(path, "w") as f:
      f.write(f"{me} {other.pid}\n")
    assert not S.take_claim(path)
    assert not S._claim_free(path)  # pylint: disable=protected-access
  finally:
    other.kill()
    other.wait()
  # Its holder died without removing it: stale, taken over.
  assert S._claim_free(path)  # pylint: disable=protected-access
  assert S.take_claim(path)
  assert open(path).read().split() == [me, str(os.getpid())]
  with open(path, "w") as f:
    f.write(f"another-host-{me} {_dead_pid()}\n")
  assert not S.take_claim(path)


def test_run_on_cores_shares_claimed_jobs_with_another_parent(tmp_path):
  """Jobs with claims: one already finished is skipped, one whose claim a
  live process holds is waited for until that process finishes it, one
  whose holder dies without finishing it is run here; claims are removed
  when a job ends."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  script = tmp_path / "child.py"
  script.write_text(_CHILD)
  me = os.uname().nodename

  def job(name):
    return S.Job(name, [str(script), "ok", str(tmp_path / f"{name}.out")],
                 str(tmp_path / f"{name}.log"),
                 claim=str(tmp_path / f"{name}.claim"))
  jobs = [job(n) for n in ("done", "elsewhere", "abandoned", "mine")]
  (tmp_path / "done.out").write_text("done")
  # A finished job's claim left by a holder that died: removed.
  (tmp_path / "done.claim").write_text(f"{me} {_dead_pid()}\n")
  holders = {n: subprocess.Popen([sys.executable, "-c",
                                  "import time; time.sleep(30)"])
             for n in ("elsewhere", "abandoned")}
  for name, proc in holders.items():
    (tmp_path / f"{name}.claim").write_text(f"{me} {proc.pid}\n")

  def other_parent():   # finishes one run, abandons the other
    time.sleep(0.5)
    (tmp_path / "elsewhere.out").write_text("done")
    for proc in holders.values():
      proc.kill()
      proc.wait()
    os.remove(tmp_path / "elsewhere.claim")
  thread = threading.Thread(target=other_parent)
  thread.start()
  said = []
  core = max(os.sched_getaffinity(0))
  failed = S.run_on_cores(
      jobs, [core],
      lambda j: (tmp_path / f"{j.name}.out").exists()
      and (tmp_path / f"{j.name}.out").read_text() == "done",
      poll_s=0.05, say=said.append)
  thread.join()
  assert failed == []
  assert "[split] done: skipped (already finished)" in said
  assert "[split] elsewhere: finished by another process" in said
  assert any(line.startswith("[split] abandoned on core") for line in said)
  assert any(line.startswith("[split] mine on core") for line in said)
  assert not (tmp_path / "elsewhere.log").exists()   # never run here
  assert not (tmp_path / "done.log").exists()
  assert not list(tmp_path.glob("*.claim"))


def test_train_missing_drops_stale_claims_of_finished_runs(tmp_path):
  """A cached run's claim whose holder died is removed (a stopped parent
  leaves one behind); one a live process holds stays; nothing runs."""
  cache = S.RunCache(str(tmp_path))
  me = os.uname().nodename
  for arm in ("a", "b"):
    cache.put(arm, 0, {"x": 1}, [])
  stale, live = cache.path("a", 0) + ".claim", cache.path("b", 0) + ".claim"
  with open(stale, "w") as f:
    f.write(f"{me} {_dead_pid()}\n")
  with open(live, "w") as f:
    f.write(f"{me} {os.getpid()}\n")
  S.train_missing(cache, [("a", 0), ("b", 0)],
                  lambda arm, seed: ["unused"], [0])
  assert not os.path.exists(stale) and os.path.exists(live)


def test_child_env_keeps_flags_but_one_device_and_one_thread(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8"
                     " --xla_dump_to=/tmp/x")
  env = S.child_env(1, GCFLOW_BENCH_DIR="d")
  assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x " + S.ONE_THREAD_XLA_FLAGS
  assert env[S.PIN_ENV] == "1" and env["GCFLOW_BENCH_DIR"] == "d"
  monkeypatch.delenv("XLA_FLAGS")
  assert S.child_env(0)["XLA_FLAGS"] == S.ONE_THREAD_XLA_FLAGS


def test_check_cores_names_the_flag_and_the_range():
  assert S.check_cores([0, 0]) == (0, 0)
  n = os.cpu_count()
  with pytest.raises(SystemExit, match=rf"--cores=0,{n}: \[{n}\] not among "
                     rf"this machine's cores 0\.\.{n - 1}"):
    S.check_cores([0, n])


# ------------------------------------------- consistency claims' caches --

def _fake_training(C, monkeypatch, calls):
  """train_with_evals replaced: rows from the config (GC < OT < IC at 1
  step on flat curves, a small spread over seeds), each call recorded."""
  val = {"gc": 0.1, "ot": 0.2, "ic": 0.3}

  def fake(cfg, eval_every, on_eval):
    del on_eval
    calls.append((cfg.ict.coupling, cfg.seed, cfg.ict.s1,
                  cfg.ict.curriculum_steps))
    v = val[cfg.ict.coupling] + 1e-3 * cfg.seed
    rows = [{"step": st, "train_sec": 0.0, "sinkhorn@1": v,
             "sinkhorn@2": v / 2}
            for st in range(0, cfg.train.steps + 1, eval_every)]
    return rows, None, None
  monkeypatch.setattr(C, "train_with_evals", fake)


def _toy_claim(tmp_path, monkeypatch):
  """consistency.py with the stand-in trainer, records under tmp_path:
  (the module, the list of its training calls)."""
  C = _consistency()
  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  calls = []
  _fake_training(C, monkeypatch, calls)
  return C, calls


def _toy_args(tmp_path, **kw):
  base = dict(steps=100, cache_dir=str(tmp_path / "cache"), ict_s1=160,
              tag="", arms="gc,ot,ic", cores=(), curriculum_steps=0,
              repeat_of="",
              claim="quality_toy")
  return argparse.Namespace(**{**base, **kw})


def test_quality_toy_resumes_from_its_cache_and_splits_by_arm(
    tmp_path, monkeypatch):
  C, calls = _toy_claim(tmp_path, monkeypatch)
  seeds = [0, 1, 2]
  # A process given one arm trains and caches it, and writes no record.
  assert C.claim_quality_toy(seeds, _toy_args(tmp_path, arms="gc")) is None
  assert sorted(calls) == [("gc", s, 160, 0) for s in seeds]
  record = tmp_path / "claims_001_c_quality_toy_s1_160.json"
  assert not record.exists()
  # `--arms=` reads the cache only: with runs missing, no record either.
  assert C.claim_quality_toy(seeds, _toy_args(tmp_path, arms="")) is None
  assert len(calls) == 3
  # Every arm: trains only the missing six runs, then writes the record.
  path = C.claim_quality_toy(seeds, _toy_args(tmp_path))
  assert len(calls) == 9 and os.path.basename(path) == record.name
  claim = json.loads(record.read_text())["claim"]
  assert claim["verdict"] == "reproduced"
  # A rerun trains nothing and writes the same rows.
  rows = json.loads(record.read_text())["rows"]
  C.claim_quality_toy(seeds, _toy_args(tmp_path, arms=""))
  assert len(calls) == 9
  assert json.loads(record.read_text())["rows"] == rows
  # The cache is per budget: another --steps is another directory.
  cache_dirs = sorted(os.listdir(tmp_path / "cache"))
  assert cache_dirs == ["c_quality_toy_s1_160_100"]
  # The same record name with another curriculum is another run: refused,
  # not reused.
  with pytest.raises(SystemExit, match="overrides: cached"):
    C.claim_quality_toy(seeds, _toy_args(tmp_path, curriculum_steps=60))
  assert len(calls) == 9


def test_quality_toy_curriculum_steps_sets_every_arm_and_the_budget(
    tmp_path, monkeypatch):
  C, calls = _toy_claim(tmp_path, monkeypatch)
  path = C.claim_quality_toy([0, 1, 2], _toy_args(
      tmp_path, steps=200, curriculum_steps=100, tag="long"))
  assert os.path.basename(path) == \
      "claims_001_c_quality_toy_s1_160_long.json"
  assert {c[2:] for c in calls} == {(160, 100)}
  budget = json.loads(open(path).read())["claim"]["budget"]
  assert ("200 steps" in budget and "iCT N 10 → 160, curriculum over the "
          "first 100 steps (N = 160 after)" in budget)
  # The trainer's curriculum is K = 100 long: N doubles every K / 5 steps
  # (log2(160 / 10) + 1 = 5 stages) and stays at s1 = 160 after step 80,
  # where a 200-step curriculum would still be at 40.
  from gcflow_jax import config_utils  # pylint: disable=g-import-not-at-top
  from gcflow_jax.math import edm  # pylint: disable=g-import-not-at-top
  from gcflow_jax.methods import consistency as M  # pylint: disable=g-import-not-at-top
  cfg = config_utils.load_config("configs/toy_ict.py", {
      "ict.s1": 160, "ict.curriculum_steps": 100, "train.steps": 200})
  kw = M._schedule_kwargs(cfg)  # pylint: disable=protected-access
  assert kw["total_steps"] == 100
  points = [int(edm.curriculum_num_points(k, kw["total_steps"], 10, 160))
            for k in (0, 79, 80, 199)]
  assert points == [11, 81, 161, 161]
  assert int(edm.curriculum_num_points(80, 200, 10, 160)) == 41


def test_quality_toy_cores_runs_each_missing_run_as_its_own_process(
    tmp_path, monkeypatch):
  C, calls = _toy_claim(tmp_path, monkeypatch)
  args = _toy_args(tmp_path, arms="gc,ot,ic", cores=(0, 1),
                   curriculum_steps=50, tag="x")
  # gc seed 0 already cached: not launched again.
  C.claim_quality_toy([0], _toy_args(tmp_path, arms="gc",
                                     curriculum_steps=50, tag="x"))
  launched = []

  def fake_run_on_cores(jobs, cores, finished):
    launched.extend(jobs)
    assert cores == (0, 1)
    for job in jobs:      # as the children would: train and cache
      flags = dict(a[2:].split("=", 1) for a in job.argv[1:])
      arm, seed = flags["arms"], int(flags["seeds"])
      C.claim_quality_toy([seed], _toy_args(
          tmp_path, arms=arm, curriculum_steps=50, tag="x"))
      assert finished(job)
    return []
  monkeypatch.setattr(C.split, "run_on_cores", fake_run_on_cores)
  path = C.claim_quality_toy([0, 1], args)
  assert os.path.basename(path) == "claims_001_c_quality_toy_s1_160_x.json"
  names = [j.name for j in launched]
  assert names == ["ot seed 0", "ic seed 0", "gc seed 1", "ot seed 1",
                   "ic seed 1"]
  argv = launched[0].argv
  assert argv[0].endswith(os.path.join("claims", "consistency.py"))
  assert argv[1:] == ["--claim=quality_toy", "--arms=ot", "--seeds=0",
                      "--steps=100", f"--cache_dir={args.cache_dir}",
                      "--ict_s1=160", "--curriculum_steps=50", "--tag=x"]
  assert launched[0].log.endswith(os.path.join(
      "c_quality_toy_s1_160_x_100", "ot_s0.log"))
  assert len(calls) == 6   # each run trained once


def test_consistency_flags_are_checked_before_any_training(monkeypatch):
  C = _consistency()
  n = os.cpu_count()
  for argv, msg in (
      (["--claim=quality_toy", f"--cores=0,{n}"], "not among this machine"),
      (["--claim=quality_toy", "--cores=a"], "--cores='a'"),
      (["--claim=gc_only", "--cores=0"], "--cores applies to"),
      (["--claim=quality_toy", "--curriculum_steps=-1"],
       "--curriculum_steps=-1 must be >= 0"),
      (["--claim=quality_digits", "--curriculum_steps=10"],
       "--curriculum_steps applies to --claim=quality_toy"),
      (["--claim=quality_toy", "--arms=gc,xx"], r"--arms: \['xx'\]")):
    monkeypatch.setattr(sys, "argv", ["consistency.py", *argv])
    monkeypatch.setattr(C, "train_with_evals", None)  # must not be reached
    with pytest.raises(SystemExit, match=msg):
      C.main()


@pytest.mark.slow
def test_quality_toy_split_over_cores_end_to_end(tmp_path, monkeypatch):
  """The real command with `--cores=c,c`: four of the six runs already in
  the cache (written in-process with a stand-in trainer, the same run
  identities), two pinned children train and cache GC and OT (the host
  assignment through a callback) seed 1 for 10 steps, the parent writes the
  record from the cache; a rerun trains nothing."""
  import subprocess  # pylint: disable=g-import-not-at-top
  C, _ = _toy_claim(tmp_path, monkeypatch)
  cache_dir = str(tmp_path / "cache")
  flags = dict(steps=10, ict_s1=20, curriculum_steps=5, tag="t",
               cache_dir=cache_dir)
  C.claim_quality_toy([0], _toy_args(tmp_path, arms="gc,ot", **flags))
  C.claim_quality_toy([0, 1], _toy_args(tmp_path, arms="ic", **flags))
  core = max(os.sched_getaffinity(0))
  cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "claims",
                                      "consistency.py"),
         "--claim=quality_toy", "--steps=10", "--seeds=0,1", "--ict_s1=20",
         "--curriculum_steps=5", "--tag=t", f"--cores={core},{core}",
         f"--cache_dir={cache_dir}"]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       check=False)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  assert out.stdout.count(": finished") == 2
  assert "gc seed 1: finished" in out.stdout
  assert "ot seed 1: finished" in out.stdout
  record = tmp_path / "claims_001_c_quality_toy_s1_20_t.json"
  d = json.loads(record.read_text())
  assert sorted({(r["arm"], r["seed"]) for r in d["rows"]}) == [
      (a, s) for a in ("gc", "ic", "ot") for s in (0, 1)]
  trained = [r for r in d["rows"] if r["seed"] == 1 and r["arm"] != "ic"]
  assert sorted({r["step"] for r in trained}) == list(range(11))
  assert all(0.0 < r["sinkhorn@1"] < float("inf") for r in trained)
  assert "curriculum over the first 5 steps" in d["claim"]["budget"]
  files = sorted(p.name for p in (tmp_path / "cache" /
                                  "c_quality_toy_s1_20_t_10").iterdir())
  assert files == sorted([f"{a}_s{s}.json" for a in ("gc", "ic", "ot")
                          for s in (0, 1)] + ["gc_s1.log", "ot_s1.log"])
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         check=False)
  assert again.returncode == 0 and "[split]" not in again.stdout
  assert "== (c) toy" not in again.stdout
  assert json.loads(record.read_text())["rows"] == d["rows"]


def test_quality_toy_repeat_of_reports_the_largest_difference_at_common_steps(
    tmp_path, monkeypatch):
  C, _ = _toy_claim(tmp_path, monkeypatch)
  # The shorter record: evaluations every 5 steps up to 50; the fake run
  # gives 0.1 + 1e-3 seed for GC; make ot seed 2 step 40 differ by 0.03.
  short = [{"arm": a, "seed": sd, "step": st,
            "sinkhorn@1": ({"gc": 0.1, "ot": 0.2, "ic": 0.3}[a] + 1e-3 * sd
                           + (0.03 if (a, sd, st) == ("ot", 2, 40) else 0))}
           for a in ("gc", "ot", "ic") for sd in (0, 1, 2)
           for st in range(0, 55, 5)]
  (tmp_path / "claims_001_c_quality_toy_s1_160_short.json").write_text(
      json.dumps({"rows": short}))
  path = C.claim_quality_toy([0, 1, 2], _toy_args(
      tmp_path, steps=100, curriculum_steps=50, tag="long",
      repeat_of="c_quality_toy_s1_160_short"))
  d = json.loads(open(path).read())
  rep = d["repeat_of"]
  # Common steps: the long run evaluates every 10 steps, the short every 5.
  assert rep["steps"] == [0, 10, 20, 30, 40, 50]
  assert rep["common"] == 3 * 3 * 6
  assert rep["max_abs_diff"] == pytest.approx(0.03)
  assert rep["worst"] == ["ot", 2, 40]
  assert "largest |Δ sinkhorn@1|" in d["claim"]["verdict_reason"]
  monkeypatch.setattr(sys, "argv", ["consistency.py", "--claim=quality_toy",
                                    "--repeat_of=c_quality_toy_nope"])
  with pytest.raises(SystemExit, match="--repeat_of=c_quality_toy_nope"):
    C.main()


def test_cores_without_arms_launches_every_arm_of_the_claim(tmp_path,
                                                             monkeypatch):
  """PROTOCOL.md change 49's command names no --arms: the parent must launch
  the claim's own arms (gc_only_mnist's are not the couplings), and an
  explicit --arms= still launches none."""
  C = _consistency()
  launched = []

  def fake_run_on_cores(jobs, cores, finished):
    del cores, finished
    launched.extend(j.name for j in jobs)
    for j in jobs:   # each claimed by its cache file, for other parents
      arm, _, seed = j.name.split()
      assert j.claim == os.path.join(str(tmp_path), "d_gc_only_divergence_"
                                     f"mnist_mlp_12800/{arm}_s{seed}"
                                     ".json.claim")
    raise SystemExit("stop after launching")
  monkeypatch.setattr(C.split, "run_on_cores", fake_run_on_cores)
  monkeypatch.setattr(C, "train_with_evals", None)  # must not be reached
  base = ["consistency.py", "--claim=gc_only_mnist", "--steps=12800",
          "--seeds=0,1", f"--cache_dir={tmp_path}", "--cores=0"]
  monkeypatch.setattr(sys, "argv", base)
  with pytest.raises(SystemExit, match="stop after launching"):
    C.main()
  assert launched == [f"{a} seed {s}" for s in (0, 1) for a in (
      "gc_only_curriculum", "gc_only_fixed_n", "ic_curriculum")]
  launched.clear()
  monkeypatch.setattr(sys, "argv", base + ["--arms="])
  with pytest.raises(SystemExit, match="stop after launching|no record"):
    C.main()
  assert launched == []


def test_tag_gives_the_mnist_cosine_runs_their_own_record_and_cache(
    tmp_path, monkeypatch):
  """`--tag` on quality_mnist_cosine (another budget of change 47's
  setup): the same run identities, a record and cache folder of its own,
  the children and the reproduce command keep the tag; other image claims
  refuse it."""
  C = _consistency()
  key = C._tagged_setup("mnist_adam_s80_cosine", "16k")
  assert C.QUALITY_IMAGES[key]["record"] == (
      "c_quality_mnist_mlp_adam_s80_cosine_16k")
  assert C.QUALITY_IMAGES["mnist_adam_s80_cosine"]["record"] == (
      "c_quality_mnist_mlp_adam_s80_cosine")
  assert (C._quality_images_run(key, "gc", 1, 16000)[1]
          == C._quality_images_run("mnist_adam_s80_cosine", "gc", 1,
                                   16000)[1])
  launched = []

  def fake_run_on_cores(jobs, cores, finished):
    del cores, finished
    launched.extend(jobs)
    raise SystemExit("stop after launching")
  monkeypatch.setattr(C.split, "run_on_cores", fake_run_on_cores)
  monkeypatch.setattr(C, "train_with_evals", None)  # must not be reached
  monkeypatch.setattr(sys, "argv", [
      "consistency.py", "--claim=quality_mnist_cosine", "--steps=16000",
      "--tag=16k", "--seeds=0", f"--cache_dir={tmp_path}", "--cores=0"])
  with pytest.raises(SystemExit, match="stop after launching"):
    C.main()
  assert [j.name for j in launched] == ["gc seed 0", "ot seed 0",
                                        "ic seed 0"]
  assert launched[0].claim == os.path.join(
      str(tmp_path), "c_quality_mnist_mlp_adam_s80_cosine_16k_16000",
      "gc_s0.json.claim")
  assert "--tag=16k" in launched[0].argv
  args = argparse.Namespace(claim="quality_mnist_cosine", ict_s1=0,
                            steps=16000, tag="16k")
  assert C.reproduce_command(args, [0, 1, 2]) == (
      "python benchmarks/claims/consistency.py --claim=quality_mnist_cosine "
      "--tag=16k --steps=16000 --seeds=0,1,2 --cores=0,1")
  monkeypatch.setattr(sys, "argv", ["consistency.py",
                                    "--claim=gc_only_mnist", "--tag=x"])
  with pytest.raises(SystemExit, match="--tag='x' applies to --claim= one "
                     "of .*not 'gc_only_mnist'"):
    C.main()


def test_transport_mnist_trains_the_mnist_cosine_gc_arm_split_by_seed(
    tmp_path, monkeypatch):
  """(a) on MNIST (PROTOCOL.md change 51): the runs are change 47's GC arm
  (same resolved config as the (c) run), evaluated every 1/10; with
  --cores each seed is its own process, which trains and caches that seed
  and writes no record; the parent then writes it from the cache, with
  c_IC and the minibatch-OT cost of the same pairs."""
  C = _consistency()
  cfg, ident = C._transport_run("transport_mnist", 1, 16000)
  qcfg, qident = C._quality_images_run("mnist_adam_s80_cosine", "gc", 1,
                                       16000)
  assert ident["config_digest"] == qident["config_digest"]
  assert ident["overrides"] == qident["overrides"]
  assert ident["eval_every"] == 1600 and len(ident["sigmas"]) == 12
  assert (cfg.ict.coupling, cfg.ict.gc_mu, cfg.ict.s1) == ("gc", 0.5, 80)
  # The digits claim keeps its change-17 runs: GC at μ = 0.5 of the config
  # unchanged, c(σ) every 1/5.
  assert C._transport_run("transport_digits", 0, 2000)[1]["overrides"] == {
      "ict.coupling": "gc", "ict.gc_mu": 0.5}
  assert C._transport_run("transport_digits", 0, 2000)[1]["eval_every"] == 400

  monkeypatch.setenv("GCFLOW_BENCH_DIR", str(tmp_path))
  monkeypatch.setattr(C, "HELD_OUT", 48)   # a fast stand-in for 4,096
  import numpy as np  # pylint: disable=g-import-not-at-top
  from gcflow_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  cfg0 = C.load(C.DIGITS_CONFIG, C._transport_over("transport_mnist"))
  # The same images and noise for every seed (the config's default seed).
  x = np.asarray(data_lib.make_dataset(cfg0.data, cfg0.seed).reference(48),
                 np.float64)
  m2_x = float(np.mean(np.sum(x.reshape(48, -1) ** 2, 1)))
  trained = []

  def fake(cfg, eval_every, on_eval):
    del on_eval
    trained.append(cfg.seed)
    return [{"step": st, "train_sec": 0.0, "c_gc": [1.0 + 0.01 * cfg.seed]
             * 12, "m2_f": [m2_x] * 12}
            for st in range(0, cfg.train.steps + 1, eval_every)], None, None
  monkeypatch.setattr(C, "train_with_evals", fake)

  def args(**kw):
    return argparse.Namespace(**{
        "claim": "transport_mnist", "steps": 100, "train_seeds": None,
        "cores": (), "cache_dir": str(tmp_path / "cache"), "tag": "",
        "ict_s1": 0, "curriculum_steps": 0, **kw})
  launched = []

  def fake_run_on_cores(jobs, cores, finished):
    assert cores == (0, 1)
    for job in jobs:      # as the children would: train and cache
      launched.append(job)
      flags = dict(a[2:].split("=", 1) for a in job.argv[1:])
      assert C.claim_transport_mnist(
          [int(v) for v in flags["seeds"].split(",")],
          args(train_seeds=flags["train_seeds"])) is None
      assert finished(job)
    return []
  monkeypatch.setattr(C.split, "run_on_cores", fake_run_on_cores)
  # Seed 1 is cached already; --cores launches the other two.
  assert C.claim_transport_mnist([0, 1, 2], args(train_seeds="1")) is None
  assert not list(tmp_path.glob("claims_*.json"))
  path = C.claim_transport_mnist([0, 1, 2], args(cores=(0, 1)))
  assert [j.name for j in launched] == ["gc seed 0", "gc seed 2"]
  assert launched[0].argv[1:4] == ["--claim=transport_mnist",
                                   "--seeds=0,1,2", "--train_seeds=0"]
  assert sorted(trained) == [0, 1, 2]          # each seed trained once
  assert os.path.basename(path) == \
      "claims_001_a_transport_cost_mnist_mlp.json"
  with open(path) as f:
    rec = json.load(f)
  z = np.asarray(C.jax.random.normal(C.jax.random.key(C.TRANSPORT_NOISE_KEY),
                                     x.shape), np.float64)
  c_ic = float(np.mean(np.sum((x - z).reshape(48, -1) ** 2, 1)))
  row = rec["rows"][0]
  assert row["c_ic"] == pytest.approx(c_ic, rel=1e-4)
  assert row["c_ot_full"] <= row["c_ot"] + 1e-3 < c_ic
  assert row["m2_x"] == pytest.approx(m2_x, rel=1e-4)
  assert len(rec["rows"]) == 3 * 11 * 12      # seeds × evaluations × σ's
  claim = rec["claim"]
  assert claim["verdict"] == "reproduced"     # 1 < c_OT < c_IC, flat
  assert "MLP (1024, 1024, 1024)" in claim["budget"]
  assert "Adam lr 0.0001 cosine to 0" in claim["budget"]
  assert "784-d" in claim["verdict_reason"]
  assert rec["reproduce_command"] == (
      "benchmarks/claims/consistency.py --claim=transport_mnist "
      f"--steps=100 --cache_dir={tmp_path / 'cache'}")
