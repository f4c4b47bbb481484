r"""Minibatch-OT coupling cost at batch 512: solver time, share of the train
step, and pairing quality of the on-device solver on held-out batches.

python benchmarks/ot_cost.py [--batch=512] [--rounds=7] [--heldout=5]
    [--datasets=cifar,toy] [--toy_step_rounds=3] [--cifar_step_ms=0]

Data: 'cifar': 512 images of shape 32×32×3 (CIFAR-10 if its TFDS copy is
prepared, else the offline digits resized to 32×32×3, as the `:smoke`
configs do); 'toy': 512 points of the 2-D checkerboard (configs/toy_ict.py).
Noise: 512 standard Gaussian vectors of the same shape. Times, inside
`jax.jit` (median of `--rounds`, on batch 0):

  cost        the [512, 512] squared Euclidean cost (one matmul).
  exact       cost + scipy `linear_sum_assignment` on the host
              (`jax.pure_callback`) - the 'exact' solver.
  sinkhorn    cost + ott-jax Sinkhorn plan only (ε = 0.05·std(C)).
  sink+lsa    Sinkhorn + host `linear_sum_assignment(-P)` rounding.
  sink+greedy Sinkhorn + on-device greedy rounding (no host round trip).

Pairing quality: mean‖x - z_π‖² relative to the exact optimum, on batch 0
and on `--heldout` further batches (fresh data and noise; mean and worst),
and relative to the independent pairing.

Share of the step. 'toy': the trainer's iCT step (3×256 MLP) timed here
with the IC, exact-OT and on-device-OT couplings (`--toy_step_rounds`
rounds of 20 steps each, interleaved, median). 'cifar': the CIFAR-10
SongUNet step at batch 512 is not affordable on this CPU; the proxy is the
measured IC step at batch 8 of results/consistency_throughput_cifar.json
scaled linearly to the batch (or `--cifar_step_ms`), against which each
solver's time is given as a fraction.
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
from common import print_table, read_result, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils, data, train  # noqa: E402
from gcflow_jax.math import couplings as C  # noqa: E402

CONFIGS = {"cifar": "configs/cifar_ic.py:smoke", "toy": "configs/toy_ict.py"}
SOLVERS = {
    "cost": lambda x, z: C.squared_euclidean_cost(x, z),
    "exact": lambda x, z: C.ot_permutation(x, z, "exact"),
    "sinkhorn": lambda x, z: C.sinkhorn_plan(C.squared_euclidean_cost(x, z)),
    "sink+lsa": lambda x, z: C.ot_permutation(x, z, "sinkhorn",
                                              rounding="lsa"),
    "sink+greedy": lambda x, z: C.ot_permutation(x, z, "sinkhorn",
                                                 rounding="greedy"),
}


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


def _toy_step_ms(batch, rounds, steps=20):
  """ms per trainer step of configs/toy_ict.py for each coupling."""
  benches = {}
  for name, over in (("ic", dict(coupling="ic")),
                     ("exact", dict(coupling="ot", ot_solver="exact")),
                     ("sink+greedy", dict(coupling="ot", ot_solver="sinkhorn",
                                          ot_rounding="greedy"))):
    cfg = config_utils.load_config(CONFIGS["toy"])
    cfg.unlock()
    cfg.train.batch_size = batch
    for k, v in over.items():
      cfg.ict[k] = v
    cfg.lock()
    run = train.build(cfg)
    state = run.initial_state()
    step = run.jit_train_step(donate_argnums=(0,))
    xs = [jnp.asarray(run.dataset.global_batch(s, batch)) for s in range(2)]
    benches[name] = [run, state, step, xs, []]
  for _ in range(rounds + 1):          # first round: compile and warm up
    for b in benches.values():
      run, state, step, xs, times = b
      t0 = time.perf_counter()
      for s in range(steps):
        state, m = step(state, {"x": xs[s % 2]}, run.k_train)
      jax.block_until_ready(m)
      times.append((time.perf_counter() - t0) / steps)
      b[1] = state
  return {k: 1000 * statistics.median(b[4][1:]) for k, b in benches.items()}


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--batch", type=int, default=512)
  p.add_argument("--rounds", type=int, default=7)
  p.add_argument("--heldout", type=int, default=5)
  p.add_argument("--datasets", default="cifar,toy")
  p.add_argument("--toy_step_rounds", type=int, default=3)
  p.add_argument("--cifar_step_ms", type=float, default=0.0)
  args = p.parse_args()
  b = args.batch
  load_start = os.getloadavg()
  fns = {k: jax.jit(f) for k, f in SOLVERS.items()}
  rows, extra = [], {"data_source": {}, "ic_pair_cost": {}, "step_ms": {}}
  for dname in args.datasets.split(","):
    ds = data.make_dataset(config_utils.load_config(CONFIGS[dname]).data, 0)
    extra["data_source"][dname] = ds.source
    batches = []
    for i in range(1 + args.heldout):
      x = jnp.asarray(ds.global_batch(1000 + i, b))
      z = jax.random.normal(jax.random.key(i), x.shape)
      batches.append((x, z))
    x, z = batches[0]
    print(f"{dname}: {ds.source}; x {x.shape}", flush=True)
    ic_cost = float(C.pairing_cost(x, z))
    extra["ic_pair_cost"][dname] = ic_cost
    drows = []
    for name, fn in fns.items():
      ms, out = _timeit(fn, (x, z), args.rounds)
      row = {"data": dname, "solver": name, "batch": b, "ms": ms}
      if out.ndim == 1:
        assert sorted(np.asarray(out).tolist()) == list(range(b)), name
        row["pair_cost"] = float(C.pairing_cost(x, z, out))
        row["cost_vs_ic"] = row["pair_cost"] / ic_cost
      drows.append(row)
      print(f"{dname} {name}: {ms:.1f} ms", flush=True)
    exact_cost = drows[1]["pair_cost"]
    for r in drows:
      if "pair_cost" in r:
        r["cost_vs_exact"] = r["pair_cost"] / exact_cost
    # Held-out batches: excess pairing cost of each approximate solver.
    for r in drows:
      if r["solver"] not in ("sink+lsa", "sink+greedy"):
        continue
      excess = []
      for hx, hz in batches[1:]:
        opt = float(C.pairing_cost(hx, hz, fns["exact"](hx, hz)))
        got = float(C.pairing_cost(hx, hz, fns[r["solver"]](hx, hz)))
        excess.append(got / opt - 1.0)
      if excess:
        r["heldout_excess_mean"] = float(np.mean(excess))
        r["heldout_excess_max"] = float(np.max(excess))
        r["heldout_batches"] = len(excess)
    if dname == "toy" and args.toy_step_rounds:
      steps = _toy_step_ms(b, args.toy_step_rounds)
      extra["step_ms"]["toy"] = steps
      print(f"toy step ms: {steps}", flush=True)
      for r in drows:
        r["frac_of_toy_ic_step"] = r["ms"] / steps["ic"]
    if dname == "cifar":
      step = args.cifar_step_ms
      if not step:
        prev = read_result("consistency_throughput_cifar")
        ic = [r for r in prev.get("rows", []) if r["variant"] == "ic"]
        if ic:
          step = ic[0]["ms_per_step"] * b / ic[0]["batch"]
          extra["step_ms"]["cifar_proxy"] = {
              "ms": step, "from": "consistency_throughput_cifar.json IC "
              f"step at batch {ic[0]['batch']} ({ic[0]['ms_per_step']:.0f} "
              f"ms, {prev['machine']['date']}) x {b}/{ic[0]['batch']}"}
      if step:
        for r in drows:
          r["frac_of_cifar_step"] = r["ms"] / step
    rows += drows
  cols = ["data", "solver", "batch", "ms", "cost_vs_ic", "cost_vs_exact",
          "heldout_excess_mean", "heldout_excess_max", "frac_of_toy_ic_step",
          "frac_of_cifar_step"]
  print_table(rows, cols)
  extra["load_average_1_5_15"] = {"start": load_start,
                                  "end": os.getloadavg()}
  extra["settings"] = vars(args)
  path = write_result("ot_cost", rows, extra)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
