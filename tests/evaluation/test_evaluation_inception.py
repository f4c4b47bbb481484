"""FID Inception: architecture, resize semantics, weight conversion/loading."""

import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax import evaluation
from gcflow_jax.evaluation.fid import frechet_distance
from gcflow_jax.evaluation.fid import gaussian_statistics
from gcflow_jax.evaluation.fid import inception_score_from_logits
from gcflow_jax.evaluation.fid import kid_from_features
from gcflow_jax.evaluation import inception
from gcflow_jax.evaluation import inception_net
import script_modules  # tests/script_modules.py

# The submodule (the package attribute `evaluate` is the function).
evaluate_lib = importlib.import_module("gcflow_jax.evaluation.evaluate")

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


_FIXTURE = os.path.join(_ROOT, "tests", "evaluation", "fixtures",
                        "inception_pytorch_fid_seed0.npz")


def _script(name):
  return script_modules.load(name, "scripts", name + ".py")


def _converter():
  return _script("convert_inception_weights")


@pytest.fixture(scope="module")
def torch_ref():
  """pytorch-fid outputs (scripts/make_inception_fixture.py) + its weights.

  The state dict is rebuilt from the seed in PyTorch names, shapes and
  layouts as listed by torch; the project's converter turns it into Flax
  variables.
  """
  with np.load(_FIXTURE) as z:
    ref = {k: z[k] for k in z.files}
  meta = json.loads(str(ref["meta"]))
  names_shapes = [(k, tuple(s)) for k, s in json.loads(str(
      ref["names_shapes"]))]
  sd = _script("make_inception_fixture").seeded_state_dict(names_shapes,
                                                           meta["seed"])
  ref.update(names_shapes=names_shapes, state_dict=sd, meta=meta)
  return ref


def _write_torch_state_dict(sd, path):
  full = dict(sd)
  for k in sd:  # as torch writes them
    if k.endswith("running_var"):
      full[k.replace("running_var", "num_batches_tracked")] = np.array(0)
  np.savez(path, **full)


@pytest.fixture(scope="module")
def converted(torch_ref, tmp_path_factory):
  """The seeded torch state dict through scripts/convert_inception_weights."""
  d = tmp_path_factory.mktemp("inception")
  _write_torch_state_dict(torch_ref["state_dict"], d / "state_dict.npz")
  out = str(d / "inception_fid.npz")
  digest = _converter().convert(str(d / "state_dict.npz"), out)
  return out, digest


@pytest.fixture(scope="module")
def torch_ref_outputs(torch_ref):
  """Flax outputs on the fixture images, through the project's converter."""
  v = inception.unflatten_variables(
      inception.variables_from_torch_state_dict(torch_ref["state_dict"]))
  ext = evaluate_lib.make_extractor("inception", variables=v, batch_size=8)
  x = np.concatenate([torch_ref["samples"], torch_ref["reference"]])
  return ext(x)


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


def test_torch_names_and_shapes_are_pytorch_fids(torch_ref):
  # The list in the fixture comes from the PyTorch module's state_dict().
  assert inception.torch_state_dict_shapes() == dict(torch_ref["names_shapes"])
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


def test_resize_matches_torch_interpolate(torch_ref):
  # F.interpolate(bilinear, align_corners=False) of 11x9 images (float64 in
  # torch): down to 7x7 and up to 20x20, height and width scaled differently.
  x = jnp.asarray(torch_ref["resize_input"])
  assert x.shape == (2, 11, 9, 3)
  for size, key in ((7, "resize_down7"), (20, "resize_up20")):
    np.testing.assert_allclose(inception.resize_bilinear(x, size),
                               torch_ref[key], rtol=1e-6, atol=1e-4)


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
  y = inception_net._avg3(jnp.ones((1, 5, 5, 2)))
  np.testing.assert_allclose(y, 1.0)


def test_forward_matches_pytorch_fid(torch_ref, torch_ref_outputs):
  # pytorch-fid's InceptionV3([3]) in float64 under the same seeded state
  # dict, on 32x32 images resized to 299: pool_3 and the bias-free logits.
  # Any wrong padding, pooling quirk, BN epsilon, resize or kernel layout in
  # the port or the converter moves these by far more than 1e-4.
  pool = torch_ref_outputs["pool"]
  assert pool.shape == (6, 2048)
  np.testing.assert_allclose(pool, torch_ref["pool"], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(torch_ref_outputs["logits_unbiased"],
                             torch_ref["logits_unbiased"], rtol=1e-4,
                             atol=1e-4)
  # The images differ by much more than the tolerance.
  assert np.abs(pool[0] - pool[3]).max() > 0.1


def test_converter_round_trip(torch_ref, converted):
  sd = torch_ref["state_dict"]
  out, digest = converted
  meta = json.loads(open(out + ".json").read())
  assert meta["content_sha256"] == digest
  v = inception.load_variables(out)  # checks the sidecar checksum
  # A conv kernel [out, in, kh, kw] -> [kh, kw, in, out] with kh != kw, known
  # entries: the first output channel's 1x7 taps for input channel 2.
  k = v["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]
  assert k.shape == (1, 7, 128, 128)
  np.testing.assert_array_equal(
      k[0, :, 2, 0], sd["Mixed_6b.branch7x7_2.conv.weight"][0, 2, 0, :])
  np.testing.assert_array_equal(v["params"]["fc"]["kernel"][5, 7],
                                sd["fc.weight"][7, 5])
  np.testing.assert_array_equal(
      v["batch_stats"]["Mixed_7c"]["branch_pool"]["bn"]["var"],
      sd["Mixed_7c.branch_pool.bn.running_var"])
  np.testing.assert_array_equal(v["params"]["Conv2d_1a_3x3"]["bn"]["scale"],
                                sd["Conv2d_1a_3x3.bn.weight"])
  # Back to PyTorch names: every array comes back unchanged.
  back = inception.torch_state_dict_from_variables(
      inception.flatten_variables(v))
  assert set(back) == set(sd)
  for name, a in back.items():
    np.testing.assert_array_equal(a, sd[name])
  # Explicit checksums: right one passes, wrong one fails.
  inception.load_variables(out, expected_sha256=digest)
  with pytest.raises(ValueError, match="checksum"):
    inception.load_variables(out, expected_sha256="0" * 64)


def test_fid_kid_is_end_to_end_against_pytorch_fid_reference_stats(
    torch_ref, torch_ref_outputs, converted, monkeypatch):
  # Converted weights file -> evaluate() on uint8 sample images through the
  # Inception extractor -> FID, KID and IS, scored against reference
  # statistics computed from pytorch-fid's features (as with a published
  # stats file). Expected: the same metrics of pytorch-fid's sample features.
  # 3 vs 3 images keep this cheap, so the D + 1 sample check is lifted (the
  # Frechet distance is defined for rank-deficient covariances too).
  del torch_ref_outputs  # compiles the extractor once for this module
  monkeypatch.setattr(evaluate_lib, "_check_fd_size", lambda *a: None)
  pool_s, pool_r = torch_ref["pool"][:3], torch_ref["pool"][3:]
  mu_r, sigma_r = gaussian_statistics(pool_r)
  ref_stats = {"mu": mu_r, "sigma": sigma_r, "features": pool_r,
               "extractor": "inception", "protocol": "pytorch_fid",
               "quantize": True}
  out = evaluation.evaluate(
      torch_ref["samples"], ref_stats, "fid,kid,is",
      inception_weights=converted[0], batch_size=8, kid_subsets=4,
      kid_subset_size=3, is_splits=1)
  want_fid = frechet_distance(*gaussian_statistics(pool_s), mu_r, sigma_r)
  want_kid, _ = kid_from_features(pool_s, pool_r, num_subsets=4,
                                  subset_size=3, seed=0)
  want_is, _ = inception_score_from_logits(torch_ref["logits_unbiased"][:3],
                                           splits=1)
  # Far from the degenerate values (0 for FID/KID); random weights give
  # near-uniform class probabilities, so IS - 1 (the mean KL) is compared.
  assert want_fid > 100 and abs(want_kid) > 10 and want_is - 1 > 1e-4
  assert out["fid"] == pytest.approx(want_fid, rel=1e-3)
  assert out["kid"] == pytest.approx(want_kid, rel=1e-3)
  assert out["is"] - 1 == pytest.approx(want_is - 1, rel=1e-2)


def test_tampered_weights_fail_checksum(torch_ref, tmp_path):
  out = str(tmp_path / "w.npz")
  flat = inception.variables_from_torch_state_dict(torch_ref["state_dict"])
  inception.save_variables(flat, out)
  flat["params/fc/bias"] = flat["params/fc/bias"] + 1e-3
  np.savez(out, **flat)  # the sidecar still holds the old digest
  with pytest.raises(ValueError, match="checksum"):
    inception.load_variables(out)


def test_converter_rejects_wrong_state_dict(torch_ref):
  sd = dict(torch_ref["state_dict"])
  sd["fc.weight"] = sd["fc.weight"][:1000]  # torchvision's 1000 classes
  with pytest.raises(ValueError, match="fc.weight"):
    inception.variables_from_torch_state_dict(sd)
  sd = dict(torch_ref["state_dict"])
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


def test_corrupt_weights_file_is_a_clear_error(tmp_path):
  bad = tmp_path / "inception_fid.npz"
  bad.write_bytes(b"PK\x03\x04 truncated")
  with pytest.raises(ValueError, match="not a readable .npz"):
    inception.load_variables(str(bad))
