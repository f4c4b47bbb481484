"""benchmarks/accelerator.py: its helpers, and a `--smoke` run on CPU."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import accelerator  # noqa: E402  pylint: disable=g-import-not-at-top


def test_peak_table_by_device_kind():
  p = accelerator.peak_flops
  assert p("NVIDIA H200", "bfloat16") == 989.4e12
  assert p("NVIDIA H100 80GB HBM3", "bfloat16") == 989.4e12
  assert p("NVIDIA H100 80GB HBM3", "float32") == 66.9e12
  # PCIe before the generic H100 entry.
  assert p("NVIDIA H100 PCIe", "bfloat16") == 756e12
  assert p("NVIDIA A100-SXM4-80GB", "tf32") == 156e12
  assert p("cpu", "bfloat16") is None
  assert p("TPU v5 lite", "float32") is None


def test_xla_flops_count_matmul_and_conv():
  """The MFU numerator: XLA's cost analysis counts 2 flops per
  multiply-add, before and after compilation."""
  a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
  lowered = jax.jit(jnp.matmul).lower(a, b)
  assert accelerator.xla_flops(lowered) == 2 * 64 * 32 * 16
  assert accelerator.xla_flops(lowered.compile()) == 2 * 64 * 32 * 16
  x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 5))
  conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
  flops = accelerator.xla_flops(conv.lower(x, w))
  # 2 * batch * out channels * in channels * the kernel taps that land
  # inside the image (XLA does not count the zero padding): per axis,
  # 6 interior outputs see 3 taps, the 2 border outputs 2.
  taps_per_axis = sum(sum(0 <= i + j < 8 for j in (-1, 0, 1))
                      for i in range(8))
  assert taps_per_axis == 22
  assert flops == 2 * 2 * 5 * 4 * taps_per_axis ** 2


def test_budget_guard():
  now = [100.0]
  b = accelerator.Budget(60.0, start=100.0, clock=lambda: now[0])
  assert b.fits(59.0) and not b.fits(61.0)
  now[0] = 130.0
  assert b.left() == 30.0 and not b.fits(31.0)
  assert "30 s left of 60 s" in b.skip_reason(31.0)
  est = accelerator.Estimates(first_guess_s=50.0)
  assert est.get("ict") == 50.0
  est.put("ict", 30.0)
  est.put("ict", 12.0)
  assert est.get("ict") == 12.0 and est.get("fmm_lmd") == 12.0
  assert est.get("quality", 5.0) == 5.0


def test_lite_config_reads_the_config_files_like_ml_collections(monkeypatch):
  from gcflow_jax import config_utils  # pylint: disable=g-import-not-at-top
  specs = ("configs/cifar_gc.py", "configs/cifar_fmm_lmd.py:teacher",
           "configs/digits_gc.py")
  real = {s: config_utils.load_config(s).to_dict() for s in specs}
  lite = accelerator._LiteConfigDict  # pylint: disable=protected-access
  module = type(sys)("ml_collections")
  module.ConfigDict = lite
  monkeypatch.setitem(sys.modules, "ml_collections", module)
  for name in [m for m in sys.modules if m.startswith("configs")]:
    monkeypatch.delitem(sys.modules, name)
  for s in specs:
    c = config_utils.load_config(s)
    assert isinstance(c, lite) and c.to_dict() == real[s], s
  with pytest.raises(AttributeError, match="tmodel"):
    c.tmodel = 1                  # locked: a typo is an error
  with c.unlocked():
    c.model.unet.dtype = "bfloat16"
  assert c.model["unet"].dtype == "bfloat16"
  with pytest.raises(AttributeError, match="dtyp"):
    c.model.unet.dtyp = "float32"


@pytest.mark.slow
def test_accelerator_smoke_writes_marked_json(tmp_path):
  """`--smoke` on CPU into a temporary folder: every section runs, the file
  is named and marked smoke, CPU rows carry no MFU. The largest test (2-5
  min of CPU): slow, so run it (`-m slow`) before any device run."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  env.pop("XLA_FLAGS", None)
  cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "accelerator.py"),
         "--smoke", f"--out_dir={tmp_path}", "--budget_s=900",
         "--dtypes=bfloat16", "--ict_variants=ic,ot", "--fmm_losses=lmd",
         "--quality_seeds=0", "--quality_arms=ic,ot,gc",
         "--quality_curve=2"]
  out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       timeout=900, cwd=str(tmp_path), check=False)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  files = os.listdir(tmp_path)
  assert files == ["accelerator_smoke.json"], files
  with open(tmp_path / "accelerator_smoke.json") as f:
    d = json.load(f)
  assert d["smoke"] is True and d["status"] == "complete"
  assert d["ran_on_gpu"] is False
  secs = d["sections"]
  ict = {r["variant"]: r for r in secs["ict"]["rows"]}
  assert set(ict) == {"ic", "ot"}
  for r in ict.values():
    assert r["dtype"] == "bfloat16" and r["img_per_s"] > 0
    assert r["xla_flops_per_step"] > 0 and r["mfu"] is None
  assert secs["ot_share"]["rows"][0]["share_of_ot_step_bfloat16"] > 0
  assert [r["loss"] for r in secs["fmm"]["rows"]] == ["lmd"]
  q = secs["quality"]
  assert [r["arm"] for r in q["rows"]] == ["ic", "ot", "gc"]
  for r in q["rows"]:
    # Two curve points; the last is the final 1-step score.
    steps = [p["step"] for p in r["curve"]]
    assert len(steps) == 2 and steps[-1] == r["steps"] > steps[0]
    metric = q["setup"]["metric"]
    assert r["curve"][-1][f"{metric}@1"] == r[f"{metric}@1"]
  assert not any(s["skipped"] for s in secs.values())
