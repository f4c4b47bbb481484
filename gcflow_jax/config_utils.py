"""Loading and validating configs (outside `main.py`, so tests and colabs
can use them).

`load_config('configs/x.py:variant')` imports a config file and calls its
`get_config(variant)`; `validate(config)` checks every shared field (and the
method family's own section) and raises a ValueError naming the field and
its allowed values, before anything is compiled.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:  # ml_collections is only needed by the config files.
  import ml_collections

__all__ = ["load_config", "validate", "repo_root"]


def repo_root() -> str:
  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(spec: str, overrides: Optional[Dict[str, Any]] = None
                ) -> ml_collections.ConfigDict:
  """'path/to/config.py[:arg]' -> locked ConfigDict. Relative paths are
  tried against the cwd, then the repository root. `overrides` sets
  dotted fields, e.g. {'fmm.loss': 'emd', 'train.steps': 300}, before the
  config is locked."""
  path, _, arg = spec.partition(":")
  if repo_root() not in sys.path:
    sys.path.insert(0, repo_root())  # configs import `configs.base`
  candidates = [path, os.path.join(repo_root(), path)]
  found = next((p for p in candidates if os.path.exists(p)), None)
  if found is None:
    raise FileNotFoundError(f"config file {path!r} not found (tried "
                            f"{candidates})")
  mod_spec = importlib.util.spec_from_file_location(
      "_gcflow_cfg_" + os.path.basename(found)[:-3], found)
  module = importlib.util.module_from_spec(mod_spec)
  mod_spec.loader.exec_module(module)
  config = module.get_config(arg) if arg else module.get_config()
  for key, value in (overrides or {}).items():
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = value
  config.lock()
  return config


def _choice(value, field, allowed):
  if value not in allowed:
    raise ValueError(f"{field}={value!r} is not one of {tuple(allowed)}")


def _positive(value, field, allow_zero=False):
  ok = value >= 0 if allow_zero else value > 0
  if not ok:
    raise ValueError(f"{field}={value!r} must be "
                     f"{'>= 0' if allow_zero else '> 0'}")


def host_ot_fields(config) -> list:
  """The fields ("block.field='value'") that put a host call
  (`jax.pure_callback`: scipy's assignment) into the train step: minibatch
  OT by the exact solver or Sinkhorn with 'lsa' rounding, for iCT
  (`ict.coupling='ot'`) and GCM (`gcm.coupling='ot'`)."""
  block = config.method   # the method's own config block
  if block not in ("ict", "gcm") or config[block].coupling != "ot":
    return []
  if config[block].ot_solver == "exact":
    return [f"{block}.ot_solver='exact'"]
  if config[block].ot_rounding == "lsa":
    return [f"{block}.ot_rounding='lsa'"]
  return []


def check_host_ot(config, num_devices: int, backend: Optional[str]) -> None:
  """Raises ValueError, naming the field and what to use instead, when the
  train step would call the host (`host_ot_fields`) while partitioned over
  several CPU devices: XLA:CPU aborts such a step after a 40 s rendezvous
  timeout. Part of `validate` (with the trainer's backend); also called by
  `train._Run.jit_train_step`, the benchmarks' way to compile the step."""
  host = host_ot_fields(config)
  if host and backend == "cpu" and num_devices > 1:
    block = host[0].split(".")[0]
    # Seen with jax 0.10.2 on 2, 4 and 8 host-platform CPU devices, for iCT
    # and GCM: the step aborts in a collective's rendezvous (40 s timeout)
    # while device 0's callback waits for its own argument. Outside the
    # trainer too: a jitted function over 2 CPU devices whose callback
    # reads (np.asarray) its [B, B] float32 operand hangs from B = 362 and
    # runs up to B = 256; jax device_puts the operand onto CPU device 0
    # before calling back, and the callback waits in np.asarray on it. Not
    # a size per argument (128 KiB chunks hang too) nor intra-op threading
    # (benchmarks/host_callback_cpu_devices.py).
    raise ValueError(
        f"{host[0]}: minibatch OT on the host (jax.pure_callback) inside a "
        f"train step partitioned over {num_devices} CPU devices aborts in "
        "XLA:CPU's collective rendezvous; use "
        f"{block}.ot_solver='sinkhorn' with {block}.ot_rounding='greedy' "
        "(all on the device), or one CPU device (no "
        "--xla_force_host_platform_device_count in XLA_FLAGS)")


def validate(config, num_devices: int = 1, num_processes: int = 1,
             backend: Optional[str] = None) -> None:
  """Raises ValueError on the first invalid field. `backend`
  (`jax.default_backend()`, given by the trainer before it trains) enables
  the checks of the train step that depend on it."""
  # Imported here to keep this module light for `main.py --help`.
  from gcflow_jax import data, methods  # pylint: disable=g-import-not-at-top
  from gcflow_jax.math import ema, interpolants, ode  # pylint: disable=g-import-not-at-top
  from gcflow_jax.models import NETWORKS  # pylint: disable=g-import-not-at-top
  from gcflow_jax.models.unet import DTYPES  # pylint: disable=g-import-not-at-top

  _choice(config.method, "method", sorted(methods.METHODS))
  _choice(config.data.name, "data.name", data.DATASETS)
  _positive(config.data.image_size, "data.image_size", allow_zero=True)
  _choice(config.data.channels, "data.channels", (0, 1, 3))
  _choice(config.data.offline_fallback, "data.offline_fallback",
          ("error", "digits", "mnist5k", "mnist_test"))
  _positive(config.data.dim, "data.dim")
  _choice(config.model.name, "model.name", NETWORKS)
  _choice(config.model.unet.dtype, "model.unet.dtype", DTYPES)
  image = data.data_kind(config.data) == "image"
  if not image and config.model.name == "unet":
    raise ValueError(f"model.name='unet' needs image data; data.name="
                     f"{config.data.name!r} holds vectors: use 'mlp'")
  _choice(config.interp.name, "interp.name", interpolants.INTERPOLANTS)
  _choice(config.optim.name, "optim.name", ("adam", "adamw", "radam", "lion"))
  _positive(config.optim.lr, "optim.lr")
  _positive(config.optim.weight_decay, "optim.weight_decay", allow_zero=True)
  _positive(config.optim.warmup_steps, "optim.warmup_steps", allow_zero=True)
  _choice(config.optim.schedule, "optim.schedule", ("constant", "cosine"))
  _positive(config.optim.grad_clip, "optim.grad_clip", allow_zero=True)
  _choice(config.ema.schedule, "ema.schedule", ema.SCHEDULES)
  if not 0.0 <= config.ema.decay < 1.0:
    raise ValueError(f"ema.decay={config.ema.decay!r} must be in [0, 1)")
  _positive(config.ema.every, "ema.every")
  _positive(config.ema.start, "ema.start", allow_zero=True)
  if config.ema.start and config.ema.schedule != "warmup":
    raise ValueError(f"ema.start={config.ema.start} applies to ema.schedule="
                     f"'warmup' only (got {config.ema.schedule!r})")
  t = config.train
  _positive(t.steps, "train.steps")
  _positive(t.batch_size, "train.batch_size")
  _positive(t.log_every, "train.log_every")
  _positive(t.checkpoint_every, "train.checkpoint_every")
  _positive(t.eval_every, "train.eval_every", allow_zero=True)
  _positive(t.keep_checkpoints, "train.keep_checkpoints")
  data_devices = num_devices // max(1, config.mesh.model)
  if t.batch_size % data_devices:
    raise ValueError(
        f"train.batch_size={t.batch_size} must be divisible by the number of"
        f" data-parallel devices ({data_devices}); allowed: multiples of "
        f"{data_devices}")
  if t.batch_size % num_processes:
    raise ValueError(f"train.batch_size={t.batch_size} must be divisible by "
                     f"the number of processes ({num_processes})")
  _positive(config.mesh.model, "mesh.model")
  if num_devices % config.mesh.model:
    raise ValueError(f"mesh.model={config.mesh.model} must divide the "
                     f"device count {num_devices}")
  _positive(config.eval.num_samples, "eval.num_samples")
  _positive(config.eval.batch_size, "eval.batch_size")
  _positive(config.eval.sample_steps, "eval.sample_steps", allow_zero=True)
  vector_metrics = ("sinkhorn", "w2", "mmd", "energy", "kl_hist")
  image_metrics = ("fd_digits", "kid_digits", "fd_mnist", "kid_mnist", "fid",
                   "kid", "is")
  for m in config.eval.metrics:
    _choice(m, "eval.metrics entry",
            image_metrics if image else vector_metrics)
  if "kl_hist" in config.eval.metrics and data.data_shape(
      config.data) != (2,):
    raise ValueError("eval.metrics 'kl_hist' is for 2-D data only")
  _positive(config.sample.steps, "sample.steps")
  _choice(config.sample.method, "sample.method", ode.INTEGRATORS)
  methods.validate_config(config)
  check_host_ot(config, num_devices, backend)
