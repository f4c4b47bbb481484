"""Device mesh and shardings: data parallel over every device of every host.

The mesh has axes ('data', 'model'); the model axis (size `mesh.model`,
default 1) is reserved for tensor parallelism. Batches are sharded on
'data', the train state is replicated. Multi-host: call `initialize` first
(jax.distributed), then every process builds the same global mesh and feeds
its own slice of each global batch (`make_global_batch`).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

__all__ = ["initialize", "make_mesh", "batch_sharding", "replicated",
           "make_global_batch", "shard_state"]


def initialize(dist_cfg) -> None:
  """jax.distributed.initialize from config (no-op unless enabled). On TPU
  VMs and SLURM clusters the arguments are auto-detected when left empty."""
  if not dist_cfg.initialize:
    return
  kwargs = {}
  if dist_cfg.coordinator_address:
    kwargs["coordinator_address"] = dist_cfg.coordinator_address
  if dist_cfg.num_processes > 0:
    kwargs["num_processes"] = int(dist_cfg.num_processes)
  if dist_cfg.process_id >= 0:
    kwargs["process_id"] = int(dist_cfg.process_id)
  jax.distributed.initialize(**kwargs)


def make_mesh(model_axis: int = 1, devices=None) -> Mesh:
  """('data', 'model') mesh over `devices` (default: all, every host)."""
  devices = jax.devices() if devices is None else list(devices)
  n = len(devices)
  if n % model_axis:
    raise ValueError(f"mesh.model={model_axis} must divide the device "
                     f"count {n}")
  return jax.make_mesh((n // model_axis, model_axis), ("data", "model"),
                       axis_types=(AxisType.Auto, AxisType.Auto),
                       devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def make_global_batch(mesh: Mesh, local: np.ndarray) -> jax.Array:
  """Assembles the global batch from every process's local slice."""
  return jax.make_array_from_process_local_data(batch_sharding(mesh), local)


def shard_state(state, mesh: Mesh):
  """Places a (host or single-device) pytree replicated on the mesh."""
  return jax.device_put(state, replicated(mesh))
