r"""CPU time of the iCT train step: this checkout against another, interleaved.

XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
  taskset -c 1 python benchmarks/step_compare.py --base=PATH/TO/CHECKOUT \
  [--nets=tiny,cifar] [--variant=ic] [--rounds=4] [--steps=3]

`--base` is a checkout of an earlier commit (e.g. `git worktree add
../base db17eab`). For each network (the tiny UNet at batch 64 and the
CIFAR-10 UNet of configs/cifar_gc.py at batch 8, as in
consistency_throughput.py) one worker process per checkout builds the step
exactly as that checkout's trainer does (`consistency_throughput._Bench`,
which fails if any step after the first compiles), then the parent runs
rounds A, B, A, B, ... of `--steps` steps each, so both see the same machine
load. Each worker imports its own checkout's `gcflow_jax` and configs;
workers inherit the parent's CPU affinity and XLA_FLAGS (run the whole
command pinned to one core). Reported per arm: min and median over rounds
of wall s/step and process CPU s/step (`time.process_time`), the compile
time of the first call, and the speed-up base/this of the medians.
Prints a table, writes results/step_compare.json (`--out` to rename).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
_BATCH = {"tiny": 64, "cifar": 8}


def _worker(args) -> None:
  """Builds one step in checkout `args.tree`; times a round per stdin line."""
  os.chdir(args.tree)   # its configs/
  sys.path.insert(0, args.tree)
  sys.path.insert(1, _HERE)
  # The checkout's package first: consistency_throughput puts this
  # checkout's root on sys.path when it is imported.
  import gcflow_jax  # pylint: disable=g-import-not-at-top
  import consistency_throughput as ct  # pylint: disable=g-import-not-at-top
  where = os.path.dirname(os.path.dirname(os.path.abspath(
      gcflow_jax.__file__)))
  if where != os.path.abspath(args.tree):
    raise RuntimeError(f"worker for {args.tree} imported gcflow_jax from "
                       f"{where}")
  # No persistent compilation cache is set: every worker compiles.
  bench = ct._Bench(args.net, args.batch, args.variant, args.steps)  # pylint: disable=protected-access
  print(json.dumps({"compile_s": bench.compile_s,
                    "first_call_compiles": bench.first_call_compiles}),
        flush=True)
  for line in sys.stdin:
    if line.strip() != "round":
      break
    bench.time_round()
    print(json.dumps({"wall": bench.times[-1], "cpu": bench.cpu_times[-1]}),
          flush=True)


def _spawn(tree, net, variant, steps):
  cmd = [sys.executable, os.path.abspath(__file__), "--worker",
         f"--tree={os.path.abspath(tree)}", f"--net={net}",
         f"--batch={_BATCH[net]}", f"--variant={variant}", f"--steps={steps}"]
  env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
  return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, env=env)


def _read(proc, what):
  for line in proc.stdout:
    if line.startswith("{"):
      return json.loads(line)
  raise RuntimeError(f"worker exited during {what} (rc={proc.wait()})")


def compare(net, variant, base, rounds, steps):
  arms = {"base": base, "this": _ROOT}
  procs, rows = {}, {}
  try:
    for arm, tree in arms.items():   # compile one after the other
      print(f"[{net}] compiling {arm} ({tree}) ...", flush=True)
      procs[arm] = _spawn(tree, net, variant, steps)
      rows[arm] = dict(_read(procs[arm], "compile"), wall=[], cpu=[])
    for r in range(rounds):
      for arm in arms:
        procs[arm].stdin.write("round\n")
        procs[arm].stdin.flush()
        t = _read(procs[arm], f"round {r + 1}")
        rows[arm]["wall"].append(t["wall"])
        rows[arm]["cpu"].append(t["cpu"])
      print(f"[{net}] round {r + 1}/{rounds}: " + ", ".join(
          f"{a} {rows[a]['wall'][-1]:.3f} s ({rows[a]['cpu'][-1]:.3f} cpu-s)"
          for a in arms), flush=True)
  finally:
    for p in procs.values():
      if p.poll() is None:
        p.stdin.close()
        p.wait(timeout=60)
  out = []
  for arm, tree in arms.items():
    w, c = rows[arm]["wall"], rows[arm]["cpu"]
    out.append({"net": net, "batch": _BATCH[net], "variant": variant,
                "arm": arm, "checkout": os.path.basename(
                    os.path.abspath(tree)),
                "s_per_step_min": min(w),
                "s_per_step_median": statistics.median(w),
                "cpu_s_per_step_min": min(c),
                "cpu_s_per_step_median": statistics.median(c),
                "compile_s": rows[arm]["compile_s"],
                "wall_s_rounds": w, "cpu_s_rounds": c})
  b, t = out
  t["speedup_cpu_median"] = (b["cpu_s_per_step_median"]
                             / t["cpu_s_per_step_median"])
  t["speedup_cpu_min"] = b["cpu_s_per_step_min"] / t["cpu_s_per_step_min"]
  t["speedup_wall_median"] = (b["s_per_step_median"]
                              / t["s_per_step_median"])
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--base", help="checkout to compare against")
  p.add_argument("--nets", default="tiny,cifar")
  p.add_argument("--variant", default="ic")
  p.add_argument("--rounds", type=int, default=4)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--out", default="step_compare")
  p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--tree", help=argparse.SUPPRESS)
  p.add_argument("--net", help=argparse.SUPPRESS)
  p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.worker:
    _worker(args)
    return
  if not args.base or not os.path.isdir(os.path.join(args.base,
                                                     "gcflow_jax")):
    raise ValueError(f"--base={args.base!r} must be a checkout (a folder "
                     "with gcflow_jax/)")
  nets = args.nets.split(",")
  for n in nets:
    if n not in _BATCH:
      raise ValueError(f"--nets entry {n!r} is not one of {tuple(_BATCH)}")
  if args.variant not in ("ic", "ot", "gc", "gc_full"):
    raise ValueError(f"--variant={args.variant!r} is not one of "
                     "('ic', 'ot', 'gc', 'gc_full')")
  sys.path.insert(0, _HERE)
  sys.path.insert(1, _ROOT)
  from common import print_table, write_result  # pylint: disable=g-import-not-at-top
  base_rev = subprocess.run(["git", "-C", args.base, "rev-parse", "--short",
                             "HEAD"], capture_output=True, text=True
                            ).stdout.strip()
  this_rev = subprocess.run(["git", "-C", _ROOT, "rev-parse", "--short",
                             "HEAD"], capture_output=True, text=True
                            ).stdout.strip()
  load_start = os.getloadavg()[0]
  rows = []
  for net in nets:
    rows += compare(net, args.variant, args.base, args.rounds, args.steps)
    print_table(rows, ["net", "batch", "arm", "s_per_step_min",
                       "s_per_step_median", "cpu_s_per_step_min",
                       "cpu_s_per_step_median", "compile_s",
                       "speedup_cpu_median"])
  path = write_result(args.out, rows, {
      "base_commit": base_rev, "this_commit": this_rev,
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "cpu_affinity": sorted(os.sched_getaffinity(0)),
      "load_average_1min_start": load_start,
      "notes": (f"base = commit {base_rev}, this = {this_rev} (plus any "
                "uncommitted changes of this checkout); run as XLA_FLAGS="
                f"\"{os.environ.get('XLA_FLAGS', '')}\" taskset -c "
                f"{','.join(map(str, sorted(os.sched_getaffinity(0))))}; "
                f"rounds alternate base, this; {args.rounds} rounds of "
                f"{args.steps} steps; 1-min load average "
                f"{load_start:.1f} at the start"),
      "rounds": args.rounds, "steps_per_round": args.steps})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
