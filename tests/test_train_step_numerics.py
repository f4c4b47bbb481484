"""The faster iCT train step computes what the earlier formulation did.

Three things changed for CPU speed (issue 15): the UNet's 2-tap FIR
resampling is a reshape/broadcast instead of a grouped (depthwise)
convolution, the step is compiled with `train.step_compiler_options()`
(convolutions on XLA's own emitters instead of YNNPACK), and GroupNorm is the
UNet's own module (two-stage sums) instead of `flax.linen.GroupNorm`. The
reference formulation is kept here: the grouped convolutions exactly as the
UNet wrote them before and Flax's GroupNorm, compiled with XLA's default
options.

Tolerances: the resamplers are compared bit-for-bit where only exact
multiplications by powers of two are involved, otherwise to 1e-6; the loss
of a whole UNet to rtol 1e-5 and each parameter gradient to 1e-4 of that
leaf's largest entry (float32, a different convolution algorithm sums in a
different order).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax import config_utils, train
from gcflow_jax.models import unet


def _ref_downsample(x, taps=(1, 1), pad=None):
  """The earlier formulation: a stride-2 grouped convolution."""
  f2d = unet.fir_filter(taps)
  p = (len(taps) - 1) // 2 if pad is None else pad
  return unet._depthwise(x, f2d, stride=2, pad=(p, p))  # pylint: disable=protected-access


def _ref_upsample(x, taps=(1, 1)):
  """The earlier formulation: a transposed (input-dilated) grouped conv."""
  f2d = 4.0 * unet.fir_filter(taps)[::-1, ::-1]
  p = f2d.shape[0] - 1 - (len(taps) - 1) // 2
  return unet._depthwise(x, f2d, lhs_dilation=2, pad=(p, p))  # pylint: disable=protected-access


@pytest.mark.parametrize("taps", [(1, 1), (1, 3), (2, 1)])
def test_two_tap_resampling_matches_grouped_convolution(key, taps):
  # Asymmetric taps catch a flipped or transposed filter; the VJPs are what
  # the backward pass uses.
  x = jax.random.normal(key, (2, 8, 6, 5))
  g_down = jax.random.normal(jax.random.fold_in(key, 1), (2, 4, 3, 5))
  g_up = jax.random.normal(jax.random.fold_in(key, 2), (2, 16, 12, 5))
  for fast, ref, g in ((unet.downsample_2d, _ref_downsample, g_down),
                       (unet.upsample_2d, _ref_upsample, g_up)):
    y, vjp = jax.vjp(lambda v: fast(v, taps), x)  # noqa: B023
    y_ref, vjp_ref = jax.vjp(lambda v: ref(v, taps), x)  # noqa: B023
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(vjp(g)[0], vjp_ref(g)[0], rtol=0, atol=1e-6)
  # [1, 1]: 2x2 mean and nearest neighbour, exact in float32.
  if taps == (1, 1):
    np.testing.assert_array_equal(unet.upsample_2d(x), _ref_upsample(x))


def test_step_compiler_options_keep_convolution_gradients(key):
  # The options move convolutions from YNNPACK to XLA's own emitters: the
  # forward value and both gradients of a 3x3 convolution must agree with
  # the default compilation (a wrong option that changed the convolution,
  # e.g. its padding or layout, would not).
  k1, k2, k3 = jax.random.split(key, 3)
  x = jax.random.normal(k1, (4, 8, 8, 16))
  w = 0.1 * jax.random.normal(k2, (3, 3, 16, 8))
  g = jax.random.normal(k3, (4, 8, 8, 8))

  def conv_and_grads(x, w):
    y, vjp = jax.vjp(lambda a, b: jax.lax.conv_general_dilated(
        a, b, (1, 1), ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC")), x, w)
    return (y,) + vjp(g)

  options = train.step_compiler_options()
  assert jax.default_backend() != "cpu" or options
  fast = jax.jit(conv_and_grads, compiler_options=options)(x, w)
  ref = jax.jit(conv_and_grads)(x, w)
  for a, b in zip(fast, ref):
    np.testing.assert_allclose(a, b, rtol=0,
                               atol=1e-5 * float(jnp.max(jnp.abs(b))))


def _ref_group_norm(channels, eps, dtype, param_dtype, name):
  """The earlier formulation: Flax's GroupNorm (same parameter names)."""
  return nn.GroupNorm(num_groups=min(32, channels // 4), epsilon=eps,
                      dtype=dtype, param_dtype=param_dtype, name=name)


def _loss_and_grads(config, monkeypatch, *, reference: bool):
  if reference:
    monkeypatch.setattr(unet, "downsample_2d", _ref_downsample)
    monkeypatch.setattr(unet, "upsample_2d", _ref_upsample)
    monkeypatch.setattr(unet, "_group_norm", _ref_group_norm)
  run = train.build(config)
  state = run.init_state()
  # A non-zero network (the output conv starts at exactly 0): one
  # deterministic perturbation of every parameter.
  leaves, tree = jax.tree_util.tree_flatten(state.params)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  params = jax.tree_util.tree_unflatten(tree, [
      p + 0.05 * jax.random.normal(k, p.shape, p.dtype)
      for p, k in zip(leaves, keys)])
  batch = {"x": jnp.asarray(run.dataset.global_batch(0, 4))}

  def objective(p):
    loss, _ = run.method.loss_fn(p, batch, run.k_train,
                                 step=jnp.int32(5_000), ema_params=p,
                                 extras=state.extras)
    return jnp.mean(loss)

  options = None if reference else train.step_compiler_options()
  fn = jax.jit(jax.value_and_grad(objective), compiler_options=options)
  return fn(params)


@pytest.mark.slow   # two compiles of a UNet's value_and_grad (~1 min idle)
def test_ict_loss_and_gradients_match_reference_formulation(monkeypatch):
  # The smoke UNet has a down- and an up-sampling block and attention.
  config = config_utils.load_config("configs/cifar_ic.py:smoke")
  with config.unlocked():
    config.train.batch_size = 4
  loss, grads = _loss_and_grads(config, monkeypatch, reference=False)
  with monkeypatch.context() as m:
    loss_ref, grads_ref = _loss_and_grads(config, m, reference=True)
  assert float(loss_ref) > 0.0
  np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
  flat = jax.tree_util.tree_leaves_with_path(grads)
  flat_ref = jax.tree_util.tree_leaves(grads_ref)
  for (path, g), g_ref in zip(flat, flat_ref):
    scale = float(jnp.max(jnp.abs(g_ref)))
    assert scale > 0.0, jax.tree_util.keystr(path)
    np.testing.assert_allclose(g, g_ref, rtol=0, atol=1e-4 * scale,
                               err_msg=jax.tree_util.keystr(path))
