"""Config loading and validation: bad input fails fast with the field named."""

import glob
import os
import subprocess
import sys
import time

import pytest

from gcflow_jax import config_utils


def _cfg(spec="configs/toy_fm.py:smoke"):
  c = config_utils.load_config(spec)
  c.unlock()
  return c


def _config_files():
  """Every experiment config (not base.py / common.py / __init__.py)."""
  files = sorted(glob.glob(os.path.join(config_utils.repo_root(), "configs",
                                        "*.py")))
  files = [f for f in files if os.path.basename(f) not in
           ("base.py", "common.py", "__init__.py")]
  assert files
  return files


def test_every_config_file_loads_and_validates_its_smoke_variant():
  for f in _config_files():
    c = config_utils.load_config(f + ":smoke")
    config_utils.validate(c, num_devices=1)


def test_every_config_file_names_itself_and_its_variants_on_a_typo():
  for f in _config_files():
    name = os.path.basename(f)
    with pytest.raises(ValueError, match=rf"configs/{name} variant .*smok"):
      config_utils.load_config(f + ":smok")


def test_locked_config_rejects_unknown_field():
  c = config_utils.load_config("configs/toy_fm.py")
  with pytest.raises(AttributeError):
    c.train.stepz = 3


def test_unknown_variant_is_rejected_naming_the_allowed_ones():
  with pytest.raises(ValueError) as e:
    config_utils.load_config("configs/toy_fm.py:nope")
  assert str(e.value) == ("configs/toy_fm.py variant 'nope' is not one of "
                          "('', 'smoke', 'moons', '8gaussians', 'large', 'xl')")


@pytest.mark.parametrize("field,value,match", [
    ("method", "gan", r"method='gan' is not one of .*flow_matching"),
    ("data.name", "imagenet1k", r"data.name='imagenet1k' is not one of"),
    ("train.steps", -5, r"train.steps=-5 must be > 0"),
    ("train.batch_size", 0, r"train.batch_size=0 must be > 0"),
    ("optim.name", "sgd", r"optim.name='sgd' is not one of .*lion"),
    ("ema.decay", 1.5, r"ema.decay=1.5 must be in \[0, 1\)"),
    ("sample.method", "rk45", r"sample.method='rk45' is not one of"),
    ("model.name", "unet", r"model.name='unet' needs image data"),
    ("fm.time_sampler", "beta", r"fm.time_sampler='beta' is not one of"),
])
def test_invalid_values_name_field_and_allowed(field, value, match):
  c = _cfg()
  section, _, leaf = field.rpartition(".")
  (c if not section else c[section])[leaf] = value
  with pytest.raises(ValueError, match=match):
    config_utils.validate(c, num_devices=1)


def test_batch_not_divisible_by_devices():
  c = _cfg()
  c.train.batch_size = 100
  with pytest.raises(ValueError, match=r"train.batch_size=100 must be "
                     r"divisible by the number of data-parallel devices \(8\)"):
    config_utils.validate(c, num_devices=8)
  config_utils.validate(c, num_devices=4)


@pytest.mark.parametrize("spec,block", [("configs/toy_ict.py:smoke", "ict"),
                                        ("configs/gaussian_affine_gcm.py:"
                                         "smoke", "gcm")])
def test_host_ot_on_several_cpu_devices_fails_before_compiling(spec, block):
  """The host pairing (exact, or Sinkhorn + 'lsa') inside a step partitioned
  over several CPU devices aborts in XLA:CPU's rendezvous: refused up
  front, naming the field and the on-device alternative; allowed on one
  device, on other backends, and with the device-only rounding."""
  c = _cfg(spec)
  c[block].coupling = "ot"
  for solver, rounding, field in (("exact", "lsa", "ot_solver='exact'"),
                                  ("sinkhorn", "lsa", "ot_rounding='lsa'")):
    c[block].ot_solver, c[block].ot_rounding = solver, rounding
    assert config_utils.host_ot_fields(c) == [f"{block}.{field}"]
    with pytest.raises(ValueError, match=(
        rf"{block}.{field}: .* over 2 CPU devices .* use "
        rf"{block}.ot_solver='sinkhorn' with {block}.ot_rounding='greedy'")):
      config_utils.validate(c, num_devices=2, backend="cpu")
    config_utils.validate(c, num_devices=1, backend="cpu")
    config_utils.validate(c, num_devices=2, backend="gpu")
    config_utils.validate(c, num_devices=2)
  c[block].ot_solver, c[block].ot_rounding = "sinkhorn", "greedy"
  assert config_utils.host_ot_fields(c) == []
  config_utils.validate(c, num_devices=2, backend="cpu")
  c[block].ot_solver, c[block].coupling = "exact", (
      "ic" if block == "ict" else "random")
  assert config_utils.host_ot_fields(c) == []


def test_a_runs_own_train_step_refuses_host_ot_on_several_cpu_devices():
  """`train.build(c).jit_train_step()` (the benchmarks' way to compile the
  step, bypassing `validate`) refuses what the trainer refuses, on the
  run's own mesh: the tests' 8 CPU devices; one device compiles."""
  import jax  # pylint: disable=g-import-not-at-top
  from gcflow_jax import train  # pylint: disable=g-import-not-at-top
  if jax.default_backend() != "cpu" or jax.device_count() < 2:
    pytest.skip("needs several CPU devices (the tests' XLA_FLAGS)")
  c = _cfg("configs/gaussian_to_moons_gcm.py:smoke")
  c.gcm.coupling, c.gcm.ot_solver, c.gcm.ot_rounding = "ot", "sinkhorn", "lsa"
  with pytest.raises(ValueError, match=(
      rf"gcm.ot_rounding='lsa': .* over {jax.device_count()} CPU devices")):
    train.build(c).jit_train_step()
  assert callable(train.build(c, devices=jax.devices()[:1]).jit_train_step())
  c.gcm.ot_rounding = "greedy"
  assert callable(train.build(c).jit_train_step(donate_argnums=(0,)))


def test_cli_rejects_bad_value_before_compiling(tmp_path):
  t0 = time.time()
  proc = subprocess.run(
      [sys.executable, "-m", "gcflow_jax.main",
       "--config=configs/toy_fm.py:smoke", f"--workdir={tmp_path}",
       "--config.train.steps=-1"],
      capture_output=True, text=True, cwd=config_utils.repo_root(),
      timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "train.steps=-1 must be > 0" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "checkpoints").exists()
  assert time.time() - t0 < 60


def test_cli_rejects_unknown_override(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "gcflow_jax.main",
       "--config=configs/toy_fm.py:smoke", f"--workdir={tmp_path}",
       "--config.train.stepz=3"],
      capture_output=True, text=True, cwd=config_utils.repo_root(),
      timeout=120)
  assert proc.returncode != 0
  assert "stepz" in proc.stderr


def test_cli_missing_tfds_dataset_is_one_clear_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "gcflow_jax.main",
       "--config=configs/digits_fm.py:smoke", f"--workdir={tmp_path}",
       "--config.data.name=cifar10",
       f"--config.data.tfds_data_dir={tmp_path}/tfds"],
      capture_output=True, text=True, cwd=config_utils.repo_root(),
      timeout=120)
  assert proc.returncode == 2
  assert "tfds build cifar10" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_load_config_overrides_set_dotted_fields_then_lock():
  base = config_utils.load_config("configs/checkerboard_fmm_lmd.py")
  c = config_utils.load_config("configs/checkerboard_fmm_lmd.py",
                               {"fmm.loss": "emd", "train.steps": 7})
  assert (c.fmm.loss, c.train.steps) == ("emd", 7)
  assert base.fmm.loss != "emd" and base.train.steps != 7
  assert c.is_locked
  with pytest.raises(KeyError):
    config_utils.load_config("configs/checkerboard_fmm_lmd.py",
                             {"nosection.x": 1})
