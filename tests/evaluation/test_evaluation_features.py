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
