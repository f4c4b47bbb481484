"""Helpers shared by the benchmark scripts: machine info and JSON output."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import sys

import jax

__all__ = ["machine_info", "result_path", "read_result", "write_result",
           "repo_relative",
           "print_table", "compile_count", "counting_compiles"]

# Every XLA backend compile in this process (persistent-cache hits and jit
# cache hits do not compile).
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compiles = [0]


def _count_compiles(event, duration_secs, **_):
  del duration_secs
  if event == _COMPILE_EVENT:
    _compiles[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compiles)


def compile_count() -> int:
  """XLA backend compiles in this process so far."""
  return _compiles[0]


@contextlib.contextmanager
def counting_compiles():
  """`with counting_compiles() as n: ...`; afterwards `n[0]` is the number
  of backend compiles inside the block."""
  start, out = _compiles[0], [0]
  try:
    yield out
  finally:
    out[0] = _compiles[0] - start


def machine_info() -> dict:
  dev = jax.devices()[0]
  return {
      "platform": platform.platform(),
      "processor": platform.processor() or platform.machine(),
      "cpu_count": os.cpu_count(),
      "python": sys.version.split()[0],
      "jax": jax.__version__,
      "backend": jax.default_backend(),
      "device_kind": dev.device_kind,
      "device_count": jax.device_count(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      # Timings are only comparable on an idle machine: record how busy it
      # was when the result was written.
      "load_average_1min": (os.getloadavg()[0]
                            if hasattr(os, "getloadavg") else None),
  }


def result_path(name: str) -> str:
  """results/<name>.json (or under $GCFLOW_BENCH_DIR)."""
  out_dir = os.environ.get("GCFLOW_BENCH_DIR", os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results"))
  return os.path.join(out_dir, f"{name}.json")


def read_result(name: str) -> dict:
  """The existing result `name` ({} if there is none), e.g. to keep the
  rows a partial rerun does not replace."""
  path = result_path(name)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def repo_relative(command: str) -> str:
  """`command` with this checkout's absolute path dropped from the paths
  in it (a script started by absolute path, e.g. by a split parent), so a
  record names the command as run from the repository root on any clone."""
  return command.replace(REPO_ROOT + os.sep, "")


def write_result(name: str, rows, extra=None) -> str:
  """Writes results/<name>.json atomically: the command, the machine, the
  rows and `extra`; every top-level '*command' string repository-relative."""
  path = result_path(name)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  obj = {"benchmark": name, "command": " ".join(sys.argv),
         "machine": machine_info(), "rows": rows, **(extra or {})}
  obj = {k: repo_relative(v) if k.endswith("command") and isinstance(v, str)
         else v for k, v in obj.items()}
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)
  return path


def print_table(rows, columns) -> None:
  if not rows:
    print("(no rows)")
    return
  widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows))
            for c in columns]
  print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
  print("  ".join("-" * w for w in widths))
  for r in rows:
    print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _fmt(v) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  return "" if v is None else str(v)
