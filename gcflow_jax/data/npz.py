"""A user's own data from a local .npz: images [N, H, W, (C)] or vectors [N, D].

`data.name='npz'`, `data.npz_path=FILE.npz`. The array is stored under 'x'
(or is the file's only array). Its rank decides what it is:

  [N, D]           vectors (point clouds, tabular rows): float, any finite
                   values, used as they are (no rescaling), trained with the
                   MLP like the 2-D toys;
  [N, H, W]        grey images (a channel axis is added);
  [N, H, W, C]     images, C in (1, 3): uint8 [0, 255], or floats in [0, 1]
                   or [-1, 1], stored as uint8 and scaled to [-1, 1] per batch
                   like every other image source.

Every check runs when the dataset is built, before anything is compiled, and
names `data.npz_path` with the expected shapes and ranges.
"""

from __future__ import annotations

import functools
import os
import zipfile
from typing import Tuple

import numpy as np

__all__ = ["load", "KINDS"]

KINDS = ("vector", "image")
_SHAPES = "[N, D] (vectors) or [N, H, W] / [N, H, W, C] with C in (1, 3) (images)"


def _read(path: str) -> np.ndarray:
  if not path:
    raise ValueError("data.name='npz' needs data.npz_path=FILE.npz")
  if not os.path.exists(path):
    raise FileNotFoundError(f"data.npz_path={path!r} does not exist")
  if os.path.isdir(path):
    raise ValueError(f"data.npz_path={path!r} is a directory, not a .npz file")
  try:
    z = np.load(path, allow_pickle=False)
  except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
    # numpy's own messages here are misleading (e.g. "pickled data" for a
    # text file): say what was expected instead.
    raise ValueError(f"data.npz_path={path!r} is not a readable .npz archive "
                     f"({type(e).__name__}); save the data with "
                     "np.savez(path, x=x)") from None
  if not isinstance(z, np.lib.npyio.NpzFile):
    raise ValueError(f"data.npz_path={path!r} holds a single .npy array, "
                     "not a .npz archive: save it with np.savez(path, x=x)")
  with z:
    keys = list(z.keys())
    key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
    if key is None:
      raise ValueError(f"data.npz_path={path!r} holds {keys}: store the "
                       "data under 'x' (or as the only array)")
    try:
      return z[key]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
      raise ValueError(f"data.npz_path={path!r}: array {key!r} cannot be "
                       f"read ({type(e).__name__}: {e})") from None


def _images(x: np.ndarray) -> np.ndarray:
  if x.ndim == 3:
    x = x[..., None]
  if x.shape[-1] not in (1, 3) or min(x.shape[1:3]) < 1:
    raise ValueError(f"data.npz_path images must be {_SHAPES}; got "
                     f"{x.shape}")
  if x.dtype == np.uint8:
    return x
  lo, hi = float(x.min()), float(x.max())
  if lo >= -1.0 - 1e-3 and hi <= 1.0 + 1e-3 and lo < 0:
    return np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8)
  if lo >= 0 and hi <= 1.0 + 1e-6:
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
  raise ValueError(f"data.npz_path float images must lie in [-1, 1] or "
                   f"[0, 1] (or be uint8 in [0, 255]); got [{lo}, {hi}]")


def load(path: str) -> Tuple[str, np.ndarray]:
  """Reads and validates `path`.

  The config check, `data_shape` and the dataset each ask for the file; it
  is read once per (path, size, modification time): the last one is kept.

  Returns:
    ('vector', float32 [N, D]) or ('image', uint8 [N, H, W, C]) (shared:
    callers must not modify it in place).
  """
  if path and os.path.isfile(path):
    st = os.stat(path)
    return _load(os.path.abspath(path), st.st_size, st.st_mtime_ns)
  return _load(path, -1, -1)   # raises the missing-file / directory error


@functools.lru_cache(maxsize=1)
def _load(path: str, size: int, mtime_ns: int) -> Tuple[str, np.ndarray]:
  del size, mtime_ns  # cache key only
  x = _read(path)
  if x.dtype.kind not in "biuf":
    raise ValueError(f"data.npz_path array has dtype {x.dtype}; expected "
                     "numbers (uint8 images or floats)")
  if x.ndim not in (2, 3, 4):
    raise ValueError(f"data.npz_path array must be {_SHAPES}; got {x.shape}")
  if x.shape[0] < 2:
    raise ValueError(f"data.npz_path array holds {x.shape[0]} example(s); "
                     "need at least 2 along the first axis N")
  if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
    bad = int(np.sum(~np.isfinite(x)))
    raise ValueError(f"data.npz_path array has {bad} non-finite value(s) "
                     "(NaN or inf); every value must be finite")
  if x.ndim == 2:
    if x.shape[1] < 1:
      raise ValueError(f"data.npz_path vectors must be [N, D] with D >= 1; "
                       f"got {x.shape}")
    return "vector", x.astype(np.float32)
  return "image", _images(x)
