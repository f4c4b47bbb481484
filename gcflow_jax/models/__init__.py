"""Networks (Flax modules only) and the single place that builds them.

`make_network(model_cfg, data_shape, num_times)` returns `(module, apply_fn,
init_fn)` with the calling convention every method uses:

    apply_fn(params, x, *times, key=None) -> array shaped like x

`times` are [B] arrays (or scalars). A `key` switches dropout on (training
mode) and is the *only* randomness a network draws; passing the same key to
two calls reuses the same dropout mask (iCT's teacher/student convention).
"""

from __future__ import annotations

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
    if len(data_shape) != 1:
      raise ValueError(f"model.name='mlp' needs vector data [D], got data "
                       f"shape {data_shape}; use model.name='unet' for images")
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
  module = _module(model_cfg, tuple(data_shape), num_times)

  def apply_fn(params, x, *times, key=None):
    if len(times) != num_times:
      raise ValueError(f"network takes {num_times} time input(s), got "
                       f"{len(times)}")
    if key is None:
      return module.apply(params, x, *times, train=False)
    return module.apply(params, x, *times, train=True, rngs={"dropout": key})

  def init_fn(key):
    x = jnp.zeros((1,) + tuple(data_shape), jnp.float32)
    ts = [jnp.zeros((1,), jnp.float32) for _ in range(num_times)]
    return module.init({"params": key}, x, *ts, train=False)

  return module, apply_fn, init_fn
