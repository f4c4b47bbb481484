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

Validation, preprocessing and files are in `gcflow_jax.evaluation.inputs`,
the feature extractors and reference statistics in
`gcflow_jax.evaluation.extractors`; both are re-exported here.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Mapping, Sequence, Union

import jax
import numpy as np

from gcflow_jax.evaluation import distances
from gcflow_jax.evaluation import features as features_lib
# Not `from gcflow_jax.evaluation import fid`: the package attribute `fid` is
# the function defined below, which shadows the submodule.
from gcflow_jax.evaluation.fid import frechet_distance
from gcflow_jax.evaluation.fid import gaussian_statistics
from gcflow_jax.evaluation.fid import inception_score_from_logits
from gcflow_jax.evaluation.fid import kid_from_features
# Inputs (validation, preprocessing, files) and feature extraction live in
# `inputs` and `extractors`; their public names are re-exported here, where
# they have always been importable from.
from gcflow_jax.evaluation.extractors import _check_fd_size
from gcflow_jax.evaluation.extractors import _as_stats
from gcflow_jax.evaluation.extractors import compute_reference_stats
from gcflow_jax.evaluation.extractors import DEFAULT_FID_SAMPLES
from gcflow_jax.evaluation.extractors import DEFAULT_MAX_KID_FEATURES
from gcflow_jax.evaluation.extractors import EXTRACTORS
from gcflow_jax.evaluation.extractors import FEATURE_DIMS
from gcflow_jax.evaluation.extractors import FeatureExtractor
from gcflow_jax.evaluation.extractors import make_extractor
from gcflow_jax.evaluation.extractors import Progress
from gcflow_jax.evaluation.inputs import _pixels_to_unit
from gcflow_jax.evaluation.inputs import load_array
from gcflow_jax.evaluation.inputs import load_reference
from gcflow_jax.evaluation.inputs import load_stats
from gcflow_jax.evaluation.inputs import preprocess_images
from gcflow_jax.evaluation.inputs import RANGE_TOLERANCE
from gcflow_jax.evaluation.inputs import read_numpy_file
from gcflow_jax.evaluation.inputs import save_stats
from gcflow_jax.evaluation.inputs import validate_samples

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
DEFAULT_VECTOR_SAMPLES = 10_000

Array = Union[np.ndarray, jax.Array]
SampleFn = Callable[[jax.Array, int], Array]


# --------------------------------------------------------------------------
# Stand-alone metric functions.
# --------------------------------------------------------------------------
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


def label_shares(samples: Array, *, classifier: str = "mnist",
                 quantize: bool = True, batch_size: int = 200,
                 progress: bool | None = None) -> dict[str, Any]:
  """Mode coverage of image samples through an offline classifier.

  Each sample gets the classifier's most likely label; returns ``shares``
  (float64 ``[K]``, the fraction of samples per label), ``kl_uniform`` =
  KL(shares || uniform) = log K − H(shares) (0 when every label is equally
  frequent, log K when all samples get one label) and ``min_share`` (the
  least frequent label's share; 0 if a label never occurs).

  Args:
    samples: ``[N, H, W, C]`` images, float in [-1, 1] or uint8.
    classifier: ``"mnist"`` or ``"digits"`` (the committed classifiers of
      `features`; ten labels).
    quantize, batch_size, progress: as for `fid`.
  """
  if classifier not in features_lib.SPECS:
    raise ValueError(f"classifier must be one of {sorted(features_lib.SPECS)}"
                     f"; got {classifier!r}")
  ext = make_extractor(classifier, batch_size=batch_size, progress=progress)
  logits = ext(_image_pixels(samples, quantize))["logits"]
  counts = np.bincount(np.argmax(logits, axis=-1), minlength=logits.shape[-1])
  shares = counts / counts.sum()
  seen = shares[shares > 0]
  return {"shares": shares,
          "kl_uniform": float(np.log(len(shares)) + np.sum(seen * np.log(seen))),
          "min_share": float(shares.min())}


# --------------------------------------------------------------------------
# evaluate().
# --------------------------------------------------------------------------
def _draw(sample_fn: SampleFn, key: jax.Array, n: int, batch: int,
          quantize: bool, progress: bool | None) -> tuple[np.ndarray, str]:
  """Calls ``sample_fn(key_i, batch)`` until ``n`` samples; validates each."""
  nb = int(math.ceil(n / batch))
  prog = Progress(nb, f"sampling {n}", progress if progress is not None
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
        _check_fd_size(num_samples, FEATURE_DIMS[IMAGE_METRICS[m]], m)
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
