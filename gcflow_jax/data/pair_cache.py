"""On-disk cache of teacher reflow pairs, written in shards.

Reflow needs the teacher ODE integrated from noise for every pair; for large
runs it pays to do this once. A cache directory holds

  meta.json              what was generated (knots, teacher workdir,
                         checkpoint step and ODE steps/method, data shape,
                         layout, `complete`); a request that differs in any
                         of them (e.g. a teacher trained further) is refused
                         with the differing fields named
  shard_00000.npy ...    float32 [n, F] rows, one teacher trajectory per row:
                         states [K + 1, *shape] (at the knots) |
                         delta_logp [K] (log-density change per interval)
                         (F = (K + 1) D + K)

Each shard is written to a temporary name with `np.save` and moved into place
with `os.replace` (atomic on POSIX), so a crash never leaves a half-written
shard; generation resumes at the first missing shard, and shard i's noise is
`fold_in(key, i)`, so a resumed cache equals an uninterrupted one. `meta.json`
is rewritten (atomically) with `complete: true` last.

This module knows nothing about reflow (it sits below `gcflow_jax.methods`):
`segments_fn` is supplied by the caller, e.g. `methods.reflow.
ensure_teacher_cache`. Integration with the trainer: the trainer's batches
carry data only, so the reflow method generates/opens the cache in
`from_config` (host, before
anything is compiled) and `init` places up to `reflow.cache_buffer` pairs in
`extras['pairs']` (replicated and checkpointed with the state); the loss
gathers random rows from it with the step key. For caches larger than device
memory use `PairCache.batches` in a custom loop (host-side iterator of
shuffled row batches).
"""

from __future__ import annotations

import json
import math
import os
from typing import Callable, Dict, Iterator, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from gcflow_jax import run_record

__all__ = ["PairCache", "generate", "write_shard", "FIELDS"]

FIELDS = ("states", "delta_logp")
_FORMAT = 2


def _layout(num_intervals: int, data_shape: Tuple[int, ...]):
  """name -> (offset, per-row shape) in the flat row."""
  d = math.prod(data_shape)
  k = num_intervals
  shapes = {"states": (k + 1,) + tuple(data_shape), "delta_logp": (k,)}
  sizes = {"states": (k + 1) * d, "delta_logp": k}
  out, off = {}, 0
  for name in FIELDS:
    out[name] = (off, shapes[name])
    off += sizes[name]
  return out, off


def _atomic_write_json(path: str, obj) -> None:
  with run_record.atomic_open(path) as f:
    json.dump(obj, f, indent=1, sort_keys=True)


def write_shard(directory: str, index: int, rows: np.ndarray) -> str:
  """Writes `rows` [n, F] as shard `index` atomically; returns its path."""
  path = os.path.join(directory, f"shard_{index:05d}.npy")
  with run_record.atomic_open(path, "wb") as f:
    np.save(f, np.ascontiguousarray(rows, np.float32))
  return path


def _read_meta(directory: str) -> Optional[dict]:
  path = os.path.join(directory, "meta.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


class PairCache:
  """Read access to a complete cache directory (memory-mapped shards)."""

  def __init__(self, directory: str):
    meta = _read_meta(directory)
    if meta is None or not meta.get("complete"):
      raise FileNotFoundError(f"{directory!r} holds no complete pair cache")
    self.directory = directory
    self.meta = meta
    self.num_intervals = int(meta["num_intervals"])
    self.data_shape = tuple(meta["data_shape"])
    self._layout, self._width = _layout(self.num_intervals, self.data_shape)
    self._shards = [
        np.load(os.path.join(directory, f"shard_{i:05d}.npy"), mmap_mode="r")
        for i in range(int(meta["num_shards"]))]
    for i, s in enumerate(self._shards):
      if s.ndim != 2 or s.shape[1] != self._width:
        raise ValueError(f"shard {i} of {directory!r} has shape {s.shape}, "
                         f"expected [n, {self._width}]")
    self._starts = np.cumsum([0] + [len(s) for s in self._shards])
    self.num_pairs = int(self._starts[-1])

  def _rows(self, indices: np.ndarray) -> np.ndarray:
    indices = np.asarray(indices, np.int64)
    if indices.size and (indices.min() < 0 or
                         indices.max() >= self.num_pairs):
      raise IndexError(f"pair index out of range [0, {self.num_pairs})")
    shard = np.searchsorted(self._starts, indices, side="right") - 1
    out = np.empty((len(indices), self._width), np.float32)
    for s in np.unique(shard):
      m = shard == s
      out[m] = self._shards[s][indices[m] - self._starts[s]]
    return out

  def _split(self, rows: np.ndarray) -> Dict[str, np.ndarray]:
    n = rows.shape[0]
    out = {}
    for name, (off, shape) in self._layout.items():
      size = math.prod(shape)
      out[name] = rows[:, off:off + size].reshape((n,) + shape)
    return out

  def read(self, indices) -> Dict[str, np.ndarray]:
    """Rows `indices` as {'states' [n, K+1, ...], 'delta_logp' [n, K]}
    (float32)."""
    return self._split(self._rows(indices))

  def load(self, max_pairs: Optional[int] = None) -> Dict[str, np.ndarray]:
    """The first `max_pairs` (default all) pairs, in memory."""
    n = self.num_pairs if not max_pairs else min(max_pairs, self.num_pairs)
    return self.read(np.arange(n))

  def batches(self, batch_size: int, seed: int = 0
              ) -> Iterator[Dict[str, np.ndarray]]:
    """Endless shuffled batches; epoch e uses a Philox(seed, e) permutation
    (no global RNG), so the stream is a pure function of (seed, position)."""
    epoch, pos = 0, 0
    perm = np.random.Generator(np.random.Philox(key=[seed, 0])).permutation(
        self.num_pairs)
    while True:
      if pos + batch_size > self.num_pairs:
        epoch, pos = epoch + 1, 0
        perm = np.random.Generator(
            np.random.Philox(key=[seed, epoch])).permutation(self.num_pairs)
      yield self.read(np.sort(perm[pos:pos + batch_size]))
      pos += batch_size


def generate(directory: str, segments_fn: Callable, meta: dict,
             num_pairs: int, shard_size: int, key: jax.Array,
             chunk: int = 1024, verbose: bool = True,
             optional_keys: Tuple[str, ...] = ()) -> PairCache:
  """Generates (or resumes, or reuses) a cache of `num_pairs` pairs.

  Args:
    directory: cache directory (created).
    segments_fn: (key, n) -> {'states' [K + 1, n, ...], 'delta_logp'
      [K, n]} (e.g. `methods.reflow.teacher_segments`). Called with
      n <= `chunk` (pad-free: the last chunk is smaller).
    meta: what identifies the pairs (must include 'num_intervals' and
      'data_shape'); an existing cache with a different `meta` is an error.
    num_pairs, shard_size: total pairs and pairs per shard.
    key: root key; shard i uses fold_in(key, i), chunk j of it
      fold_in(fold_in(key, i), j).
    optional_keys: meta keys a *complete* existing cache may differ in
      (it holds more than asked for, e.g. Δ^T that a vanilla run ignores).
  Returns:
    the opened `PairCache`.
  """
  os.makedirs(directory, exist_ok=True)
  num_shards = -(-num_pairs // shard_size)
  want = dict(meta, format=_FORMAT, num_pairs=num_pairs,
              shard_size=shard_size, num_shards=num_shards)
  old = _read_meta(directory)
  if old is not None:
    skip = ("complete",) + (tuple(optional_keys) if old.get("complete")
                            else ())
    old_id = {k: v for k, v in old.items() if k not in skip}
    want_id = {k: v for k, v in json.loads(json.dumps(want)).items()
               if k not in skip}
    if old_id != want_id:
      diff = sorted(k for k in set(old_id) | set(want_id)
                    if old_id.get(k) != want_id.get(k))
      detail = "; ".join(f"{k}: cache {old_id.get(k)!r}, requested "
                         f"{want_id.get(k)!r}" for k in diff)
      raise ValueError(
          f"pair cache {directory!r} was generated with different settings "
          f"({detail}); remove it or use another reflow.cache_dir")
    if old.get("complete"):
      return PairCache(directory)
  _atomic_write_json(os.path.join(directory, "meta.json"),
                     dict(want, complete=False))
  k_int = int(meta["num_intervals"])
  shape = tuple(meta["data_shape"])
  layout, width = _layout(k_int, shape)
  for i in range(num_shards):
    path = os.path.join(directory, f"shard_{i:05d}.npy")
    n = min(shard_size, num_pairs - i * shard_size)
    if os.path.exists(path):
      arr = np.load(path, mmap_mode="r")
      if arr.shape == (n, width):
        continue                       # resumed: shard already complete
    k_shard = jax.random.fold_in(key, i)
    rows = []
    for j, lo in enumerate(range(0, n, chunk)):
      m = min(chunk, n - lo)
      segs = jax.device_get(segments_fn(jax.random.fold_in(k_shard, j), m))
      part = []
      for name in FIELDS:
        a = np.asarray(segs[name], np.float32)
        a = np.moveaxis(a, 1, 0)         # [K(+1), m, ...] -> [m, K(+1), ...]
        if a.shape[1:] != layout[name][1]:
          raise ValueError(f"segments_fn returned {name} with row shape "
                           f"{a.shape[1:]}, expected {layout[name][1]}")
        part.append(a.reshape(m, -1))
      rows.append(np.concatenate(part, axis=1))
    write_shard(directory, i, np.concatenate(rows))
    if verbose:
      print(f"[pair_cache] shard {i + 1}/{num_shards} ({n} pairs) -> "
            f"{path}", flush=True)
  _atomic_write_json(os.path.join(directory, "meta.json"),
                     dict(want, complete=True))
  return PairCache(directory)
