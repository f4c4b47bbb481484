"""Scoring samples: validation, feature extraction, reference stats, metrics.

Entry points:

* ``evaluate(samples_or_sample_fn, reference, metrics)`` -> flat dict of floats.
* ``fid(samples, reference_stats)``, ``kid(...)``, ``inception_score(...)``.
* ``compute_reference_stats(images, extractor)`` -> stats dict (cached as
  ``.npz`` with ``save_stats`` / ``cache=``).

Image protocol (the standard FID protocol; ``quantize=True`` by default):
float images are expected in ``[-1, 1]``; they are *clipped* to ``[-1, 1]``
(never min-max rescaled) and, with ``quantize=True``, rounded to the uint8 grid
``round((x + 1) * 127.5)`` exactly as images saved to PNG would be; ``uint8``
images are taken as is. ``quantize=False`` keeps the clipped continuous values
(``(x + 1) * 127.5`` in ``[0, 255]``): slightly different numbers, useful for
looking at sub-quantisation differences, not for comparison with papers.
Greyscale images are repeated to 3 channels for Inception.

Metric names: images with Inception (weights needed): ``fid``, ``kid``, ``is``;
images with the offline classifiers: ``fd_digits``, ``kid_digits``,
``fd_mnist``, ``kid_mnist``; vectors (or images, flattened): ``sinkhorn``,
``w2``, ``mmd``, ``energy``; 2-D vectors: ``kl_hist``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
import warnings
import zipfile
import zlib
from typing import Any, Callable, Mapping, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from gcflow_jax import run_record
from gcflow_jax.evaluation import distances
from gcflow_jax.evaluation import features as features_lib
# Not `from gcflow_jax.evaluation import fid`: the package attribute `fid` is
# the function defined below, which shadows the submodule.
from gcflow_jax.evaluation.fid import frechet_distance
from gcflow_jax.evaluation.fid import gaussian_statistics
from gcflow_jax.evaluation.fid import inception_score_from_logits
from gcflow_jax.evaluation.fid import kid_from_features
from gcflow_jax.evaluation import inception as inception_lib

__all__ = [
    "IMAGE_METRICS",
    "VECTOR_METRICS",
    "ALL_METRICS",
    "EXTRACTORS",
    "validate_samples",
    "preprocess_images",
    "read_numpy_file",
    "load_array",
    "load_reference",
    "load_stats",
    "save_stats",
    "FeatureExtractor",
    "make_extractor",
    "compute_reference_stats",
    "fid",
    "kid",
    "inception_score",
    "evaluate",
    "split_metrics",
]

# metric -> feature extractor
IMAGE_METRICS = {
    "fid": "inception", "kid": "inception", "is": "inception",
    "fd_digits": "digits", "kid_digits": "digits",
    "fd_mnist": "mnist", "kid_mnist": "mnist",
}
VECTOR_METRICS = ("sinkhorn", "w2", "mmd", "energy", "kl_hist")
ALL_METRICS = tuple(IMAGE_METRICS) + VECTOR_METRICS
EXTRACTORS = ("inception", "digits", "mnist")
DEFAULT_FID_SAMPLES = 50_000
DEFAULT_VECTOR_SAMPLES = 10_000
_FEATURE_DIMS = {"inception": inception_lib.POOL_DIM,
                 **{k: v.feature_dim for k, v in features_lib.SPECS.items()}}
# Reference features kept in a stats file for KID (2048-d float32: 40 MB).
DEFAULT_MAX_KID_FEATURES = 5_000
# Float images may exceed [-1, 1] by this much before we call it a range error
# (they are clipped, as in the standard protocol).
RANGE_TOLERANCE = 0.5

Array = Union[np.ndarray, jax.Array]
SampleFn = Callable[[jax.Array, int], Array]


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


# --------------------------------------------------------------------------
# Batched, sharded feature extraction.
# --------------------------------------------------------------------------
class _Progress:
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
    prog = _Progress(nb, f"{self.name} features ({n} images)",
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


# --------------------------------------------------------------------------
# Stand-alone metric functions.
# --------------------------------------------------------------------------
def _check_fd_size(n: int, d: int, metric: str) -> None:
  if n < d + 1:
    raise ValueError(f"{metric}: need at least D + 1 = {d + 1} samples for a "
                     f"full-rank {d}-d feature covariance; got {n}. (The "
                     f"standard FID protocol uses {DEFAULT_FID_SAMPLES}.)")


def _image_pixels(samples: Array, quantize: bool) -> np.ndarray:
  x, kind = validate_samples(samples, "samples")
  if kind != "images":
    raise ValueError(f"samples must be [N,H,W,C] images for this metric; got "
                     f"vectors of shape {x.shape}")
  return preprocess_images(x, quantize)


def fid(samples: Array, reference_stats: Any, *,
        inception_weights: str | None = None, protocol: str = "pytorch_fid",
        quantize: bool = True, batch_size: int = 200,
        extractor: str = "inception", progress: bool | None = None) -> float:
  """Fréchet Inception Distance of image samples to reference statistics.

  Args:
    samples: ``[N, H, W, C]`` images (uint8 or floats in [-1, 1]); ``N`` is
      50,000 in the standard protocol (FID is biased upwards for small N).
    reference_stats: dict / ``.npz`` path with ``mu``, ``sigma`` (e.g. from
      `compute_reference_stats`, pytorch-fid or TTUR), or reference images.
    inception_weights: converted weights (else ``$GCFLOW_INCEPTION_WEIGHTS``).
    protocol: ``"pytorch_fid"`` or ``"tf_fid"`` (see `inception`).
    quantize: uint8 quantisation of float samples (standard: True).
    batch_size: extraction batch size.
    extractor: ``"inception"`` (FID) or ``"digits"``/``"mnist"`` (offline FD).
    progress: progress lines.

  Returns:
    The FID.
  """
  ext = make_extractor(extractor, inception_weights=inception_weights,
                       protocol=protocol, batch_size=batch_size,
                       progress=progress)
  st = _as_stats(reference_stats, ext, protocol=protocol, quantize=quantize)
  pix = _image_pixels(samples, quantize)
  _check_fd_size(pix.shape[0], ext.dim, "fid")
  mu, sigma = gaussian_statistics(ext(pix)["pool"])
  return frechet_distance(mu, sigma, st["mu"], st["sigma"])


def kid(samples: Array, reference: Any, *, num_subsets: int = 100,
        subset_size: int = 1000, seed: int = 0,
        inception_weights: str | None = None, protocol: str = "pytorch_fid",
        quantize: bool = True, batch_size: int = 200,
        extractor: str = "inception", progress: bool | None = None
        ) -> tuple[float, float]:
  """Kernel Inception Distance: ``(mean, std)`` over subsets.

  Args are those of `fid` plus the KID subset protocol (``num_subsets``,
  ``subset_size``, NumPy ``seed``); ``reference`` must provide features
  (reference images, or stats from `compute_reference_stats`).
  """
  ext = make_extractor(extractor, inception_weights=inception_weights,
                       protocol=protocol, batch_size=batch_size,
                       progress=progress)
  st = _as_stats(reference, ext, protocol=protocol, quantize=quantize)
  if "features" not in st:
    raise ValueError("KID needs reference features; the reference stats hold "
                     "only mu/sigma. Recompute them with "
                     "compute_reference_stats or pass reference images.")
  feats = ext(_image_pixels(samples, quantize))["pool"]
  return kid_from_features(feats, st["features"],
                                    num_subsets=num_subsets,
                                    subset_size=subset_size, seed=seed)


def inception_score(samples: Array, *, splits: int = 10,
                    inception_weights: str | None = None,
                    protocol: str = "pytorch_fid", quantize: bool = True,
                    batch_size: int = 200, progress: bool | None = None
                    ) -> tuple[float, float]:
  """Inception Score (mean, std over ``splits`` chunks) of image samples."""
  ext = make_extractor("inception", inception_weights=inception_weights,
                       protocol=protocol, batch_size=batch_size,
                       progress=progress)
  logits = ext(_image_pixels(samples, quantize))["logits_unbiased"]
  return inception_score_from_logits(logits, splits)


# --------------------------------------------------------------------------
# evaluate().
# --------------------------------------------------------------------------
def _draw(sample_fn: SampleFn, key: jax.Array, n: int, batch: int,
          quantize: bool, progress: bool | None) -> tuple[np.ndarray, str]:
  """Calls ``sample_fn(key_i, batch)`` until ``n`` samples; validates each."""
  nb = int(math.ceil(n / batch))
  prog = _Progress(nb, f"sampling {n}", progress if progress is not None
                   else nb >= 20)
  chunks, kind = [], None
  for i in range(nb):
    m = min(batch, n - i * batch)
    out = np.asarray(jax.device_get(sample_fn(jax.random.fold_in(key, i), m)))
    if out.shape[0] != m:
      raise ValueError(f"sample_fn(key, {m}) returned {out.shape[0]} samples")
    out, k = validate_samples(out, "sample_fn output")
    if kind is not None and k != kind:
      raise ValueError("sample_fn returned inconsistent shapes")
    kind = k
    # Images are stored preprocessed (uint8 when quantising: 4x less memory).
    chunks.append(preprocess_images(out, quantize) if k == "images" else out)
    prog.update(i, m)
  return np.concatenate(chunks), kind


def _vectors(x: np.ndarray, kind: str) -> np.ndarray:
  if kind == "images":
    return _pixels_to_unit(x).reshape(x.shape[0], -1)
  return x.astype(np.float32)


def split_metrics(metrics: Union[str, Sequence[str]]) -> list[str]:
  """``"fid,kid"`` or a list -> checked, lower-case, de-duplicated names."""
  if isinstance(metrics, str):
    metrics = [m for m in metrics.split(",") if m.strip()]
  metrics = [m.strip().lower() for m in metrics]
  bad = [m for m in metrics if m not in ALL_METRICS]
  if bad or not metrics:
    raise ValueError(f"metrics must be a non-empty subset of {ALL_METRICS}; "
                     f"got {metrics}")
  return list(dict.fromkeys(metrics))


def evaluate(
    samples: Union[Array, SampleFn],
    reference: Any,
    metrics: Union[str, Sequence[str]] = ("fid",),
    *,
    num_samples: int | None = None,
    key: jax.Array | None = None,
    batch_size: int = 200,
    resamplings: int = 1,
    inception_weights: str | None = None,
    protocol: str = "pytorch_fid",
    quantize: bool = True,
    reference_cache: str | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    sinkhorn_epsilon: float | None = None,
    mmd_bandwidths: Sequence[float] | None = None,
    kl_bins: int = 50,
    kl_box: Any = None,
    progress: bool | None = None,
) -> dict[str, float]:
  """Scores samples (an array or a sampler) against a reference.

  Args:
    samples: ``[N, H, W, C]`` images / ``[N, D]`` vectors, or
      ``sample_fn(key, n) -> [n, ...]`` (called in chunks of ``batch_size``
      with ``fold_in(key, i)`` keys; wrap a method's
      ``sample_fn(params, key, num, steps)`` with ``functools.partial``).
    reference: reference samples (array or ``.npz`` path), or statistics
      (dict / ``.npz`` path with ``mu``, ``sigma`` and ``features`` for KID)
      for the image-feature metrics. ``None`` is allowed for ``is`` alone.
    metrics: names from ``ALL_METRICS`` (list or comma-separated string).
    num_samples: samples per set. Default: for a ``sample_fn``, 50,000 if a
      feature metric is requested (the FID protocol), else the reference size
      (10,000 if unknown); for an array, all of it (split into
      ``resamplings`` disjoint sets).
    key: PRNG key for sampling and subsampling (default ``key(0)``).
    batch_size: sampling and feature-extraction batch size.
    resamplings: number of independent sample sets; with ``> 1`` every
      metric gets ``<name>_std`` (``ddof=1``) beside its mean (the
      paper's Table 1 protocol uses 5).
    inception_weights: converted Inception ``.npz`` (else the env var).
    protocol: Inception protocol, ``"pytorch_fid"`` or ``"tf_fid"``.
    quantize: uint8 quantisation of float images (standard protocol).
    reference_cache: ``.npz`` to cache reference *image* stats in (one
      extractor per file; ``{extractor}`` in the path is substituted).
    kid_subsets: KID subsets (100).
    kid_subset_size: KID subset size (1000).
    is_splits: Inception Score splits (10).
    sinkhorn_epsilon: absolute epsilon (default: relative to the full
      reference, computed once; see `distances.default_sinkhorn_epsilon`).
    mmd_bandwidths: RBF widths (default: median heuristic on the full
      reference, computed once; see `distances.default_mmd_bandwidths`).
    kl_bins: ``kl_hist`` grid size G.
    kl_box: ``kl_hist`` box (default: the reference's bounding box).
    progress: progress lines (default: only for long runs).

  Returns:
    Flat ``{metric: float}`` plus ``<metric>_std`` when ``resamplings > 1``,
    ``kid*_subset_std`` / ``is_split_std`` (spread over KID subsets / IS
    splits, averaged over resamplings) and ``num_samples`` (per set).
  """
  metrics = split_metrics(metrics)
  if resamplings < 1:
    raise ValueError(f"resamplings must be >= 1; got {resamplings}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1; got {batch_size}")
  if num_samples is not None and num_samples < 2:
    raise ValueError(f"num_samples must be >= 2; got {num_samples}")
  key = jax.random.key(0) if key is None else key
  k_sample, k_ref = jax.random.split(key)
  image_metrics = [m for m in metrics if m in IMAGE_METRICS]
  vector_metrics = [m for m in metrics if m in VECTOR_METRICS]

  # Reference: stats dict, or an array (validated + preprocessed once).
  ref_stats_in, ref_x, ref_kind = None, None, None
  if isinstance(reference, (str, os.PathLike)):
    reference = load_reference(os.fspath(reference))
  if isinstance(reference, Mapping):
    ref_stats_in = dict(reference)
    if vector_metrics:
      raise ValueError(f"{vector_metrics} need reference samples, not "
                       "feature statistics")
  elif reference is not None:
    ref_x, ref_kind = validate_samples(reference, "reference")
    if ref_kind == "images":
      ref_x = preprocess_images(ref_x, quantize)
  elif [m for m in metrics if m != "is"]:
    raise ValueError(f"reference is required for {metrics}")

  if callable(samples) and num_samples is None:
    if image_metrics:
      num_samples = DEFAULT_FID_SAMPLES
    else:
      num_samples = (ref_x.shape[0] if ref_x is not None
                     else DEFAULT_VECTOR_SAMPLES)
  if callable(samples):
    for m in image_metrics:
      if m.startswith("fd") or m == "fid":
        _check_fd_size(num_samples, _FEATURE_DIMS[IMAGE_METRICS[m]], m)
  else:  # arrays are validated before any network runs
    samples, kind = validate_samples(samples, "samples")
    if image_metrics and kind != "images":
      raise ValueError(f"{image_metrics} need images [N,H,W,C]; samples are "
                       f"vectors of shape {samples.shape}")

  # Extractors (weights are found or an error is raised) and reference
  # statistics come first: a missing file should not cost a sampling run.
  extractors: dict[str, FeatureExtractor] = {}
  ref_stats: dict[str, dict[str, Any]] = {}
  for m in image_metrics:
    name = IMAGE_METRICS[m]
    if name in extractors:
      continue
    extractors[name] = make_extractor(
        name, inception_weights=inception_weights, protocol=protocol,
        batch_size=batch_size, progress=progress)
    if m == "is" and not [mm for mm in image_metrics
                          if IMAGE_METRICS[mm] == name and mm != "is"]:
      continue
    if ref_stats_in is not None:
      ref_stats[name] = _as_stats(ref_stats_in, extractors[name],
                                  protocol=protocol, quantize=quantize)
    else:
      if ref_kind is None or ref_kind != "images":
        raise ValueError(f"{m} needs reference images or statistics; got "
                         f"reference of shape {np.shape(ref_x)}")
      cache = (reference_cache.replace("{extractor}", name)
               if reference_cache else None)
      ref_stats[name] = compute_reference_stats(
          ref_x, name, cache=cache, quantize=quantize, protocol=protocol,
          _extractor=extractors[name])

  # Sample sets.
  if callable(samples):
    sets, kind = [], None
    for r in range(resamplings):
      x, kind = _draw(samples, jax.random.fold_in(k_sample, r), num_samples,
                      batch_size, quantize, progress)
      sets.append(x)
  else:
    x = preprocess_images(samples, quantize) if kind == "images" else samples
    n = x.shape[0]
    per = n // resamplings if num_samples is None else num_samples
    if per * resamplings > n or per < 2:
      raise ValueError(f"num_samples={num_samples} x resamplings="
                       f"{resamplings} needs {per * resamplings} samples; "
                       f"got {n}")
    if resamplings == 1 and per == n:
      sets = [x]
    else:  # disjoint random subsets
      perm = np.asarray(jax.random.permutation(k_sample, n))
      sets = [x[perm[r * per:(r + 1) * per]] for r in range(resamplings)]
    num_samples = per

  # Shape checks across samples / reference / metrics.
  if image_metrics and kind != "images":
    raise ValueError(f"{image_metrics} need images [N,H,W,C]; samples are "
                     f"vectors of shape {sets[0].shape}")
  if ref_x is not None and (vector_metrics or kind == "vectors") and (
      ref_kind != kind or ref_x.shape[1:] != sets[0].shape[1:]):
    raise ValueError(f"samples {sets[0].shape[1:]} and reference "
                     f"{ref_x.shape[1:]} must have the same shape for "
                     f"{vector_metrics or 'these metrics'}")
  if "kl_hist" in metrics and int(np.prod(sets[0].shape[1:])) != 2:
    raise ValueError("kl_hist needs 2-D vectors [N, 2]; got samples of shape "
                     f"{sets[0].shape}")

  for m in image_metrics:
    name = IMAGE_METRICS[m]
    if m.startswith("fd") or m == "fid":
      _check_fd_size(num_samples, extractors[name].dim, m)
    if m.startswith("kid") and "features" not in ref_stats[name]:
      raise ValueError(f"{m} needs reference features; the reference stats "
                       "hold only mu/sigma (e.g. a pytorch-fid file). Compute "
                       "them with compute_reference_stats / --compute_stats.")

  # Sinkhorn's epsilon and the MMD widths are functions of the full reference,
  # fixed before any resampling: every set (and every model scored against
  # this reference) uses the same ones, not those of its reference subset.
  yv_full = _vectors(ref_x, ref_kind) if vector_metrics else None
  if "sinkhorn" in vector_metrics and sinkhorn_epsilon is None:
    sinkhorn_epsilon = distances.default_sinkhorn_epsilon(yv_full)
  if "mmd" in vector_metrics and mmd_bandwidths is None:
    mmd_bandwidths = distances.default_mmd_bandwidths(yv_full)

  per_set: list[dict[str, float]] = []
  for r, x in enumerate(sets):
    res: dict[str, float] = {}
    feats: dict[str, dict[str, np.ndarray]] = {}
    for m in image_metrics:
      name = IMAGE_METRICS[m]
      if name not in feats:
        feats[name] = extractors[name](x)
      f = feats[name]
      if m == "is":
        res["is"], res["is_split_std"] = inception_score_from_logits(
            f["logits_unbiased"], is_splits)
      elif m == "fid" or m.startswith("fd"):
        mu, sigma = gaussian_statistics(f["pool"])
        st = ref_stats[name]
        res[m] = frechet_distance(mu, sigma, st["mu"], st["sigma"])
      else:
        res[m], res[m + "_subset_std"] = kid_from_features(
            f["pool"], ref_stats[name]["features"], num_subsets=kid_subsets,
            subset_size=kid_subset_size, seed=r)
    if vector_metrics:
      xv = _vectors(x, kind)
      yv = yv_full
      if yv.shape[0] > xv.shape[0]:  # a fresh reference subset per set
        idx = np.asarray(jax.random.permutation(
            jax.random.fold_in(k_ref, r), yv.shape[0]))[:xv.shape[0]]
        yv = yv[np.sort(idx)]
      for m in vector_metrics:
        if m == "sinkhorn":
          res[m] = distances.sinkhorn_divergence(xv, yv,
                                                 epsilon=sinkhorn_epsilon)
        elif m == "w2":  # equal sizes: a random subset of the larger set
          xw = xv
          if xv.shape[0] > yv.shape[0]:
            xw = xv[np.sort(np.asarray(jax.random.permutation(
                jax.random.fold_in(k_ref, 10_000 + r),
                xv.shape[0]))[:yv.shape[0]])]
          res[m] = distances.exact_w2(xw, yv)
        elif m == "mmd":
          res[m] = distances.mmd_rbf(xv, yv, bandwidths=mmd_bandwidths)
        elif m == "energy":
          res[m] = distances.energy_distance(xv, yv)
        elif m == "kl_hist":
          res[m] = distances.kl_hist_2d(xv, yv, bins=kl_bins, box=kl_box)
    per_set.append(res)

  out: dict[str, float] = {}
  for k in per_set[0]:
    vals = np.array([p[k] for p in per_set], np.float64)
    out[k] = float(vals.mean())
    if resamplings > 1 and not k.endswith(("_subset_std", "_split_std")):
      out[k + "_std"] = float(vals.std(ddof=1))
  out["num_samples"] = float(num_samples)
  return out
