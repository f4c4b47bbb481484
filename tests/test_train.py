"""The trainer: sharding equivalence, resume, preemption, corruption, NaNs."""

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax import checkpoint as ckpt_lib
from gcflow_jax import config_utils, sharding, train

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "benchmarks"))
from common import counting_compiles  # noqa: E402  pylint: disable=g-import-not-at-top


def _cfg(steps=60, **over):
  c = config_utils.load_config("configs/toy_fm.py:smoke")
  c.unlock()
  c.train.steps = steps
  c.train.batch_size = 64
  c.train.log_every = 10
  c.train.checkpoint_every = 20
  c.eval.num_samples = 64
  c.eval.metrics = ()
  c.train.plot = False
  c.model.mlp.hidden = (32, 32)
  for k, v in over.items():
    sec, leaf = k.split(".")
    c[sec][leaf] = v
  c.lock()
  return c


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _run_steps(config, devices, n=5):
  run = train.build(config, devices=devices)
  rep = sharding.replicated(run.mesh)
  bsh = sharding.batch_sharding(run.mesh)
  state = jax.jit(run.init_state, out_shardings=rep)()
  step = jax.jit(train.make_train_step(run.method, run.tx, config.ema),
                 in_shardings=(rep, {"x": bsh}, rep),
                 out_shardings=(rep, rep))
  losses = []
  for s in range(n):
    batch = {"x": sharding.make_global_batch(
        run.mesh, run.dataset.global_batch(s, config.train.batch_size))}
    state, m = step(state, batch, run.k_train)
    losses.append(float(m["loss"]))
  return np.array(losses), state


def test_one_vs_eight_devices_same_trajectory():
  assert jax.device_count() == 8
  cfg = _cfg()
  l1, s1 = _run_steps(cfg, jax.devices()[:1])
  l8, s8 = _run_steps(cfg, jax.devices())
  # The per-step noise is drawn by the (partitionable) threefry PRNG inside
  # the step, identical for any sharding; the only differences are the
  # order of floating-point reductions.
  np.testing.assert_allclose(l1, l8, rtol=2e-5)
  for a, b in zip(_leaves(s1.params), _leaves(s8.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_end_to_end_outputs_and_single_compile(tmp_path):
  cfg = _cfg(steps=40)
  cfg.unlock()
  cfg.train.plot = True
  cfg.lock()
  state = train.train_and_evaluate(cfg, str(tmp_path))
  assert int(state.step) == 40
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert metrics["steps"] == 40 and metrics["num_params"] > 0
  assert np.isfinite(metrics["final_train_loss"])
  assert (tmp_path / "samples_final.png").exists()
  assert any(f.startswith("events.out.tfevents") for f in
             os.listdir(tmp_path))
  assert ckpt_lib.Checkpointer(str(tmp_path)).steps() == [20, 40]


@pytest.mark.parametrize("spec", ["configs/toy_fm.py:smoke",
                                  "configs/digits_gc.py:smoke"])
def test_initial_state_is_bit_identical_to_the_default_compile(spec):
  """`initial_state` compiles at LLVM level 1 (`once_compiler_options`):
  the MLP's and the UNet's initial values are those of a default compile,
  bit for bit (level 0 changed MLP kernels by an ulp)."""
  run = train.build(config_utils.load_config(spec))
  fast = _leaves(run.initial_state())
  ref = _leaves(jax.jit(run.init_state)())
  assert len(fast) == len(ref) > 10
  for a, b in zip(fast, ref):
    np.testing.assert_array_equal(a, b)


def test_checkpoint_save_compiles_nothing_in_one_process(tmp_path):
  """A replicated state over the 8 host devices is saved whole by the one
  process (Orbax's replica-parallel default compiled a slice per array and
  device) and restored exactly."""
  assert jax.device_count() == 8
  run = train.build(_cfg())
  state = run.initial_state()
  ck = ckpt_lib.Checkpointer(str(tmp_path))
  with counting_compiles() as n:
    assert ck.save(0, state)
  assert n[0] == 0
  _, back = ck.restore(run.abstract_state())
  for a, b in zip(_leaves(back), _leaves(state)):
    np.testing.assert_array_equal(a, b)


def test_corrupted_latest_checkpoint_falls_back(tmp_path, capsys):
  cfg = _cfg(steps=40)
  train.train_and_evaluate(cfg, str(tmp_path))
  latest = tmp_path / "checkpoints" / "40"
  for root, _, files in os.walk(latest):
    for f in files:
      if "manifest" in f or f.startswith(("_METADATA", "_sharding")) or (
          os.path.basename(root) == "d"):
        with open(os.path.join(root, f), "wb") as fh:
          fh.write(b"garbage")
  run = train.build(cfg)
  step, state = ckpt_lib.Checkpointer(str(tmp_path)).restore(
      run.abstract_state())
  assert step == 20 and int(state.step) == 20
  assert "unreadable" in capsys.readouterr().out


def test_non_finite_loss_stops_with_step_and_keeps_good_checkpoint(
    tmp_path, monkeypatch):
  cfg = _cfg(steps=60)
  from gcflow_jax import data as data_lib
  orig = data_lib.Dataset.local_batch

  def poisoned(self, step, *a, **kw):
    x = orig(self, step, *a, **kw)
    return x * np.nan if step >= 25 else x

  monkeypatch.setattr(data_lib.Dataset, "local_batch", poisoned)
  with pytest.raises(FloatingPointError,
                     match=r"non-finite metric '.*' at step 26"):
    train.train_and_evaluate(cfg, str(tmp_path))
  ck = ckpt_lib.Checkpointer(str(tmp_path))
  assert ck.steps() == [20]
  run = train.build(cfg)
  _, state = ck.restore(run.abstract_state())
  assert all(np.isfinite(x).all() for x in _leaves(state.params))


_TEACHER_CFG = '''
from gcflow_jax import config_utils


def get_config(arg=None):
  c = config_utils.load_config("configs/toy_fm.py:smoke")
  c.unlock()
  c.train.steps = int(arg or 8)
  c.train.batch_size = 32
  c.train.log_every = 4
  c.train.checkpoint_every = 4
  c.eval.num_samples = 32
  c.eval.metrics = ()
  c.train.plot = False
  c.model.mlp.hidden = (16, 16)
  return c
'''


def test_interrupted_teacher_is_finished_before_distilling(tmp_path, capsys):
  """A teacher workdir that stops short of its config's train.steps (a killed
  teacher run) is resumed to the end, not silently distilled from; with
  train_if_missing=False it is a clear error naming the field."""
  spec = tmp_path / "tiny_teacher.py"
  spec.write_text(_TEACHER_CFG)
  tdir = str(tmp_path / "teacher")
  # The interrupted run: the same teacher, stopped after 4 of its 8 steps.
  train.train_and_evaluate(config_utils.load_config(f"{spec}:4"), tdir)
  assert train.latest_step(tdir) == 4
  student = config_utils.load_config("configs/toy_fm.py:smoke")
  student.unlock()
  student.teacher.config = f"{spec}:8"
  student.teacher.workdir = tdir
  student.teacher.train_if_missing = False
  with pytest.raises(ValueError, match=r"stops at step 4 .*train.steps=8"):
    train.restore_teacher(student, (2,))
  assert train.latest_step(tdir) == 4
  student.teacher.train_if_missing = True
  capsys.readouterr()
  teacher = train.restore_teacher(student, (2,))
  assert "resumed from checkpoint step 4" in capsys.readouterr().out
  assert train.latest_step(tdir) == 8
  finished = train.restore_state(config_utils.load_config(f"{spec}:8"), tdir)
  for a, b in zip(_leaves(teacher.params), _leaves(finished.ema_params)):
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------- the run's record --
# Fields of metrics.json that depend on when and how often the run was
# interrupted, not on what it computed: wall times and the process starts.
_PROCESS_FIELDS = ("train_sec", "resumes", "eval/sample_sec")


def _non_timing(record):
  return {k: v for k, v in record.items() if k not in _PROCESS_FIELDS}


def _read_record(workdir):
  return json.loads((workdir / "metrics.json").read_text())


def test_preemption_and_crash_resume_bit_identical_with_one_record(
    tmp_path, monkeypatch):
  """Two interruptions in-process: SIGTERM inside a log window (saves a
  checkpoint there, exits), then a crash after a checkpoint that is not a
  log step. The final parameters and optimizer state are bit-identical to
  an uninterrupted run's; metrics.json equals its record in every
  non-timing field, its history has every log step once, and the resumes
  are listed."""
  cfg = _cfg(steps=60, **{"train.checkpoint_every": 15})
  ref_state = train.train_and_evaluate(cfg, str(tmp_path / "ref"))
  ref = _read_record(tmp_path / "ref")
  assert [h["step"] for h in ref["history"]] == [10, 20, 30, 40, 50, 60]
  assert ref["resumes"] == []

  from gcflow_jax import data as data_lib
  orig = data_lib.Dataset.local_batch
  run = str(tmp_path / "run")

  def interrupting(at, action):
    def batch(self, step, *a, **kw):
      if step == at:
        action()
      return orig(self, step, *a, **kw)
    monkeypatch.setattr(data_lib.Dataset, "local_batch", batch)

  interrupting(34, lambda: os.kill(os.getpid(), signal.SIGTERM))
  with pytest.raises(train.Preempted):
    train.train_and_evaluate(cfg, run)
  preempted_at = train.latest_step(run)
  # The batch of step 34 is built ahead of the step (prefetch).
  assert 30 < preempted_at < 40  # inside the log window (30, 40]

  def crash():
    raise RuntimeError("simulated crash")

  # Logs step 50, then dies: resumes at the checkpoint 45 (not a log step),
  # replaying 46..50.
  interrupting(52, crash)
  with pytest.raises(RuntimeError, match="simulated crash"):
    train.train_and_evaluate(cfg, run)
  assert train.latest_step(run) == 45
  monkeypatch.setattr(data_lib.Dataset, "local_batch", orig)
  state = train.train_and_evaluate(cfg, run)
  for a, b in zip(_leaves(ref_state.params), _leaves(state.params)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(_leaves(ref_state.opt_state), _leaves(state.opt_state)):
    np.testing.assert_array_equal(a, b)

  rec = _read_record(tmp_path / "run")
  assert [h["step"] for h in rec["history"]] == [10, 20, 30, 40, 50, 60]
  assert [r["step"] for r in rec["resumes"]] == [preempted_at, 45]
  assert rec["final_train_loss"] == ref["final_train_loss"]
  assert _non_timing(rec) == _non_timing(ref)
  assert rec["train_sec"] > 0  # the sum itself: test_run_record


def test_rerun_of_finished_run_changes_nothing(tmp_path, capsys):
  cfg = _cfg(steps=20)
  first = train.train_and_evaluate(cfg, str(tmp_path))

  def snapshot():
    out = {}
    for root, _, files in os.walk(tmp_path):
      for f in files:
        p = os.path.join(root, f)
        with open(p, "rb") as fh:
          out[p] = (fh.read(), os.stat(p).st_mtime_ns)
    return out

  before = snapshot()
  capsys.readouterr()
  again = train.train_and_evaluate(cfg, str(tmp_path))
  out = capsys.readouterr().out
  assert "run complete" in out and str(tmp_path / "metrics.json") in out
  assert "first step" not in out and "final:" not in out
  assert snapshot() == before  # no file written, touched or removed
  for a, b in zip(_leaves(first.params), _leaves(again.params)):
    np.testing.assert_array_equal(a, b)

  # An explicit re-evaluation goes to its own file, entry by entry.
  e1 = train.reevaluate(cfg, str(tmp_path))
  e2 = train.reevaluate(cfg, str(tmp_path))
  reev = json.loads((tmp_path / "metrics_reevaluated.json").read_text())
  assert [e["reevaluation"] for e in reev["reevaluations"]] == [1, 2]
  assert e1["step"] == e2["step"] == 20
  record = _read_record(tmp_path)
  assert e2["eval/sample_steps"] == record["eval/sample_steps"]
  assert reev["reevaluations"][1]["eval_config"]["num_samples"] == 64
  after = snapshot()
  for p in before:
    assert after[p] == before[p], p

  # Re-evaluating a run that is not finished is refused, naming the field.
  longer = _cfg(steps=40)
  with pytest.raises(ValueError, match=r"step 20 of train.steps=40"):
    train.reevaluate(longer, str(tmp_path))
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    train.reevaluate(cfg, str(tmp_path / "empty"))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"),
                    reason="needs os.sched_setaffinity")
def test_toy_exact_ot_run_on_one_core_finishes(tmp_path):
  """Exact OT runs in a host `pure_callback`. On one core this used to hang
  at the first steps: the prefetch thread launched the jitted toy sampler
  while holding the GIL and waiting for XLA's only worker, which ran the
  callback waiting for the GIL (and the callback imported scipy). A hang
  shows up as the timeout."""
  root = pathlib.Path(__file__).resolve().parents[1]
  cpu = min(os.sched_getaffinity(0))
  env = dict(os.environ, PYTHONPATH=str(root))
  env.pop("XLA_FLAGS", None)   # one device, like a one-core user
  args = [sys.executable, "-m", "gcflow_jax.main",
          "--config=configs/toy_ict.py:smoke,ot",
          f"--workdir={tmp_path / 'run'}", "--config.train.steps=30",
          "--config.train.log_every=10", "--config.train.checkpoint_every=30",
          "--config.eval.num_samples=256", "--config.eval.metrics=()",
          "--config.train.plot=False"]
  out = subprocess.run(args, cwd=root, env=env, capture_output=True,
                       text=True, timeout=600,
                       preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
  with open(tmp_path / "run" / "metrics.json") as f:
    assert json.load(f)["steps"] == 30


class _Proc:
  """A `python -m gcflow_jax.main` subprocess whose output lines are read
  (with the time each arrived) while it runs."""

  def __init__(self, args, cwd, env):
    self.t0 = time.time()
    self.proc = subprocess.Popen(
        [sys.executable, "-m", "gcflow_jax.main"] + args, cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    self.lines = []
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.proc.stdout:
      self.lines.append((time.time(), line))

  def seen(self, text):
    """Arrival time of the first line containing `text`, else None."""
    return next((t for t, line in self.lines if text in line), None)

  def wait_for(self, predicate, timeout=600) -> bool:
    """Polls until `predicate()`; False if the process ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
      if predicate():
        return True
      if self.proc.poll() is not None:
        return False
      time.sleep(0.002)
    raise TimeoutError("".join(line for _, line in self.lines)[-3000:])

  def finish(self, kill=False, timeout=600):
    if kill:
      self.proc.kill()  # SIGKILL
    self.proc.wait(timeout)
    self._reader.join(timeout)
    return self.proc.returncode, "".join(line for _, line in self.lines)


@pytest.mark.slow
def test_kill_minus_nine_at_random_moments_keeps_one_record(tmp_path):
  """The README's promise, for the model and its record: rerun the same
  command after each `kill -9` (at random moments of training, during a
  checkpoint write, during the final evaluation); the final parameters are
  bit-identical to an uninterrupted run's and metrics.json equals its record
  in every non-timing field, with every log step once. Rerunning the
  finished run then says so, exits 0 and changes no file."""
  # The final evaluation starts after the last checkpoint is saved.
  steps, eval_line = 1000, "checkpoint saved: step 1000"
  args = ["--config=configs/toy_fm.py:smoke", f"--config.train.steps={steps}",
          "--config.train.checkpoint_every=100", "--config.train.log_every=40"]
  cwd = config_utils.repo_root()
  env = dict(os.environ, XLA_FLAGS="")
  ref = _Proc(args + [f"--workdir={tmp_path}/ref"], cwd, env)
  rc, out = ref.finish()
  assert rc == 0, out[-3000:]
  startup = ref.seen("first step") - ref.t0
  train_window = ref.seen(eval_line) - ref.seen("first step")

  run = tmp_path / "run"
  ck_dir = run / "checkpoints"

  def ckpt_tmp_dirs():
    return {p for p in (os.listdir(ck_dir) if ck_dir.is_dir() else [])
            if ".orbax-checkpoint-tmp" in p}

  rng = random.Random(0)
  confirmed, outcomes = set(), []
  # Every kill before "final_eval" comes before the last checkpoint.
  plans = ["checkpoint_write", "startup", "checkpoint_write", "random",
           "final_eval", "startup"]
  for plan in plans:
    old_tmp = ckpt_tmp_dirs()
    p = _Proc(args + [f"--workdir={run}"], cwd, env)
    if plan == "checkpoint_write":
      p.wait_for(lambda: ckpt_tmp_dirs() - old_tmp)
    elif plan == "startup":  # a random moment before training
      delay = rng.uniform(0.0, startup)
      p.wait_for(lambda: time.time() > p.t0 + delay or
                 p.seen("first step") is not None)
    elif plan == "final_eval":
      p.wait_for(lambda: p.seen(eval_line) is not None)
    else:  # a random moment of training, before the last checkpoint
      delay = rng.uniform(0.0, train_window)
      p.wait_for(lambda: p.seen(f"step {steps - 40}/") is not None or (
          p.seen("first step") is not None and
          time.time() > p.seen("first step") + delay))
    rc, out = p.finish(kill=True)
    outcomes.append((plan, rc, train.latest_step(str(run))))
    if rc == 0:  # it finished before the kill
      break
    assert rc == -signal.SIGKILL, out[-3000:]
    if plan == "checkpoint_write" and ckpt_tmp_dirs() - old_tmp:
      confirmed.add(plan)  # an unfinished checkpoint directory was left
    if plan == "final_eval" and (train.latest_step(str(run)) == steps and
                                 not (run / "metrics.json").exists()):
      confirmed.add(plan)
  assert confirmed == {"checkpoint_write", "final_eval"}, outcomes
  print("kills (plan, exit status, newest checkpoint after):", outcomes)
  rc, out = _Proc(args + [f"--workdir={run}"], cwd, env).finish()
  assert rc == 0, out[-3000:]

  want, got = _read_record(tmp_path / "ref"), _read_record(run)
  log_steps = list(range(40, steps + 1, 40))
  assert [h["step"] for h in got["history"]] == log_steps
  assert _non_timing(got) == _non_timing(want)
  resumed_at = [r["step"] for r in got["resumes"]]
  assert resumed_at == sorted(resumed_at) and resumed_at[-1] == steps
  assert all(s % 100 == 0 for s in resumed_at), resumed_at
  assert (run / "samples_final.png").read_bytes().startswith(b"\x89PNG")

  cfg = config_utils.load_config("configs/toy_fm.py:smoke")
  cfg.unlock()
  cfg.train.steps = steps
  cfg.lock()
  a = train.restore_state(cfg, str(tmp_path / "ref"))
  b = train.restore_state(cfg, str(run))
  for x, y in zip(_leaves(a.params), _leaves(b.params)):
    np.testing.assert_array_equal(x, y)

  def snapshot():
    files = [os.path.join(r, f) for r, _, fs in os.walk(run) for f in fs]
    return {f: (pathlib.Path(f).read_bytes(), os.stat(f).st_mtime_ns)
            for f in files}

  before = snapshot()
  rc, out = _Proc(args + [f"--workdir={run}"], cwd, env).finish()
  assert rc == 0 and "run complete" in out, out[-3000:]
  assert str(run / "metrics.json") in out
  assert snapshot() == before
  # --reevaluate (here with other eval settings) adds its own file only.
  rc, out = _Proc(args + [f"--workdir={run}", "--reevaluate",
                          "--config.eval.num_samples=500"], cwd, env).finish()
  assert rc == 0, out[-3000:]
  reev = json.loads((run / "metrics_reevaluated.json").read_text())
  (entry,) = reev["reevaluations"]
  assert entry["step"] == steps and entry["eval_config"]["num_samples"] == 500
  assert np.isfinite(entry["eval/sinkhorn"])
  after = snapshot()
  assert {f: after[f] for f in before} == before


@pytest.mark.parametrize("schedule,warmup", [("constant", 0),
                                             ("constant", 3),
                                             ("cosine", 0), ("cosine", 3)])
def test_make_optimizer_learning_rate_follows_the_schedule(schedule, warmup):
  """Adam on a constant unit gradient moves by exactly −lr_t/(1 + eps)
  (bias-corrected moments are 1), so the updates read out the schedule:
  linear warm-up from 0, then constant, or a cosine that ends at 0."""
  cfg = config_utils.load_config("configs/digits_gc.py")
  cfg.optim.name, cfg.optim.lr, cfg.optim.eps = "adam", 1e-3, 0.0
  cfg.optim.schedule, cfg.optim.warmup_steps = schedule, warmup
  total = 11
  tx = train.make_optimizer(cfg.optim, total)
  params = jnp.zeros((), jnp.float64 if jax.config.x64_enabled
                     else jnp.float32)
  state = tx.init(params)
  got = []
  for _ in range(total + 1):
    upd, state = tx.update(jnp.ones_like(params), state, params)
    got.append(-float(upd))
  w = max(warmup, 1) if schedule == "cosine" else warmup
  want = []
  for t in range(total + 1):
    if t < w:
      want.append(1e-3 * t / w)
    elif schedule == "constant":
      want.append(1e-3)
    else:
      frac = min((t - w) / (total - w), 1.0)
      want.append(1e-3 * 0.5 * (1 + np.cos(np.pi * frac)))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
  if schedule == "cosine":
    assert got[total] == pytest.approx(0.0, abs=1e-12)
