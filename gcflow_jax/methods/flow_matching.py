"""Flow matching: velocity regression on an interpolant (the teacher of the
distillation methods).

Loss (Lipman et al. 2023; Albergo & Vanden-Eijnden 2023, stochastic
interpolants with γ = 0): for x0 ~ N(0, I), x1 ~ data, t ~ ρ(t),
    L(θ) = E ‖v_θ(I_t, t) − İ_t‖²,   I_t = α(t) x0 + β(t) x1,
whose minimiser is the marginal velocity b_t(x) = E[İ_t | I_t = x]; the ODE
ẋ = b_t(x) from x(0) ~ N(0, I) has x(1) ~ data.
"""

from __future__ import annotations

from typing import Callable, Tuple

import jax
import jax.numpy as jnp

from gcflow_jax.math import interpolants as interp_lib
from gcflow_jax.math import ode
from gcflow_jax.methods.base import Method
from gcflow_jax.models import make_network

__all__ = ["make_fm_loss", "make_ode_sampler", "sample_times", "from_config",
           "validate_config", "needs_teacher", "TIME_SAMPLERS"]

TIME_SAMPLERS = ("uniform", "logit_normal")


def sample_times(key: jax.Array, n: int, sampler: str = "uniform",
                 t_min: float = 0.0) -> jax.Array:
  """t ∈ [t_min, 1 − t_min], [n]: uniform or logit-normal(0, 1)."""
  if sampler == "uniform":
    u = jax.random.uniform(key, (n,))
  elif sampler == "logit_normal":
    u = jax.nn.sigmoid(jax.random.normal(key, (n,)))
  else:
    raise ValueError(f"fm.time_sampler={sampler!r} is not one of "
                     f"{TIME_SAMPLERS}")
  return t_min + (1.0 - 2.0 * t_min) * u


def make_fm_loss(apply_fn: Callable, interp: interp_lib.Interpolant,
                 time_sampler: str = "uniform", t_min: float = 0.0):
  """Returns loss_fn(params, batch, key, **_) -> ([B] loss, aux).

  Per-example loss: mean over data dimensions of (v_θ(I_t, t) − İ_t)².
  Random streams: k_t (times), k_x0 (noise), k_drop (dropout).
  """

  def loss_fn(params, batch, key, **unused):
    del unused
    x1 = batch["x"]
    b = x1.shape[0]
    k_t, k_x0, k_drop = jax.random.split(key, 3)
    del key
    t = sample_times(k_t, b, time_sampler, t_min)
    x0 = jax.random.normal(k_x0, x1.shape, x1.dtype)
    x_t = interp.x_t(x0, x1, t)
    target = interp.dx_t(x0, x1, t)
    v = apply_fn(params, x_t, t, key=k_drop)
    per_ex = jnp.mean(jnp.square(v - target).reshape(b, -1), axis=1)
    return per_ex, {"loss/fm": jnp.mean(per_ex)}

  return loss_fn


def make_ode_sampler(velocity: Callable, shape: Tuple[int, ...],
                     method: str = "heun", t0: float = 0.0, t1: float = 1.0):
  """sample_fn(params, key, num, steps) integrating ẋ = v(params, x, t) from
  N(0, I) at t0 to t1 on a uniform grid of `steps` steps."""

  def sample_fn(params, key, num, steps, extras=None):
    del extras
    x0 = jax.random.normal(key, (num,) + tuple(shape))
    v = lambda x, t: velocity(params, x, jnp.full((x.shape[0],), t))
    return ode.integrate(v, x0, ode.uniform_grid(t0, t1, steps), method)

  return sample_fn


def validate_config(config) -> None:
  if config.fm.time_sampler not in TIME_SAMPLERS:
    raise ValueError(f"fm.time_sampler={config.fm.time_sampler!r} is not one"
                     f" of {TIME_SAMPLERS}")
  if not 0.0 <= config.fm.t_min < 0.5:
    raise ValueError(f"fm.t_min={config.fm.t_min} must be in [0, 0.5)")


def needs_teacher(config) -> bool:
  del config
  return False


def from_config(config, data_shape, teacher=None) -> Method:
  del teacher
  _, apply_fn, init_fn = make_network(config.model, data_shape, 1)
  interp = interp_lib.get(config.interp.name)

  def init(key, example_batch):
    del example_batch
    return init_fn(key), {}

  return Method(
      name="flow_matching",
      init=init,
      loss_fn=make_fm_loss(apply_fn, interp, config.fm.time_sampler,
                           config.fm.t_min),
      sample_fn=make_ode_sampler(apply_fn, data_shape, config.sample.method),
      default_sample_steps=config.sample.steps,
      info={"interp": interp.name})
