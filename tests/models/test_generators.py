"""Tests for gcflow_jax.models.generators (the constraint classes G)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax.models import generators as gen


def _build(name, shape, d, **kw):
  _, apply_fn, init_fn = gen.make_generator(name, shape, d, **kw)
  params = init_fn(jax.random.key(1))
  return apply_fn, params


@pytest.mark.parametrize("name,shape,d,kw", [
    ("affine", (2,), 2, {}),
    ("affine", (5,), 3, {}),
    ("linear", (4,), 4, {"structure": "orthogonal"}),
    ("affine", (4,), 2, {"structure": "orthogonal", "learn_scale": True}),
    ("affine", (3,), 3, {"structure": "diagonal"}),
    ("mlp", (2,), 2, {"hidden": (16, 16)}),
    ("mlp", (8, 8, 1), 5, {"hidden": (16,), "output": "tanh"}),
    pytest.param("conv", (8, 8, 1), 5, {"channels": (16, 8)},
                 marks=pytest.mark.slow),  # XLA:CPU conv compiles: ~15 s+
])
def test_shapes_and_finite_grads(name, shape, d, kw):
  apply_fn, params = _build(name, shape, d, **kw)
  z = jax.random.normal(jax.random.key(0), (3, d))
  x = jax.jit(apply_fn)(params, z)
  assert x.shape == (3,) + shape
  assert x.dtype == jnp.float32
  grads = jax.jit(jax.grad(lambda p: jnp.sum(apply_fn(p, z) ** 2)))(params)
  assert all(bool(jnp.all(jnp.isfinite(g)))
             for g in jax.tree_util.tree_leaves(grads))
  if kw.get("output") == "tanh":
    assert float(jnp.max(jnp.abs(x))) < 1.0


def test_conv_decoder_shapes():
  """8x8 with two levels starts at 4x4, 28x28 with three at 7x7 (shape
  checks only: no XLA compile)."""
  _, apply_fn, init_fn = gen.make_generator("conv", (8, 8, 1), 5,
                                            channels=(16, 8))
  params = jax.eval_shape(init_fn, jax.random.key(0))
  assert params["params"]["Dense_0"]["kernel"].shape == (5, 4 * 4 * 16)
  assert jax.eval_shape(apply_fn, params, jnp.zeros((2, 5))).shape == (
      2, 8, 8, 1)
  _, apply_fn, init_fn = gen.make_generator("conv", (28, 28, 1), 50,
                                            channels=(16, 8, 8))
  params = jax.eval_shape(init_fn, jax.random.key(0))
  assert params["params"]["Dense_0"]["kernel"].shape == (50, 7 * 7 * 16)
  out = jax.eval_shape(apply_fn, params, jnp.zeros((2, 50)))
  assert out.shape == (2, 28, 28, 1)


def test_affine_is_exactly_az_plus_b():
  apply_fn, params = _build("affine", (3,), 2)
  p = params["params"]
  a = jax.random.normal(jax.random.key(2), (3, 2))
  b = jnp.array([1.0, -2.0, 0.5])
  p = {"params": {"kernel": a, "bias": b}}
  z = jax.random.normal(jax.random.key(3), (7, 2))
  np.testing.assert_allclose(apply_fn(p, z), z @ a.T + b, rtol=1e-5,
                             atol=1e-6)
  # 'linear' has no bias: g(0) = 0.
  lin, lp = _build("linear", (3,), 2)
  assert "bias" not in lp["params"]
  np.testing.assert_array_equal(lin(lp, jnp.zeros((1, 2))), 0.0)


def test_affine_full_init_is_an_isometry():
  """Orthogonal init: g#N(0, I) starts with covariance A Aᵀ = I (D = N)."""
  _, params = _build("affine", (4,), 4)
  a = params["params"]["kernel"]
  np.testing.assert_allclose(a @ a.T, np.eye(4), atol=1e-5)


def test_orthogonal_columns_after_arbitrary_updates():
  apply_fn, params = _build("linear", (5,), 3, structure="orthogonal")
  w = jax.random.normal(jax.random.key(4), (5, 3)) * 3.0
  params = {"params": {"kernel": w}}
  # The map's matrix, read off from the unit vectors.
  a = apply_fn(params, jnp.eye(3)).T
  np.testing.assert_allclose(a.T @ a, np.eye(3), atol=1e-5)
  # Sign convention: Q R = w with diag(R) > 0, i.e. Qᵀ w upper triangular
  # with a positive diagonal.
  r = a.T @ w
  np.testing.assert_allclose(np.tril(np.asarray(r), -1), 0.0, atol=1e-4)
  assert np.all(np.diag(np.asarray(r)) > 0)


def test_orthogonal_learned_scale():
  apply_fn, params = _build("linear", (3,), 3, structure="orthogonal",
                            learn_scale=True)
  p = jax.tree_util.tree_map(lambda x: x, params)
  p["params"]["log_scale"] = jnp.log(2.0)
  a = apply_fn(p, jnp.eye(3)).T
  np.testing.assert_allclose(a.T @ a, 4.0 * np.eye(3), atol=1e-4)


def test_diagonal():
  apply_fn, _ = _build("affine", (3,), 3, structure="diagonal")
  p = {"params": {"diag": jnp.array([1.0, 2.0, -3.0]),
                  "bias": jnp.array([0.0, 1.0, 0.0])}}
  z = jnp.ones((2, 3))
  np.testing.assert_allclose(apply_fn(p, z), [[1.0, 3.0, -3.0]] * 2)


@pytest.mark.parametrize("name,shape,d,kw,match", [
    ("affine", (3,), 2, {"structure": "diagonal"}, "diagonal"),
    ("affine", (2,), 3, {"structure": "orthogonal"}, "orthogonal"),
    ("affine", (2,), 2, {"structure": "lowrank"}, "structure"),
    ("conv", (4,), 2, {}, "image"),
    ("gan", (2,), 2, {}, "not one of"),
    ("mlp", (2,), 2, {"output": "sigmoid"}, "output"),
])
def test_bad_arguments_raise(name, shape, d, kw, match):
  with pytest.raises(ValueError, match=match):
    gen.make_generator(name, shape, d, **kw)


def test_conv_decoder_needs_divisible_size():
  _, _, init_fn = gen.make_generator("conv", (6, 6, 1), 4,
                                     channels=(8, 8, 8))
  with pytest.raises(ValueError, match="divisible"):
    init_fn(jax.random.key(0))
