"""Image sources, preprocessing, deterministic per-host batches."""

import os
import sys

import jax
import ml_collections
import numpy as np
import pytest

from gcflow_jax import data
from gcflow_jax.data import images, toy

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "benchmarks"))
from common import counting_compiles  # noqa: E402  pylint: disable=g-import-not-at-top


def _cfg(**kw):
  c = ml_collections.ConfigDict(dict(
      name="digits", image_size=0, channels=0, npz_path="", tfds_data_dir="",
      split="train", offline_fallback="error", toy_param=0.0, dim=2))
  c.update(kw)
  return c


def test_digits_range_and_shape():
  ds = data.make_dataset(_cfg(), seed=0)
  assert ds.shape == (8, 8, 1) and ds.size == 1797
  x = ds.global_batch(0, 64)
  assert x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
  assert x.min() == -1.0 and x.max() == 1.0


def test_batches_are_a_function_of_the_step_and_split_per_host():
  ds = data.make_dataset(_cfg(), seed=3)
  b = ds.global_batch(5, 16)
  np.testing.assert_array_equal(b, ds.global_batch(5, 16))
  assert not np.array_equal(b, ds.global_batch(6, 16))
  parts = [ds.local_batch(5, 16, i, 4) for i in range(4)]
  np.testing.assert_array_equal(np.concatenate(parts), b)


def test_epochs_cover_the_dataset_once():
  ds = data.make_dataset(_cfg(), seed=0)
  idx = np.concatenate([ds._indices(s, 599) for s in range(3)])  # 1797
  assert sorted(idx.tolist()) == list(range(1797))


def test_toy_batches_deterministic():
  ds = data.make_dataset(_cfg(name="moons"), seed=0)
  np.testing.assert_array_equal(ds.global_batch(2, 8), ds.global_batch(2, 8))
  np.testing.assert_array_equal(ds.local_batch(2, 8, 1, 2),
                                ds.global_batch(2, 8)[4:])


def test_toy_datasets_share_compiled_draws_and_keep_their_streams():
  """Datasets of one toy share one compiled sampler (no compile for a second
  dataset), while each keeps its own key: the draw is
  toy.sample(fold_in(key(seed'), step)) with seed' the dataset's seed."""
  a = data.make_dataset(_cfg(name="checkerboard"), seed=11)
  a.global_batch(3, 24)
  b = data.make_dataset(_cfg(name="checkerboard"), seed=12)
  with counting_compiles() as n:
    xb = b.global_batch(3, 24)
  assert n[0] == 0
  expect = toy.sample("checkerboard", jax.random.fold_in(
      jax.random.key(b.seed), 3), 24, 0.0, 2)
  np.testing.assert_array_equal(xb, np.asarray(expect))
  assert not np.array_equal(xb, a.global_batch(3, 24))


def test_resize_center_crop():
  img = np.arange(6 * 10, dtype=np.uint8).reshape(6, 10, 1)
  out = images.resize_center_crop(img, 3)
  assert out.shape == (3, 3, 1)
  const = np.full((40, 60, 3), 77, np.uint8)
  np.testing.assert_array_equal(images.resize_center_crop(const, 32), 77)


def test_missing_tfds_dataset_is_a_clear_error(tmp_path):
  with pytest.raises(images.DatasetUnavailableError,
                     match=r"not prepared.*tfds build cifar10"):
    images.load_uint8("cifar10", tfds_data_dir=str(tmp_path))


def test_offline_fallback_resizes_and_says_so(tmp_path):
  x, src = images.load_uint8("cifar10", image_size=32,
                             tfds_data_dir=str(tmp_path),
                             offline_fallback="digits")
  assert x.shape == (1797, 32, 32, 3)
  assert "offline fallback for cifar10" in src and "digits" in src


def test_npz_source(tmp_path):
  arr = np.random.default_rng(0).uniform(-1, 1, (10, 4, 4, 3)).astype(
      np.float32)
  np.savez(tmp_path / "d.npz", x=arr)
  ds = data.make_dataset(_cfg(name="npz", npz_path=str(tmp_path / "d.npz")),
                         seed=0)
  assert ds.shape == (4, 4, 3)
  np.testing.assert_allclose(np.sort(ds.global_batch(0, 10).ravel()),
                             np.sort(arr.ravel()), atol=1 / 127.5)
  np.savez(tmp_path / "bad.npz", x=np.zeros((3, 5, 5, 2)))
  with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
    data.make_dataset(_cfg(name="npz", npz_path=str(tmp_path / "bad.npz")),
                      seed=0)


def test_mnist_test_set_from_shared_data():
  try:
    x, src = images.load_uint8("mnist_test")
  except images.DatasetUnavailableError:
    pytest.skip("../shared/data/mnist not present")
  assert x.shape == (10000, 28, 28, 1) and x.dtype == np.uint8


def test_npz_vectors_are_served_as_they_are(tmp_path):
  # A user's own 2-D point cloud: batches are exact rows of the file (no
  # rescaling), every row once per epoch, and the config check sees vectors.
  pts = np.random.default_rng(1).normal(size=(12, 2)).astype(np.float64) * 3
  np.savez(tmp_path / "pts.npz", x=pts)
  cfg = _cfg(name="npz", npz_path=str(tmp_path / "pts.npz"))
  ds = data.make_dataset(cfg, seed=0)
  assert ds.kind == "vector" and ds.shape == (2,) and ds.size == 12
  assert data.data_kind(cfg) == "vector" and data.data_shape(cfg) == (2,)
  epoch = np.concatenate([ds.global_batch(s, 4) for s in range(3)])
  np.testing.assert_array_equal(
      np.sort(epoch, axis=0), np.sort(pts.astype(np.float32), axis=0))
  assert ds.global_batch(0, 4).dtype == np.float32


@pytest.mark.parametrize("arr, match", [
    (np.array([[0.0, np.nan], [1.0, 2.0]]), "non-finite"),
    (np.zeros((1, 2)), "at least 2"),
    (np.zeros((4, 0)), "D >= 1"),
    (np.zeros((3, 4, 4, 2)), r"\[N, D\].*C in \(1, 3\)"),
    (np.zeros((3, 2, 2, 2, 1)), r"\[N, D\]"),
    (np.array([["a", "b"], ["c", "d"]]), "dtype"),
    (np.full((3, 4, 4), 7.0), r"\[-1, 1\] or \[0, 1\]"),
])
def test_npz_bad_arrays_name_the_field(tmp_path, arr, match):
  np.savez(tmp_path / "bad.npz", x=arr)
  with pytest.raises(ValueError, match=match) as e:
    data.make_dataset(_cfg(name="npz", npz_path=str(tmp_path / "bad.npz")),
                      seed=0)
  assert "data.npz_path" in str(e.value)


def test_npz_unreadable_files_name_the_field(tmp_path):
  (tmp_path / "junk.npz").write_bytes(b"not a zip archive at all")
  with pytest.raises(ValueError, match="data.npz_path.*not a readable"):
    data.make_dataset(_cfg(name="npz", npz_path=str(tmp_path / "junk.npz")),
                      seed=0)
  np.save(tmp_path / "single.npy", np.zeros((3, 2)))
  with pytest.raises(ValueError, match="data.npz_path.*np.savez"):
    data.make_dataset(_cfg(name="npz", npz_path=str(tmp_path / "single.npy")),
                      seed=0)
  with pytest.raises(FileNotFoundError, match="data.npz_path"):
    data.make_dataset(_cfg(name="npz", npz_path=str(tmp_path / "no.npz")),
                      seed=0)


def test_npz_vectors_refuse_image_fields(tmp_path):
  np.savez(tmp_path / "pts.npz", x=np.zeros((4, 2)))
  cfg = _cfg(name="npz", npz_path=str(tmp_path / "pts.npz"), image_size=32)
  with pytest.raises(ValueError, match="data.image_size and data.channels"):
    data.make_dataset(cfg, seed=0)


def test_npz_is_read_once_per_file_version(tmp_path, monkeypatch):
  from gcflow_jax.data import npz  # pylint: disable=g-import-not-at-top
  reads = []
  real = npz._read
  monkeypatch.setattr(npz, "_read", lambda p: reads.append(p) or real(p))
  npz._load.cache_clear()
  path = tmp_path / "pts.npz"
  np.savez(path, x=np.zeros((4, 2)))
  cfg = _cfg(name="npz", npz_path=str(path))
  assert data.data_kind(cfg) == "vector"
  assert data.data_shape(cfg) == (2,)
  assert data.make_dataset(cfg, seed=0).shape == (2,)
  assert len(reads) == 1
  np.savez(path, x=np.ones((5, 3)))   # a new version of the file is re-read
  assert data.make_dataset(cfg, seed=0).shape == (3,)
  assert len(reads) == 2
