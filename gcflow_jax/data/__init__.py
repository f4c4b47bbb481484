"""Datasets: toy samplers and in-memory image sources, batched by step.

`make_dataset(data_cfg, seed)` returns a `Dataset` whose batches are a pure
function of the step: `local_batch(step, global_batch, process_index,
process_count)` gives this host's slice of the global batch of `step`, so a
resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional, Tuple

import jax
import numpy as np

from gcflow_jax.data import images, npz, toy

__all__ = ["Dataset", "make_dataset", "DATASETS", "data_shape", "data_kind"]

DATASETS = toy.TOYS + images.IMAGE_SOURCES


@dataclasses.dataclass
class Dataset:
  """A data source. `kind` is 'vector' ([D]) or 'image' ([H, W, C])."""

  name: str
  kind: str
  shape: Tuple[int, ...]
  source: str
  seed: int
  _sampler: Optional[Callable[..., np.ndarray]] = None   # toy
  # In-memory examples: uint8 [N, H, W, C] images or float32 [N, D] vectors.
  _array: Optional[np.ndarray] = None

  @property
  def jax_sampled(self) -> bool:
    """Batches are drawn by a jitted JAX sampler (the toys), not read from
    host memory."""
    return self._sampler is not None

  @property
  def size(self) -> Optional[int]:
    return None if self._array is None else len(self._array)

  def _take(self, idx: np.ndarray) -> np.ndarray:
    x = self._array[idx]
    return images.to_float(x) if self.kind == "image" else x

  def _indices(self, step: int, batch: int) -> np.ndarray:
    """Global indices of `step`: epochs are seeded permutations (explicit
    Philox streams keyed by (seed, epoch); no global RNG)."""
    n = len(self._array)
    start = step * batch
    out = []
    while len(out) < batch:
      epoch, offset = divmod(start + len(out), n)
      perm = np.random.Generator(
          np.random.Philox(key=[self.seed, epoch])).permutation(n)
      out.extend(perm[offset:offset + batch - len(out)].tolist())
    return np.asarray(out)

  def global_batch(self, step: int, batch: int) -> np.ndarray:
    if self._sampler is not None:
      return self._sampler(step, batch)
    return self._take(self._indices(step, batch))

  def local_batch(self, step: int, batch: int, process_index: int = 0,
                  process_count: int = 1) -> np.ndarray:
    """This host's contiguous slice of the global batch of `step`."""
    per = batch // process_count
    lo = process_index * per
    if self._sampler is not None:
      return self._sampler(step, batch)[lo:lo + per]
    return self._take(self._indices(step, batch)[lo:lo + per])

  def reference(self, n: int) -> np.ndarray:
    """n reference samples for evaluation (fresh draws / the first n of a
    fixed permutation), float32."""
    if self._sampler is not None:
      return self._sampler(-1, n)
    idx = np.random.Generator(
        np.random.Philox(key=[self.seed, 2**31])).permutation(
            len(self._array))[:n]
    return self._take(idx)


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def _draw_toy(name, key, step, n, param, dim):
  # step = -1 is the evaluation stream (disjoint from training steps).
  return toy.sample(name, jax.random.fold_in(key, step), n, param, dim)


def _toy_sampler(name, param, dim, seed):
  # One module-level jit: every dataset of the same toy shares its compiled
  # draws (a closure per dataset recompiled them for every `make_dataset`,
  # 23 times in colab/reflow_alignment.ipynb's smoke run).
  key = jax.random.key(seed)
  param, dim = float(param), int(dim)

  def sampler(step, n):
    return np.asarray(_draw_toy(name, key, np.int32(step), int(n), param,
                                dim))

  return sampler


def make_dataset(data_cfg, seed: int) -> Dataset:
  """Builds the dataset named by `data_cfg.name` (see configs/base.py)."""
  name = data_cfg.name
  dseed = int(np.uint32(seed * 7919 + 17))
  if name in toy.TOYS:
    dim = int(data_cfg.dim) if name in ("gaussian", "two_diracs") else 2
    return Dataset(name=name, kind="vector", shape=(dim,),
                   source=f"{name} (toy sampler)", seed=dseed,
                   _sampler=_toy_sampler(name, data_cfg.toy_param, dim,
                                         dseed))
  if name == "npz":
    kind, x = npz.load(data_cfg.npz_path)
    if kind == "vector" and (data_cfg.image_size or data_cfg.channels):
      raise ValueError(
          f"data.npz_path={data_cfg.npz_path!r} holds vectors {x.shape}: "
          "data.image_size and data.channels must stay 0 (they are for "
          "images)")
    if kind == "vector":
      return Dataset(name=name, kind="vector", shape=tuple(x.shape[1:]),
                     source=f"npz ({data_cfg.npz_path}, {x.shape[0]} "
                     f"vectors of dim {x.shape[1]})", seed=dseed, _array=x)
    x = images.convert(x, data_cfg.image_size,
                       data_cfg.channels)
    return Dataset(name=name, kind="image", shape=tuple(x.shape[1:]),
                   source=f"npz ({data_cfg.npz_path})", seed=dseed, _array=x)
  if name in images.IMAGE_SOURCES:
    x, source = images.load_uint8(
        name, image_size=data_cfg.image_size, channels=data_cfg.channels,
        split=data_cfg.split, tfds_data_dir=data_cfg.tfds_data_dir,
        npz_path=data_cfg.npz_path,
        offline_fallback=data_cfg.offline_fallback)
    return Dataset(name=name, kind="image", shape=tuple(x.shape[1:]),
                   source=source, seed=dseed, _array=x)
  raise ValueError(f"data.name={name!r} is not one of {DATASETS}")


def data_shape(data_cfg) -> Tuple[int, ...]:
  """The per-example shape a config's data will have, without loading it
  when it can be known from the config alone."""
  name = data_cfg.name
  if name in toy.TOYS:
    return ((int(data_cfg.dim),) if name in ("gaussian", "two_diracs")
            else (2,))
  if name in images.NATIVE_SIZE:
    size = data_cfg.image_size or images.NATIVE_SIZE[name]
    native_c = 3 if name in ("cifar10", "imagenet32", "celeba64",
                             "lsun_church64") else 1
    return (size, size, data_cfg.channels or native_c)
  return make_dataset(data_cfg, 0).shape


def data_kind(data_cfg) -> str:
  """'vector' or 'image': toys are vectors, `npz` is what its file holds
  (read and validated here), every other source is images."""
  if data_cfg.name in toy.TOYS:
    return "vector"
  if data_cfg.name == "npz":
    return npz.load(data_cfg.npz_path)[0]
  return "image"
