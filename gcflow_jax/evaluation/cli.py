"""Command line for the evaluation library.

Score samples (prints a table, writes flat JSON atomically)::

  python -m gcflow_jax.evaluation --samples=gen.npz \\
      --reference=cifar10_train_stats.npz --metrics=fid,kid,is \\
      --inception_weights=inception_fid.npz --output=scores.json

  python -m gcflow_jax.evaluation --samples=gen2d.npz --reference=data2d.npz \\
      --metrics=sinkhorn,w2,mmd,energy,kl_hist --kl_box=-4,4

Compute (and cache) reference statistics from a dataset ``.npz``::

  python -m gcflow_jax.evaluation --compute_stats=cifar10_train_stats.npz \\
      --reference=cifar10_train.npz --extractor=inception

``.npz`` inputs hold an array under ``samples`` (or a single array): images
``[N, H, W, C]`` (uint8, or float in [-1, 1]) or vectors ``[N, D]``. A
reference ``.npz`` with ``mu``/``sigma`` is read as statistics. Errors in the
inputs (a missing, corrupt or non-NumPy file, a missing ``--reference``, an
``--output`` that cannot be written) exit with status 2 and a message that
names the argument; ``--output`` is checked before any work.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Mapping, Sequence

from gcflow_jax import run_record

__all__ = ["main", "parse_args", "format_table", "write_json",
           "check_output_path"]


def _floats(s: str) -> list[float]:
  return [float(v) for v in s.split(",") if v.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  # The submodule by its full name: the package attribute `evaluate` is the
  # function.
  ev = importlib.import_module("gcflow_jax.evaluation.evaluate")
  p = argparse.ArgumentParser(
      prog="python -m gcflow_jax.evaluation",
      description="Score generated samples (FID/KID/IS, offline FD/KID on "
      "digits/MNIST features, Sinkhorn/W2/MMD/energy/KL for vectors).",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--samples", help="samples .npz/.npy")
  p.add_argument("--reference", help="reference samples or statistics .npz")
  p.add_argument("--metrics", default="fid",
                 help=f"comma-separated subset of {','.join(ev.ALL_METRICS)}")
  p.add_argument("--output", help="write scores as flat JSON here")
  p.add_argument("--compute_stats", metavar="OUT.npz",
                 help="compute feature statistics of --reference and exit")
  p.add_argument("--extractor", default="inception", choices=ev.EXTRACTORS,
                 help="network for --compute_stats")
  p.add_argument("--inception_weights",
                 help="converted FID Inception .npz (default: "
                 "$GCFLOW_INCEPTION_WEIGHTS)")
  p.add_argument("--protocol", default="pytorch_fid",
                 choices=["pytorch_fid", "tf_fid"],
                 help="Inception resize/normalisation protocol")
  p.add_argument("--no_quantize", action="store_true",
                 help="keep continuous pixel values instead of the standard "
                 "uint8 quantisation of float images")
  p.add_argument("--num_samples", type=int, default=None,
                 help="samples per set (default: all of --samples, split "
                 "into --resamplings sets)")
  p.add_argument("--resamplings", type=int, default=1,
                 help="disjoint sample sets; reports <metric>_std too")
  p.add_argument("--batch_size", type=int, default=200)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--reference_cache", default=None,
                 help="cache reference image statistics here "
                 "('{extractor}' is substituted)")
  p.add_argument("--kid_subsets", type=int, default=100)
  p.add_argument("--kid_subset_size", type=int, default=1000)
  p.add_argument("--is_splits", type=int, default=10)
  p.add_argument("--sinkhorn_epsilon", type=float, default=None)
  p.add_argument("--mmd_bandwidths", type=_floats, default=None,
                 help="comma-separated RBF widths (default: median heuristic)")
  p.add_argument("--kl_bins", type=int, default=50)
  p.add_argument("--kl_box", type=_floats, default=None,
                 help="lo,hi or x_lo,x_hi,y_lo,y_hi (default: reference "
                 "bounding box)")
  p.add_argument("--progress", action=argparse.BooleanOptionalAction,
                 default=None, help="progress lines (default: long runs)")
  return p.parse_args(argv)


def format_table(scores: Mapping[str, float]) -> str:
  """Two-column table; ``<m>_std`` is shown as ``mean ± std``."""
  rows = []
  for k, v in scores.items():
    if k.endswith("_std") and k[:-4] in scores:
      continue
    val = f"{v:.6g}"
    if k + "_std" in scores:
      val += f" ± {scores[k + '_std']:.3g}"
    rows.append((k, val))
  w = max([len("metric")] + [len(r[0]) for r in rows])
  v = max([len("value")] + [len(r[1]) for r in rows])
  lines = [f"{'metric':<{w}}  {'value':>{v}}", f"{'-' * w}  {'-' * v}"]
  lines += [f"{a:<{w}}  {b:>{v}}" for a, b in rows]
  return "\n".join(lines)


def write_json(obj: Mapping[str, object], path: str) -> None:
  """Atomic write (`run_record.atomic_open`): a failure leaves nothing
  behind and an existing ``path`` as it was."""
  with run_record.atomic_open(path) as f:
    json.dump(dict(obj), f, indent=2, sort_keys=False)
    f.write("\n")


def check_output_path(path: str, flag: str) -> None:
  """Raises ``ValueError`` (naming ``flag``) if ``path`` cannot be written.

  Run before any work: a directory, a parent that is a file, or a directory
  we may not write to would otherwise fail only after scoring.
  """
  if os.path.isdir(path):
    raise ValueError(f"{flag}: {path!r} is a directory; give a file path "
                     f"(e.g. {os.path.join(path, 'scores.json')!r})")
  d = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(d):  # the nearest existing ancestor gets the dirs
    d = os.path.dirname(d)
  if not os.path.isdir(d):
    raise ValueError(f"{flag}: cannot write {path!r}: {d!r} is not a "
                     "directory")
  if not os.access(d, os.W_OK | os.X_OK):
    raise ValueError(f"{flag}: cannot write {path!r}: directory {d!r} is not "
                     "writable")


def _box(v):
  if v is None:
    return None
  if len(v) == 2:
    return tuple(v)
  if len(v) == 4:
    return ((v[0], v[1]), (v[2], v[3]))
  raise ValueError(f"--kl_box takes 2 or 4 numbers; got {v}")


def _run(a: argparse.Namespace) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  ev = importlib.import_module("gcflow_jax.evaluation.evaluate")
  # Outputs first: a bad --output must not cost a scoring run.
  if a.compute_stats:
    check_output_path(a.compute_stats, "--compute_stats")
  elif a.output:
    check_output_path(a.output, "--output")
  if a.compute_stats:
    if not a.reference:
      raise ValueError("--reference is required with --compute_stats (the "
                       "images to compute statistics of)")
    images = ev.load_array(a.reference, "--reference")
    st = ev.compute_reference_stats(
        images, a.extractor, quantize=not a.no_quantize, protocol=a.protocol,
        inception_weights=a.inception_weights, batch_size=a.batch_size,
        progress=a.progress)
    ev.save_stats(st, a.compute_stats)
    print(f"wrote {a.compute_stats}: {a.extractor} statistics of "
          f"{st['num_samples']} images (mu {st['mu'].shape}, features "
          f"{st['features'].shape})")
    return 0
  if not a.samples:
    raise ValueError("--samples is required (or --compute_stats)")
  try:
    metrics = ev.split_metrics(a.metrics)
  except ValueError as e:
    raise ValueError(f"--metrics: {e}") from e
  if not a.reference and [m for m in metrics if m != "is"]:
    raise ValueError(f"--reference is required for --metrics={a.metrics} "
                     "(only 'is' needs none)")
  samples = ev.load_array(a.samples, "--samples")
  reference = (ev.load_reference(a.reference, "--reference") if a.reference
               else None)
  scores = ev.evaluate(
      samples, reference, metrics, num_samples=a.num_samples,
      key=jax.random.key(a.seed), batch_size=a.batch_size,
      resamplings=a.resamplings, inception_weights=a.inception_weights,
      protocol=a.protocol, quantize=not a.no_quantize,
      reference_cache=a.reference_cache, kid_subsets=a.kid_subsets,
      kid_subset_size=a.kid_subset_size, is_splits=a.is_splits,
      sinkhorn_epsilon=a.sinkhorn_epsilon, mmd_bandwidths=a.mmd_bandwidths,
      kl_bins=a.kl_bins, kl_box=_box(a.kl_box), progress=a.progress)
  print(format_table(scores))
  if a.output:
    write_json(scores, a.output)
    print(f"wrote {a.output}")
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """CLI entry point; returns the exit status."""
  a = parse_args(argv)
  try:
    return _run(a)
  except (ValueError, OSError) as e:  # OSError includes FileNotFoundError
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
