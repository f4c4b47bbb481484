"""FID Inception: architecture, resize semantics, weight conversion/loading."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax.evaluation import inception

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _converter():
  path = os.path.join(_ROOT, "scripts", "convert_inception_weights.py")
  spec = importlib.util.spec_from_file_location("convert_inception", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


@pytest.fixture(scope="module")
def abstract():
  return inception.init_variables(0, abstract=True)


def test_parameter_count_is_the_fid_inception(abstract):
  # torchvision inception_v3 with aux logits: 27,161,264; minus the aux head
  # (3,326,696) plus 8 more fc outputs (8 * 2049) = 23,850,960.
  assert inception.count_params(abstract) == inception.EXPECTED_NUM_PARAMS
  assert inception.EXPECTED_NUM_PARAMS == 23_850_960
  assert inception.count_params(abstract, "batch_stats") == 34_432
  assert abstract["params"]["fc"]["kernel"].shape == (2048, 1008)
  # 94 conv+BN units and the fc: the PyTorch state dict has 472 entries
  # (without num_batches_tracked).
  assert len(inception.torch_state_dict_shapes()) == 94 * 5 + 2


@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (3, 299, 299, 3),
                                   (1, 512, 384, 3)])
def test_output_shapes(abstract, shape):
  out = jax.eval_shape(inception.InceptionV3().apply, abstract,
                       jax.ShapeDtypeStruct(shape, jnp.float32))
  assert out["pool"].shape == (shape[0], 2048)
  assert out["logits"].shape == (shape[0], 1008)
  assert out["logits_unbiased"].shape == (shape[0], 1008)


def test_torch_names_follow_pytorch_fid():
  shapes = inception.torch_state_dict_shapes()
  assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
  assert shapes["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
  assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
  assert shapes["Mixed_7c.branch3x3dbl_3b.conv.weight"] == (384, 384, 3, 1)
  assert shapes["Mixed_7c.branch_pool.bn.running_var"] == (192,)
  assert shapes["fc.weight"] == (1008, 2048)
  assert not any(k.startswith("AuxLogits") for k in shapes)


def test_resize_semantics():
  # 2 -> 4 pixels. PyTorch align_corners=False: src = (d + .5) / 2 - .5,
  # clamped at 0. TF1 legacy: src = d / 2.
  x = np.array([0.0, 1.0])
  np.testing.assert_allclose(inception.resize_matrix(2, 4, "pytorch_fid") @ x,
                             [0.0, 0.25, 0.75, 1.0])
  np.testing.assert_allclose(inception.resize_matrix(2, 4, "tf_fid") @ x,
                             [0.0, 0.5, 1.0, 1.0])
  for mode in inception.PROTOCOLS:
    m = inception.resize_matrix(32, 299, mode)
    np.testing.assert_allclose(m.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(inception.resize_matrix(7, 7, mode), np.eye(7))
  img = jnp.arange(2 * 5 * 6 * 3, dtype=jnp.float32).reshape(2, 5, 6, 3)
  assert inception.resize_bilinear(img, 299).shape == (2, 299, 299, 3)
  assert inception.resize_bilinear(img, 5) is not img  # 5x6 is not square


def test_pytorch_resize_matches_half_pixel_upsampling():
  # Independent check: for upsampling, half-pixel bilinear without
  # antialiasing is what jax.image.resize computes.
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (2, 32, 28, 3)),
                  jnp.float32)
  np.testing.assert_allclose(
      inception.resize_bilinear(x, 299, "pytorch_fid"),
      jax.image.resize(x, (2, 299, 299, 3), "linear", antialias=False),
      atol=2e-3)


def test_avg_pool_excludes_padding():
  # The TF quirk: border averages ignore the zero padding.
  y = inception._avg3(jnp.ones((1, 5, 5, 2)))
  np.testing.assert_allclose(y, 1.0)


def test_forward_random_weights():
  v = inception.init_variables(0)
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)),
                  jnp.float32)
  out = jax.jit(inception.InceptionV3().apply)(v, x)
  assert out["pool"].shape == (2, 2048)
  assert np.all(np.isfinite(out["pool"])) and np.all(out["pool"] >= 0)
  np.testing.assert_allclose(out["logits"] - out["logits_unbiased"],
                             np.broadcast_to(v["params"]["fc"]["bias"],
                                             (2, 1008)), atol=1e-5)


def _fake_state_dict(seed=0):
  rng = np.random.default_rng(seed)
  sd = {k: rng.normal(size=s).astype(np.float32)
        for k, s in inception.torch_state_dict_shapes().items()}
  for k in list(sd):
    if k.endswith("running_var"):
      sd[k] = np.abs(sd[k]) + 0.5
      sd[k.replace("running_var", "num_batches_tracked")] = np.array(0)
  return sd


def test_converter_round_trip(tmp_path):
  sd = _fake_state_dict()
  src = tmp_path / "state_dict.npz"
  np.savez(src, **sd)
  out = str(tmp_path / "inception_fid.npz")
  digest = _converter().convert(str(src), out)
  meta = json.loads(open(out + ".json").read())
  assert meta["content_sha256"] == digest
  v = inception.load_variables(out)  # checks the sidecar checksum
  np.testing.assert_array_equal(
      v["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"],
      np.transpose(sd["Mixed_6b.branch7x7_2.conv.weight"], (2, 3, 1, 0)))
  np.testing.assert_array_equal(v["params"]["fc"]["kernel"],
                                sd["fc.weight"].T)
  np.testing.assert_array_equal(
      v["batch_stats"]["Mixed_7c"]["branch_pool"]["bn"]["var"],
      sd["Mixed_7c.branch_pool.bn.running_var"])
  np.testing.assert_array_equal(v["params"]["Conv2d_1a_3x3"]["bn"]["scale"],
                                sd["Conv2d_1a_3x3.bn.weight"])
  # Back to PyTorch names: every array comes back unchanged.
  back = inception.torch_state_dict_from_variables(
      inception.flatten_variables(v))
  assert set(back) == {k for k in sd if "num_batches" not in k}
  for k, a in back.items():
    np.testing.assert_array_equal(a, sd[k])
  # Explicit checksums: right one passes, wrong one fails.
  inception.load_variables(out, expected_sha256=digest)
  with pytest.raises(ValueError, match="checksum"):
    inception.load_variables(out, expected_sha256="0" * 64)


def test_tampered_weights_fail_checksum(tmp_path):
  out = str(tmp_path / "w.npz")
  flat = inception.variables_from_torch_state_dict(_fake_state_dict(1))
  inception.save_variables(flat, out)
  flat["params/fc/bias"] = flat["params/fc/bias"] + 1e-3
  np.savez(out, **flat)  # the sidecar still holds the old digest
  with pytest.raises(ValueError, match="checksum"):
    inception.load_variables(out)


def test_converter_rejects_wrong_state_dict(tmp_path):
  sd = _fake_state_dict()
  sd["fc.weight"] = sd["fc.weight"][:1000]  # torchvision's 1000 classes
  with pytest.raises(ValueError, match="fc.weight"):
    inception.variables_from_torch_state_dict(sd)
  sd = _fake_state_dict()
  sd["AuxLogits.fc.weight"] = np.zeros((1000, 768), np.float32)
  with pytest.raises(ValueError, match="unexpected"):
    inception.variables_from_torch_state_dict(sd)


def test_converter_checks_pth_hash_prefix(tmp_path):
  bad = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
  bad.write_bytes(b"not the real file")
  with pytest.raises(SystemExit, match="6726825d"):
    _converter().convert(str(bad), str(tmp_path / "o.npz"))


def test_missing_weights_is_a_clear_error(monkeypatch, tmp_path):
  monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
  with pytest.raises(FileNotFoundError) as e:
    inception.resolve_weights_path(None)
  msg = str(e.value)
  assert inception.PTH_FILENAME in msg and "convert_inception_weights" in msg
  assert inception.WEIGHTS_ENV_VAR in msg
  with pytest.raises(FileNotFoundError, match="No file at"):
    inception.resolve_weights_path(str(tmp_path / "nope.npz"))
  pth = tmp_path / "x.pth"
  pth.write_bytes(b"")
  with pytest.raises(ValueError, match="convert it first"):
    inception.resolve_weights_path(str(pth))
  monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, str(tmp_path / "env.npz"))
  with pytest.raises(FileNotFoundError, match="env.npz"):
    inception.resolve_weights_path(None)
