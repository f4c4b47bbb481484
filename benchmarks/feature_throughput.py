"""Feature-extraction throughput (images/s) of the evaluation networks.

Measures the full `gcflow_jax.evaluation` extraction path (host batch ->
device, padding, resize, network, device -> host) for

* the FID Inception-v3 on 32x32x3 uint8 images (resized to 299x299 inside,
  as for CIFAR-10), with the real weights if ``$GCFLOW_INCEPTION_WEIGHTS``
  points to them, else random weights (same cost);
* the offline digits (8x8) and MNIST (28x28) classifiers.

Runs on whatever JAX backend is present (CPU here; GPU/TPU when available;
all local devices, sharded). Prints a table and writes
``benchmarks/results/feature_throughput.json`` with machine information.

  python benchmarks/feature_throughput.py            # default sizes
  python benchmarks/feature_throughput.py --quick    # ~1 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

# Runnable from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from gcflow_jax.evaluation import inception  # noqa: E402
from gcflow_jax.evaluation.evaluate import make_extractor  # noqa: E402

_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                    "feature_throughput.json")


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def machine_info() -> dict:
  return {
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.local_devices()],
      "device_kind": jax.local_devices()[0].device_kind,
      "cpu_model": _cpu_model(),
      "cpu_count": os.cpu_count(),
      "affinity_cpus": (len(os.sched_getaffinity(0))
                        if hasattr(os, "sched_getaffinity") else None),
      "load_average_1min": (os.getloadavg()[0]
                            if hasattr(os, "getloadavg") else None),
      "python": platform.python_version(),
      "jax": jax.__version__,
      "platform": platform.platform(),
  }


def bench(name: str, ext, shape: tuple[int, ...], batches: int,
          repeats: int) -> dict:
  """Times ``ext`` on ``batches`` full batches; best of ``repeats``."""
  rng = np.random.default_rng(0)
  n = ext.batch_size * batches
  x = rng.integers(0, 256, (n,) + shape).astype(np.uint8)
  t0 = time.perf_counter()
  ext(x[:ext.batch_size])  # compile + first run
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    ext(x)
    times.append(time.perf_counter() - t0)
  best = min(times)
  return {"network": name, "input": "x".join(map(str, shape)),
          "batch_size": ext.batch_size, "images": n,
          "images_per_s": n / best, "ms_per_image": 1e3 * best / n,
          "first_call_s": compile_s, "repeats": repeats}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true",
                 help="small sizes (CPU smoke run)")
  p.add_argument("--inception_batch", type=int, default=None)
  p.add_argument("--inception_batches", type=int, default=None)
  p.add_argument("--classifier_batch", type=int, default=500)
  p.add_argument("--classifier_batches", type=int, default=None)
  p.add_argument("--repeats", type=int, default=None)
  p.add_argument("--output", default=_OUT)
  a = p.parse_args(argv)
  on_cpu = jax.default_backend() == "cpu"
  ib = a.inception_batch or (8 if on_cpu else 250)
  inb = a.inception_batches or (2 if a.quick else (4 if on_cpu else 20))
  cnb = a.classifier_batches or (4 if a.quick else 20)
  reps = a.repeats or (1 if a.quick else 3)

  rows = []
  weights = os.environ.get(inception.WEIGHTS_ENV_VAR)
  real = bool(weights and os.path.isfile(weights))
  variables = None if real else inception.init_variables(0)
  ext = make_extractor("inception", variables=variables, batch_size=ib,
                       progress=False)
  r = bench("inception_fid", ext, (32, 32, 3), inb, reps)
  r["weights"] = "converted pytorch-fid" if real else "random (same cost)"
  rows.append(r)
  for name, shape in (("digits", (8, 8, 1)), ("mnist", (28, 28, 1))):
    ext = make_extractor(name, batch_size=a.classifier_batch, progress=False)
    rows.append(bench(f"{name}_classifier", ext, shape, cnb, reps))

  hdr = (f"{'network':<20} {'input':>9} {'batch':>6} {'images/s':>10} "
         f"{'ms/image':>9} {'first call s':>13}")
  print(f"backend={jax.default_backend()} devices={len(jax.local_devices())} "
        f"cpu={_cpu_model()} (os.cpu_count()={os.cpu_count()})")
  print(hdr)
  print("-" * len(hdr))
  for r in rows:
    print(f"{r['network']:<20} {r['input']:>9} {r['batch_size']:>6} "
          f"{r['images_per_s']:>10.1f} {r['ms_per_image']:>9.2f} "
          f"{r['first_call_s']:>13.1f}")
  out = {"benchmark": "feature_throughput", "machine": machine_info(),
         "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": rows,
         "note": "wall-clock throughput of the full extraction path; the CPU "
                 "may be shared with other processes (see load_average)."}
  os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
  tmp = a.output + ".tmp"
  with open(tmp, "w") as f:
    json.dump(out, f, indent=2)
  os.replace(tmp, a.output)
  print(f"wrote {a.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
