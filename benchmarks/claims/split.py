"""Per-run caches and the split of runs over pinned cores, shared by the
claims scripts.

A claim trains one run per (arm, seed). Two things let its runs be spread
over processes, cores and sessions:

* `RunCache`: each finished run's rows in its own JSON file (written
  atomically), beside the identity of the run (config, overrides, budget,
  evaluation settings). A rerun skips the runs already there; a file whose
  identity differs from what the command would train stops the command
  (naming the file and the fields) instead of being reused or overwritten.
* `run_on_cores`: the runs as separate child processes, at most one per
  listed core at a time, each pinned to its core (`PIN_ENV`, read by the
  child's `pin_from_env` before JAX starts a thread, and by PID once it is
  started) with one XLA thread and one CPU device, each with its own log.
  A job may name a claim file (`train_missing` does: the cache file plus
  `.claim`), taken atomically when it starts and removed when it ends, so
  several parents can share one cache: each skips the runs another has
  finished or is running, e.g. a second `--cores=0` command started when
  core 0 frees up, beside a `--cores=1` one. A claim whose holder died
  is stale: taken over if its run is missing, removed if it is cached.

fmm_claims keeps its per-directory records (joined with `merge`), since a
students run also saves its final state; the consistency claims keep their
rows in a `RunCache` and write the record from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from gcflow_jax import run_record

__all__ = ["PIN_ENV", "ONE_THREAD_XLA_FLAGS", "pin_from_env", "child_env",
           "check_cores", "parse_cores", "Job", "take_claim", "run_on_cores",
           "train_missing", "RunCache", "config_digest"]

# The core a split child pins itself to, first thing (before JAX starts any
# thread; there is no pre-exec hook in a forking JAX parent).
PIN_ENV = "GCFLOW_SPLIT_CORE"
ONE_THREAD_XLA_FLAGS = ("--xla_cpu_multi_thread_eigen=false "
                        "intra_op_parallelism_threads=1")


def pin_from_env() -> Optional[int]:
  """Pins this process to the core in PIN_ENV, if set; returns it."""
  core = os.environ.get(PIN_ENV)
  if not core:
    return None
  os.sched_setaffinity(0, {int(core)})
  return int(core)


def child_env(core: int, **extra: str) -> Dict[str, str]:
  """A split child's environment: this one plus `extra`, pinned to `core`
  (PIN_ENV) with one XLA thread and one CPU device: an inherited
  --xla_force_host_platform_device_count is dropped (several host devices
  on one XLA thread can stall in a cross-device all-reduce)."""
  inherited = [f for f in os.environ.get("XLA_FLAGS", "").split()
               if not f.startswith("--xla_force_host_platform_device_count")]
  return dict(os.environ, **extra, **{PIN_ENV: str(core)},
              XLA_FLAGS=" ".join(inherited + [ONE_THREAD_XLA_FLAGS]))


def check_cores(cores: Sequence[int], flag: str = "--cores") -> Tuple[int,
                                                                       ...]:
  """`cores` if each is one of this machine's; exits naming `flag` and the
  allowed range otherwise. A core listed twice runs two children at once."""
  n = os.cpu_count() or 1
  bad = [c for c in cores if not 0 <= c < n]
  if bad:
    raise SystemExit(f"{flag}={','.join(map(str, cores))}: {bad} not among "
                     f"this machine's cores 0..{n - 1}")
  return tuple(cores)


def parse_cores(text: str, flag: str = "--cores") -> Tuple[int, ...]:
  """`flag`'s comma-separated core numbers ('' = none), each checked by
  `check_cores`; exits naming `flag` if one is not a number."""
  try:
    cores = [int(v) for v in text.split(",") if v]
  except ValueError:
    raise SystemExit(f"{flag}={text!r}: comma-separated core numbers, "
                     "e.g. 0,1") from None
  return check_cores(cores, flag)


@dataclasses.dataclass
class Job:
  """One child process: `argv` (without the interpreter: a script and its
  flags, or ['-m', module, ...]), its log file, extra environment, and an
  optional claim file (`take_claim`): with one, the job is skipped if it
  has already finished or another live process holds the claim."""
  name: str
  argv: List[str]
  log: str
  env: Dict[str, str] = dataclasses.field(default_factory=dict)
  claim: Optional[str] = None


def _claim_holder(path: str) -> Optional[Tuple[str, int]]:
  """(host, pid) written in a claim file; None if it is unreadable (a
  claim being written, or a foreign file)."""
  try:
    with open(path) as f:
      host, pid = f.read().split()
    return host, int(pid)
  except (OSError, ValueError):
    return None


def _alive(host: str, pid: int) -> bool:
  """Whether the claim's holder may still run: a process of this host that
  exists, or any holder on another host (which this one cannot check)."""
  if host != os.uname().nodename:
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def take_claim(path: str, pid: Optional[int] = None) -> bool:
  """Takes the claim file `path` for `pid` (default: this process),
  atomically: True if taken (or already this process's: then its holder
  becomes `pid`, as a parent hands the claim to its child), False if
  another live holder has it. A claim whose holder on this host has died is
  stale and is taken over."""
  me = os.uname().nodename
  pid = os.getpid() if pid is None else pid
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      holder = _claim_holder(path)
      if holder == (me, os.getpid()):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
          f.write(f"{me} {pid}\n")
        os.replace(tmp, path)
        return True
      if holder is None or _alive(*holder):
        return False
      try:      # stale: its holder died without removing it
        os.remove(path)
      except FileNotFoundError:
        pass
      continue
    with os.fdopen(fd, "w") as f:
      f.write(f"{me} {pid}\n")
    return True
  return False


def _claim_free(path: str) -> bool:
  """Whether nobody holds the claim `path` (no file, or a dead holder)."""
  if not os.path.exists(path):
    return True
  holder = _claim_holder(path)
  return holder is not None and not _alive(*holder)


def _release_claim(path: Optional[str]) -> None:
  if path:
    try:
      os.remove(path)
    except FileNotFoundError:
      pass


def _drop_stale_claim(path: Optional[str]) -> None:
  """Removes the claim `path` of a finished run if its holder has died (a
  parent stopped while its child finished leaves one behind); a live
  holder's claim stays (its child may have cached the run, not exited)."""
  if path and os.path.exists(path) and _claim_free(path):
    _release_claim(path)


def run_on_cores(jobs: Sequence[Job], cores: Sequence[int],
                 finished: Callable[[Job], bool] = lambda job: True, *,
                 poll_s: float = 2.0, say: Callable[[str], None] = None
                 ) -> List[Job]:
  """Runs `jobs` in order as child processes of this interpreter, at most
  one per core of `cores` at a time (each pinned, one XLA thread, stdout
  and stderr to its log). A job succeeded if it exited 0 and
  `finished(job)` holds. A job with a claim file is skipped, when its turn
  comes, if `finished(job)` already holds; if another live process holds
  its claim (another parent sharing the work), it is waited for: done
  once `finished(job)` holds, run here if that process stops without
  finishing it. A job's claim is held while it runs. Returns the jobs that
  did not succeed."""
  say = say or (lambda text: print(text, flush=True))
  pending, free = list(jobs), list(cores)
  running, failed, waiting = [], [], []
  while pending or running or waiting:
    for job in list(waiting):
      if finished(job):
        waiting.remove(job)
        say(f"[split] {job.name}: finished by another process")
      elif _claim_free(job.claim):
        waiting.remove(job)
        pending.insert(0, job)
    while pending and free:
      job = pending.pop(0)
      if job.claim and finished(job):
        _drop_stale_claim(job.claim)
        say(f"[split] {job.name}: skipped (already finished)")
        continue
      if job.claim and not take_claim(job.claim):
        waiting.append(job)
        say(f"[split] {job.name}: running in another process "
            f"({job.claim}); waiting for it")
        continue
      core = free.pop(0)
      os.makedirs(os.path.dirname(os.path.abspath(job.log)), exist_ok=True)
      log = open(job.log, "w")
      proc = subprocess.Popen([sys.executable, *job.argv], stdout=log,
                              stderr=subprocess.STDOUT,
                              env=child_env(core, **job.env))
      try:  # also by PID: a child that does not call pin_from_env
        os.sched_setaffinity(proc.pid, {core})
      except ProcessLookupError:
        pass  # already gone: its exit status says why
      if job.claim:   # held by the child: its parent may be stopped first
        take_claim(job.claim, proc.pid)
      running.append((proc, job, core, log))
      say(f"[split] {job.name} on core {core}: {job.log}")
    time.sleep(poll_s)
    for item in [r for r in running if r[0].poll() is not None]:
      proc, job, core, log = item
      running.remove(item)
      log.close()
      _release_claim(job.claim)
      free.append(core)
      ok = proc.returncode == 0 and finished(job)
      say(f"[split] {job.name}: "
          f"{'finished' if ok else f'FAILED (exit {proc.returncode})'}")
      if not ok:
        failed.append(job)
  return failed


def train_missing(cache: "RunCache", runs: Iterable[Tuple[str, int]],
                  argv_of: Callable[[str, int], List[str]],
                  cores: Sequence[int]) -> None:
  """Each (arm, seed) of `runs` not yet in `cache` as its own child
  process (`run_on_cores`: `argv_of(arm, seed)`, which must train and cache
  that run only), its log beside its cache file, claimed by the cache file
  plus `.claim` while it runs (another parent on the same cache skips it).
  Exits naming the failed runs' logs (a child that exits 0 without caching
  its run failed)."""
  paths, jobs = {}, []
  for arm, seed in runs:
    path = cache.path(arm, seed)
    if os.path.exists(path):
      _drop_stale_claim(path + ".claim")
      continue
    name = f"{arm} seed {seed}"
    paths[name] = path
    jobs.append(Job(name, argv_of(arm, seed), path[:-len(".json")] + ".log",
                    claim=path + ".claim"))
  failed = run_on_cores(jobs, cores,
                        lambda job: os.path.exists(paths[job.name]))
  if failed:
    raise SystemExit("[split] failed runs (their logs): "
                     + ", ".join(j.log for j in failed))


class RunCache:
  """One JSON file per (arm, seed) under `root`: {'identity', 'arm',
  'seed', 'rows', 'meta'}. `identity` is everything that makes two runs the
  same run (config, overrides, steps, evaluation settings); `get` returns
  the cached rows only for the same identity and stops on a different one,
  so a changed command never reuses, nor overwrites, another run's rows."""

  def __init__(self, root: str):
    self.root = root

  def path(self, arm: str, seed: int) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in arm)
    return os.path.join(self.root, f"{safe}_s{seed}.json")

  def get(self, arm: str, seed: int, identity: dict) -> Optional[List[dict]]:
    """The rows of (arm, seed) if cached with `identity`; None if not
    cached; SystemExit if cached with another identity."""
    path = self.path(arm, seed)
    if not os.path.exists(path):
      return None
    entry = run_record.read_json(path)
    if not isinstance(entry, dict) or "identity" not in entry:
      raise SystemExit(f"{path}: not a run-cache file (move it away to "
                       "retrain this run)")
    want = json.loads(json.dumps(identity))  # tuples -> lists, as stored
    got = entry["identity"]
    if got != want:
      diff = sorted(k for k in set(want) | set(got)
                    if want.get(k) != got.get(k))
      raise SystemExit(
          f"{path} holds another run of {arm} seed {seed}: "
          + "; ".join(f"{k}: cached {got.get(k)!r}, asked {want.get(k)!r}"
                      for k in diff)
          + " (use another --cache_dir, or move the file away to retrain)")
    return entry["rows"]

  def put(self, arm: str, seed: int, identity: dict, rows: List[dict],
          **meta) -> str:
    """Writes (arm, seed)'s rows atomically; returns the path."""
    path = self.path(arm, seed)
    os.makedirs(self.root, exist_ok=True)
    run_record.write_json_atomic(path, {
        "identity": identity, "arm": arm, "seed": seed, "rows": rows,
        "meta": meta})
    return path

  def get_or_run(self, arm: str, seed: int, identity: dict,
                 run: Callable[[], List[dict]],
                 meta: Callable[[], dict] = dict) -> List[dict]:
    """The cached rows of (arm, seed), or `run()`'s, cached first with
    `meta()` (called when the run has finished, e.g. the machine and date)
    and the run's wall-clock seconds."""
    rows = self.get(arm, seed, identity)
    if rows is None:
      start = time.perf_counter()
      rows = run()
      self.put(arm, seed, identity, rows, **meta(),
               wall_sec=round(time.perf_counter() - start, 2))
    return rows

  def collect(self, runs: Iterable[Tuple[str, int]],
              identity_of: Callable[[str, int], dict]
              ) -> Tuple[List[dict], List[Tuple[str, int]]]:
    """(the cached rows of `runs`, in their order; the (arm, seed) of
    `runs` not cached yet), each file read once (a cached run of another
    identity stops, as in `get`)."""
    rows, missing = [], []
    for arm, seed in runs:
      got = self.get(arm, seed, identity_of(arm, seed))
      if got is None:
        missing.append((arm, seed))
      else:
        rows += got
    return rows, missing


def config_digest(config) -> str:
  """16 hex digits of the SHA-256 of a resolved config's sorted JSON (an
  ml_collections ConfigDict): part of a run's identity, so an edited config
  file or default is a different run."""
  text = config.to_json_best_effort(sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]
