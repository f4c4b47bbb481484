r"""Does a host callback run inside a step partitioned over several CPU
devices? The reproduction behind `config_utils.validate`'s refusal of host
minibatch OT (`ict/gcm.ot_solver='exact'`, `ot_rounding='lsa'`) on several
CPU devices, outside the trainer, to check each new jax release.

python benchmarks/host_callback_cpu_devices.py [--devices=1,2]
    [--batches=128,256,362,512] [--timeout=120] [--smoke]

Each case runs in its own process (`--xla_force_host_platform_device_count`
is fixed at start-up): a jitted function over a 1-D 'data' mesh, the batch
x [B, 2] sharded on it, computes C = x xᵀ [B, B], calls
`jax.pure_callback` on C (run once, on device 0) and gathers x by the
returned permutation. The callback either reads its operand
(`np.asarray(C)`, as scipy's assignment must) or returns without touching
it. Outcome per case: 'ran' (and the output matches the numpy value),
'hung' (XLA:CPU aborts a collective's rendezvous after its 40 s timeout,
or the case passes `--timeout`), or 'error' (anything else, with the
last line of its output).

Measured 2026-12-01 with jax 0.10.2 on a 2-core x86-64 CPU (load 5)
(results/host_callback_cpu_devices.json): on 2 devices the reading
callback hangs from B = 362 and runs up to B = 256; a callback that does
not read its operand runs; one device runs. `--smoke` runs B = 8 on 2
devices only (seconds). Prints a table, writes
results/host_callback_cpu_devices.json (not with `--smoke`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)

READS = ("reads", "ignores")
CHILD = "--child"


def child(batch: int, reads: bool) -> None:
  """One case, in this process: prints 'ok <value> <expected>'."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top

  mesh = Mesh(np.array(jax.devices()), ("data",))

  def callback(cost):
    if reads:   # the row sums' order: a permutation that needs C itself
      return np.argsort(np.asarray(cost).sum(1), kind="stable").astype(
          np.int32)
    return np.arange(cost.shape[0], dtype=np.int32)[::-1].copy()

  def step(x):
    cost = x @ x.T
    perm = jax.pure_callback(
        callback, jax.ShapeDtypeStruct((x.shape[0],), jnp.int32), cost,
        vmap_method="sequential")
    return jnp.sum(x[perm] * jnp.arange(x.shape[0])[:, None])

  f = jax.jit(step, in_shardings=NamedSharding(mesh, P("data")),
              out_shardings=NamedSharding(mesh, P()))
  x = np.random.default_rng(0).standard_normal((batch, 2)).astype(np.float32)
  got = float(f(jax.device_put(x, NamedSharding(mesh, P("data")))))
  xd = x.astype(np.float64)
  perm = (np.argsort((xd @ xd.T).sum(1), kind="stable") if reads
          else np.arange(batch)[::-1])
  expected = float(np.sum(xd[perm] * np.arange(batch)[:, None]))
  print(f"ok {got!r} {expected!r}", flush=True)


def classify(returncode, output: str, timed_out: bool) -> tuple:
  """(outcome, detail) of a case's process: 'ran' if it printed a value
  matching numpy's, 'hung' if it timed out or XLA aborted a rendezvous,
  else 'error' with the last line of its output."""
  lines = [ln for ln in output.splitlines() if ln.strip()]
  if timed_out:
    return "hung", "passed the timeout"
  for ln in lines:
    if ln.startswith("ok ") and returncode == 0:
      got, expected = map(float, ln.split()[1:3])
      if abs(got - expected) <= 1e-3 * max(1.0, abs(expected)):
        return "ran", ""
      return "error", f"value {got} != numpy's {expected}"
  if any("rendezvous" in ln and "Termination timeout" in ln for ln in lines):
    return "hung", "XLA:CPU rendezvous timeout"
  return "error", lines[-1][:200] if lines else f"exit {returncode}"


def run_case(devices: int, batch: int, reads: bool, timeout: float) -> dict:
  env = dict(os.environ)
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(
      flags + [f"--xla_force_host_platform_device_count={devices}"])
  env["JAX_PLATFORMS"] = "cpu"
  callback = READS[0] if reads else READS[1]
  cmd = [sys.executable, os.path.abspath(__file__), CHILD, str(batch),
         callback]
  t0 = time.time()
  try:
    p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       timeout=timeout, check=False)
    outcome, detail = classify(p.returncode, p.stdout + p.stderr, False)
  except subprocess.TimeoutExpired:
    outcome, detail = classify(None, "", True)
  return {"devices": devices, "batch": batch, "callback": callback,
          "operand_kib": batch * batch * 4 / 1024, "outcome": outcome,
          "detail": detail, "sec": round(time.time() - t0, 1)}


def main():
  if len(sys.argv) > 1 and sys.argv[1] == CHILD:
    child(int(sys.argv[2]), sys.argv[3] == READS[0])
    return
  ap = argparse.ArgumentParser()
  ap.add_argument("--devices", default="1,2")
  ap.add_argument("--batches", default="128,256,362,512")
  ap.add_argument("--timeout", type=float, default=120.0)
  ap.add_argument("--smoke", action="store_true")
  args = ap.parse_args()
  if args.smoke:
    cases = [(2, 8, True)]
  else:
    devices = [int(v) for v in args.devices.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    if any(d < 1 for d in devices) or any(b < 2 for b in batches):
      raise SystemExit("--devices must be >= 1 and --batches >= 2")
    # One device: the reading callback at the largest batch (the control).
    cases = [(d, b, r) for d in devices for b in batches
             for r in (True, False) if d > 1 or (b == max(batches) and r)]
  rows = []
  for d, b, r in cases:
    rows.append(run_case(d, b, r, args.timeout))
    print(rows[-1], flush=True)
  from common import print_table, write_result  # pylint: disable=g-import-not-at-top
  print_table(rows, ["devices", "batch", "callback", "operand_kib",
                     "outcome", "sec", "detail"])
  if not args.smoke:
    print("wrote", write_result("host_callback_cpu_devices", rows))
  elif rows[0]["outcome"] != "ran":
    raise SystemExit(f"smoke case did not run: {rows[0]}")


if __name__ == "__main__":
  main()
