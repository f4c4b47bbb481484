r"""Minibatch-OT coupling cost at batch 512 on CIFAR-shaped data.

python benchmarks/ot_cost.py [--batch=512] [--rounds=7] [--step_nets=tiny]
    [--cifar_step_ms=0]

Data: 512 images of shape 32×32×3 (CIFAR-10 if its TFDS copy is prepared,
else the offline digits resized to 32×32×3, as the `:smoke` configs do) and
512 standard Gaussian noise vectors (3072-D). Times, inside `jax.jit`
(median of `--rounds`):

  cost        the [512, 512] squared Euclidean cost (one matmul).
  exact       cost + scipy `linear_sum_assignment` on the host
              (`jax.pure_callback`) - the 'exact' solver.
  sinkhorn    cost + ott-jax Sinkhorn plan only (ε = 0.05·std(C)).
  sink+lsa    Sinkhorn + host `linear_sum_assignment(-P)` rounding.
  sink+greedy Sinkhorn + on-device greedy rounding.

and the pairing cost mean‖x - z_π‖² relative to the independent pairing and
to the exact optimum. The fraction of a train step is given against the
iCT-IC step of the tiny network (measured here at the same batch) and, if
`--cifar_step_ms` is given (e.g. from consistency_throughput.json scaled to
batch 512, or a GPU measurement), against that.
Prints a table, writes results/ot_cost.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from common import print_table, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils, data  # noqa: E402
from gcflow_jax.math import couplings as C  # noqa: E402


def _timeit(fn, args, rounds):
  out = fn(*args)
  jax.block_until_ready(out)
  times = []
  for _ in range(rounds):
    t0 = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    times.append(time.perf_counter() - t0)
  return 1000 * statistics.median(times), out


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--batch", type=int, default=512)
  p.add_argument("--rounds", type=int, default=7)
  p.add_argument("--step_nets", default="tiny",
                 help="networks whose IC step time is measured ('' = none)")
  p.add_argument("--step_rounds", type=int, default=3)
  p.add_argument("--cifar_step_ms", type=float, default=0.0)
  args = p.parse_args()
  b = args.batch

  cfg = config_utils.load_config("configs/cifar_ic.py:smoke")
  ds = data.make_dataset(cfg.data, 0)
  x = jnp.asarray(ds.global_batch(0, b))
  z = jax.random.normal(jax.random.key(0), x.shape)
  print(f"data: {ds.source}; x {x.shape}", flush=True)

  fns = {
      "cost": jax.jit(C.squared_euclidean_cost),
      "exact": jax.jit(lambda x, z: C.ot_permutation(x, z, "exact")),
      "sinkhorn": jax.jit(lambda x, z: C.sinkhorn_plan(
          C.squared_euclidean_cost(x, z))),
      "sink+lsa": jax.jit(lambda x, z: C.ot_permutation(
          x, z, "sinkhorn", rounding="lsa")),
      "sink+greedy": jax.jit(lambda x, z: C.ot_permutation(
          x, z, "sinkhorn", rounding="greedy")),
  }
  ic_cost = float(C.pairing_cost(x, z))
  rows, perms = [], {}
  for name, fn in fns.items():
    ms, out = _timeit(fn, (x, z), args.rounds)
    row = {"solver": name, "batch": b, "ms": ms}
    if out.ndim == 1:
      perms[name] = out
      assert sorted(np.asarray(out).tolist()) == list(range(b)), name
      row["pair_cost"] = float(C.pairing_cost(x, z, out))
      row["cost_vs_ic"] = row["pair_cost"] / ic_cost
    rows.append(row)
    print(f"{name}: {ms:.1f} ms", flush=True)
  exact_cost = rows[1]["pair_cost"]
  for r in rows:
    if "pair_cost" in r:
      r["cost_vs_exact"] = r["pair_cost"] / exact_cost

  steps = {}
  if args.step_nets:
    import consistency_throughput as ct  # pylint: disable=g-import-not-at-top
    for net in args.step_nets.split(","):
      bench = ct._Bench(net, b, "ic", steps=1)  # pylint: disable=protected-access
      for _ in range(args.step_rounds):
        bench.time_round()
      steps[f"{net}_ic_step_ms_b{b}"] = 1000 * statistics.median(
          bench.times)
      print(f"{net} IC step at batch {b}: "
            f"{steps[f'{net}_ic_step_ms_b{b}']:.0f} ms", flush=True)
  if args.cifar_step_ms:
    steps[f"cifar_ic_step_ms_b{b}"] = args.cifar_step_ms
  for r in rows:
    for k, v in steps.items():
      r["frac_of_" + k.replace("_ic_step_ms_b%d" % b, "_step")] = r["ms"] / v
  cols = ["solver", "batch", "ms", "pair_cost", "cost_vs_ic",
          "cost_vs_exact"] + [c for c in rows[0] if c.startswith("frac_of")]
  print_table(rows, cols)
  print(f"independent pairing cost: {ic_cost:.1f}; step times: {steps}")
  path = write_result("ot_cost", rows, {"ic_pair_cost": ic_cost,
                                        "data_source": ds.source,
                                        "step_ms": steps})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
