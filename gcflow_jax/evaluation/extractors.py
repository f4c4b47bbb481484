"""Feature extractors (Inception-v3, the offline digit classifiers) applied
in fixed-size sharded batches, and the reference statistics computed with them.

Re-exported by `gcflow_jax.evaluation.evaluate`, which scores samples with
these features.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
import warnings
from typing import Any, Callable, Mapping, Union

import jax
import jax.numpy as jnp
import numpy as np

from gcflow_jax.evaluation import features as features_lib
from gcflow_jax.evaluation import inception as inception_lib
from gcflow_jax.evaluation.fid import gaussian_statistics
from gcflow_jax.evaluation.inputs import load_reference
from gcflow_jax.evaluation.inputs import load_stats
from gcflow_jax.evaluation.inputs import preprocess_images
from gcflow_jax.evaluation.inputs import save_stats
from gcflow_jax.evaluation.inputs import validate_samples

__all__ = [
    "EXTRACTORS",
    "DEFAULT_FID_SAMPLES",
    "DEFAULT_MAX_KID_FEATURES",
    "FeatureExtractor",
    "make_extractor",
    "compute_reference_stats",
]

EXTRACTORS = ("inception", "digits", "mnist")
DEFAULT_FID_SAMPLES = 50_000
FEATURE_DIMS = {"inception": inception_lib.POOL_DIM,
                **{k: v.feature_dim for k, v in features_lib.SPECS.items()}}
# Reference features kept in a stats file for KID (2048-d float32: 40 MB).
DEFAULT_MAX_KID_FEATURES = 5_000

Array = Union[np.ndarray, jax.Array]


def _check_fd_size(n: int, d: int, metric: str) -> None:
  if n < d + 1:
    raise ValueError(f"{metric}: need at least D + 1 = {d + 1} samples for a "
                     f"full-rank {d}-d feature covariance; got {n}. (The "
                     f"standard FID protocol uses {DEFAULT_FID_SAMPLES}.)")


# --------------------------------------------------------------------------
# Batched, sharded feature extraction.
# --------------------------------------------------------------------------
class Progress:
  """A line to stderr every ``every`` steps (and at the end) for long runs."""

  def __init__(self, total: int, desc: str, enabled: bool, every: int = 10):
    self.total, self.desc, self.enabled = total, desc, enabled
    self.every = max(1, every)
    self.t0 = time.time()
    self.done_items = 0

  def update(self, i: int, items: int) -> None:
    self.done_items += items
    if not self.enabled or ((i + 1) % self.every and i + 1 != self.total):
      return
    dt = time.time() - self.t0
    rate = self.done_items / max(dt, 1e-9)
    eta = dt / (i + 1) * (self.total - i - 1)
    print(f"[gcflow_jax.evaluation] {self.desc}: {i + 1}/{self.total} "
          f"batches, {rate:.1f}/s, elapsed {dt:.0f}s, eta {eta:.0f}s",
          file=sys.stderr, flush=True)


@dataclasses.dataclass
class FeatureExtractor:
  """A network applied in fixed-size batches over all local devices.

  Batches are padded to a fixed size (one compilation) that is a multiple of
  the device count; with more than one device each batch is sharded over a
  1-D mesh ``('data',)`` with ``NamedSharding`` and the variables are
  replicated. Returns host NumPy arrays.
  """

  name: str
  apply_fn: Callable[[Any, jax.Array], dict[str, jax.Array]]
  variables: Any
  batch_size: int = 200
  dim: int = 0
  progress: bool | None = None
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    devices = jax.local_devices()
    n = len(devices)
    self.batch_size = int(math.ceil(self.batch_size / n) * n)
    if n > 1:
      mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
      self._in = jax.sharding.NamedSharding(mesh,
                                            jax.sharding.PartitionSpec("data"))
      rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
      self.variables = jax.device_put(self.variables, rep)
    else:
      self._in = devices[0]
      self.variables = jax.device_put(self.variables, devices[0])
    self._jit = jax.jit(self.apply_fn)

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """``[N, H, W, C]`` pixels in [0, 255] (uint8 or float) -> outputs."""
    n = images.shape[0]
    bs = self.batch_size
    nb = int(math.ceil(n / bs))
    prog = Progress(nb, f"{self.name} features ({n} images)",
                     self.progress if self.progress is not None else nb >= 20)
    outs: dict[str, list[np.ndarray]] = {}
    for i in range(nb):
      xb = images[i * bs:(i + 1) * bs]
      m = xb.shape[0]
      if m < bs:  # pad the last batch: a single compiled shape
        xb = np.concatenate([xb, np.repeat(xb[-1:], bs - m, axis=0)])
      xb = jax.device_put(np.asarray(xb, np.float32), self._in)
      res = self._jit(self.variables, xb)
      for k, v in res.items():
        outs.setdefault(k, []).append(np.asarray(v)[:m])
      prog.update(i, m)
    return {k: np.concatenate(v) for k, v in outs.items()}


@functools.lru_cache(maxsize=None)
def _inception_apply(protocol: str) -> Callable[[Any, jax.Array],
                                                 dict[str, jax.Array]]:
  # One function object per protocol: jax.jit caches compilations per
  # function, so every extractor (each evaluate/fid call) reuses them.
  model = inception_lib.InceptionV3(protocol=protocol)

  def apply_inception(v, x):
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    out = model.apply(v, x)
    return {"pool": out["pool"], "logits_unbiased": out["logits_unbiased"]}

  return apply_inception


def make_extractor(name: str, *, inception_weights: str | None = None,
                   protocol: str = "pytorch_fid", batch_size: int = 200,
                   progress: bool | None = None,
                   variables: Any = None) -> FeatureExtractor:
  """Builds a feature extractor.

  Args:
    name: ``"inception"`` (outputs ``pool`` [N, 2048] and ``logits_unbiased``
      [N, 1008]), ``"digits"`` or ``"mnist"`` (output ``pool`` [N, 64]).
    inception_weights: converted ``.npz`` (else ``$GCFLOW_INCEPTION_WEIGHTS``).
    protocol: Inception resize/normalisation protocol (``"pytorch_fid"`` or
      ``"tf_fid"``).
    batch_size: images per device step (rounded up to the device count).
    progress: print progress lines (default: only for >= 20 batches).
    variables: override the weights (tests/benchmarks with random weights).

  Returns:
    A `FeatureExtractor` taking ``[N, H, W, C]`` pixels in [0, 255].
  """
  if name == "inception":
    info = {}
    if variables is None:
      path = inception_lib.resolve_weights_path(inception_weights)
      variables = inception_lib.load_variables(path)
      info = {"weights": path}
    return FeatureExtractor("inception", _inception_apply(protocol), variables,
                            batch_size, inception_lib.POOL_DIM, progress,
                            dict(info, protocol=protocol))
  if name in features_lib.SPECS:
    spec, loaded, info = features_lib.load_classifier(name)
    variables = loaded if variables is None else variables
    module = spec.module()

    def apply_classifier(v, x):
      x = features_lib.to_classifier_input(x / 127.5 - 1.0, spec.size)
      feats, logits = module.apply(v, x)
      return {"pool": feats, "logits": logits}

    return FeatureExtractor(name, apply_classifier, variables, batch_size,
                            spec.feature_dim, progress, info)
  raise ValueError(f"extractor must be one of {EXTRACTORS}; got {name!r}")


def _stats_from_features(feats: np.ndarray, extractor: str,
                         max_kid_features: int, meta: Mapping[str, Any]
                         ) -> dict[str, Any]:
  mu, sigma = gaussian_statistics(feats)
  keep = feats
  if feats.shape[0] > max_kid_features:
    idx = np.linspace(0, feats.shape[0] - 1, max_kid_features).astype(int)
    keep = feats[idx]
  return dict(meta, mu=mu, sigma=sigma, features=keep.astype(np.float32),
              extractor=extractor, num_samples=int(feats.shape[0]))


def compute_reference_stats(
    images: Array, extractor: str = "inception", *,
    cache: str | None = None, quantize: bool = True,
    protocol: str = "pytorch_fid", inception_weights: str | None = None,
    batch_size: int = 200, max_kid_features: int = DEFAULT_MAX_KID_FEATURES,
    progress: bool | None = None,
    _extractor: FeatureExtractor | None = None) -> dict[str, Any]:
  """Feature statistics of a reference set, computed once and cached.

  Args:
    images: ``[N, H, W, C]`` reference images (uint8 or [-1, 1] floats; they
      go through the same `preprocess_images` as samples).
    extractor: ``"inception"``, ``"digits"`` or ``"mnist"``.
    cache: ``.npz`` path; loaded if it exists (and matches ``extractor``,
      ``protocol``, ``quantize``), written otherwise.
    quantize: see `preprocess_images`.
    protocol: Inception protocol.
    inception_weights: converted weights path.
    batch_size: extraction batch size.
    max_kid_features: reference features kept for KID (evenly spaced).
    progress: progress lines.

  Returns:
    dict with ``mu [D]``, ``sigma [D, D]``, ``features [<=K, D]``,
    ``extractor``, ``num_samples``, ``protocol``, ``quantize``.
  """
  if cache is not None and os.path.isfile(cache):
    st = load_stats(cache)
    _check_stats_meta(st, extractor, protocol, quantize)
    return st
  x, kind = validate_samples(images, "reference")
  if kind != "images":
    raise ValueError(f"reference stats need images [N,H,W,C]; got {x.shape}")
  ext = _extractor or make_extractor(
      extractor, inception_weights=inception_weights, protocol=protocol,
      batch_size=batch_size, progress=progress)
  _check_fd_size(x.shape[0], ext.dim, "reference statistics")
  feats = ext(preprocess_images(x, quantize))["pool"]
  meta = {"quantize": bool(quantize)}
  if extractor == "inception":
    meta["protocol"] = protocol
  st = _stats_from_features(feats, extractor, max_kid_features, meta)
  if cache is not None:
    save_stats(st, cache)
    st["path"] = cache
  return st


def _check_stats_meta(st: Mapping[str, Any], extractor: str,
                      protocol: str | None, quantize: bool | None) -> None:
  where = st.get("path", "reference stats")
  if st.get("extractor", "inception") != extractor:
    raise ValueError(f"{where} holds {st.get('extractor')} statistics; the "
                     f"requested metric needs {extractor} statistics")
  if extractor == "inception" and protocol is not None and st.get(
      "protocol", protocol) != protocol:
    warnings.warn(f"{where} was computed with protocol {st['protocol']!r}, "
                  f"samples use {protocol!r}: scores are not comparable",
                  stacklevel=3)
  if quantize is not None and st.get("quantize", quantize) != quantize:
    warnings.warn(f"{where} was computed with quantize={st['quantize']}, "
                  f"samples use quantize={quantize}", stacklevel=3)


def _as_stats(reference: Any, ext: FeatureExtractor, *, protocol: str,
              quantize: bool) -> dict[str, Any]:
  """Reference (stats dict / path / images) -> stats for ``ext``."""
  if isinstance(reference, (str, os.PathLike)):
    reference = load_reference(os.fspath(reference))
  if isinstance(reference, Mapping):
    st = dict(reference)
    if "mu" not in st or "sigma" not in st:
      raise ValueError("reference stats need 'mu' and 'sigma'; got keys "
                       f"{sorted(st)}")
    st.setdefault("extractor", "inception")
    _check_stats_meta(st, ext.name, protocol, quantize)
    if np.shape(st["mu"]) != (ext.dim,):
      raise ValueError(f"reference mu has shape {np.shape(st['mu'])}; "
                       f"{ext.name} features are {ext.dim}-d")
    return st
  return compute_reference_stats(reference, ext.name, quantize=quantize,
                                 protocol=protocol, _extractor=ext)

