"""Methods: the one place that reads a config and builds a `Method`.

Each family module exposes three adapters next to its pure `make_*`
factories:

* `from_config(config, data_shape, teacher) -> Method`
* `validate_config(config) -> None` (raise ValueError naming the field and
  the allowed values; called before anything is compiled)
* `needs_teacher(config) -> bool`

`teacher` is a `gcflow_jax.teachers.Teacher` (frozen velocity field) or None.
"""

from __future__ import annotations

import importlib

from gcflow_jax.methods.base import Method

__all__ = ["METHODS", "Method", "get", "validate_config", "needs_teacher"]

# method name -> family module (explicit dict literal, no registry magic).
METHODS = {
    "flow_matching": "gcflow_jax.methods.flow_matching",
    "ict": "gcflow_jax.methods.consistency",
    "cd": "gcflow_jax.methods.consistency",
    "fmm": "gcflow_jax.methods.flow_maps",
    "gcm": "gcflow_jax.methods.distribution_matching",
    "reflow": "gcflow_jax.methods.reflow",
}


def _family(config):
  if config.method not in METHODS:
    raise ValueError(f"method={config.method!r} is not one of "
                     f"{sorted(METHODS)}")
  return importlib.import_module(METHODS[config.method])


def validate_config(config) -> None:
  _family(config).validate_config(config)


def needs_teacher(config) -> bool:
  return bool(_family(config).needs_teacher(config))


def get(config, data_shape, teacher=None) -> Method:
  return _family(config).from_config(config, tuple(data_shape), teacher)
