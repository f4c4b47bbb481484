"""EMA schedules."""

import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax.math import ema


def test_warmup_schedule_formula():
  for s in (0, 1, 4, 100, 10**6):
    d = float(ema.decay_at(s, "warmup", 0.9999, 2 / 3))
    assert d == pytest.approx(min(0.9999, 1 - (1 + s) ** (-2 / 3)), rel=1e-6)
  assert float(ema.decay_at(10**9, "warmup", 0.9999)) == pytest.approx(0.9999)


def test_constant_update_every_k():
  e, p = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
  out = ema.update(jnp.int32(3), e, p, schedule="constant", decay=0.9,
                   every=5)
  np.testing.assert_array_equal(out["w"], 0.0)  # 3 % 5 != 0: no update
  out = ema.update(jnp.int32(5), e, p, schedule="constant", decay=0.9,
                   every=5)
  np.testing.assert_allclose(out["w"], 0.1, rtol=1e-6)


def test_ema_converges_to_constant_params():
  e, p = {"w": jnp.zeros(())}, {"w": jnp.ones(())}
  for s in range(1, 2000):
    e = ema.update(jnp.int32(s), e, p, schedule="warmup", decay=0.999)
  assert float(e["w"]) > 0.99


def test_unknown_schedule():
  with pytest.raises(ValueError, match="ema.schedule"):
    ema.decay_at(1, "cosine", 0.9)
