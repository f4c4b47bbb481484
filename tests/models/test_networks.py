"""models.make_network: an MLP on images is the MLP on the flattened
image, for every method alike."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base, digits_gc
from gcflow_jax import config_utils
from gcflow_jax.models import make_network


def _perturbed(params, key):
  """Every parameter moved off its initial value (the last layer starts at
  zero, which would make any two networks agree)."""
  leaves, tree = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(tree, [
      p + 0.1 * jax.random.normal(k, p.shape, p.dtype)
      for p, k in zip(leaves, keys)])


@pytest.mark.parametrize("num_times", [1, 2])
def test_mlp_on_images_is_the_mlp_on_the_flattened_image(num_times):
  c = base.get_config()
  c.model.name = "mlp"
  c.model.mlp.hidden = (32, 32)
  shape = (4, 3, 2)
  _, img_apply, img_init = make_network(c.model, shape, num_times)
  _, vec_apply, vec_init = make_network(c.model, (24,), num_times)
  params = _perturbed(img_init(jax.random.key(0)), jax.random.key(1))
  # The same parameters: the image network is built on 24 inputs.
  assert (jax.tree_util.tree_map(jnp.shape, params)
          == jax.tree_util.tree_map(jnp.shape, vec_init(jax.random.key(0))))
  x = jax.random.normal(jax.random.key(2), (5,) + shape)
  times = [jnp.linspace(0.1, 0.9, 5) + 0.01 * i for i in range(num_times)]
  got = img_apply(params, x, *times)
  want = vec_apply(params, x.reshape(5, -1), *times).reshape(x.shape)
  assert got.shape == x.shape
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  # Row-major flattening: pixel (0, 0, 1) is input 1, not input 8 (a
  # channels-first or transposed flattening moves it).
  d_out = jax.grad(lambda v: vec_apply(params, v, *times)[0, 1])(
      x.reshape(5, -1))
  d_img = jax.grad(lambda v: img_apply(params, v, *times)[0, 0, 0, 1])(x)
  np.testing.assert_allclose(d_img.reshape(5, -1), d_out, rtol=1e-5,
                             atol=1e-6)
  assert float(jnp.abs(d_img[0]).sum()) > 0


def test_validate_takes_an_mlp_on_images():
  c = digits_gc.get_config()
  c.model.name = "mlp"
  config_utils.validate(c)   # raised "does not take images" before
