r"""Train-step throughput of iCT with the IC, OT and GC couplings.

python benchmarks/consistency_throughput.py [--nets=cifar,tiny]
    [--batch_cifar=8] [--batch_tiny=64] [--steps=5] [--rounds=5]

For each network (the CIFAR-10 SongUNet of configs/cifar_gc.py, 34.7M
parameters, and a tiny one: 32 channels, mult (1, 2, 2), 1 block, both on
32×32×3) and each coupling it builds the run exactly as the trainer does
(`train.build`, the same jitted step with shardings and donation) and times
full optimizer steps (Lion + EMA included):

  ic        independent coupling (the baseline).
  ot        exact minibatch OT (host assignment).
  gc        GC with μ = 0.5: the EMA endpoint runs on ⌊μB⌋ examples only.
  gc_full   GC with μ = 1: the endpoint runs on the whole batch, which is
            what the published code pays for any μ > 0 (it evaluates the
            EMA model on the full batch and then masks).

Each step is compiled once: `compile_s` is the first call (compile + one
step; `first_call_compiles` counts its backend compiles, 0 on a persistent
cache hit), and any compile after it (the jitted step's cache growing, or
any XLA backend compile event) raises RuntimeError instead of being timed.
The variants are timed in interleaved rounds and the median is reported,
both as wall-clock ms/step and as process CPU-ms/step (`time.process_time`,
summed over XLA's threads). On a shared machine the wall clock swings with
other processes' load while CPU time measures this process's own work, so
the overhead ratios are given for both (overhead_cpu is the robust one).
The expected GC overhead is μ·F/S_IC, with F
the forward time of the consistency model on the full batch (timed here) and
S_IC the IC step; the published approach pays ≈ F/S_IC.
Prints a table, writes results/consistency_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from common import compile_count, print_table, write_result  # noqa: E402  pylint: disable=g-import-not-at-top

from gcflow_jax import config_utils, sharding, train  # noqa: E402
from gcflow_jax.math import edm  # noqa: E402


VARIANTS = {"ic": dict(coupling="ic"), "ot": dict(coupling="ot"),
            "gc": dict(coupling="gc", gc_mu=0.5),
            "gc_full": dict(coupling="gc", gc_mu=1.0)}


def _config(net: str, batch: int, variant: str):
  config = config_utils.load_config("configs/cifar_gc.py")
  config.unlock()
  config.data.offline_fallback = "digits"   # CIFAR-shaped, offline
  if net == "tiny":
    config.model.unet.model_channels = 32
    with config.ignore_type():
      config.model.unet.num_blocks = 1
  config.train.batch_size = batch
  config.model.dropout = 0.0
  for k, v in VARIANTS[variant].items():
    config.ict[k] = v
  config.lock()
  return config


class _Bench:
  """One compiled train step and its state for a (net, variant)."""

  def __init__(self, net, batch, variant, steps):
    self.config = _config(net, batch, variant)
    self.run = train.build(self.config)
    rep = sharding.replicated(self.run.mesh)
    bsh = sharding.batch_sharding(self.run.mesh)
    self.state = jax.jit(self.run.init_state, out_shardings=rep)()
    # The trainer's own XLA options for the step, where the checkout has
    # them (an older checkout compared with --base has none).
    options = getattr(train, "step_compiler_options", lambda: None)()
    self.step_fn = jax.jit(
        train.make_train_step(self.run.method, self.run.tx, self.config.ema),
        in_shardings=(rep, {"x": bsh}, rep), out_shardings=(rep, rep),
        donate_argnums=(0,), compiler_options=options)
    self.batches = [sharding.make_global_batch(
        self.run.mesh, self.run.dataset.global_batch(s, batch))
                    for s in range(2)]
    self.steps = steps
    # Start deep in the curriculum (as most of a run is); the step count
    # only changes traced values, never shapes. It is placed like the rest of
    # the state: an unplaced scalar would give the first call a different
    # input sharding than every later call (a second compile).
    self.state = self.state.replace(
        step=jax.device_put(jnp.int32(50_000), rep))
    c0 = compile_count()
    t0 = time.perf_counter()
    self._run(1)
    self.compile_s = time.perf_counter() - t0
    self.first_call_compiles = compile_count() - c0
    self._cache_size = self.step_fn._cache_size()  # pylint: disable=protected-access
    self._compiles = compile_count()
    self._run(1)  # warm-up
    self._check_no_compile("the warm-up step")
    self.times, self.cpu_times = [], []

  def _check_no_compile(self, where):
    size = self.step_fn._cache_size()  # pylint: disable=protected-access
    if size != self._cache_size or compile_count() != self._compiles:
      raise RuntimeError(
          f"{self.config.model.unet.model_channels}-channel UNet: "
          f"{where} compiled again (jit cache {self._cache_size} -> {size} "
          f"entries, {compile_count() - self._compiles} backend compiles); "
          "steady-state timings would include compile time")

  def _run(self, n):
    m = None
    for s in range(n):
      self.state, m = self.step_fn(self.state, {"x": self.batches[s % 2]},
                                   self.run.k_train)
    jax.block_until_ready(m)

  def time_round(self):
    t0, c0 = time.perf_counter(), time.process_time()
    self._run(self.steps)
    self.times.append((time.perf_counter() - t0) / self.steps)
    self.cpu_times.append((time.process_time() - c0) / self.steps)
    self._check_no_compile(f"timed round {len(self.times)}")


def _forward_ms(bench: _Bench, batch: int, rounds: int, steps: int) -> float:
  """Median time of one consistency-model forward (no dropout) on batch."""
  from gcflow_jax.models import make_network  # pylint: disable=g-import-not-at-top
  _, apply, _ = make_network(bench.config.model, bench.run.dataset.shape, 1)
  x = bench.batches[0][:batch]
  sigma = jnp.full((batch,), 1.0)
  fwd = jax.jit(lambda p, x, s: edm.consistency_fn(apply, p, x, s))
  params = bench.state.ema_params
  jax.block_until_ready(fwd(params, x, sigma))
  wall, cpu = [], []
  for _ in range(rounds):
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
      y = fwd(params, x, sigma)
    jax.block_until_ready(y)
    wall.append((time.perf_counter() - t0) / steps)
    cpu.append((time.process_time() - c0) / steps)
  return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


def measure(net, batch, steps, rounds, variants):
  benches = {}
  for v in variants:
    print(f"[{net} B={batch}] compiling {v} ...", flush=True)
    benches[v] = _Bench(net, batch, v, steps)
  for r in range(rounds):
    for v in variants:
      benches[v].time_round()
    print(f"[{net}] round {r + 1}/{rounds}: " + ", ".join(
        f"{v} {1000 * benches[v].times[-1]:.0f} ms "
        f"({1000 * benches[v].cpu_times[-1]:.0f} cpu-ms)"
        for v in variants), flush=True)
  ref = benches[variants[0]]
  f_full, f_full_cpu = _forward_ms(ref, batch, rounds, steps)
  f_half, f_half_cpu = _forward_ms(ref, batch // 2, rounds, steps)
  med = lambda xs: 1000 * statistics.median(xs)  # noqa: E731
  ic_ms, ic_cpu = med(benches["ic"].times), med(benches["ic"].cpu_times)
  rows = []
  for v in variants:
    ms, cpu = med(benches[v].times), med(benches[v].cpu_times)
    rows.append({
        "net": net, "params_M": round(sum(
            x.size for x in jax.tree_util.tree_leaves(
                benches[v].state.params)) / 1e6, 3),
        "batch": batch, "variant": v, "ms_per_step": ms,
        "img_per_s": batch / ms * 1000, "cpu_ms_per_step": cpu,
        "img_per_cpu_s": batch / cpu * 1000,
        "overhead_wall": ms / ic_ms - 1.0,
        "overhead_cpu": cpu / ic_cpu - 1.0,
        "compile_s": benches[v].compile_s,
        "first_call_compiles": benches[v].first_call_compiles,
        "wall_ms_rounds": [1000 * t for t in benches[v].times],
        "cpu_ms_rounds": [1000 * t for t in benches[v].cpu_times],
    })
  theory = {"net": net, "batch": batch,
            "forward_cpu_ms_full_batch": f_full_cpu,
            "forward_cpu_ms_half_batch": f_half_cpu,
            "forward_wall_ms_full_batch": f_full,
            "ic_step_cpu_ms": ic_cpu,
            "predicted_gc_overhead_mu0.5": f_half_cpu / ic_cpu,
            "predicted_full_batch_endpoint_overhead": f_full_cpu / ic_cpu}
  return rows, theory


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--nets", default="tiny,cifar")
  p.add_argument("--batch_cifar", type=int, default=8)
  p.add_argument("--batch_tiny", type=int, default=64)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--variants", default="ic,gc,gc_full,ot")
  p.add_argument("--cache_dir", default="/tmp/gcflow_jax_compile_cache")
  args = p.parse_args()
  # Re-running (e.g. more rounds) reuses the compiled steps.
  jax.config.update("jax_compilation_cache_dir", args.cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  variants = args.variants.split(",")
  if variants[0] != "ic":
    raise ValueError("--variants must start with 'ic' (the reference)")
  rows, theory = [], []
  for net in args.nets.split(","):
    batch = args.batch_cifar if net == "cifar" else args.batch_tiny
    r, t = measure(net, batch, args.steps, args.rounds, variants)
    rows += r
    theory.append(t)
    print_table(r, ["net", "params_M", "batch", "variant", "ms_per_step",
                    "img_per_s", "cpu_ms_per_step", "img_per_cpu_s",
                    "overhead_wall", "overhead_cpu", "compile_s"])
    print_table([t], list(t))
  path = write_result("consistency_throughput", rows,
                      {"theory": theory, "steps_per_round": args.steps,
                       "rounds": args.rounds})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
