"""The trainer: sharding equivalence, resume, preemption, corruption, NaNs."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax import checkpoint as ckpt_lib
from gcflow_jax import config_utils, sharding, train


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


def test_sigterm_saves_and_resume_is_bit_identical(tmp_path, monkeypatch):
  cfg = _cfg(steps=60)
  ref = train.train_and_evaluate(cfg, str(tmp_path / "ref"))

  from gcflow_jax import data as data_lib
  orig = data_lib.Dataset.local_batch

  def preempting(self, step, *a, **kw):
    if step == 33:
      os.kill(os.getpid(), signal.SIGTERM)
    return orig(self, step, *a, **kw)

  monkeypatch.setattr(data_lib.Dataset, "local_batch", preempting)
  with pytest.raises(train.Preempted):
    train.train_and_evaluate(cfg, str(tmp_path / "run"))
  monkeypatch.setattr(data_lib.Dataset, "local_batch", orig)
  saved = ckpt_lib.Checkpointer(str(tmp_path / "run")).latest_step()
  assert 20 < saved < 60  # the preemption checkpoint, not a periodic one
  assert saved % 20 != 0
  resumed = train.train_and_evaluate(cfg, str(tmp_path / "run"))
  for a, b in zip(_leaves(ref.params), _leaves(resumed.params)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(_leaves(ref.opt_state), _leaves(resumed.opt_state)):
    np.testing.assert_array_equal(a, b)
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["resumed_from"] == saved


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


@pytest.mark.slow
def test_kill_minus_nine_and_rerun_gives_identical_params(tmp_path):
  """The README's promise: rerun the same command after `kill -9`."""
  cmd = [sys.executable, "-m", "gcflow_jax.main",
         "--config=configs/toy_fm.py:smoke", "--config.train.steps=600",
         "--config.train.checkpoint_every=100", "--config.eval.metrics=()",
         "--config.train.plot=False"]
  cwd = config_utils.repo_root()
  env = dict(os.environ, XLA_FLAGS="")
  subprocess.run(cmd + [f"--workdir={tmp_path}/ref"], check=True, cwd=cwd,
                 env=env, capture_output=True, timeout=600)
  proc = subprocess.Popen(cmd + [f"--workdir={tmp_path}/run"], cwd=cwd,
                          env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ck_dir = tmp_path / "run" / "checkpoints"
  deadline = time.time() + 300
  while time.time() < deadline:
    if ck_dir.exists() and any(p.name.isdigit() and int(p.name) >= 200
                               for p in ck_dir.iterdir()):
      break
    time.sleep(0.05)
  proc.kill()  # SIGKILL
  proc.wait()
  subprocess.run(cmd + [f"--workdir={tmp_path}/run"], check=True, cwd=cwd,
                 env=env, capture_output=True, timeout=600)
  cfg = config_utils.load_config("configs/toy_fm.py:smoke")
  cfg.unlock()
  cfg.train.steps = 600
  cfg.lock()
  a = train.restore_state(cfg, str(tmp_path / "ref"))
  b = train.restore_state(cfg, str(tmp_path / "run"))
  for x, y in zip(_leaves(a.params), _leaves(b.params)):
    np.testing.assert_array_equal(x, y)


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
    train.load_teacher(student, (2,))
  assert train.latest_step(tdir) == 4
  student.teacher.train_if_missing = True
  capsys.readouterr()
  teacher = train.load_teacher(student, (2,))
  assert "resumed from checkpoint step 4" in capsys.readouterr().out
  assert train.latest_step(tdir) == 8
  finished = train.restore_state(config_utils.load_config(f"{spec}:8"), tdir)
  for a, b in zip(_leaves(teacher.params), _leaves(finished.ema_params)):
    np.testing.assert_array_equal(a, b)
