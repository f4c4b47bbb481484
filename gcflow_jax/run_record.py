"""A run's record across processes: the run log and atomic file writes.

A run may span several processes (killed, preempted, resumed, rerun). Its
record `WORKDIR/metrics.json` is built from an append-only log,
`WORKDIR/run_log.jsonl`, one JSON object per line, appended by process 0
with flush + fsync:

  {"event": "start", "step": S, "time": T}    a process began at step S
  {"event": "log", "step": k, "metrics": {...}, "train_sec": t}
      mean training metrics over the log window ending at step k; t is this
      process's training wall time so far
  {"event": "window", "step": k, "n": n, "sums": {...}, "train_sec": t}
      the open log window at a checkpoint that is not a log step (n steps
      since the last log step), so a run resumed at k averages the same
      steps as an uninterrupted one
  {"event": "trained", "step": N, "train_sec": t}   the training loop ended
  {"event": "final", "step": N, "scores": {...}}    final evaluation scores

A process that starts at step S replays the steps after S, so entries of
earlier processes with a step after S are superseded (ignored, never
rewritten). A line torn by a kill is skipped. `summarize` turns the log into
the history of every log step once, the resumes, and the training time
summed over processes.

Files that must survive a kill (metrics.json, sample images) are written by
`atomic_open`: a temporary file in the same directory, fsync, `os.replace`,
so readers see the old file or the new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

__all__ = ["RunLog", "Summary", "Window", "summarize", "atomic_open",
           "write_json_atomic", "read_json", "LOG_NAME", "RECORD_NAME",
           "REEVALUATED_NAME", "utc_now"]

LOG_NAME = "run_log.jsonl"
RECORD_NAME = "metrics.json"
REEVALUATED_NAME = "metrics_reevaluated.json"


def utc_now() -> str:
  return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------ atomic I/O --
def _fsync_dir(directory: str) -> None:
  """Makes a rename in `directory` durable (no-op where unsupported)."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w") -> Iterator[Any]:
  """`with atomic_open(path, "wb") as f: ...` replaces `path` only when the
  block completes: the data go to a temporary file in the same directory,
  are fsynced and then renamed over `path`. An exception (or a kill) inside
  the block leaves `path` as it was and removes the temporary file (a kill
  can leave a hidden `.NAME.PID.tmp`)."""
  if mode not in ("w", "wb"):
    raise ValueError(f"atomic_open mode={mode!r} is not one of ('w', 'wb')")
  path = os.path.abspath(path)
  directory, name = os.path.split(path)
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
  try:
    with open(tmp, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  _fsync_dir(directory)


def write_json_atomic(path: str, obj: Any) -> None:
  with atomic_open(path) as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")


def read_json(path: str) -> Optional[Any]:
  """The JSON in `path`, or None when it is missing or unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


# ---------------------------------------------------------------- window --
class Window:
  """Running sums of the per-step training metrics since the last log step.

  Sums are taken step by step in float64, so the means do not depend on
  where a run was checked, checkpointed or resumed inside the window.
  """

  def __init__(self, n: int = 0, sums: Optional[Mapping[str, float]] = None):
    self.n = n
    self.sums: Dict[str, float] = dict(sums or {})

  def add(self, values: Mapping[str, Sequence[float]]) -> None:
    """`values[name]` holds one value per step, in step order."""
    count = None
    for k, vals in values.items():
      s = self.sums.get(k, 0.0)
      for v in vals:
        s += float(v)
      self.sums[k] = s
      count = len(vals)
    self.n += count or 0

  def pop_means(self) -> Dict[str, float]:
    """The means over the window, which is then emptied."""
    if self.n == 0:
      raise ValueError("empty log window")
    means = {k: s / self.n for k, s in self.sums.items()}
    self.n, self.sums = 0, {}
    return means


# ------------------------------------------------------------------- log --
@dataclasses.dataclass
class Summary:
  """What the run log says about the whole run.

  Attributes:
    history: `{"step": k, **means}` at every log step, once, by step.
    resumes: `{"step": S, "time": T}` for every process start after the
      first (S = 0: a restart before any checkpoint).
    train_sec: training wall time summed over processes, each counted up to
      its last log entry (work a killed process did after its last
      checkpoint is replayed and counted again: it was spent).
    windows: the open log window at step k (`Window`), for a resume at k.
    final: the last final-evaluation scores logged, or None.
  """

  history: List[Dict[str, float]]
  resumes: List[Dict[str, Any]]
  train_sec: float
  windows: Dict[int, Window]
  final: Optional[Dict[str, Any]]


def summarize(entries: Sequence[Mapping[str, Any]]) -> Summary:
  """Folds log entries (in the order written) into a `Summary`."""
  history: Dict[int, Dict[str, float]] = {}
  windows: Dict[int, Window] = {}
  resumes: List[Dict[str, Any]] = []
  segment_sec: List[float] = []
  final = None
  for e in entries:
    kind, step = e.get("event"), int(e.get("step", -1))
    if kind == "start":
      # Steps after `step` are replayed by this process: supersede them.
      history = {k: v for k, v in history.items() if k <= step}
      windows = {k: v for k, v in windows.items() if k <= step}
      if final is not None and final["step"] > step:
        final = None
      if segment_sec:
        resumes.append({"step": step, "time": e.get("time")})
      segment_sec.append(0.0)
      continue
    if not segment_sec:  # entries without a start (older logs)
      segment_sec.append(0.0)
    if "train_sec" in e:
      segment_sec[-1] = max(segment_sec[-1], float(e["train_sec"]))
    if kind == "log":
      history[step] = {"step": step, **e["metrics"]}
    elif kind == "window":
      windows[step] = Window(int(e["n"]), e["sums"])
    elif kind == "final":
      final = {"step": step, **e["scores"]}
  return Summary(history=[history[k] for k in sorted(history)],
                 resumes=resumes, train_sec=float(sum(segment_sec)),
                 windows=windows, final=final)


class RunLog:
  """The append-only log `WORKDIR/run_log.jsonl` (see the module doc).

  `write=False` (processes other than 0) reads but never writes.
  """

  def __init__(self, workdir: str, write: bool = True):
    self.path = os.path.join(os.path.abspath(workdir), LOG_NAME)
    self.write = write

  def read(self) -> List[Dict[str, Any]]:
    """The parseable entries, in order (a line torn by a kill is skipped)."""
    try:
      with open(self.path, "rb") as f:
        lines = f.read().split(b"\n")
    except FileNotFoundError:
      return []
    entries = []
    for line in lines:
      try:
        e = json.loads(line)
      except ValueError:
        continue
      if isinstance(e, dict):
        entries.append(e)
    return entries

  def summary(self) -> Summary:
    return summarize(self.read())

  def append(self, event: str, step: int, **fields) -> None:
    if not self.write:
      return
    line = json.dumps({"event": event, "step": int(step), **fields},
                      sort_keys=True)
    with open(self.path, "ab") as f:
      # A kill mid-append leaves a line without its newline: start a new
      # line so this entry is not glued to the torn one.
      if f.tell() > 0:
        with open(self.path, "rb") as r:
          r.seek(-1, os.SEEK_END)
          if r.read(1) != b"\n":
            f.write(b"\n")
      f.write(line.encode() + b"\n")
      f.flush()
      os.fsync(f.fileno())

  def begin(self, step: int) -> Window:
    """Logs a process start at `step`; returns the log window to continue
    (the one saved with the checkpoint at `step`, else an empty one)."""
    windows = summarize(self.read() + [{"event": "start", "step": step}]
                        ).windows
    self.append("start", step, time=utc_now(), pid=os.getpid())
    w = windows.get(int(step))
    return Window(w.n, w.sums) if w is not None else Window()
