"""Metric writers: stdout + TensorBoard, with clu's interface.

With TensorFlow installed (`pip install 'gcflow_jax[tf]'`) this is exactly
`clu.metric_writers.create_default_writer`. Without it (the default CPU
install: clu's writers import TensorFlow) the same `write_scalars /
write_images / write_hparams / flush / close` interface writes stdout lines
and TensorBoard event files through tensorboardX (protobuf only, no TF).
Either way `tensorboard --logdir WORKDIR` shows the run.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Mapping

import numpy as np

__all__ = ["create_writer", "Progress", "format_metrics"]


def format_metrics(scalars: Mapping[str, Any]) -> str:
  parts = []
  for k in sorted(scalars):
    v = float(scalars[k])
    parts.append(f"{k}={v:.5g}")
  return ", ".join(parts)


class _FallbackWriter:
  """stdout + tensorboardX event files (process 0 only writes files)."""

  def __init__(self, logdir: str, just_logging: bool):
    self._tb = None
    if not just_logging:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(logdir=logdir, flush_secs=30)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    print(f"[{step}] {format_metrics(scalars)}", flush=True)
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(k, float(v), global_step=int(step))

  def write_images(self, step: int, images: Mapping[str, np.ndarray]):
    if self._tb is not None:
      for k, v in images.items():
        v = np.asarray(v)
        if v.ndim == 3:
          v = v[None]
        self._tb.add_images(k, v, global_step=int(step), dataformats="NHWC")

  def write_hparams(self, hparams: Mapping[str, Any]):
    print("hparams: " + json.dumps({k: str(v) for k, v in hparams.items()}),
          flush=True)
    if self._tb is not None:
      self._tb.add_text("hparams", json.dumps(
          {k: str(v) for k, v in hparams.items()}, indent=1))

  def flush(self):
    if self._tb is not None:
      self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()


def create_writer(workdir: str, just_logging: bool = False):
  """clu's default writer when TensorFlow is importable, else the fallback."""
  try:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    return metric_writers.create_default_writer(
        workdir, just_logging=just_logging)
  except ImportError:
    return _FallbackWriter(workdir, just_logging)


class Progress:
  """Steps/s and ETA over the last reporting window (clu's ReportProgress
  needs TensorFlow; this prints the same information)."""

  def __init__(self, total_steps: int, start_step: int):
    self.total = total_steps
    self._t0 = time.time()
    self._last_t = self._t0
    self._last_step = start_step

  def report(self, step: int) -> dict:
    now = time.time()
    dt = max(now - self._last_t, 1e-9)
    rate = (step - self._last_step) / dt
    self._last_t, self._last_step = now, step
    eta = (self.total - step) / rate if rate > 0 else math.inf
    return {"steps_per_sec": rate, "eta_sec": eta,
            "elapsed_sec": now - self._t0}

  @staticmethod
  def line(step: int, total: int, info: dict, loss: float) -> str:
    eta = info["eta_sec"]
    eta_s = (time.strftime("%H:%M:%S", time.gmtime(eta))
             if math.isfinite(eta) else "?")
    return (f"step {step}/{total} | {info['steps_per_sec']:.1f} steps/s | "
            f"ETA {eta_s} | loss {loss:.5g}")

