"""Sample arrays in: validation, the image protocol's preprocessing, files.

``validate_samples`` says whether an array is images or vectors (or raises a
clear error), ``preprocess_images`` maps images to the standard protocol's
pixel values, and the file helpers read ``.npy``/``.npz`` arrays and
reference-statistics files (and write the latter atomically). Re-exported by
`gcflow_jax.evaluation.evaluate`.
"""

from __future__ import annotations

import os
import warnings
import zipfile
import zlib
from typing import Any, Mapping, Union

import numpy as np

from gcflow_jax import run_record

__all__ = [
    "RANGE_TOLERANCE",
    "validate_samples",
    "preprocess_images",
    "read_numpy_file",
    "load_array",
    "load_reference",
    "load_stats",
    "save_stats",
]

# Float images may exceed [-1, 1] by this much before we call it a range error
# (they are clipped, as in the standard protocol).
RANGE_TOLERANCE = 0.5


# --------------------------------------------------------------------------
# Validation and preprocessing.
# --------------------------------------------------------------------------
def validate_samples(x: Any, name: str = "samples", *,
                     range_tolerance: float = RANGE_TOLERANCE
                     ) -> tuple[np.ndarray, str]:
  """Checks an array of samples and says what it is.

  Args:
    x: ``[N, H, W, C]`` images (``C`` in {1, 3}; uint8 in [0, 255] or float in
      [-1, 1]) or ``[N, D]`` float vectors.
    name: argument name used in error messages.
    range_tolerance: float images may exceed ``[-1, 1]`` by this much (they
      are clipped later).

  Returns:
    ``(array, kind)`` with ``kind`` in {"images", "vectors"}.

  Raises:
    ValueError: wrong rank / channels / dtype, NaN or inf, out-of-range
      image values, fewer than 2 samples.
  """
  x = np.asarray(x)
  if x.dtype == object or not (np.issubdtype(x.dtype, np.floating)
                               or x.dtype == np.uint8):
    raise ValueError(f"{name} must be float (or uint8 images); got dtype "
                     f"{x.dtype}")
  if x.ndim == 4 and x.shape[-1] in (1, 3):
    kind = "images"
  elif x.ndim == 2:
    kind = "vectors"
    if x.dtype == np.uint8:
      raise ValueError(f"{name}: uint8 is only accepted for images "
                       f"[N,H,W,C]; got vectors of shape {x.shape}")
  else:
    raise ValueError(f"{name} must be [N,H,W,C] images with C in {{1,3}} or "
                     f"[N,D] vectors; got shape {x.shape}")
  if x.shape[0] < 2:
    raise ValueError(f"{name}: need at least 2 samples; got {x.shape[0]}")
  if x.dtype != np.uint8:
    bad = ~np.isfinite(x)
    if bad.any():
      n_bad = int(bad.reshape(x.shape[0], -1).any(axis=1).sum())
      raise ValueError(f"{name} contains NaN/inf values in {n_bad} of "
                       f"{x.shape[0]} samples")
    if kind == "images":
      lo, hi = float(x.min()), float(x.max())
      if lo < -1 - range_tolerance or hi > 1 + range_tolerance:
        raise ValueError(
            f"{name}: float images must lie in [-1, 1] (values up to "
            f"{range_tolerance} outside are clipped); got range [{lo:.4g}, "
            f"{hi:.4g}]. Pass uint8 for [0, 255] images, or map [0, 1] "
            "images with 2 * x - 1.")
      if lo >= 0.0 and hi <= 1.0:
        warnings.warn(f"{name}: float images lie in [0, 1]; they are read as "
                      "[-1, 1] images (so they look washed out). Map them with "
                      "2 * x - 1 if they are [0, 1] images.", stacklevel=2)
  return x, kind


def preprocess_images(x: np.ndarray, quantize: bool = True) -> np.ndarray:
  """Images -> the standard protocol's pixel values.

  Args:
    x: ``[N, H, W, C]`` uint8, or float in ``[-1, 1]``.
    quantize: round to the uint8 grid (standard) or keep continuous values.

  Returns:
    ``uint8 [N, H, W, C]`` (quantize, or uint8 input) or ``float32`` in
    ``[0, 255]``.
  """
  if x.dtype == np.uint8:
    return x
  v = (np.clip(x.astype(np.float32), -1.0, 1.0) + 1.0) * 127.5
  if quantize:
    return np.round(v).astype(np.uint8)
  return v


def _pixels_to_unit(x: np.ndarray) -> np.ndarray:
  """``[0, 255]`` pixels (uint8 or float) -> float32 in ``[-1, 1]``."""
  return x.astype(np.float32) / 127.5 - 1.0


# --------------------------------------------------------------------------
# Files.
# --------------------------------------------------------------------------
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
# What np.load and zipfile raise on a damaged or foreign file.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError,
                KeyError)


def read_numpy_file(path: str, name: str = "samples"
                    ) -> Union[np.ndarray, dict[str, np.ndarray]]:
  """Reads a ``.npy`` (-> array) or ``.npz`` (-> dict of arrays) file.

  Every failure is one ``FileNotFoundError`` / ``ValueError`` line that starts
  with ``name`` (the argument the path came from): a missing path or a
  directory, a file that is not NumPy's (checked by its magic bytes, not its
  extension), a truncated or corrupt archive, pickled objects (never loaded).

  Args:
    path: the file.
    name: argument name for messages (e.g. ``"--reference"``).

  Returns:
    The array of an ``.npy``, or ``{member: array}`` of an ``.npz``.
  """
  if os.path.isdir(path):
    raise ValueError(f"{name}: {path!r} is a directory, not a .npy/.npz file")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{name}: no file at {path!r}")
  with open(path, "rb") as f:
    head = f.read(len(_NPY_MAGIC))
  if head != _NPY_MAGIC and not head.startswith(_ZIP_MAGIC):
    raise ValueError(f"{name}: {path!r} is not a NumPy .npy/.npz file (its "
                     f"first bytes are {head!r})")
  try:
    if head == _NPY_MAGIC:
      return np.load(path, allow_pickle=False)
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  except _READ_ERRORS as e:
    kind = ".npy" if head == _NPY_MAGIC else ".npz"
    msg = " ".join(str(e).split())
    raise ValueError(f"{name}: cannot read {path!r} as a {kind} file "
                     f"({type(e).__name__}: {msg})") from e


def _array_of(z: Union[np.ndarray, dict[str, np.ndarray]], path: str,
              name: str) -> np.ndarray:
  if isinstance(z, np.ndarray):
    return z
  if "samples" in z:
    return z["samples"]
  if len(z) == 1:
    return next(iter(z.values()))
  raise ValueError(f"{name}: {path} must hold an array under 'samples' or a "
                   f"single array; found keys {sorted(z)}")


def load_array(path: str, name: str = "samples") -> np.ndarray:
  """Reads an array: ``.npy``, or ``.npz`` (key ``samples`` or one array)."""
  return _array_of(read_numpy_file(path, name), path, name)


def load_stats(path: str, name: str = "reference") -> dict[str, Any]:
  """Reads a reference-statistics ``.npz`` (``mu``, ``sigma`` [, ``features``]).

  Files from pytorch-fid / the TTUR FID code (``mu``, ``sigma`` only) are read
  as Inception pool_3 statistics.
  """
  return _stats_of(read_numpy_file(path, name), path, name)


def _stats_of(st: Union[np.ndarray, dict[str, np.ndarray]], path: str,
              name: str) -> dict[str, Any]:
  if not isinstance(st, dict) or "mu" not in st or "sigma" not in st:
    found = sorted(st) if isinstance(st, dict) else "a single .npy array"
    raise ValueError(f"{name}: {path} is not a statistics file (needs 'mu' "
                     f"and 'sigma'; found {found})")
  st = dict(st)
  meta = {}
  for k in ("extractor", "protocol", "quantize", "num_samples",
            "weights_sha256"):
    if k in st:
      v = st.pop(k)
      meta[k] = v.item() if v.ndim == 0 else v.tolist()
  st.update(meta)
  st.setdefault("extractor", "inception")
  st["path"] = path
  return st


def save_stats(stats: Mapping[str, Any], path: str) -> None:
  """Writes stats atomically (``path`` gets the arrays and metadata)."""
  out = {k: np.asarray(v) for k, v in stats.items()
         if v is not None and k != "path"}
  with run_record.atomic_open(path, "wb") as f:
    np.savez(f, **out)


def load_reference(path: str, name: str = "reference"
                   ) -> Union[np.ndarray, dict[str, Any]]:
  """A reference ``.npz``: statistics (``mu``/``sigma``) or an array."""
  z = read_numpy_file(path, name)
  if isinstance(z, dict) and "mu" in z and "sigma" in z:
    return _stats_of(z, path, name)
  return _array_of(z, path, name)

