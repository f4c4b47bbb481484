"""Pytree helpers shared by the tests (importable because pytest puts
`tests/` on sys.path for its conftest.py)."""

import jax


def jitter(tree, key, scale=0.1):
  """tree + scale · N(0, 1), leaf by leaf (parameters away from an optimum)."""
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(treedef, [
      x + scale * jax.random.normal(k, x.shape, x.dtype)
      for x, k in zip(leaves, keys)])
