"""Networks (Flax modules only) and the single place that builds them.

`make_network(model_cfg, data_shape, num_times)` returns `(module, apply_fn,
init_fn)` with the calling convention every method uses:

    apply_fn(params, x, *times, key=None) -> array shaped like x

`times` are [B] arrays (or scalars). A `key` switches dropout on (training
mode) and is the *only* randomness a network draws; passing the same key to
two calls reuses the same dropout mask (iCT's teacher/student convention).

`model.name='mlp'` on image data [H, W, C] is an MLP on the flattened image
(H·W·C inputs and outputs), reshaped back: the CPU stand-in for a UNet that
every method gets the same way.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Tuple

import jax
import jax.numpy as jnp

from gcflow_jax.models.mlp import TimeMLP

__all__ = ["make_network", "NETWORKS", "count_params"]

NETWORKS = ("mlp", "unet")


def count_params(params: Any) -> int:
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def _module(model_cfg, data_shape, num_times):
  name = model_cfg.name
  if name == "mlp":
    if len(data_shape) not in (1, 3):
      raise ValueError(f"model.name='mlp' needs vector data [D] or images "
                       f"[H, W, C], got data shape {data_shape}")
    return TimeMLP(hidden=tuple(model_cfg.mlp.hidden),
                   time_dim=model_cfg.mlp.time_dim,
                   time_scale=model_cfg.mlp.time_scale,
                   dropout=float(model_cfg.dropout) if not isinstance(
                       model_cfg.dropout, (list, tuple)) else 0.0)
  if name == "unet":
    from gcflow_jax.models import unet  # pylint: disable=g-import-not-at-top
    if len(data_shape) != 3:
      raise ValueError(f"model.name='unet' needs image data [H, W, C], got "
                       f"{data_shape}")
    return unet.from_config(model_cfg, data_shape, num_times)
  raise ValueError(f"model.name={name!r} is not one of {NETWORKS}")


def make_network(model_cfg, data_shape, num_times: int = 1
                 ) -> Tuple[Any, Callable[..., Any], Callable[..., Any]]:
  """Builds the network for `data_shape` taking `num_times` time inputs.

  Returns:
    module: the Flax module.
    apply_fn: `(params, x, *times, key=None) -> [B, *data_shape]`.
    init_fn: `key -> params`.
  """
  data_shape = tuple(data_shape)
  module = _module(model_cfg, data_shape, num_times)
  # An MLP sees an image as one vector.
  flat = model_cfg.name == "mlp" and len(data_shape) > 1
  net_shape = (math.prod(data_shape),) if flat else data_shape

  def apply_fn(params, x, *times, key=None):
    if len(times) != num_times:
      raise ValueError(f"network takes {num_times} time input(s), got "
                       f"{len(times)}")
    h = x.reshape((x.shape[0],) + net_shape) if flat else x
    if key is None:
      out = module.apply(params, h, *times, train=False)
    else:
      out = module.apply(params, h, *times, train=True,
                         rngs={"dropout": key})
    return out.reshape(x.shape) if flat else out

  def init_fn(key):
    x = jnp.zeros((1,) + net_shape, jnp.float32)
    ts = [jnp.zeros((1,), jnp.float32) for _ in range(num_times)]
    return module.init({"params": key}, x, *ts, train=False)

  return module, apply_fn, init_fn
